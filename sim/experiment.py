"""An experiment ready to run: the validated spec plus the data files it names, loaded.

`load_experiment(path)` is the one place where an experiment's files are read; every problem
surfaces as a located `ConfigError` or `TraceError` before any simulation starts.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sim.config import ExperimentSpec, load_experiment_spec
from sim.errors import ConfigError, Problem, TraceError
from sim.traces import read_azure_trace, read_weekly_profile
from sim.workload import (
    BurstProcess,
    EmpiricalLengths,
    MarkovBurst,
    NoBurst,
    WeeklyProfile,
)


@dataclass(frozen=True)
class Experiment:
    """The spec and its loaded inputs (picklable: sent as-is to worker processes)."""

    spec: ExperimentSpec
    profile: WeeklyProfile
    lengths: EmpiricalLengths
    burst: BurstProcess


def build_experiment(spec: ExperimentSpec) -> Experiment:
    """Load the files `spec` names; located errors for anything malformed."""
    w = spec.workload
    if w.weekly_profile_file is not None:
        profile = read_weekly_profile(w.weekly_profile_file)
    elif w.weekly_profile_values is not None:
        try:
            profile = WeeklyProfile.from_values(w.weekly_profile_values)
        except ValueError as err:
            raise ConfigError(
                [Problem(spec.file, "workload.weekly_profile", str(err), has_value=False)]
            ) from None
    else:  # config validation guarantees one of the two
        raise ConfigError(
            [Problem(spec.file, "workload.weekly_profile", "missing", has_value=False)]
        )
    frame = read_azure_trace(w.lengths_file)
    if frame.height == 0:
        raise TraceError(w.lengths_file, None, None, 0, "no requests to resample lengths from")
    lengths = EmpiricalLengths.from_arrays(
        frame["input_tokens"].to_numpy(), frame["output_tokens"].to_numpy()
    )
    burst: BurstProcess
    if w.burst.kind == "markov":
        burst = MarkovBurst(
            mean_calm_s=w.burst.mean_calm_s,
            mean_burst_s=w.burst.mean_burst_s,
            burst_ratio=w.burst.burst_ratio,
        )
    else:
        burst = NoBurst()
    return Experiment(spec=spec, profile=profile, lengths=lengths, burst=burst)


def load_experiment(path: str | Path) -> Experiment:
    """Read, validate and load an experiment file."""
    return build_experiment(load_experiment_spec(path))

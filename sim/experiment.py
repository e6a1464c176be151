"""An experiment ready to run: the validated spec plus the data files it names, loaded.

`load_experiment(path)` is the one place where an experiment's files are read; every problem
surfaces as a located `ConfigError` or `TraceError` before any simulation starts.
`experiment_traffic(exp)` and `sample_month_requests` give the traffic of the experiment's
workload, generated or replayed, so callers need not know which.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from sim.config import ExperimentSpec, load_experiment_spec
from sim.traces.build import LoadedWorkload, load_workload, make_traffic
from sim.workload import (
    SECONDS_PER_MONTH,
    BurstProcess,
    EmpiricalLengths,
    MonthRequests,
    RateReplay,
    RequestReplay,
    Traffic,
    WeeklyProfile,
    month_rngs,
    sample_month,
)


@dataclass(frozen=True)
class Experiment:
    """The spec and its loaded inputs (picklable: sent as-is to worker processes).

    For a replay, `replay` holds the trace, `profile` its hour-of-week shape on the plan clock
    and `burst` is `NoBurst`. `notes` are facts about the data read (skipped rows and the like).
    """

    spec: ExperimentSpec
    profile: WeeklyProfile
    lengths: EmpiricalLengths
    burst: BurstProcess
    replay: RequestReplay | RateReplay | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()


def build_experiment(spec: ExperimentSpec) -> Experiment:
    """Load the files `spec` names; located errors for anything malformed."""
    horizon_s = float(spec.months * SECONDS_PER_MONTH)
    loaded = load_workload(spec.workload, spec.file, horizon_s)
    return Experiment(
        spec=spec,
        profile=loaded.profile,
        lengths=loaded.lengths,
        burst=loaded.burst,
        replay=loaded.replay,
        notes=loaded.notes,
    )


def load_experiment(path: str | Path) -> Experiment:
    """Read, validate and load an experiment file."""
    return build_experiment(load_experiment_spec(path))


def experiment_traffic(exp: Experiment) -> Traffic:
    """The experiment's traffic model, built from its spec (so a changed spec takes effect)."""
    loaded = LoadedWorkload(exp.profile, exp.burst, exp.lengths, exp.replay, exp.notes)
    return make_traffic(exp.spec.workload, loaded)


def sample_month_requests(
    exp: Experiment,
    replication: int,
    month: int,
    growth_factor: float,
    *,
    offset_s: float = 0.0,
    duration_s: float = SECONDS_PER_MONTH,
) -> MonthRequests:
    """The requests of 1-based `month` (or a window of it) of replication `replication`, at
    volume `growth_factor`, from the month's own streams (`month_rngs`)."""
    return sample_month(
        experiment_traffic(exp),
        month,
        growth_factor,
        month_rngs(replication, exp.spec.seed, month),
        offset_s=offset_s,
        duration_s=duration_s,
    )

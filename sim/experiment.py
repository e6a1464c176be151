"""An experiment ready to run: the validated spec, the data files it names (loaded), and the
engine it resolves to on each GPU type.

`load_experiment(path)` is the one place where an experiment's files are read and its derived
values are resolved; every problem surfaces as a located `ConfigError` or `TraceError` before
any simulation starts. `Experiment.traffic()` gives the traffic of the experiment's workload,
generated or replayed, so callers need not know which; `sample_month_requests` one month of it.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from sim.config import ExperimentSpec, ReplaySpec, WorkloadSpec, load_experiment_spec
from sim.config.spec import TraceColumns
from sim.engine import (
    ModelDoesNotFit,
    ResolvedEngine,
    resolve_engine,
)
from sim.errors import ConfigError, Problem, TraceError
from sim.horizon import horizon_mode
from sim.rng import Streams
from sim.traces.formats import read_trace
from sim.traces.model import RateTrace, RequestTrace
from sim.traces.profile import read_weekly_profile
from sim.units import SECONDS_PER_MONTH
from sim.workload import (
    BurstProcess,
    EmpiricalLengths,
    MonthRequests,
    NoBurst,
    RateReplay,
    ReplayTraffic,
    RequestReplay,
    Traffic,
    WeeklyProfile,
    sample_month,
)
from sim.workload.from_spec import LoadedWorkload, burst_process, make_traffic


@dataclass(frozen=True)
class Experiment:
    """The spec, its loaded inputs and its resolved engine (picklable: sent as-is to workers).

    For a replay, `replay` holds the trace, `profile` its hour-of-week shape on the plan clock
    and `burst` is `NoBurst`. `notes` are facts about the data read (skipped rows and the like).
    `engine`: the `[engine]` settings on every GPU type the plans use (step times with their
    provenance, KV-cache blocks, limits).
    """

    spec: ExperimentSpec
    profile: WeeklyProfile
    lengths: EmpiricalLengths
    burst: BurstProcess
    engine: ResolvedEngine
    replay: RequestReplay | RateReplay | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()

    def traffic(self) -> Traffic:
        """The experiment's traffic model, built from its spec (so a changed spec takes effect)."""
        loaded = LoadedWorkload(self.profile, self.burst, self.lengths, self.replay, self.notes)
        return make_traffic(self.spec.workload, loaded)

    def horizon(self) -> tuple[str, str]:
        """("full" | "sampled", the reason in words): `sim.horizon.horizon_mode` of this
        experiment's horizon setting and traffic."""
        s = self.spec
        return horizon_mode(s.horizon, self.traffic(), s.months, s.workload.growth.mean_monthly)

    def with_spec(self, spec: ExperimentSpec) -> Experiment:
        """The same loaded files under a changed spec (its engine resolved again)."""
        return dataclasses.replace(self, spec=spec, engine=resolve_experiment_engine(spec))


def resolve_experiment_engine(spec: ExperimentSpec) -> ResolvedEngine:
    """The engine on every GPU type of every plan (packaged GPU types, and those the
    `[engine] calibration` file defines in `[[gpu]]` tables: `sim.engine.resolve_engine`
    takes both); a `ConfigError` located at `engine` for each GPU type whose KV cache cannot
    hold one request of `max_model_len`."""
    try:
        return resolve_engine(spec.engine, spec.gpus_used())
    except ModelDoesNotFit as err:
        value = f"{spec.engine.model}/"
        raise ConfigError(
            [
                Problem(spec.file, "engine", m, value + g)
                for g, m in zip(err.gpus, err.messages, strict=True)
            ]
        ) from None


def build_experiment(spec: ExperimentSpec) -> Experiment:
    """Load the files `spec` names and resolve its engine; located errors for anything wrong."""
    engine = resolve_experiment_engine(spec)
    loaded = load_workload(spec.workload, spec.file, float(spec.months * SECONDS_PER_MONTH))
    return Experiment(
        spec=spec,
        profile=loaded.profile,
        lengths=loaded.lengths,
        burst=loaded.burst,
        engine=engine,
        replay=loaded.replay,
        notes=loaded.notes,
    )


def load_experiment(path: str | Path, calibration: str | Path | None = None) -> Experiment:
    """Read, validate and load an experiment file; `calibration` (a calibration file, e.g.
    `--calibration`) replaces its `[engine] calibration` before the fleet is read, so pools
    may name the GPU types it defines (`sim.config.load_experiment_spec`)."""
    return build_experiment(load_experiment_spec(path, calibration))


def sample_month_requests(
    exp: Experiment,
    streams: Streams,
    month: int,
    growth_factor: float,
    *,
    offset_s: float = 0.0,
    duration_s: float = SECONDS_PER_MONTH,
) -> MonthRequests:
    """The requests of 1-based `month` (or a window of it) of one replication at volume
    `growth_factor`, from the month's own streams (`Streams.month`)."""
    return sample_month(
        exp.traffic(),
        month,
        growth_factor,
        streams.month(month),
        offset_s=offset_s,
        duration_s=duration_s,
    )


# ------------------------------------------------------------------ the workload's files
def load_lengths(
    file: str,
    format: str | None,
    smoothing_log_sd: float,
    columns: TraceColumns | None = None,
) -> tuple[EmpiricalLengths, tuple[str, ...]]:
    """(input, output) pairs of any request trace (arrival times not needed)."""
    trace = read_trace(file, format, columns)
    if isinstance(trace, RateTrace):
        raise TraceError(file, None, None, trace.format, "a rate trace has no token lengths")
    return trace.lengths(smoothing_log_sd), _notes(trace)


def load_workload(spec: WorkloadSpec, file: str, horizon_s: float) -> LoadedWorkload:
    """Read the files `spec` names (`file`: the experiment, for located errors)."""
    where = spec.source_file or file
    if spec.replay is None:
        profile = _profile(spec, where)
        lengths, notes = load_lengths(
            spec.lengths_file, spec.lengths_format, spec.lengths_smoothing, spec.lengths_columns
        )
        return LoadedWorkload(profile, burst_process(spec.burst), lengths, None, notes)
    r = spec.replay
    trace = read_trace(r.trace_file, r.format, r.columns)
    notes = _notes(trace)
    source: RequestReplay | RateReplay
    if isinstance(trace, RateTrace):
        if r.period_s is not None:
            _fail(
                where,
                "workload.period_s",
                "only for request traces (a rate trace's period is its windows)",
                r.period_s,
            )
        if r.own_lengths:
            _fail(
                where,
                "workload.lengths",
                "is required: a rate trace has no token lengths",
                None,
                has_value=False,
            )
        source = trace.replay()
    else:
        if not trace.has_arrivals:
            _fail(
                where,
                "workload.trace",
                "has no arrival times (a length-only dataset); "
                "give it as lengths of a generated workload",
                r.trace_file,
            )
        source = trace.replay(r.period_s)
    if r.own_lengths:
        assert isinstance(trace, RequestTrace)
        lengths = trace.lengths()
    else:
        lengths, more = load_lengths(
            spec.lengths_file, spec.lengths_format, spec.lengths_smoothing, spec.lengths_columns
        )
        notes += more
    _check_loops(where, r, source, horizon_s)
    loaded = LoadedWorkload(WeeklyProfile.flat(), NoBurst(), lengths, source, notes)
    traffic = make_traffic(spec, loaded)
    assert isinstance(traffic, ReplayTraffic)
    if traffic.expected_arrivals(0.0, horizon_s, 1.0) <= 0.0:
        _fail(
            where,
            "workload.offset_s",
            f"places the trace outside the plan's horizon [0, {horizon_s:g}) s: no traffic at all",
            r.offset_s,
        )
    try:
        profile = traffic.hour_of_week_profile(horizon_s)
    except (OverflowError, ValueError) as err:  # rates whose hourly sums overflow a float
        _fail(where, "workload.trace", f"gives no usable hour-of-week shape ({err})", r.trace_file)
    return LoadedWorkload(profile, NoBurst(), lengths, source, notes)


# A replay's expected arrivals walk every loop of the trace over the horizon (one step per
# loop): a one-request trace loops each second, 15.7 million times in six months. Beyond this
# many loops the trace is too short for the horizon (a located error, not a long wait: each
# 50,000 loops cost ~2 s of `sim check`; sim/workload/replay.py walks them one by one).
MAX_REPLAY_LOOPS = 50_000


def _check_loops(
    where: str, r: ReplaySpec, source: RequestReplay | RateReplay, horizon_s: float
) -> None:
    if not r.loop:
        return
    trace_period_s = (
        source.period_s
        if isinstance(source, RequestReplay)
        else source.window_s * source.rates_per_s.size
    )
    loops = horizon_s / (trace_period_s * r.time_scale)
    if loops > MAX_REPLAY_LOOPS:
        key = "workload.period_s" if r.period_s is not None else "workload.trace"
        value: object = r.period_s if r.period_s is not None else r.trace_file
        _fail(
            where,
            key,
            f"the trace loops every {trace_period_s * r.time_scale:.3g} s: {loops:,.0f} loops "
            f"over the horizon (at most {MAX_REPLAY_LOOPS:,}); give a longer trace, a longer "
            "workload.period_s, or a larger workload.time_scale",
            value,
        )


def _profile(spec: WorkloadSpec, where: str) -> WeeklyProfile:
    if spec.weekly_profile_file is not None:
        try:
            return read_weekly_profile(spec.weekly_profile_file)
        except (OverflowError, ValueError):  # multipliers whose sum overflows a float
            _fail(
                where,
                "workload.weekly_profile",
                "multipliers too large (their sum overflows); write relative values",
                spec.weekly_profile_file,
            )
    if spec.weekly_profile_values is not None:
        try:
            return WeeklyProfile.from_values(spec.weekly_profile_values)
        except (OverflowError, ValueError) as err:
            _fail(where, "workload.weekly_profile", str(err), None, has_value=False)
    _fail(where, "workload.weekly_profile", "missing", None, has_value=False)
    raise AssertionError("unreachable")


def _fail(file: str, key: str, message: str, value: object, *, has_value: bool = True) -> None:
    raise ConfigError([Problem(file, key, message, value, has_value)])


def _notes(trace: RequestTrace | RateTrace) -> tuple[str, ...]:
    skipped = tuple(f"{trace.file}: skipped {n:,} rows: {why}" for why, n in trace.skipped)
    return skipped + tuple(f"{trace.file}: {note}" for note in trace.notes)

"""The data files a `WorkloadSpec` names, loaded, and the `Traffic` they make.

`load_workload` reads (once, at the edge) the weekly profile, the length trace and, for a
replay, the trace itself; `make_traffic` turns the spec plus those into a generated
`WorkloadModel` or a `ReplayTraffic`. They are apart so that a spec changed after loading (a
smaller volume, say) takes effect without reading the files again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.config import BurstLayerSpec, BurstSpec, WorkloadSpec
from sim.errors import ConfigError, Problem, TraceError
from sim.traces.formats import read_trace
from sim.traces.model import RateTrace, RequestTrace
from sim.traces.profile import read_weekly_profile
from sim.workload import (
    BurstProcess,
    EmpiricalLengths,
    LogNormalOU,
    MarkovBurst,
    NoBurst,
    ProductBurst,
    RateReplay,
    ReplayTraffic,
    RequestReplay,
    Traffic,
    WeeklyProfile,
    WorkloadModel,
)


@dataclass(frozen=True)
class LoadedWorkload:
    """What the workload's files hold. For a replay, `profile` is the trace's hour-of-week
    shape on the plan clock and `burst` is `NoBurst` (the trace is the traffic)."""

    profile: WeeklyProfile
    burst: BurstProcess
    lengths: EmpiricalLengths
    replay: RequestReplay | RateReplay | None = field(default=None, repr=False)
    notes: tuple[str, ...] = ()


def burst_process(spec: BurstSpec) -> BurstProcess:
    """The burst model a `BurstSpec` describes."""
    layers = [_layer(layer) for layer in spec.layers]
    match spec.kind:
        case "none":
            return NoBurst()
        case "markov" | "ou":
            return layers[0]
        case "product":
            return ProductBurst(tuple(layers))
        case _:
            raise ValueError(f"unknown burst kind {spec.kind!r}")


def _layer(layer: BurstLayerSpec) -> BurstProcess:
    match layer.kind:
        case "markov":
            return MarkovBurst(layer.mean_calm_s, layer.mean_burst_s, layer.burst_ratio)
        case "ou":
            return LogNormalOU(layer.sigma, layer.correlation_time_s, layer.step_s)
        case _:
            raise ValueError(f"unknown burst layer kind {layer.kind!r}")


def load_lengths(
    file: str, format: str | None, smoothing_log_sd: float
) -> tuple[EmpiricalLengths, tuple[str, ...]]:
    """(input, output) pairs of any request trace (arrival times not needed)."""
    trace = read_trace(file, format)
    if isinstance(trace, RateTrace):
        raise TraceError(file, None, None, trace.format, "a rate trace has no token lengths")
    return trace.lengths(smoothing_log_sd), _notes(trace)


def load_workload(spec: WorkloadSpec, file: str, horizon_s: float) -> LoadedWorkload:
    """Read the files `spec` names (`file`: the experiment, for located errors)."""
    where = spec.source_file or file
    if spec.replay is None:
        profile = _profile(spec, where)
        lengths, notes = load_lengths(
            spec.lengths_file, spec.lengths_format, spec.lengths_smoothing
        )
        return LoadedWorkload(profile, burst_process(spec.burst), lengths, None, notes)
    r = spec.replay
    trace = read_trace(r.trace_file, r.format)
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
        lengths, more = load_lengths(spec.lengths_file, spec.lengths_format, spec.lengths_smoothing)
        notes += more
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
    profile = traffic.hour_of_week_profile(horizon_s)
    return LoadedWorkload(profile, NoBurst(), lengths, source, notes)


def make_traffic(spec: WorkloadSpec, loaded: LoadedWorkload) -> Traffic:
    """The `Traffic` of `spec` from its loaded files.

    A replay's scale: `base_requests_per_day / 86,400` over the trace's long-run mean rate
    (arrivals per loop period) when `base_requests_per_day > 0`, else `rate_scale`, else 1.
    """
    if spec.replay is None or loaded.replay is None:
        return WorkloadModel(
            spec.base_requests_per_day / 86_400.0, loaded.profile, loaded.burst, loaded.lengths
        )
    r = spec.replay
    unscaled = ReplayTraffic(loaded.replay, 1.0, r.time_scale, r.offset_s, r.loop, loaded.lengths)
    if spec.base_requests_per_day > 0.0:
        scale = spec.base_requests_per_day / 86_400.0 / unscaled.mean_rate_per_s()
    else:
        scale = 1.0 if r.rate_scale is None else r.rate_scale
    return ReplayTraffic(
        loaded.replay,
        scale,
        r.time_scale,
        r.offset_s,
        r.loop,
        None if r.own_lengths else loaded.lengths,
    )


def _profile(spec: WorkloadSpec, where: str) -> WeeklyProfile:
    if spec.weekly_profile_file is not None:
        return read_weekly_profile(spec.weekly_profile_file)
    if spec.weekly_profile_values is not None:
        try:
            return WeeklyProfile.from_values(spec.weekly_profile_values)
        except ValueError as err:
            _fail(where, "workload.weekly_profile", str(err), None, has_value=False)
    _fail(where, "workload.weekly_profile", "missing", None, has_value=False)
    raise AssertionError("unreachable")


def _fail(file: str, key: str, message: str, value: object, *, has_value: bool = True) -> None:
    raise ConfigError([Problem(file, key, message, value, has_value)])


def _notes(trace: RequestTrace | RateTrace) -> tuple[str, ...]:
    skipped = tuple(f"{trace.file}: skipped {n:,} rows: {why}" for why, n in trace.skipped)
    return skipped + tuple(f"{trace.file}: {note}" for note in trace.notes)

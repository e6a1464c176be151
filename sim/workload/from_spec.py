"""The workload a `WorkloadSpec` describes, from the contents of the files it names.

`sim.experiment` reads the files (weekly profile, length trace, replayed trace) once, at the
edge, into a `LoadedWorkload`; `make_traffic(spec, loaded)` turns the spec plus those into a
generated `WorkloadModel` or a `ReplayTraffic`. They are apart so that a spec changed after
loading (a smaller volume, say) takes effect without reading the files again.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.config import BurstLayerSpec, BurstSpec, WorkloadSpec
from sim.units import SECONDS_PER_DAY
from sim.workload.burst import BurstProcess, LogNormalOU, MarkovBurst, NoBurst, ProductBurst
from sim.workload.lengths import EmpiricalLengths
from sim.workload.month import Traffic, WorkloadModel
from sim.workload.profile import WeeklyProfile
from sim.workload.replay import RateReplay, ReplayTraffic, RequestReplay


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


def make_traffic(spec: WorkloadSpec, loaded: LoadedWorkload) -> Traffic:
    """The `Traffic` of `spec` from its loaded files.

    A replay's scale: `base_requests_per_day / 86,400` over the trace's long-run mean rate
    (arrivals per loop period) when `base_requests_per_day > 0`, else `rate_scale`, else 1.
    """
    day_s = float(SECONDS_PER_DAY)
    if spec.replay is None or loaded.replay is None:
        return WorkloadModel(
            spec.base_requests_per_day / day_s, loaded.profile, loaded.burst, loaded.lengths
        )
    r = spec.replay
    unscaled = ReplayTraffic(loaded.replay, 1.0, r.time_scale, r.offset_s, r.loop, loaded.lengths)
    if spec.base_requests_per_day > 0.0:
        scale = spec.base_requests_per_day / day_s / unscaled.mean_rate_per_s()
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

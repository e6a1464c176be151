"""A plan's fleet for the simulator: replicas, their slots, and the routing phases by month.

Replica k of a pool keeps its identity across months (a smaller month drains the rest): the
replicas of a plan are the union over its months of (pool, gpu, k), indexed in order of first
use. A `FleetPhase` says which replica indices receive new requests from its start on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sim.config import PlanSpec
from sim.engine import EngineLimits, ResolvedEngine, StepTimeModel
from sim.rng import Streams
from sim.units import SECONDS_PER_MONTH, Market


@dataclass(frozen=True)
class ReplicaSpec:
    """One model instance: which pool and GPU it belongs to, its limits and step-time model."""

    pool: str
    gpu: str
    limits: EngineLimits
    step_time: StepTimeModel


@dataclass(frozen=True)
class FleetPhase:
    """From `start_s` on (until the next phase), new requests go to `replicas` (indices)."""

    start_s: float
    replicas: tuple[int, ...]


@dataclass(frozen=True)
class Slot:
    """Replica `index` is slot `k` of pool `pool` (`gpu`, bought on `market`)."""

    index: int
    pool: str
    gpu: str
    market: str
    k: int


@dataclass(frozen=True)
class Fleet:
    """The replicas a plan ever uses and which of them each month routes to."""

    plan: str
    replicas: tuple[ReplicaSpec, ...]
    phases: tuple[FleetPhase, ...]
    slots: tuple[Slot, ...]

    def spot_slots(self) -> tuple[Slot, ...]:
        return tuple(s for s in self.slots if s.market == Market.SPOT)


def step_time_factors(
    engine: ResolvedEngine, streams: Streams | None, *, enabled: bool = True
) -> dict[str, float]:
    """Per GPU type, the replication's step-time scale: model error as a Monte Carlo input.

    The step-time fit leaves a residual spread σ = `residual_sd_log` (SD of log(measured /
    predicted), held-out rows; larger for transferred and roofline entries). The replication
    scales every step time on a GPU type by exp(σ·Z), Z ~ N(0, 1) from its calibration stream
    (one draw per GPU type, the same for every plan), so the fit's uncertainty widens the
    output distributions. 1.0 everywhere when not `enabled` (`calibration_uncertainty` off) or
    without `streams` (no replication: the nominal fleet).
    """
    out = {}
    for gpu, e in sorted(engine.per_gpu.items()):
        sd = e.step_time.residual_sd_log
        factor = 1.0
        if streams is not None and enabled and sd > 0:
            factor = float(np.exp(sd * streams.calibration(gpu).standard_normal()))
        out[gpu] = factor
    return out


def build_fleet(
    plan: PlanSpec, engine: ResolvedEngine, factors: Mapping[str, float] | None = None
) -> Fleet:
    """The fleet of `plan` on `engine`, step times scaled per GPU type by `factors` (default 1)."""
    index: dict[tuple[str, str, int], int] = {}
    replicas: list[ReplicaSpec] = []
    slots: list[Slot] = []
    phases: list[FleetPhase] = []
    for m, month in enumerate(plan.fleet):
        active: list[int] = []
        for pool in month.pools:
            for k in range(pool.count):
                key = (pool.name, pool.gpu, k)
                if key not in index:
                    index[key] = len(replicas)
                    slots.append(Slot(len(replicas), pool.name, pool.gpu, pool.market, k))
                    step = engine.step_time(pool.gpu).step
                    factor = 1.0 if factors is None else factors[pool.gpu]
                    replicas.append(
                        ReplicaSpec(
                            pool.name, pool.gpu, engine.limits(pool.gpu), step.scaled(factor)
                        )
                    )
                active.append(index[key])
        phases.append(FleetPhase(m * SECONDS_PER_MONTH, tuple(active)))
    return Fleet(plan.name, tuple(replicas), tuple(phases), tuple(slots))

"""A plan's fleet for the simulator: replicas, their slots, and the routing phases.

Replica k of a pool keeps its identity across months (a smaller month drains the rest): the
replicas of a plan are the union over its months of (pool, gpu, k), indexed in order of first
use. A `FleetPhase` says which replica indices receive new requests from its start on.

Within a month a pool may move: a scheduled pool's slots serve by hour of the week
(`sim.fleet.schedule`), so the routing phases change inside the month (`Fleet.routing`); an
autoscaled pool (`ScaledPool`) is in every phase of its month with all its slots, and its
autoscaler (`sim.fleet.autoscale`, run by `sim.model`) holds the ones it has not started out
of service.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from sim.config import AutoscaleSpec, PlanSpec
from sim.engine import EngineLimits, ResolvedEngine, StepTimeModel
from sim.fleet.schedule import Interval, merge, routing_changes, serving_hours
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
class ScaledPool:
    """An autoscaled pool in one month (1-based `month`): its slots (replica indices, slot 0
    first), how many serve at the month's start, and its autoscaler."""

    month: int
    pool: str
    replicas: tuple[int, ...]
    initial: int
    spec: AutoscaleSpec


@dataclass(frozen=True)
class Fleet:
    """The replicas a plan ever uses, which of them each month has (`phases`, one per month),
    when each serves (`serving`, per replica index) and the routing phases that follow
    (`routing`: the month phases, refined where a schedule moves a pool)."""

    plan: str
    replicas: tuple[ReplicaSpec, ...]
    phases: tuple[FleetPhase, ...]
    slots: tuple[Slot, ...]
    routing: tuple[FleetPhase, ...] = ()
    serving: tuple[tuple[Interval, ...], ...] = ()
    scaled: tuple[ScaledPool, ...] = ()

    def spot_slots(self) -> tuple[Slot, ...]:
        return tuple(s for s in self.slots if s.market == Market.SPOT)

    def routing_between(self, start_s: float, end_s: float) -> list[FleetPhase]:
        """The routing phases over [start_s, end_s), the first one moved to `start_s`."""
        phases = self.routing or self.phases
        out = [p for p in phases if start_s < p.start_s < end_s]
        before = [p for p in phases if p.start_s <= start_s]
        head = before[-1] if before else phases[0]
        return [FleetPhase(start_s, head.replicas), *out]


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
    serving: list[list[Interval]] = []
    scaled: list[ScaledPool] = []
    for m, month in enumerate(plan.fleet):
        active: list[int] = []
        start, end = float(m * SECONDS_PER_MONTH), float((m + 1) * SECONDS_PER_MONTH)
        for pool in month.pools:
            # only a schedule serves by hour; other slots serve their whole month
            counts = pool.hourly_counts() if pool.schedule else None
            members: list[int] = []
            for k in range(pool.slots):
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
                    serving.append([])
                i = index[key]
                runs = [(start, end)] if counts is None else serving_hours(counts, k, start, end)
                if runs:
                    active.append(i)
                    members.append(i)
                    serving[i].extend(runs)
            if pool.autoscale is not None:
                scaled.append(
                    ScaledPool(m + 1, pool.name, tuple(members), pool.count, pool.autoscale)
                )
        phases.append(FleetPhase(start, tuple(active)))
    merged = tuple(tuple(merge(runs)) for runs in serving)
    routing: tuple[FleetPhase, ...] = tuple(phases)
    if any(p.schedule for month in plan.fleet for p in month.pools):
        bounds = [p.start_s for p in phases] + [float(len(phases) * SECONDS_PER_MONTH)]
        routing = tuple(FleetPhase(t, on) for t, on in routing_changes(merged, bounds))
    return Fleet(
        plan.name, tuple(replicas), tuple(phases), tuple(slots), routing, merged, tuple(scaled)
    )

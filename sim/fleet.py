"""A plan's fleet for the simulator: replicas, routing phases, spot reclaims and the GPU bill.

Replica k of a pool keeps its identity across months (a smaller month drains the rest). The
on-demand part of the bill follows from the plan alone; the spot part depends on the
replication's reclaims: a spot slot is billed while an instance runs (from its start — the
replacement's cold start included — to its reclaim) at the hour's spot price (`sim.spot`), and
a fallback on-demand replacement at the on-demand price. Reclaim schedules and price paths are
keyed by (replication, pool or GPU name, slot), never by plan, so plans that share a pool see the
same reclaims (common random numbers).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, replace

import numpy as np

from sim.api import ApiClient, latency_draws
from sim.config import ExperimentSpec, PlanSpec
from sim.cost import pool_cost
from sim.engine import EngineLimits, StepTimeModel
from sim.hardware import models, weight_bytes_per_gpu
from sim.model import FleetPhase, Hybrid, Outage, ReplicaSpec
from sim.rng import Stream, stream
from sim.spot import Outage as SpotOutage
from sim.spot import cold_start_s, market, spot_price_path, spot_schedule
from sim.stats import MonthCost, SpotBill, busy_by_hour
from sim.workload import HOURS_PER_MONTH, SECONDS_PER_MONTH


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
    """The replicas a plan ever uses, which of them each month routes to, and its fixed bill.

    costs: per month, the on-demand pools' GPU-hours and dollars plus operations (spot pools
    are billed per replication by `spot_bill`).
    """

    plan: str
    replicas: tuple[ReplicaSpec, ...]
    phases: tuple[FleetPhase, ...]
    costs: tuple[MonthCost, ...]
    slots: tuple[Slot, ...]

    def spot_slots(self) -> tuple[Slot, ...]:
        return tuple(s for s in self.slots if s.market == "spot")


def step_time_factors(spec: ExperimentSpec, replication: int | None) -> dict[str, float]:
    """Per GPU, the replication's step-time scale: model error as a Monte Carlo input.

    The step-time fit leaves a residual spread σ = `residual_sd_log` (SD of log(measured /
    predicted), held-out rows; larger for transferred and roofline entries). Replication k
    scales every step time on a GPU by exp(σ·Z), Z ~ N(0, 1) from its CALIBRATION stream (one
    draw per GPU type, the same for every plan), so the fit's uncertainty widens the output
    distributions. 1.0 everywhere when `calibration_uncertainty` is off or `replication` is None.
    """
    out = {}
    for gpu, st in spec.step_times:
        factor = 1.0
        if replication is not None and spec.calibration_uncertainty and st.residual_sd_log > 0:
            rng = stream(Stream.CALIBRATION, replication, spec.seed, zlib.crc32(gpu.encode()))
            factor = float(np.exp(st.residual_sd_log * rng.standard_normal()))
        out[gpu] = factor
    return out


def build_fleet(
    spec: ExperimentSpec, plan: PlanSpec | None = None, replication: int | None = None
) -> Fleet:
    """The fleet of `plan` (default: the experiment's first plan) for one replication.

    `replication` sets the step-time scale drawn for it (`step_time_factors`); None = 1.0.
    """
    plan = plan or spec.all_plans()[0]
    factors = step_time_factors(spec, replication)
    index: dict[tuple[str, str, int], int] = {}
    replicas: list[ReplicaSpec] = []
    slots: list[Slot] = []
    phases: list[FleetPhase] = []
    costs: list[MonthCost] = []
    e = spec.engine
    for m, month in enumerate(plan.fleet):
        active: list[int] = []
        gpu_hours = gpu_usd = 0.0
        for pool in month.pools:
            st = spec.step_time(pool.gpu)
            for k in range(pool.count):
                key = (pool.name, pool.gpu, k)
                if key not in index:
                    index[key] = len(replicas)
                    slots.append(Slot(len(replicas), pool.name, pool.gpu, pool.market, k))
                    replicas.append(
                        ReplicaSpec(
                            pool=pool.name,
                            gpu=pool.gpu,
                            limits=EngineLimits(
                                max_num_seqs=e.max_num_seqs,
                                max_num_batched_tokens=e.max_num_batched_tokens,
                                kv_blocks=spec.kv_blocks_for(pool.gpu),
                                max_model_len=e.max_model_len,
                                block_size=e.block_size,
                            ),
                            step_time=StepTimeModel.of(st).scaled(factors[pool.gpu]),
                        )
                    )
                active.append(index[key])
            if pool.market == "on_demand":
                c = pool_cost(pool.count, e.tp, HOURS_PER_MONTH, spec.cost.price(pool.gpu))
                gpu_hours += c.gpu_hours
                gpu_usd += c.gpu_usd
        phases.append(FleetPhase(m * SECONDS_PER_MONTH, tuple(active)))
        costs.append(MonthCost(len(active), gpu_hours, gpu_usd, spec.cost.ops_usd_per_month))
    return Fleet(plan.name, tuple(replicas), tuple(phases), tuple(costs), tuple(slots))


def replica_cold_start_s(spec: ExperimentSpec) -> float:
    """Instance start → serving: the experiment's `spot.cold_start_s`, else derived (sim.spot)."""
    if spec.spot is not None and spec.spot.cold_start_s is not None:
        return spec.spot.cold_start_s
    e = spec.engine
    weights = weight_bytes_per_gpu(models()[e.model], e.weights, e.tp)
    return cold_start_s(weights / 1e9)


def spot_outages(
    spec: ExperimentSpec, fleet: Fleet, replication: int
) -> dict[int, tuple[SpotOutage, ...]]:
    """Reclaims of every spot replica over the horizon, by replica index."""
    if spec.spot is None or not fleet.spot_slots():
        return {}
    s = spec.spot
    mk = market(s.market)
    if s.notice_s is not None:
        mk = replace(mk, notice_s=s.notice_s)
    by_pool: dict[str, list[Slot]] = {}
    for slot in fleet.spot_slots():
        by_pool.setdefault(slot.pool, []).append(slot)
    out: dict[int, tuple[SpotOutage, ...]] = {}
    for pool, members in sorted(by_pool.items()):
        schedule = spot_schedule(
            mk,
            seed=spec.seed,
            replication=replication,
            pool=pool,
            slots=max(m.k for m in members) + 1,
            horizon_s=float(spec.months * SECONDS_PER_MONTH),
            cold_start_s=replica_cold_start_s(spec),
            fallback_after_s=s.fallback_after_s,
            rate_per_instance_hour=s.preemptions_per_instance_hour,
        )
        for m in members:
            out[m.index] = tuple(schedule[m.k])
    return out


def as_model_outages(outages: dict[int, tuple[SpotOutage, ...]]) -> dict[int, tuple[Outage, ...]]:
    return {i: tuple((o.notice_s, o.down_s, o.up_s) for o in outs) for i, outs in outages.items()}


def spot_bill(
    spec: ExperimentSpec,
    fleet: Fleet,
    outages: dict[int, tuple[SpotOutage, ...]],
    replication: int,
) -> list[SpotBill]:
    """Per month, what the spot slots cost and how often they were reclaimed.

    A slot counts in month m when the plan has it in that month. Its instance runs from the
    month start (or from a replacement's start, `up_s − cold start`) to the next reclaim
    (`down_s`); a fallback replacement runs on-demand from then on.
    """
    months = spec.months
    hours = months * HOURS_PER_MONTH
    cold = replica_cold_start_s(spec)
    tp = spec.engine.tp
    prices: dict[str, np.ndarray] = {}
    for gpu in sorted({s.gpu for s in fleet.spot_slots()}):
        on_demand = spec.cost.price(gpu)
        spot = spec.cost.spot_price(gpu)
        ratio = min(1.0, spot / on_demand) if on_demand > 0 else 1.0
        rng = stream(Stream.SPOT, replication, spec.seed, 3, zlib.crc32(gpu.encode()))
        prices[gpu] = spot_price_path(rng, hours, on_demand, ratio) if spot > 0 else np.zeros(hours)
    bills = [[0.0, 0.0, 0.0, 0.0, 0] for _ in range(months)]
    for slot in fleet.spot_slots():
        spot_runs: list[tuple[float, float]] = []
        od_runs: list[tuple[float, float]] = []
        start, on_demand = 0.0, False
        for o in outages.get(slot.index, ()):
            (od_runs if on_demand else spot_runs).append((start, o.down_s))
            start, on_demand = max(o.down_s, o.up_s - cold), o.fallback
        (od_runs if on_demand else spot_runs).append((start, float(hours * 3600)))
        spot_s = busy_by_hour([r for r in spot_runs if r[1] > r[0]], hours)
        od_s = busy_by_hour([r for r in od_runs if r[1] > r[0]], hours)
        od_price = spec.cost.price(slot.gpu)
        for m in range(months):
            if slot.index not in fleet.phases[m].replicas:
                continue
            h0, h1 = m * HOURS_PER_MONTH, (m + 1) * HOURS_PER_MONTH
            b = bills[m]
            b[0] += tp * float(spot_s[h0:h1].sum()) / 3600.0
            b[1] += tp * float(np.dot(spot_s[h0:h1], prices[slot.gpu][h0:h1])) / 3600.0
            b[2] += tp * float(od_s[h0:h1].sum()) / 3600.0
            b[3] += tp * float(od_s[h0:h1].sum()) / 3600.0 * od_price
            m0, m1 = m * SECONDS_PER_MONTH, (m + 1) * SECONDS_PER_MONTH
            b[4] += sum(1 for o in outages.get(slot.index, ()) if m0 <= o.down_s < m1)
    return [SpotBill(b[0], b[1], b[2], b[3], int(b[4])) for b in bills]


def api_client(
    spec: ExperimentSpec, plan: PlanSpec, replication: int, n: int, *key: int
) -> ApiClient | None:
    """The plan's overflow API for one simulated request set of `n` requests (or None).

    Latency draws come from the replication's API stream (`key` names a sampled window),
    indexed by request, so every plan that spills request i sees the same API latency for it.
    """
    if spec.api is None or not plan.api:
        return None
    rng = stream(Stream.API, replication, spec.seed, *key)
    ttft, speed = latency_draws(spec.api, rng, n)
    return ApiClient(spec.api, ttft, speed)


def hybrid_for(
    spec: ExperimentSpec,
    plan: PlanSpec,
    outages: dict[int, tuple[SpotOutage, ...]],
    replication: int,
    n: int,
    *key: int,
    probe_s: float | None = None,
) -> Hybrid | None:
    """The model's spot/API wiring for a plan, or None when it has neither (the plain path)."""
    api = api_client(spec, plan, replication, n, *key)
    if not outages and api is None and probe_s is None:
        return None
    return Hybrid(outages=as_model_outages(outages), api=api, probe_s=probe_s)

"""Every dollar of a plan: on-demand, reserved and spot GPU-hours, the API, the all-API bill,
unit costs and break-even.

All money in US dollars, prices per GPU-hour or per million tokens as named; GPU-hours count
GPUs (a `tp`-way replica is `tp` GPUs).

* On-demand and reserved bills follow from the plan alone (`plan_month_costs`): a reserved GPU
  is paid for every hour of the month, used or not; a scheduled on-demand slot from one cold
  start before each of its serving runs to the run's end, each run rounded up to the market's
  billing granularity.
* An autoscaled pool's bill comes from the instance runs its autoscaler started (`scaled_bill`).
* The spot bill from the replication's reclaims (`spot_bill`): a spot slot is billed while an
  instance runs — from its start, the replacement's cold start included, to its reclaim — at
  the hour's spot price, a fallback on-demand replacement at the on-demand price.
* The API bill from the spilled tokens at list prices (`cost_fields`).

The reference calculations of DESIGN §10 (practitioners' break-even sums) are tests of this
module.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np

from sim.config import ApiSpec, CostSpec, PlanSpec
from sim.fleet import Fleet, Outage, spot_price_path
from sim.fleet.autoscale import ScaleEvent, billed_runs, pending_runs
from sim.fleet.schedule import overlap_s
from sim.fleet.serving import scaler_spans, serving_runs
from sim.records import exact_dot
from sim.rng import Streams
from sim.units import HOURS_PER_MONTH, SECONDS_PER_HOUR, SECONDS_PER_MONTH, Market
from sim.workload.clock import seconds_by_hour


@dataclass(frozen=True)
class PoolCost:
    """A pool's GPU-hours and dollars over one billing period."""

    gpu_hours: float
    gpu_usd: float


def pool_cost(
    count: int, gpus_per_replica: int, hours: float, price_usd_per_hour: float
) -> PoolCost:
    """GPU-hours and cost of `count` replicas of `gpus_per_replica` GPUs over `hours`."""
    if count < 0 or gpus_per_replica < 1 or hours < 0 or price_usd_per_hour < 0:
        raise ValueError("count, hours and price must be >= 0 and gpus_per_replica >= 1")
    gpu_hours = count * gpus_per_replica * hours
    return PoolCost(gpu_hours, gpu_hours * price_usd_per_hour)


def total_cost_usd(pools: Iterable[PoolCost], ops_usd: float) -> float:
    """GPU cost of all pools plus fixed operations cost."""
    return sum(p.gpu_usd for p in pools) + ops_usd


def usd_per_million_tokens(cost_usd: float, tokens: int) -> float:
    """Cost per million tokens served (input + output); NaN when nothing was served."""
    return cost_usd / tokens * 1e6 if tokens > 0 else float("nan")


def api_usd_per_request(
    input_tokens: float,
    output_tokens: float,
    input_usd_per_million: float,
    output_usd_per_million: float,
) -> float:
    """What one request costs on a paid API with per-million-token list prices."""
    return (input_tokens * input_usd_per_million + output_tokens * output_usd_per_million) / 1e6


def break_even_requests(fixed_usd: float, api_usd_per_request: float) -> float:
    """Requests per period above which a fixed self-hosted cost beats paying per request."""
    if api_usd_per_request <= 0:
        raise ValueError("api_usd_per_request must be > 0")
    return fixed_usd / api_usd_per_request


# ---------------------------------------------------------------- a plan's monthly bill
@dataclass(frozen=True)
class MonthCost:
    """What the plan pays in one month for its on-demand and reserved pools and operations:
    its replicas (the most it can have up), GPU-hours and dollars (on-demand and reserved
    together in `gpu_hours` / `gpu_cost_usd`; the reserved share also on its own), and the mean
    number of replicas up (GPU-hours ÷ tp ÷ hours, spot excluded)."""

    replicas: int
    gpu_hours: float
    gpu_cost_usd: float
    ops_cost_usd: float
    reserved_gpu_hours: float = 0.0
    reserved_usd: float = 0.0
    # autoscaled pools (from the simulation, `scaled_bill`): replicas launched in the month and
    # requests that arrived while a launched replica was still starting
    scale_ups: int = 0
    cold_start_delayed: int = 0
    # replica-hours serving in the month (spot reclaims not deducted), when the fleet moves
    # within it: the capacity of `token_utilisation`; NaN for a fixed fleet (count × 730 h)
    serving_replica_hours: float = math.nan


@dataclass(frozen=True)
class SpotBill:
    """One month of a plan's spot slots: GPU-hours and dollars by market, and reclaims."""

    spot_gpu_hours: float = 0.0
    spot_usd: float = 0.0
    fallback_gpu_hours: float = 0.0  # on-demand replacements after `spot.fallback_after_s`
    fallback_usd: float = 0.0
    reclaims: int = 0


@dataclass(frozen=True)
class ApiUse:
    """One month's traffic on the overflow API (weighted sums on a sampled horizon)."""

    requests: int = 0
    dropped: int = 0
    throttled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


NO_SPOT = SpotBill()
NO_API = ApiUse()


def plan_month_costs(
    plan: PlanSpec,
    tp: int,
    cost: CostSpec,
    fleet: Fleet | None = None,
    cold_start_s: float = 0.0,
) -> tuple[MonthCost, ...]:
    """Per month of `plan`: replicas, on-demand and reserved GPU-hours and dollars, and
    operations. Spot pools are billed per replication (`spot_bill`), autoscaled ones from
    their simulated instance runs (`scaled_bill`). A scheduled pool needs its `fleet` (its
    slots' serving runs) and the `cold_start_s` billed before each run."""
    out = []
    for m, month in enumerate(plan.fleet):
        gpu_hours = gpu_usd = reserved_hours = reserved_usd = 0.0
        for pool in month.pools:
            if pool.market == Market.RESERVED:
                c = pool_cost(pool.count, tp, HOURS_PER_MONTH, cost.reserved_price(pool.gpu))
                reserved_hours += c.gpu_hours
                reserved_usd += c.gpu_usd
            elif pool.market == Market.ON_DEMAND and pool.schedule:
                if fleet is None:
                    raise ValueError("a scheduled pool is billed from its fleet's serving runs")
                seconds = scheduled_seconds(fleet, pool.name, m + 1, cold_start_s, cost)
                c = pool_cost(1, tp, seconds / SECONDS_PER_HOUR, cost.price(pool.gpu))
                gpu_hours += c.gpu_hours
                gpu_usd += c.gpu_usd
            elif pool.market == Market.ON_DEMAND and pool.autoscale is None:
                c = pool_cost(pool.count, tp, HOURS_PER_MONTH, cost.price(pool.gpu))
                gpu_hours += c.gpu_hours
                gpu_usd += c.gpu_usd
        serving = math.nan
        if fleet is not None and any(p.moves for p in month.pools):
            scaled = {i for sp in fleet.scaled if sp.month == m + 1 for i in sp.replicas}
            serving = (
                sum(
                    seconds_in_month(runs, m + 1)
                    for i, runs in enumerate(fleet.serving)
                    if i in fleet.phases[m].replicas and i not in scaled
                )
                / SECONDS_PER_HOUR
            )
        out.append(
            MonthCost(
                month.replicas,
                gpu_hours + reserved_hours,
                gpu_usd + reserved_usd,
                cost.ops_usd_per_month,
                reserved_hours,
                reserved_usd,
                serving_replica_hours=serving,
            )
        )
    return tuple(out)


def rounded_runs(
    runs: Iterable[tuple[float, float]], granularity_s: float, months: int | None = None
) -> list[tuple[float, float]]:
    """Instance runs as billed: each run's length rounded up to whole `granularity_s` (at most
    to the horizon's end when `months` is given)."""
    end = math.inf if months is None else float(months * SECONDS_PER_MONTH)
    out = []
    for a, b in runs:
        if b > a:
            billed = math.ceil((b - a) / granularity_s - 1e-9) * granularity_s
            out.append((a, min(end, a + billed)))
    return out


def seconds_in_month(runs: Iterable[tuple[float, float]], month: int) -> float:
    """Seconds of `runs` inside 1-based `month`."""
    return overlap_s(list(runs), (month - 1) * SECONDS_PER_MONTH, month * SECONDS_PER_MONTH)


def scheduled_seconds(
    fleet: Fleet, pool: str, month: int, cold_start_s: float, cost: CostSpec
) -> float:
    """Instance-seconds billed in `month` for the slots of scheduled `pool`: each serving run
    from one cold start before it (unless it starts at a month boundary, where the plan's
    replicas are ready, as static ones are) to its end, rounded to the billing granularity."""
    g = cost.granularity_s(Market.ON_DEMAND)
    total = 0.0
    for slot in fleet.slots:
        if slot.pool != pool:
            continue
        runs = [
            (a if a % SECONDS_PER_MONTH == 0 else max(0.0, a - cold_start_s), b)
            for a, b in fleet.serving[slot.index]
        ]
        total += seconds_in_month(rounded_runs(runs, g), month)
    return total


@dataclass(frozen=True)
class ScaledUse:
    """What autoscaled pools used inside a span: instance-seconds billed per GPU type (each run
    rounded up to the on-demand billing granularity), replicas launched, and requests that
    arrived while a launch was pending (held back by a cold start)."""

    seconds_by_gpu: Mapping[str, float]
    launches: int
    delayed: int
    serving_s: float = 0.0  # replica-seconds serving (from "serve" to "release")


def scaled_use(
    events: Sequence[ScaleEvent],
    fleet: Fleet,
    arrival_s: np.ndarray,
    start_s: float,
    end_s: float,
    granularity_s: float,
    sim_end_s: float,
) -> ScaledUse:
    """Autoscaled use inside [start_s, end_s) of one simulation whose scale `events` run to
    `sim_end_s` (a replica still up there is billed to it); `arrival_s`: its arrivals."""
    seconds: dict[str, float] = {}
    delayed = 0
    for span_end, span in scaler_spans(events, sim_end_s):
        for replica, runs in billed_runs(span, span_end).items():
            gpu = fleet.slots[replica].gpu
            inside = overlap_s(rounded_runs(runs, granularity_s), start_s, end_s)
            seconds[gpu] = seconds.get(gpu, 0.0) + inside
        for pending in pending_runs(span, span_end).values():
            for a, b in pending:
                lo, hi = max(a, start_s), min(b, end_s)
                if hi > lo:
                    delayed += int(
                        np.searchsorted(arrival_s, hi, "left")
                        - np.searchsorted(arrival_s, lo, "left")
                    )
    launches = sum(1 for e in events if e.kind == "launch" and start_s <= e.t_s < end_s)
    serving = sum(overlap_s(r, start_s, end_s) for r in serving_runs(events, sim_end_s).values())
    return ScaledUse(seconds, launches, delayed, serving)


def with_scaled(
    cost: MonthCost,
    uses: Sequence[ScaledUse],
    weights: Sequence[float],
    tp: int,
    prices: CostSpec,
) -> MonthCost:
    """`cost` plus the autoscaled pools' on-demand GPU-hours and dollars, launches and delayed
    requests: the weighted sum of `uses` (weight 1 for a fully simulated month; a sampled
    window's weight on a sampled horizon)."""
    hours = usd = serving_s = 0.0
    launches = delayed = 0.0
    for use, w in zip(uses, weights, strict=True):
        serving_s += w * use.serving_s
        for gpu, s in sorted(use.seconds_by_gpu.items()):
            h = w * tp * s / SECONDS_PER_HOUR
            hours += h
            usd += h * prices.price(gpu)
        launches += w * use.launches
        delayed += w * use.delayed
    return replace(
        cost,
        gpu_hours=cost.gpu_hours + hours,
        gpu_cost_usd=cost.gpu_cost_usd + usd,
        scale_ups=cost.scale_ups + round(launches),
        cold_start_delayed=cost.cold_start_delayed + round(delayed),
        serving_replica_hours=cost.serving_replica_hours + serving_s / SECONDS_PER_HOUR,
    )


def spot_bill(
    fleet: Fleet,
    outages: Mapping[int, tuple[Outage, ...]],
    streams: Streams,
    *,
    months: int,
    tp: int,
    cold_start_s: float,
    cost: CostSpec,
) -> list[SpotBill]:
    """Per month, what the spot slots cost and how often they were reclaimed.

    A slot counts in month m when the plan has it in that month. Its instance runs from the
    month start (or from a replacement's start, `up_s − cold start`) to the next reclaim
    (`down_s`); a fallback replacement runs on-demand from then on. Spot prices follow the
    replication's hourly price path of each GPU type (`Streams.spot_price`).
    """
    hours = months * HOURS_PER_MONTH
    prices: dict[str, np.ndarray] = {}
    for gpu in sorted({s.gpu for s in fleet.spot_slots()}):
        on_demand = cost.price(gpu)
        spot = cost.spot_price(gpu)
        ratio = min(1.0, spot / on_demand) if on_demand > 0 else 1.0
        rng = streams.spot_price(gpu)
        prices[gpu] = spot_price_path(rng, hours, on_demand, ratio) if spot > 0 else np.zeros(hours)
    bills = [[0.0, 0.0, 0.0, 0.0, 0] for _ in range(months)]
    for slot in fleet.spot_slots():
        spot_runs: list[tuple[float, float]] = []
        od_runs: list[tuple[float, float]] = []
        start, on_demand = 0.0, False
        for o in outages.get(slot.index, ()):
            (od_runs if on_demand else spot_runs).append((start, o.down_s))
            start, on_demand = max(o.down_s, o.up_s - cold_start_s), o.fallback
        (od_runs if on_demand else spot_runs).append((start, float(hours * SECONDS_PER_HOUR)))
        spot_s = seconds_by_hour([r for r in spot_runs if r[1] > r[0]], hours)
        od_s = seconds_by_hour([r for r in od_runs if r[1] > r[0]], hours)
        od_price = cost.price(slot.gpu)
        for m in range(months):
            if slot.index not in fleet.phases[m].replicas:
                continue
            h0, h1 = m * HOURS_PER_MONTH, (m + 1) * HOURS_PER_MONTH
            b = bills[m]
            b[0] += tp * float(spot_s[h0:h1].sum()) / SECONDS_PER_HOUR
            b[1] += tp * exact_dot(spot_s[h0:h1], prices[slot.gpu][h0:h1]) / SECONDS_PER_HOUR
            b[2] += tp * float(od_s[h0:h1].sum()) / SECONDS_PER_HOUR
            b[3] += tp * float(od_s[h0:h1].sum()) / SECONDS_PER_HOUR * od_price
            m0, m1 = m * SECONDS_PER_MONTH, (m + 1) * SECONDS_PER_MONTH
            b[4] += sum(1 for o in outages.get(slot.index, ()) if m0 <= o.down_s < m1)
    return [SpotBill(b[0], b[1], b[2], b[3], int(b[4])) for b in bills]


def api_prices(api: ApiSpec | None) -> tuple[float, float] | None:
    """(input, output) USD per million tokens of the overflow API, or None without one."""
    if api is None:
        return None
    return api.input_usd_per_million, api.output_usd_per_million


def cost_before_api_usd(cost: MonthCost, spot: SpotBill = NO_SPOT) -> float:
    """A month's cost without its API bill: GPUs (on demand, spot and the spot's on-demand
    fallback) + operations — `cost_fields`' `cost_usd` adds the API bill (≥ 0) to exactly this
    sum, so it is a lower bound on it to the last bit (rounding is monotone)."""
    return _gpu_usd(cost, spot) + cost.ops_cost_usd


def _gpu_usd(cost: MonthCost, spot: SpotBill) -> float:
    """A month's GPU bill: on demand, spot, and the spot's on-demand fallback."""
    return cost.gpu_cost_usd + spot.spot_usd + spot.fallback_usd


def cost_fields(
    cost: MonthCost,
    input_tokens: int,
    output_tokens: int,
    spot: SpotBill = NO_SPOT,
    api: ApiUse = NO_API,
    prices: tuple[float, float] | None = None,
) -> dict[str, object]:
    """The cost and hybrid columns of a month row.

    GPU on-demand cost and operations come from the plan; spot cost from the replication's
    reclaims; API cost from the spilled tokens at list prices (`prices` = input and output
    USD per million tokens). The all-API bill prices the month's tokens — every accepted
    request's input and output — on that API.
    """
    per_m_in, per_m_out = prices if prices is not None else (math.nan, math.nan)
    api_usd = (api.input_tokens * per_m_in + api.output_tokens * per_m_out) / 1e6
    if prices is None:
        api_usd = 0.0
    gpu_usd = _gpu_usd(cost, spot)
    total = cost_before_api_usd(cost, spot) + api_usd
    all_api = (input_tokens * per_m_in + output_tokens * per_m_out) / 1e6
    tokens = input_tokens + output_tokens
    return {
        "spot_preemptions": spot.reclaims,
        "api_requests": api.requests,
        "api_dropped": api.dropped,
        "api_throttled": api.throttled,
        "api_input_tokens": api.input_tokens,
        "api_output_tokens": api.output_tokens,
        "replicas": cost.replicas,
        "gpu_hours": cost.gpu_hours + spot.spot_gpu_hours + spot.fallback_gpu_hours,
        "gpu_cost_usd": gpu_usd,
        "gpu_cost_on_demand_usd": cost.gpu_cost_usd - cost.reserved_usd + spot.fallback_usd,
        "gpu_cost_spot_usd": spot.spot_usd,
        "gpu_cost_reserved_usd": cost.reserved_usd,
        "gpu_hours_on_demand": cost.gpu_hours - cost.reserved_gpu_hours + spot.fallback_gpu_hours,
        "gpu_hours_spot": spot.spot_gpu_hours,
        "gpu_hours_reserved": cost.reserved_gpu_hours,
        "scale_ups": cost.scale_ups,
        "cold_start_delayed": cost.cold_start_delayed,
        "serving_replica_hours": cost.serving_replica_hours,
        "ops_cost_usd": cost.ops_cost_usd,
        "api_cost_usd": api_usd,
        "cost_usd": total,
        "all_api_cost_usd": all_api,
        "savings_vs_all_api_usd": all_api - total,
        "usd_per_million_tokens": total / tokens * 1e6 if tokens else float("nan"),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
    }

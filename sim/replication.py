"""One replication of every plan of an experiment, reduced to KPI rows.

Replication k builds `Streams(seed, k)` once and draws every random number from it: growth,
each month's (or window's) traffic, the calibration error per GPU type, spot reclaims, API
latencies. The plan is not part of any key, so every plan of replication k sees the same
traffic, reclaims (per pool name and slot) and API latency draws (per request): common random
numbers, and plan differences are paired.

On a full horizon every request of every month is simulated; on a sampled one (`sim.horizon`)
each month's windows are, each from an empty fleet warmed up before it, and the month's KPIs
are weighted estimates (`sim.stats.sampled`). The bill comes from the whole month's plan.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from sim.config import ApiSpec, ExperimentSpec, PlanSpec
from sim.cost import (
    MonthCost,
    ScaledUse,
    SpotBill,
    api_prices,
    plan_month_costs,
    scaled_use,
    spot_bill,
    with_scaled,
)
from sim.engine import busy_seconds_inside
from sim.experiment import Experiment
from sim.fleet import (
    Fleet,
    FleetPhase,
    Outage,
    api_client,
    build_fleet,
    outages_touching,
    replica_cold_start_s,
    spot_outages,
    step_time_factors,
)
from sim.fleet.autoscale import Scaler, profile_floor
from sim.fleet.schedule import overlap_s
from sim.fleet.serving import serving_by_hour
from sim.horizon import Window, choose_windows, fleet_slice, strata_of_slots
from sim.model import Engine, Hybrid, simulate, simulate_arrays
from sim.model.outcomes import core_outcomes, outcomes_of, request_log
from sim.rng import MonthRngs, Streams
from sim.stats import WindowResult, full_month_rows, sampled_month_rows, window_result
from sim.units import HOURS_PER_MONTH, SECONDS_PER_MONTH, Market
from sim.workload import MonthRequests, Traffic, sample_month, sample_monthly_growth
from sim.workload.clock import seconds_by_hour


@dataclass(frozen=True)
class Workload:
    """One replication's requests over the whole horizon."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    growth: np.ndarray


@dataclass(frozen=True)
class ReplicationOutput:
    """One replication's KPI rows, what it cost to simulate, and its error if it failed."""

    replication: int
    months: list[dict[str, object]]
    hourly: list[dict[str, object]]
    requests: int
    simpy_events: int
    wall_s: float
    error: str | None = None


def sample_growth(spec: ExperimentSpec, streams: Streams) -> np.ndarray:
    """The replication's cumulative monthly volume factors (the same for every plan)."""
    g = spec.workload.growth
    return sample_monthly_growth(streams.growth(), spec.months, g.mean_monthly, g.sd_log)


def sample_workload(exp: Experiment, streams: Streams) -> Workload:
    """Draw one replication's traffic: growth, then each month from its own streams."""
    growth = sample_growth(exp.spec, streams)
    traffic = exp.traffic()
    months = [
        sample_month(traffic, m, float(growth[m - 1]), streams.month(m))
        for m in range(1, exp.spec.months + 1)
    ]
    return Workload(
        np.concatenate([r.arrival_s for r in months]),
        np.concatenate([r.input_tokens for r in months]),
        np.concatenate([r.output_tokens for r in months]),
        growth,
    )


@dataclass(frozen=True)
class PlanRun:
    """One plan in one replication: its fleet, reclaims, bill and API wiring."""

    plan: PlanSpec
    fleet: Fleet
    outages: Mapping[int, tuple[Outage, ...]]
    costs: tuple[MonthCost, ...]
    spot: list[SpotBill]
    cold_start_s: float = 0.0  # an instance's start to serving (weights load + engine start)
    profile: tuple[float, ...] = ()  # the weekly profile (predictive autoscalers' floor)

    def scalers(self, start_s: float, end_s: float) -> tuple[Scaler, ...]:
        """The autoscalers of the plan's autoscaled pools over [start_s, end_s): one per pool
        and month it overlaps, starting with the month's `count` serving."""
        out = []
        for sp in self.fleet.scaled:
            m0, m1 = (sp.month - 1) * SECONDS_PER_MONTH, sp.month * SECONDS_PER_MONTH
            a, b = max(start_s, float(m0)), min(end_s, float(m1))
            if b > a:
                floor = profile_floor(self.profile, sp.spec) if sp.spec.predictive else ()
                out.append(
                    Scaler(
                        sp.pool, sp.replicas, a, b, sp.initial, sp.spec, self.cold_start_s, floor
                    )
                )
        return tuple(out)


def plan_run(exp: Experiment, plan: PlanSpec, streams: Streams) -> PlanRun:
    """The fleet of `plan` in this replication (its step-time scale drawn), its reclaims and
    its bill."""
    spec = exp.spec
    factors = step_time_factors(exp.engine, streams, enabled=spec.calibration_uncertainty)
    fleet = build_fleet(plan, exp.engine, factors)
    cold = replica_cold_start_s(spec.spot, spec.engine)
    outages = spot_outages(spec.spot, fleet, streams, float(spec.months * SECONDS_PER_MONTH), cold)
    bill = spot_bill(
        fleet,
        outages,
        streams,
        months=spec.months,
        tp=spec.engine.tp,
        cold_start_s=cold,
        cost=spec.cost,
    )
    costs = plan_month_costs(plan, spec.engine.tp, spec.cost, fleet, cold)
    profile = tuple(float(x) for x in exp.profile.array)
    return PlanRun(plan, fleet, outages, costs, bill, cold, profile)


def spills_to_api(api_spec: ApiSpec | None, run: PlanRun) -> bool:
    """Whether `run`'s plan may send requests to the API (and so draws API latencies)."""
    return api_spec is not None and run.plan.api


def hybrid_for(
    api_spec: ApiSpec | None,
    run: PlanRun,
    outages: Mapping[int, tuple[Outage, ...]],
    api_rng: np.random.Generator | None,
    n: int,
    probe_s: float | None = None,
    scalers: tuple[Scaler, ...] = (),
) -> Hybrid | None:
    """The model's spot/API/autoscaler wiring for one request set of `n` requests (None: the
    plain case); the API only where the plan may spill to it (`spills_to_api`; `api_rng` may
    then be None)."""
    api = None
    if spills_to_api(api_spec, run):
        if api_rng is None:
            raise ValueError("a plan that spills to the API needs its latency stream")
        api = api_client(api_spec, api_rng, n)
    if not outages and api is None and probe_s is None and not scalers:
        return None
    return Hybrid(outages=outages, api=api, probe_s=probe_s, scalers=scalers)


@dataclass(frozen=True)
class Scope:
    """What of a replication to compute (default: everything).

    `months` (1-based; None: all): on a sampled horizon only these months are simulated and
    have rows. Their rows are the bits a whole replication gives them: a sampled month draws
    its windows, traffic and API latencies from streams named by the month, and the growth
    path, reclaims and bill are drawn whole either way (`sim.planning.evaluate` decides a
    candidate fleet month by month). A full horizon carries queues across month boundaries,
    so it always simulates, and returns, every month.
    `standard_errors`: the sampled horizon's bootstrap of each month's standard errors
    (`sim.stats.sampled`); off, the `*_se` columns are NaN and the rest the same bits (its
    stream is its own)."""

    months: frozenset[int] | None = None
    standard_errors: bool = True


WHOLE = Scope()


def run_replication(
    exp: Experiment, replication: int, engine: Engine = "fast", scope: Scope = WHOLE
) -> ReplicationOutput:
    """Simulate replication `replication` of every plan of `exp` (the part `scope` asks
    for); reduce it to KPI rows."""
    t0 = time.perf_counter()
    streams = Streams(exp.spec.seed, replication)
    rows: list[dict[str, object]] = []
    hourly: list[dict[str, object]] = []
    requests = events = 0
    spec = exp.spec
    sampled = exp.horizon()[0] == "sampled"
    wl = None if sampled else sample_workload(exp, streams)
    for plan in spec.all_plans():
        run = plan_run(exp, plan, streams)
        if wl is None:
            r, h, n, ev = _sampled_replication(exp, streams, run, engine, scope)
        else:
            r, h, n, ev = _full_replication(exp, streams, run, wl, engine)
        rows.extend(r)
        hourly.extend(h)
        requests += n
        events += ev
    return ReplicationOutput(replication, rows, hourly, requests, events, time.perf_counter() - t0)


Rows = tuple[list[dict[str, object]], list[dict[str, object]], int, int]


def _full_replication(
    exp: Experiment, streams: Streams, run: PlanRun, wl: Workload, engine: Engine
) -> Rows:
    spec = exp.spec
    log = request_log(wl)
    horizon_s = float(spec.months * SECONDS_PER_MONTH)
    scalers = run.scalers(0.0, horizon_s)
    hybrid = hybrid_for(spec.api, run, run.outages, streams.api(), len(log), scalers=scalers)
    result = simulate(log, run.fleet.replicas, run.fleet.routing, engine, hybrid)
    hours = spec.months * HOURS_PER_MONTH
    costs = run.costs
    busy_hours_serving: np.ndarray | None = None
    if scalers:
        g = spec.cost.granularity_s(Market.ON_DEMAND)
        costs = tuple(
            with_scaled(
                c,
                [
                    scaled_use(
                        result.scale_events,
                        run.fleet,
                        wl.arrival_s,
                        m * SECONDS_PER_MONTH,
                        (m + 1) * SECONDS_PER_MONTH,
                        g,
                        horizon_s,
                    )
                ],
                [1.0],
                spec.engine.tp,
                spec.cost,
            )
            for m, c in enumerate(costs)
        )
        busy_hours_serving = serving_by_hour(run.fleet, hours, result.scale_events, horizon_s)
    else:
        busy_hours_serving = serving_by_hour(run.fleet, hours) if run.plan.moves else None
    rows, hourly = full_month_rows(
        plan=run.plan.name,
        replication=streams.replication,
        outcomes=outcomes_of(log, wl, result),
        slo=spec.slo,
        month_s=float(SECONDS_PER_MONTH),
        months=spec.months,
        busy_hours=[seconds_by_hour(p, hours) for p in result.busy_periods],
        active=[p.replicas for p in run.fleet.phases],
        serving_hours=busy_hours_serving,
        costs=costs,
        growth=wl.growth.tolist(),
        spot=run.spot,
        api_prices=api_prices(spec.api),
    )
    return rows, hourly, len(log), result.simpy_events


def _sampled_replication(
    exp: Experiment, streams: Streams, run: PlanRun, engine: Engine, scope: Scope = WHOLE
) -> Rows:
    """One plan of a replication on the sampled horizon: windows of each month (of
    `scope.months` only, when given).

    Windows are the same for every plan (their streams do not name the plan). Each window
    sees the reclaims that overlap it; the month's spot bill and reclaim count come from the
    whole schedule.
    """
    spec = exp.spec
    h = spec.horizon
    growth = sample_growth(spec, streams)
    traffic = exp.traffic()  # generated or replayed
    slot_stratum = strata_of_slots(exp.profile.array, h.peak_hours, h.strata)
    rows: list[dict[str, object]] = []
    hourly: list[dict[str, object]] = []
    requests = events = 0
    api = spills_to_api(spec.api, run)
    plain = not run.outages and not api and not run.plan.moves
    for month in range(1, spec.months + 1):
        if scope.months is not None and month not in scope.months:
            continue
        active = run.fleet.phases[month - 1].replicas
        k = fleet_slice(run.fleet.replicas, active, plain=plain)
        windows = choose_windows(
            streams.horizon(month),
            month,
            HOURS_PER_MONTH,
            slot_stratum,
            h.windows_per_stratum,
            h.window_s,
        )
        results = []
        uses: list[ScaledUse] = []
        for i, window in enumerate(windows):
            result, n, ev, use = _simulate_window(
                spec,
                run,
                window,
                float(growth[month - 1]),
                traffic,
                streams.window(month, i),
                # NOTE: no API stream where the plan cannot spill (~2 % of a growth20pct
                # replication went to seeding 120 unused generators)
                streams.api(month, i) if api else None,
                engine,
                k,
            )
            results.append(result)
            if use is not None:
                uses.append(use)
            requests += n
            events += ev
        cost = run.costs[month - 1]
        if uses:
            weights = [w.weight for w in windows]
            cost = with_scaled(cost, uses, weights, spec.engine.tp, spec.cost)
        row, hours = sampled_month_rows(
            plan=run.plan.name,
            replication=streams.replication,
            month=month,
            results=results,
            slot_stratum=slot_stratum,
            month_s=float(SECONDS_PER_MONTH),
            cost=cost,
            growth=float(growth[month - 1]),
            rng=streams.horizon_bootstrap(month) if scope.standard_errors else None,
            spot=run.spot[month - 1],
            api_prices=api_prices(spec.api),
        )
        rows.append(row)
        hourly.extend(hours)
    return rows, hourly, requests, events


def window_requests(
    traffic: Traffic,
    month: int,
    start_s: float,
    end_s: float,
    *,
    warmup_s: float,
    growth: float,
    rngs: MonthRngs,
) -> tuple[float, MonthRequests]:
    """The requests of [t0, end_s) of 1-based `month`, where t0 is `warmup_s` before `start_s`
    (but not before the month's start), and t0: a window measured from `start_s` on an empty
    fleet warmed up from t0."""
    month_start = float((month - 1) * SECONDS_PER_MONTH)
    t0 = max(month_start, start_s - warmup_s)
    req = sample_month(
        traffic, month, growth, rngs, offset_s=t0 - month_start, duration_s=end_s - t0
    )
    return t0, req


def _simulate_window(
    spec: ExperimentSpec,
    run: PlanRun,
    window: Window,
    growth: float,
    traffic: Traffic,
    rngs: MonthRngs,
    api_rng: np.random.Generator | None,
    engine: Engine,
    slice_replicas: int | None = None,
) -> tuple[WindowResult, int, int, ScaledUse | None]:
    """Simulate one window from an empty fleet warmed up before it; measure inside it.

    With `slice_replicas` = k below the month's R replicas (`sim.horizon.fleet_slice`), the
    first k replicas serve k/R of the traffic and the window's counts stand for R/k times more.
    """
    start = window.start_s
    end = start + window.length_s
    active = run.fleet.phases[window.month - 1].replicas
    whole = len(active)
    k = whole if slice_replicas is None else slice_replicas
    if k < whole:
        active = active[:k]
        growth = growth * k / whole
    moving = run.plan.moves
    t0, req = window_requests(
        traffic,
        window.month,
        start,
        end,
        warmup_s=spec.horizon.warmup_s,
        growth=growth,
        rngs=rngs,
    )
    near = outages_touching(run.outages, t0, end)
    scalers = run.scalers(t0, end)
    hybrid = hybrid_for(spec.api, run, near, api_rng, len(req), scalers=scalers)
    # NOTE: only the requests arriving inside the window (a suffix: arrivals are sorted) are
    # converted and measured, not the warm-up's: 0.01 s less per replication of growth20pct.
    first = int(np.searchsorted(req.arrival_s, start, side="left"))
    phases = run.fleet.routing_between(t0, end) if moving else [FleetPhase(t0, active)]
    hybrid = hybrid or Hybrid()
    arrays = simulate_arrays(req, run.fleet.replicas, phases, engine, hybrid)
    if arrays is not None:
        busy = arrays.fleet.busy_inside(active, start, end)
        scale_events, events = arrays.scale_events, arrays.simpy_events
        outcome = core_outcomes(req, arrays, first)
    else:
        log = request_log(req)
        res = simulate(log, run.fleet.replicas, phases, engine, hybrid)
        busy = busy_inside([res.busy_periods[r] for r in active], start, end)
        scale_events, events = res.scale_events, res.simpy_events
        outcome = outcomes_of(log, req, res, first)
    use = None
    if scalers:
        g = spec.cost.granularity_s(Market.ON_DEMAND)
        use = scaled_use(scale_events, run.fleet, req.arrival_s, start, end, g, end)
    serving_s = None
    if moving:  # scheduled slots' serving runs, plus the autoscaled ones' (`use`)
        scaled = {i for sc in scalers for i in sc.replicas}
        serving_s = sum(
            overlap_s(run.fleet.serving[r], start, end) for r in active if r not in scaled
        )
        if use is not None:
            serving_s += use.serving_s
    return (
        window_result(window, outcome, spec.slo, busy, len(active), whole / len(active), serving_s),
        len(req),
        events,
        use,
    )


def busy_inside(
    periods: Sequence[Sequence[tuple[float, float]]], start: float, end: float
) -> float:
    """Busy seconds inside [start, end) of replicas' (start, end) busy periods, summed in order.

    Windows on the compiled core read theirs from its arrays (`CompiledFleet.busy_inside`, the
    same bits); this one serves the lazy and reference engines' `SimulationResult`s.

    NOTE: arrays instead of a loop over periods (~470 per window on growth20pct), read with
    `np.fromiter` (2.4x faster than `np.asarray` of the tuples): 228 -> 61 us for 470 periods;
    the sum is sequential (`cumsum`), as the loop's was, so the same bits.
    """
    n = sum(len(p) for p in periods)
    flat = itertools.chain.from_iterable(itertools.chain.from_iterable(periods))
    return busy_seconds_inside(np.fromiter(flat, np.float64, 2 * n).reshape(n, 2), start, end)

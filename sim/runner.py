"""Monte Carlo: replications of one experiment, seeded by name, in a process pool.

Replication k draws every random number from `sim.rng.stream(Stream.X, k, seed[, month])`:
workers receive integers (the experiment and k), never generators, so the tables are the same
whatever the number of workers, and the plan is not part of any key (common random numbers:
replication k of every fleet plan sees the same traffic). Results are sorted by (plan,
replication) before they are concatenated.

A replication that raises is recorded in `Results.errors` (the others go on). Ctrl-C stops the
pool and returns the replications finished so far, flagged `interrupted`.
"""

from __future__ import annotations

import time
import traceback
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from importlib import metadata
from typing import Literal

import numpy as np
import polars as pl

from sim.config import ExperimentSpec, PlanSpec
from sim.engine import RequestLog
from sim.errors import SimError
from sim.experiment import Experiment, experiment_traffic, sample_month_requests
from sim.fleet import Fleet, build_fleet, hybrid_for, spot_bill, spot_outages
from sim.horizon import Window, WindowResult, choose_windows, sampled_month_rows, strata_of_slots
from sim.model import Engine, FleetPhase, SimulationResult, simulate
from sim.records import PAIRED_SCHEMA, TIMELINE_EVENTS_SCHEMA, TIMELINE_SCHEMA
from sim.rng import Stream, stream
from sim.spot import Outage as SpotOutage
from sim.stats import (
    ApiUse,
    RequestArrays,
    busy_by_hour,
    hourly_frame,
    month_rows,
    months_frame,
    paired_differences,
    summarise,
)
from sim.store import PartStore
from sim.workload import (
    HOURS_PER_MONTH,
    SECONDS_PER_MONTH,
    MonthRngs,
    Traffic,
    sample_month,
    sample_monthly_growth,
)


@dataclass(frozen=True)
class Workload:
    """One replication's requests over the whole horizon."""

    arrival_s: np.ndarray
    input_tokens: np.ndarray
    output_tokens: np.ndarray
    growth: np.ndarray


def sample_growth(spec: ExperimentSpec, replication: int) -> np.ndarray:
    """Replication's cumulative monthly volume factors (the same for every plan and horizon)."""
    g = spec.workload.growth
    return sample_monthly_growth(
        stream(Stream.GROWTH, replication, spec.seed), spec.months, g.mean_monthly, g.sd_log
    )


def sample_workload(exp: Experiment, replication: int) -> Workload:
    """Draw one replication's traffic: growth, then each month from its own streams."""
    spec = exp.spec
    growth = sample_growth(spec, replication)
    months = [
        sample_month_requests(exp, replication, m, float(growth[m - 1]))
        for m in range(1, spec.months + 1)
    ]
    return Workload(
        np.concatenate([r.arrival_s for r in months]),
        np.concatenate([r.input_tokens for r in months]),
        np.concatenate([r.output_tokens for r in months]),
        growth,
    )


@dataclass(frozen=True)
class ReplicationOutput:
    replication: int
    months: list[dict[str, object]]
    hourly: list[dict[str, object]]
    requests: int
    simpy_events: int
    wall_s: float
    error: str | None = None


def horizon_mode(exp: Experiment) -> tuple[str, str]:
    """("full" | "sampled", the reason in words) for the experiment's horizon setting.

    The volume is the traffic model's own expectation (generated or replayed), at the mean
    growth of every month.
    """
    spec = exp.spec
    h = spec.horizon
    traffic = experiment_traffic(exp)
    g = spec.workload.growth.mean_monthly
    expected = sum(
        traffic.expected_arrivals(
            float(m * SECONDS_PER_MONTH), float((m + 1) * SECONDS_PER_MONTH), (1.0 + g) ** m
        )
        for m in range(spec.months)
    )
    if h.mode != "auto":
        return h.mode, f"{h.mode} (set in the experiment)"
    if expected > h.auto_max_requests:
        return "sampled", (
            f"sampled (auto: {expected:,.0f} expected requests per replication > "
            f'{h.auto_max_requests:,}; set horizon.mode = "full" to simulate every request)'
        )
    return "full", f"full (auto: {expected:,.0f} expected requests per replication)"


def run_replication(
    exp: Experiment, replication: int, engine: Engine = "fast"
) -> ReplicationOutput:
    """Simulate replication `replication` of every plan of `exp`; reduce it to KPI rows.

    Every plan sees the same traffic, spot reclaims (per pool name and slot) and API latency
    draws (per request): common random numbers, so plan differences are paired.
    """
    t0 = time.perf_counter()
    spec = exp.spec
    rows: list[dict[str, object]] = []
    hourly: list[dict[str, object]] = []
    requests = events = 0
    sampled = horizon_mode(exp)[0] == "sampled"
    wl = None if sampled else sample_workload(exp, replication)
    for plan in spec.all_plans():
        fleet = build_fleet(spec, plan, replication)
        outages = spot_outages(spec, fleet, replication)
        if wl is None:
            r, h, n, ev = _sampled_replication(exp, replication, plan, fleet, outages, engine)
        else:
            r, h, n, ev = _full_replication(exp, replication, plan, fleet, outages, wl, engine)
        rows.extend(r)
        hourly.extend(h)
        requests += n
        events += ev
    return ReplicationOutput(replication, rows, hourly, requests, events, time.perf_counter() - t0)


Rows = tuple[list[dict[str, object]], list[dict[str, object]], int, int]


def _api_prices(spec: ExperimentSpec) -> tuple[float, float] | None:
    if spec.api is None:
        return None
    return spec.api.input_usd_per_million, spec.api.output_usd_per_million


def request_arrays(
    log: RequestLog,
    arrival_s: np.ndarray,
    input_tokens: np.ndarray,
    output_tokens: np.ndarray,
    result: SimulationResult,
) -> RequestArrays:
    """A simulated log as numpy arrays (spot and API outcomes included)."""
    throttled = np.zeros(len(log), dtype=bool)
    throttled[list(result.extra.get("api_throttled_rids", ()))] = True
    return RequestArrays(
        arrival_s=arrival_s,
        first_token_s=np.asarray(log.first_token_s),
        finish_s=np.asarray(log.finish_s),
        input_tokens=input_tokens.astype(np.int64),
        output_tokens=output_tokens.astype(np.int64),
        rejected=np.asarray(log.rejected, dtype=bool),
        preemptions=np.asarray(log.preemptions, dtype=np.int64),
        evictions=np.asarray(log.evictions, dtype=np.int64),
        api=np.asarray(log.api, dtype=bool),
        dropped=np.asarray(log.dropped, dtype=bool),
        throttled=throttled,
    )


def _full_replication(
    exp: Experiment,
    replication: int,
    plan: PlanSpec,
    fleet: Fleet,
    outages: dict[int, tuple[SpotOutage, ...]],
    wl: Workload,
    engine: Engine,
) -> Rows:
    spec = exp.spec
    log = RequestLog(wl.arrival_s.tolist(), wl.input_tokens.tolist(), wl.output_tokens.tolist())
    hybrid = hybrid_for(spec, plan, outages, replication, len(log))
    result = simulate(log, fleet.replicas, fleet.phases, engine, hybrid)
    hours = spec.months * HOURS_PER_MONTH
    busy = [busy_by_hour(p, hours) for p in result.busy_periods]
    rows, hourly = month_rows(
        plan=plan.name,
        replication=replication,
        requests=request_arrays(log, wl.arrival_s, wl.input_tokens, wl.output_tokens, result),
        month_s=float(SECONDS_PER_MONTH),
        months=spec.months,
        busy_hours=busy,
        active=[p.replicas for p in fleet.phases],
        costs=fleet.costs,
        growth=wl.growth.tolist(),
        slo_ttft_s=spec.slo.ttft_s,
        slo_tpot_s=spec.slo.tpot_s,
        spot=spot_bill(spec, fleet, outages, replication),
        api_prices=_api_prices(spec),
    )
    return rows, hourly, len(log), result.simpy_events


def _sampled_replication(
    exp: Experiment,
    replication: int,
    plan: PlanSpec,
    fleet: Fleet,
    outages: dict[int, tuple[SpotOutage, ...]],
    engine: Engine,
) -> Rows:
    """One plan of a replication on the sampled horizon (`sim.horizon`): windows of each month.

    Windows are the same for every plan (their streams do not name the plan). Each window
    sees the reclaims that overlap it; the month's spot bill and reclaim count come from the
    whole schedule.
    """
    spec = exp.spec
    h = spec.horizon
    growth = sample_growth(spec, replication)
    model = experiment_traffic(exp)  # generated or replayed
    slot_stratum = strata_of_slots(exp.profile.array, h.peak_hours, h.strata)
    bills = spot_bill(spec, fleet, outages, replication)
    rows: list[dict[str, object]] = []
    hourly: list[dict[str, object]] = []
    requests = events = 0
    for month in range(1, spec.months + 1):
        windows = choose_windows(
            stream(Stream.HORIZON, replication, spec.seed, month),
            month,
            HOURS_PER_MONTH,
            slot_stratum,
            h.windows_per_stratum,
            h.window_s,
        )
        active = fleet.phases[month - 1].replicas
        results = []
        for i, window in enumerate(windows):
            keys = (replication, spec.seed, month)
            rngs = MonthRngs(
                stream(Stream.WINDOW, *keys, 3 * i),
                stream(Stream.WINDOW, *keys, 3 * i + 1),
                stream(Stream.WINDOW, *keys, 3 * i + 2),
            )
            result, n, ev = _simulate_window(
                exp,
                plan,
                fleet,
                active,
                window,
                float(growth[month - 1]),
                model,
                rngs,
                engine,
                outages,
                (replication, month, i),
            )
            results.append(result)
            requests += n
            events += ev
        row, hours = sampled_month_rows(
            plan=plan.name,
            replication=replication,
            month=month,
            results=results,
            slot_stratum=slot_stratum,
            month_s=float(SECONDS_PER_MONTH),
            cost=fleet.costs[month - 1],
            growth=float(growth[month - 1]),
            rng=stream(Stream.HORIZON, replication, spec.seed, month, 1),
            spot=bills[month - 1],
            api_prices=_api_prices(spec),
        )
        rows.append(row)
        hourly.extend(hours)
    return rows, hourly, requests, events


def _window_outages(
    outages: dict[int, tuple[SpotOutage, ...]], t0: float, end: float
) -> dict[int, tuple[SpotOutage, ...]]:
    """The reclaims that touch [t0, end] (a replica down at t0 is down from the start)."""
    out = {}
    for i, outs in outages.items():
        near = tuple(o for o in outs if o.notice_s <= end and o.up_s > t0)
        if near:
            out[i] = near
    return out


def _simulate_window(
    exp: Experiment,
    plan: PlanSpec,
    fleet: Fleet,
    active: tuple[int, ...],
    window: Window,
    growth: float,
    model: Traffic,
    rngs: MonthRngs,
    engine: Engine,
    outages: dict[int, tuple[SpotOutage, ...]],
    key: tuple[int, int, int],
) -> tuple[WindowResult, int, int]:
    """Simulate one window from an empty fleet warmed up before it; measure inside it."""
    spec = exp.spec
    month_start = (window.month - 1) * SECONDS_PER_MONTH
    start = window.start_s
    end = start + window.length_s
    t0 = max(float(month_start), start - spec.horizon.warmup_s)
    req = sample_month(
        model, window.month, growth, rngs, offset_s=t0 - month_start, duration_s=end - t0
    )
    log = RequestLog(req.arrival_s.tolist(), req.input_tokens.tolist(), req.output_tokens.tolist())
    replication, month, i = key
    hybrid = hybrid_for(
        spec, plan, _window_outages(outages, t0, end), replication, len(log), month, i
    )
    res = simulate(log, fleet.replicas, [FleetPhase(t0, active)], engine, hybrid)
    arrays = request_arrays(log, req.arrival_s, req.input_tokens, req.output_tokens, res)
    inside = req.arrival_s >= start
    acc = inside & ~arrays.rejected
    served = acc & ~np.isnan(arrays.finish_s)
    first, finish, out = arrays.first_token_s, arrays.finish_s, req.output_tokens
    multi = served & (out > 1)
    ttft = first - req.arrival_s
    tpot = np.full(out.shape, np.nan)
    tpot[multi] = (finish[multi] - first[multi]) / (out[multi] - 1)
    met = served & (ttft <= spec.slo.ttft_s) & ((out == 1) | (tpot <= spec.slo.tpot_s))
    busy = 0.0
    for r in active:
        for s, e in res.busy_periods[r]:
            busy += max(0.0, min(e, end) - max(s, start))
    assert arrays.api is not None and arrays.dropped is not None
    on_api = inside & arrays.api
    api_served = on_api & ~arrays.dropped
    assert arrays.throttled is not None and arrays.evictions is not None
    result = WindowResult(
        window=window,
        requests=int(inside.sum()),
        rejected=int((inside & arrays.rejected).sum()),
        ttft_s=ttft[served],
        tpot_s=tpot[multi],
        e2e_s=(finish - req.arrival_s)[served],
        met=int(met.sum()),
        input_tokens=int(req.input_tokens[served].sum()),
        output_tokens=int(out[served].sum()),
        preemptions=int(arrays.preemptions[inside].sum()),
        busy_s=busy,
        replicas=len(active),
        requeued=int(arrays.evictions[inside].sum()),
        api=ApiUse(
            requests=int(on_api.sum()),
            dropped=int((on_api & arrays.dropped).sum()),
            throttled=int((on_api & arrays.throttled).sum()),
            input_tokens=int(req.input_tokens[api_served].sum()),
            output_tokens=int(out[api_served].sum()),
        ),
    )
    return result, len(log), res.simpy_events


def _safe_replication(exp: Experiment, replication: int) -> ReplicationOutput:
    try:
        return run_replication(exp, replication)
    except Exception as err:  # recorded per replication, as desmod does; the run goes on
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        return ReplicationOutput(replication, [], [], 0, 0, 0.0, error=detail)


TIMELINE_PROBE_S = 10.0  # fleet-state sample period of the risk page's timeline
TIMELINE_MARGIN_S = 900.0  # shown before the reclaim notice and after the replacement


def sample_timeline(exp: Experiment, replications: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fleet state around the first spot reclaim of the first replication that has one.

    Every plan replays the same stretch of that replication's traffic (its month's streams,
    a window from 15 min before the notice to 15 min after the replacement is up, at most
    2 h) from an empty fleet warmed up 10 min before, with the same reclaims, so the report
    can show the queue a reclaim causes and the API spill that absorbs it. Empty tables when
    no plan has spot pools or no replication has a reclaim.
    """
    spec = exp.spec
    timeline = pl.DataFrame(schema=TIMELINE_SCHEMA)
    events = pl.DataFrame(schema=TIMELINE_EVENTS_SCHEMA)
    fleets = [(plan, build_fleet(spec, plan)) for plan in spec.all_plans()]  # reclaim search
    found = None
    for k in range(replications):
        for _, fleet in fleets:
            outages = spot_outages(spec, fleet, k)
            downs = [(o.notice_s, i) for i, outs in outages.items() for o in outs]
            if downs:
                first = min(downs)
                if found is None or first[0] < found[1][0]:
                    found = (k, first, outages[first[1]])
        if found is not None:
            break
    if found is None:
        return timeline, events
    k, (notice, _), outs = found
    reclaim = next(o for o in outs if o.notice_s == notice)
    up = min(reclaim.up_s, notice + 7200.0 - TIMELINE_MARGIN_S)
    month = int(notice // SECONDS_PER_MONTH) + 1
    month_start = float((month - 1) * SECONDS_PER_MONTH)
    start = max(month_start, notice - TIMELINE_MARGIN_S)
    end = min(float(month * SECONDS_PER_MONTH), up + TIMELINE_MARGIN_S)
    t0 = max(month_start, start - spec.horizon.warmup_s)
    growth = sample_growth(spec, k)
    keys = (k, spec.seed, month, 1_000_000)
    rngs = MonthRngs(*(stream(Stream.WINDOW, *keys, j) for j in range(3)))
    req = sample_month(
        experiment_traffic(exp),
        month,
        float(growth[month - 1]),
        rngs,
        offset_s=t0 - month_start,
        duration_s=end - t0,
    )
    frames, event_rows = [], []
    fleets = [(plan, build_fleet(spec, plan, k)) for plan in spec.all_plans()]
    for plan, fleet in fleets:
        if len(req.arrival_s) == 0:
            break
        outages = _window_outages(spot_outages(spec, fleet, k), t0, end)
        log = RequestLog(
            req.arrival_s.tolist(), req.input_tokens.tolist(), req.output_tokens.tolist()
        )
        hybrid = hybrid_for(
            spec, plan, outages, k, len(log), month, 1_000_000, probe_s=TIMELINE_PROBE_S
        )
        res = simulate(
            log, fleet.replicas, [FleetPhase(t0, fleet.phases[month - 1].replicas)], "fast", hybrid
        )
        rows = [r for r in res.extra["timeline"] if start <= r[0] <= end]
        frames.append(
            pl.DataFrame([(plan.name, *r) for r in rows], schema=TIMELINE_SCHEMA, orient="row")
        )
        for i, outs_i in sorted(outages.items()):
            for o in outs_i:
                for name, t in (("notice", o.notice_s), ("down", o.down_s), ("up", o.up_s)):
                    if start <= t <= end:
                        event_rows.append((plan.name, i, name, t))
    if frames:
        timeline = pl.concat(frames)
    if event_rows:
        events = pl.DataFrame(event_rows, schema=TIMELINE_EVENTS_SCHEMA, orient="row")
    return timeline, events


@dataclass
class Results:
    """Everything a run produced: tables, the manifest facts, errors, and whether it finished."""

    spec: ExperimentSpec
    months: pl.DataFrame
    hourly: pl.DataFrame
    summary: pl.DataFrame
    replications_done: list[int]
    replications_requested: int
    wall_s: float
    requests: int
    errors: dict[int, str] = field(default_factory=dict)
    interrupted: bool = False
    horizon: str = ""
    paired: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=PAIRED_SCHEMA))
    timeline: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=TIMELINE_SCHEMA))
    timeline_events: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=TIMELINE_EVENTS_SCHEMA)
    )

    def manifest(self) -> dict[str, object]:
        """Self-describing facts for manifest.json (the resolved config comes from the CLI)."""
        return {
            "experiment": self.spec.name,
            "file": self.spec.file,
            "seed": self.spec.seed,
            "version": version(),
            "replications_requested": self.replications_requested,
            "replications_done": self.replications_done,
            "interrupted": self.interrupted,
            "wall_s": round(self.wall_s, 3),
            "simulated_requests": self.requests,
            "errors": {str(k): v for k, v in sorted(self.errors.items())},
            "slo_ttft_s": self.spec.slo.ttft_s,
            "slo_tpot_s": self.spec.slo.tpot_s,
            "horizon": self.horizon,
            "plans": [p.name for p in self.spec.all_plans()],
            "budget_usd_per_month": self.spec.cost.budget_usd_per_month,
            "step_times": {gpu: st.provenance for gpu, st in self.spec.step_times},
        }


def version() -> str:
    try:
        return metadata.version("sim")
    except metadata.PackageNotFoundError:
        return "unknown"


ProgressFn = Callable[[ReplicationOutput, int, int], None]
Backend = Literal["local", "ray"]


def _local_outputs(exp: Experiment, todo: list[int], jobs: int) -> Iterator[ReplicationOutput]:
    """Replications in this process (jobs = 1) or a process pool, as they finish."""
    if jobs == 1:
        for k in todo:
            yield _safe_replication(exp, k)
        return
    with ProcessPoolExecutor(max_workers=jobs) as pool:
        futures: list[Future[ReplicationOutput]] = [
            pool.submit(_safe_replication, exp, k) for k in todo
        ]
        try:
            for fut in as_completed(futures):
                yield fut.result()
        finally:  # Ctrl-C or an error: drop what has not started
            for fut in futures:
                fut.cancel()


def _ray_outputs(
    exp: Experiment, todo: list[int], jobs: int, address: str | None
) -> Iterator[ReplicationOutput]:
    """Replications as Ray tasks (a local cluster of `jobs` CPUs, or the one at `address`).

    The same `_safe_replication` runs in every worker, so results do not depend on where they
    ran. Workers need the `sim` package importable (installed on every node of a cluster).
    """
    try:
        import ray
    except ImportError:
        raise BackendError(
            "the ray backend needs the optional extra: pip install 'sim[ray]'"
        ) from None
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    task = ray.remote(_safe_replication)
    shared = ray.put(exp)
    pending = [task.remote(shared, k) for k in todo]
    try:
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                yield ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref)


class BackendError(SimError):
    """A backend that cannot run here (missing extra, unreachable cluster)."""


def run_experiment(
    exp: Experiment,
    *,
    replications: int | None = None,
    jobs: int = 1,
    progress: ProgressFn | None = None,
    store: PartStore | None = None,
    backend: Backend = "local",
    address: str | None = None,
) -> Results:
    """Run `replications` (default: the experiment's) replications on `jobs` workers.

    With a `store`, replications already finished there are loaded instead of rerun, and each
    new one is saved the moment it finishes (so an interruption of any kind loses at most the
    replications under way). Ctrl-C returns what is finished, flagged `interrupted`.
    """
    n = exp.spec.replications if replications is None else replications
    if n < 1 or jobs < 1:
        raise ValueError("replications and jobs must be >= 1")
    t0 = time.perf_counter()
    outputs: dict[int, ReplicationOutput] = {}
    if store is not None:
        for k in store.finished():
            if k < n:
                months, hourly, info = store.load(k)
                outputs[k] = ReplicationOutput(
                    k,
                    months.to_dicts(),
                    hourly.to_dicts(),
                    int(info["requests"]),
                    int(info["simpy_events"]),
                    float(info["wall_s"]),
                )
    todo = [k for k in range(n) if k not in outputs]
    interrupted = False

    def done(out: ReplicationOutput) -> None:
        outputs[out.replication] = out
        if store is not None and out.error is None:
            store.save(
                out.replication,
                months_frame(out.months),
                hourly_frame(out.hourly),
                {"requests": out.requests, "simpy_events": out.simpy_events, "wall_s": out.wall_s},
            )
        if progress is not None:
            progress(out, len(outputs), n)

    try:
        if backend == "ray":
            stream_of = _ray_outputs(exp, todo, jobs, address)
        elif backend == "local":
            stream_of = _local_outputs(exp, todo, jobs)
        else:
            raise ValueError(f"unknown backend {backend!r}")
        for out in stream_of:
            done(out)
    except KeyboardInterrupt:
        interrupted = True
    ok = sorted(k for k, o in outputs.items() if o.error is None)
    month_list = [row for k in ok for row in outputs[k].months]
    hourly_list = [row for k in ok for row in outputs[k].hourly]
    months = months_frame(month_list)
    plan_names = [p.name for p in exp.spec.all_plans()]
    timeline, events = (
        sample_timeline(exp, n) if ok else (pl.DataFrame(schema=TIMELINE_SCHEMA), None)
    )
    return Results(
        spec=exp.spec,
        months=months,
        hourly=hourly_frame(hourly_list),
        summary=summarise(months, exp.spec.slo.ttft_s),
        replications_done=ok,
        replications_requested=n,
        wall_s=time.perf_counter() - t0,
        requests=sum(o.requests for o in outputs.values()),
        errors={k: o.error for k, o in outputs.items() if o.error is not None},
        interrupted=interrupted,
        horizon=horizon_mode(exp)[1],
        paired=paired_differences(months, exp.spec.slo.ttft_s, plan_names),
        timeline=timeline,
        timeline_events=events
        if events is not None
        else pl.DataFrame(schema=TIMELINE_EVENTS_SCHEMA),
    )

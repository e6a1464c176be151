"""Spot reclaims and API overflow inside the serving model (sim.model.Hybrid).

Checks: the compiled engine (the default) equals the lazy `FastReplica` path bit for bit and
the iteration-level reference to 1e-9 s with reclaims, every spill rule, API rate limits, the
router's backlog, probes, a fleet-phase change and every routing policy (random workloads,
ties included);
conservation (every request ends on a GPU, on the API, dropped, rejected or unserved — none
is lost on a reclaim); with no reclaim and no API the hybrid path equals the
plain one; spill rules do what they say.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sim.config import ApiSpec, SpillSpec
from sim.engine import EngineLimits, RequestLog, StepTimeModel
from sim.fleet import ApiClient, Outage
from sim.fleet.routing import ROUTING_POLICIES
from sim.model import FleetPhase, Hybrid, ReplicaSpec, simulate, simulate_arrays
from sim.model.outcomes import core_outcomes, outcomes_of
from sim.replication import busy_inside
from sim.workload import MonthRequests

STEP = StepTimeModel(0.004, 0.006, 64, 2e-5, 1e-7, 1e-10)
Api = Callable[..., ApiSpec]  # the `api_spec` fixture (conftest.py)
LIMITS = EngineLimits(max_num_seqs=16, max_num_batched_tokens=256, kv_blocks=200, max_model_len=800)


def _api(
    api_spec: Api, spill: SpillSpec, n: int, *, rpm: int | None = None, on_limit: str = "retry"
) -> ApiClient:
    spec = api_spec(spill=spill, rpm=rpm, on_limit=on_limit)
    return ApiClient(spec, np.full(n, 0.5), np.full(n, 100.0))


def _outs(
    outages: dict[int, tuple[tuple[float, float, float], ...]],
) -> dict[int, tuple[Outage, ...]]:
    """(notice, down, up) tuples as the model's `Outage`s (never a fallback)."""
    return {i: tuple(Outage(n, d, u, False) for n, d, u in outs) for i, outs in outages.items()}


def _workload(seed: int, n: int, rate: float) -> tuple[list[float], list[int], list[int]]:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, n)).tolist()
    return arrivals, rng.integers(1, 400, n).tolist(), rng.integers(1, 300, n).tolist()


def _run(
    w,
    replicas,
    hybrid,
    engine="fast",
    limits=LIMITS,
    step=STEP,
    routing=None,
    phases=None,
    cached=None,
):
    log = RequestLog(*w, cached)
    specs = [ReplicaSpec("p", "g", limits, step)] * replicas
    phases = phases or [FleetPhase(0.0, tuple(range(replicas)))]
    rng = np.random.default_rng(7)
    policy = routing or "least_outstanding_tokens"
    res = simulate(log, specs, phases, engine, hybrid, routing=policy, routing_rng=rng)
    return log, res


def _outcomes(log: RequestLog, unserved: list[int]) -> dict[str, int]:
    finish = np.asarray(log.finish_s)
    api = np.asarray(log.api)
    done = ~np.isnan(finish)
    return {
        "gpu": int((done & ~api).sum()),
        "api": int((done & api).sum()),
        "dropped": int(np.asarray(log.dropped).sum()),
        "rejected": int(np.asarray(log.rejected).sum()),
        "unserved": len(unserved),
    }


def _same(a: RequestLog, b: RequestLog) -> None:
    for name in ("first_token_s", "finish_s"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        ok = ~np.isnan(x)
        assert np.max(np.abs(x[ok] - y[ok]), initial=0.0) <= 1e-9, name
    assert a.evictions == b.evictions
    assert a.api == b.api
    assert a.replica == b.replica


@st.composite
def reclaimed_workloads(draw: st.DrawFn) -> dict:
    n = draw(st.integers(5, 60))
    gaps = draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n))
    arrivals = np.cumsum(gaps).tolist()
    inputs = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
    outputs = [draw(st.integers(1, 400 - p)) for p in inputs]
    # prefix-cache hits in whole 16-token blocks below the prompt's last token, or none
    hits = draw(st.booleans())
    cached = [draw(st.integers(0, (p - 1) // 16)) * 16 if hits else 0 for p in inputs]
    replicas = draw(st.integers(1, 3))
    horizon = max(arrivals[-1], 1.0)
    outages: dict[int, tuple[tuple[float, float, float], ...]] = {}
    for r in range(replicas):
        if draw(st.booleans()):
            notice = draw(st.floats(0.0, horizon))
            down = notice + draw(st.floats(0.0, 5.0))
            back = draw(st.booleans())
            up = down + draw(st.floats(2.0, 20.0)) if back else math.inf
            outages[r] = ((notice, down, up),)
    spill = draw(st.sampled_from(["none", "no_replica", "wait", "queue", "wait_rpm"]))
    return {
        "w": (arrivals, inputs, outputs),
        "cached": cached,
        "async": draw(st.booleans()),  # async scheduling
        "replicas": replicas,
        "outages": outages,
        "spill": spill,
        "routing": draw(st.sampled_from(ROUTING_POLICIES)),
        "probe": draw(st.sampled_from([None, 0.7])),
        "phases": [FleetPhase(0.0, tuple(range(replicas)))]
        + (
            [FleetPhase(draw(st.floats(0.0, horizon)), (replicas - 1,))]
            if draw(st.booleans())
            else []
        ),
    }


def _identical(a: RequestLog, b: RequestLog) -> None:
    for name in ("first_scheduled_s", "first_token_s", "finish_s"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert np.array_equal(x, y, equal_nan=True), name
    for name in ("evictions", "api", "dropped", "replica", "rejected", "preemptions"):
        assert getattr(a, name) == getattr(b, name), name


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reclaimed_workloads())
def test_compiled_equals_lazy_and_reference_with_reclaims_and_spill(
    api_spec: Api, case: dict
) -> None:
    n = len(case["w"][0])
    step = StepTimeModel(0.05, 0.02, 32, 1e-4, 1e-6, 1e-8)  # steps << the 2 s minimum outage

    def hybrid() -> Hybrid:
        api = None
        if case["spill"] == "no_replica":
            api = _api(api_spec, SpillSpec(), n)
        elif case["spill"] == "wait":
            api = _api(api_spec, SpillSpec(max_wait_s=0.05, when_no_replica=False), n)
        elif case["spill"] == "queue":
            api = _api(api_spec, SpillSpec(queue_over=1), n)
        elif case["spill"] == "wait_rpm":  # 429s: retried in order, or dropped past the wait
            api = _api(api_spec, SpillSpec(max_wait_s=0.02), n, rpm=3)
        return Hybrid(outages=_outs(case["outages"]), api=api, probe_s=case["probe"])

    runs = {
        engine: _run(
            case["w"],
            case["replicas"],
            hybrid(),
            engine,
            step=step,
            routing=case["routing"],
            phases=case["phases"],
            cached=case["cached"],
            limits=dataclasses.replace(LIMITS, async_scheduling=case["async"]),
        )
        for engine in ("compiled", "lazy", "reference")
    }
    (comp, rc), (lazy, rl), (ref, rr) = runs["compiled"], runs["lazy"], runs["reference"]
    _identical(comp, lazy)
    for name in ("unserved", "api_throttled_rids", "timeline", "busy_periods", "steps"):
        assert getattr(rc, name) == getattr(rl, name), name
    for name in ("routed", "reclaims", "spilled", "backlogged", "segments"):
        assert getattr(rc, name) == getattr(rl, name), name
    _same(comp, ref)
    assert comp.dropped == ref.dropped
    assert rc.unserved == rr.unserved
    assert rc.api_throttled_rids == rr.api_throttled_rids
    out = _outcomes(comp, rc.unserved)
    assert sum(out.values()) == n  # conservation: nobody lost on a reclaim
    for what, happened in (
        ("evicted", sum(comp.evictions) > 0),
        ("spilled", rc.spilled > 0),
        ("throttled", bool(rc.api_throttled_rids)),
        ("dropped", any(comp.dropped)),
        ("backlogged", rc.backlogged > 0),
        ("preempted", sum(comp.preemptions) > 0),
    ):
        if happened:
            event(what)  # --hypothesis-show-statistics: how often each case is exercised


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(reclaimed_workloads(), st.floats(0.0, 1.0))
def test_a_window_on_arrays_is_the_same_run(api_spec: Api, case: dict, cut: float) -> None:
    """`simulate_arrays` (a sampled window's path: arrays in, the core's arrays out) gives
    `simulate`'s compiled run bit for bit — fleet phases, reclaims, spill, 429s and drops, or
    none of them (its plain branch) — and `core_outcomes` reads from request `first` on what
    `outcomes_of` reads from the log."""
    n = len(case["w"][0])
    step = StepTimeModel(0.05, 0.02, 32, 1e-4, 1e-6, 1e-8)

    def hybrid() -> Hybrid:
        api = None
        if case["spill"] == "no_replica":
            api = _api(api_spec, SpillSpec(), n)
        elif case["spill"] in ("wait", "wait_rpm"):
            rpm = 3 if case["spill"] == "wait_rpm" else None
            api = _api(api_spec, SpillSpec(max_wait_s=0.02), n, rpm=rpm)
        elif case["spill"] == "queue":
            api = _api(api_spec, SpillSpec(queue_over=1), n)
        return Hybrid(outages=_outs(case["outages"]), api=api, probe_s=case["probe"])

    log, res = _run(
        case["w"], case["replicas"], hybrid(), "compiled", step=step, phases=case["phases"]
    )
    arrivals, inputs, outputs = (np.asarray(x) for x in case["w"])
    req = MonthRequests(
        1, arrivals.astype(np.float64), inputs.astype(np.int64), outputs.astype(np.int64)
    )
    specs = [ReplicaSpec("p", "g", LIMITS, step)] * case["replicas"]
    run = simulate_arrays(req, specs, case["phases"], "compiled", hybrid())
    assert run is not None
    assert run.simpy_events == res.simpy_events
    assert run.api_throttled_rids == res.api_throttled_rids
    first = int(cut * n)
    a, b = core_outcomes(req, run, first), outcomes_of(log, req, res, first)
    for name in (
        "first_token_s",
        "finish_s",
        "rejected",
        "preemptions",
        "evictions",
        "api",
        "dropped",
        "throttled",
        "arrival_s",
        "input_tokens",
        "output_tokens",
    ):
        x, y = getattr(a, name), getattr(b, name)
        assert x.dtype == y.dtype and np.array_equal(x, y, equal_nan=True), name
    replicas = sorted({r for p in case["phases"] for r in p.replicas})
    end = arrivals[-1] + 30.0
    assert run.fleet.busy_inside(replicas, arrivals[first % n], end) == busy_inside(
        [res.busy_periods[r] for r in replicas], arrivals[first % n], end
    )
    if not (case["outages"] or case["probe"]) and case["spill"] == "none":
        event("plain")
    if res.api_throttled_rids and first > 0:
        event("throttled after first")


def test_reclaimed_requests_finish_elsewhere_and_nothing_is_lost() -> None:
    w = _workload(1, 4000, 30.0)
    # replica 1 is reclaimed twice; replica 2 once, never replaced. A 2 s notice (short, so
    # that in-flight work is cut: with AWS's 120 s most of it would finish in time).
    outages = {
        1: ((20.0, 22.0, 400.0), (600.0, 602.0, 900.0)),
        2: ((300.0, 302.0, math.inf),),
    }
    log, res = _run(w, 3, Hybrid(outages=_outs(outages)))
    assert res.reclaims == 3
    ev = np.asarray(log.evictions)
    assert ev.sum() > 10  # the reclaims did take work away
    assert not np.isnan(np.asarray(log.finish_s)).any()  # all re-queued and finished
    # nobody was routed to a replica while it was down
    arr = np.asarray(w[0])
    rep = np.asarray(log.replica)
    fresh = ev == 0
    assert not (fresh & (rep == 2) & (arr >= 300.0)).any()
    assert not (fresh & (rep == 1) & (arr >= 20.0) & (arr < 400.0)).any()


def test_evicted_request_keeps_its_first_token_and_recomputes_prefill() -> None:
    step = StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # every step takes 1 s
    limits = EngineLimits(8, 512, 100, 1000)
    # one request, 10 output tokens; replica 0 reclaimed at 4.5 s (4 steps done: prefill + 3
    # decodes = 4 tokens); replica 1 serves the rest: prefill of input + 4, then 5 decodes.
    log = RequestLog([0.0], [20], [10])
    specs = [ReplicaSpec("p", "g", limits, step)] * 2
    res = simulate(
        log,
        specs,
        [FleetPhase(0.0, (0, 1))],
        "fast",
        Hybrid(outages=_outs({0: ((0.0 + 1e-9 + 2.0, 4.5, math.inf),)})),
    )
    assert log.first_token_s[0] == 1.0
    assert log.evictions[0] == 1
    assert log.replica[0] == 1
    assert log.finish_s[0] == 4.5 + 6.0  # one prefill step + 5 decode steps on replica 1
    assert res.busy_periods[0] == [(0.0, 4.5)]


def test_no_replica_backlog_waits_then_spills_when_allowed(api_spec: Api) -> None:
    w = ([10.0, 11.0, 12.0], [10, 10, 10], [5, 5, 5])
    outages = {0: ((0.0, 5.0, 30.0),)}
    log, res = _run(w, 1, Hybrid(outages=_outs(outages)))
    assert res.backlogged == 3
    assert min(log.first_token_s) > 30.0  # they waited at the router for the replacement
    log2, res2 = _run(w, 1, Hybrid(outages=_outs(outages), api=_api(api_spec, SpillSpec(), 3)))
    assert all(log2.api) and res2.spilled == 3
    assert log2.first_token_s == pytest.approx([10.5, 11.5, 12.5])
    assert log2.finish_s == pytest.approx([10.54, 11.54, 12.54])


def test_without_reclaims_or_api_the_hybrid_path_equals_the_plain_one() -> None:
    w = _workload(3, 3000, 25.0)
    plain, _ = _run(w, 2, None)
    probed, res = _run(w, 2, Hybrid(probe_s=5.0))
    _same(plain, probed)
    assert len(res.timeline) > 10


def test_queue_rule_spills_only_when_every_queue_is_long(api_spec: Api) -> None:
    w = _workload(5, 3000, 80.0)  # heavily overloaded for 2 replicas
    log, res = _run(w, 2, Hybrid(api=_api(api_spec, SpillSpec(queue_over=4), 3000)))
    assert 0 < res.spilled < 3000
    base, _ = _run(w, 2, None)
    p95 = np.nanpercentile(np.asarray(log.first_token_s) - w[0], 95)
    p95_base = np.nanpercentile(np.asarray(base.first_token_s) - w[0], 95)
    assert p95 < p95_base / 3  # spilling bounds the queue, so the TTFT tail


def test_api_rate_limit_retries_in_order_and_drops_past_the_wait(api_spec: Api) -> None:
    client = _api(api_spec, SpillSpec(), 10, rpm=2)
    times = [client.call(i, t, 10, 2) for i, t in enumerate([0.0, 1.0, 2.0, 3.0])]
    assert [s is not None for s in times] == [True, True, True, True]
    sends = [s[0] - 0.5 for s in times if s is not None]
    assert sends == pytest.approx([0.0, 1.0, 60.0, 61.0])
    assert client.counters.throttled == 2
    dropper = _api(api_spec, SpillSpec(), 10, rpm=1, on_limit="drop")
    assert dropper.call(0, 0.0, 10, 2) is not None
    assert dropper.call(1, 1.0, 10, 2) is None
    assert dropper.call(2, 61.0, 10, 2) is not None
    assert dropper.counters.dropped == 1

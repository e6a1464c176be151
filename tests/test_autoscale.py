"""The reactive autoscaler (sim.fleet.autoscale) inside the serving model (`Hybrid.scalers`).

Checks: the policy's HPA rules (tolerance, clamping, scale-up cooldown, scale-down
stabilisation, pending launches counted); an event log computed by hand on a deterministic
ramp, with and without a cold start; the tie rule at a tick (steps ending then applied, the
decisions and arrivals of that instant not yet); billing from the event log; conservation
(every request ends on a GPU, on the API, dropped, rejected or unserved) with a cold start
holding work back; and the compiled, lazy and reference engines giving the same timestamps
and the same scale events on random workloads with reclaims and spill.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from unittest import mock

import numpy as np
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sim.config import AUTOSCALE_SIGNALS, ApiSpec, AutoscaleSpec, SpillSpec
from sim.engine import EngineLimits, RequestLog, StepTimeModel
from sim.fleet import ApiClient, Outage
from sim.fleet.autoscale import (
    Autoscaler,
    ReplicaLoad,
    ScaleEvent,
    Scaler,
    billed_runs,
    desired_replicas,
    hpa_recommendation,
    pending_runs,
    pool_signal,
    profile_floor,
)
from sim.fleet.routing import ROUTING_POLICIES
from sim.model import (
    Engine,
    FleetPhase,
    Hybrid,
    ReplicaSpec,
    RoutingPolicy,
    SimulationResult,
    simulate,
    simulate_arrays,
)
from sim.replication import busy_inside
from sim.workload import MonthRequests

Api = Callable[..., ApiSpec]  # the `api_spec` fixture (conftest.py)
ENGINES: tuple[Engine, ...] = ("compiled", "lazy", "reference")
# Every step takes exactly 1 s whatever its batch: a request admitted at a runs [a, a + out).
ONE_SECOND = StepTimeModel(1.0, 0.0, 1e9, 0.0, 0.0, 0.0)
ROOMY = EngineLimits(max_num_seqs=64, max_num_batched_tokens=256, kv_blocks=1000, max_model_len=800)


def _spec(**kw: float | int | str) -> AutoscaleSpec:
    base: dict = {"min_replicas": 1, "max_replicas": 4, "target": 2.0, "down_cooldown_s": 0.0}
    return AutoscaleSpec(**(base | kw))


def _sim(
    w: tuple[list[float], list[int], list[int]],
    replicas: int,
    hybrid: Hybrid,
    engine: Engine,
    limits: EngineLimits = ROOMY,
    step: StepTimeModel = ONE_SECOND,
    routing: RoutingPolicy = "least_outstanding_tokens",
) -> tuple[RequestLog, SimulationResult]:
    log = RequestLog(*w)
    specs = [ReplicaSpec("p", "g", limits, step)] * replicas
    phases = [FleetPhase(0.0, tuple(range(replicas)))]
    rng = np.random.default_rng(7)
    res = simulate(log, specs, phases, engine, hybrid, routing=routing, routing_rng=rng)
    return log, res


def _log(res: SimulationResult) -> list[tuple[float, int, str, int]]:
    return [(e.t_s, e.replica, e.kind, e.serving) for e in res.scale_events]


# ------------------------------------------------------------------------ the policy
def test_recommendation_follows_hpa() -> None:
    spec = _spec(tolerance=0.1)
    assert hpa_recommendation(spec, 2, 0, 3.0) == 3  # ceil(2 × 3 / 2)
    assert hpa_recommendation(spec, 2, 0, 2.15) == 2  # |2.15/2 − 1| = 0.075 ≤ 0.1: unchanged
    assert hpa_recommendation(spec, 2, 0, 2.3) == 3  # 0.15 > 0.1: ceil(2.3)
    assert hpa_recommendation(spec, 2, 0, 100.0) == 4  # clamped to max
    assert hpa_recommendation(spec, 3, 0, 0.0) == 1  # clamped to min
    assert hpa_recommendation(_spec(min_replicas=0), 0, 0, 0.5) == 1  # queued work, none serving
    assert hpa_recommendation(_spec(min_replicas=0), 0, 0, 5.0) == 3  # ceil(5 / 2) from zero
    assert hpa_recommendation(_spec(min_replicas=0), 2, 0, 0.0) == 0


def test_pending_launches_count_as_current_size() -> None:
    spec = _spec()
    # 1 serving at twice the target wants 2; with one launch pending that is already the size.
    assert desired_replicas(spec, 1, 1, 4.0, 10.0) == 2
    assert desired_replicas(spec, 1, 0, 4.0, 10.0) == 2
    # a scale-down never goes below what is pending: it can only release serving replicas
    assert desired_replicas(spec, 1, 2, 0.0, 10.0) == 1


def test_cooldown_and_stabilisation() -> None:
    spec = _spec(up_cooldown_s=30.0, down_cooldown_s=60.0)
    assert desired_replicas(spec, 1, 0, 8.0, 100.0, last_up_s=80.0) == 1  # 20 s < 30 s
    assert desired_replicas(spec, 1, 0, 8.0, 100.0, last_up_s=70.0) == 4
    history = [(30.0, 4), (45.0, 3), (90.0, 2)]
    # the window is (100 − 60, 100]: 3 at 45 s counts, 4 at 30 s does not
    assert desired_replicas(spec, 4, 0, 0.0, 100.0, history) == 3
    assert desired_replicas(spec, 4, 0, 0.0, 106.0, history) == 2


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.tuples(st.floats(0.0, 12.0), st.booleans()), min_size=1, max_size=80),
    st.sampled_from([0.0, 20.0, 45.0, 300.0]),
    st.sampled_from([0.0, 30.0]),
    st.sampled_from([0.0, 0.1]),
)
def test_tick_keeps_desired_replicas_over_the_whole_history(
    ticks: list[tuple[float, bool]], down_s: float, up_s: float, tolerance: float
) -> None:
    """`Autoscaler.tick` keeps only the window's running maximum of the recommendations; its
    decisions are those of `desired_replicas` given every earlier tick's recommendation."""
    spec = _spec(
        min_replicas=0,
        max_replicas=6,
        down_cooldown_s=down_s,
        up_cooldown_s=up_s,
        tolerance=tolerance,
        interval_s=15.0,
    )
    mech = Autoscaler(Scaler("p", tuple(range(6)), 0.0, 1e9, 1, spec), [])
    mech.start(0.0)
    every: list[tuple[float, int]] = []
    for k, (signal, come_up) in enumerate(ticks, start=1):
        t = 15.0 * k
        if come_up and mech.pending:  # a pending launch comes up before this tick
            mech.serve(t - 1.0, mech.pending[0])
        serving, pending = len(mech.serving), len(mech.pending)
        want = desired_replicas(spec, serving, pending, signal, t, every, mech.last_up_s)
        every.append((t, hpa_recommendation(spec, serving, pending, signal)))
        launch, release = mech.tick(t, signal)
        if want > serving + pending:
            assert len(launch) == want - serving - pending and not release
        elif want < serving + pending:
            assert len(release) == min(serving + pending - want, serving) and not launch
        else:
            assert not launch and not release


def test_pool_signal_per_serving_replica() -> None:
    a = ReplicaLoad(3, 2, 400, 1000, 600, 300.0)
    b = ReplicaLoad(1, 4, 100, 1000, 0, 300.0)
    assert pool_signal("queue_depth", [a, b]) == 2.0
    assert pool_signal("running", [a, b]) == 3.0
    assert pool_signal("kv_usage", [a, b]) == 0.25
    assert pool_signal("predicted_ttft", [a, b]) == 1.0  # (600/300 + 0) / 2
    # the router's backlog is the pool's queue; with nothing serving, the total
    assert pool_signal("queue_depth", [a, b], backlog_requests=2) == 3.0
    assert pool_signal("queue_depth", [], backlog_requests=5) == 5.0
    assert pool_signal("predicted_ttft", [], 2, 900, 300.0) == 3.0
    with pytest.raises(ValueError, match="signal"):
        pool_signal("gpu_util", [a])


# ------------------------------------------------------------------------ by hand
def _ramp() -> tuple[list[float], list[int], list[int]]:
    """One request a second at k + 0.5 s for k < 60, then none: 1 prompt token, 20 output
    tokens, so each runs [a, a + 20) on a 1 s-per-step replica (arriving on a step boundary
    it is admitted at once)."""
    return [k + 0.5 for k in range(60)], [1] * 60, [20] * 60


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("provisioning_s", "cold_start_s"), [(0.0, 0.0), (3.0, 4.0)])
def test_ramp_scales_as_computed_by_hand(
    engine: Engine, provisioning_s: float, cold_start_s: float
) -> None:
    # Signal "running", target 4/replica, tolerance 0.1, min 1, max 3, ticks every 10 s over
    # [0, 100), scale-down window 20 s; 1 of 3 slots serving at 0.
    # Running at tick T = requests with a in (T − 20, T] (none is cut by a release before 90):
    #   T=10: 10 on 1 serving -> ratio 2.5 -> ceil(2.5) = 3: launch slots 1 and 2.
    #   T=20..60: 20 on 3 -> ratio 1.67 -> ceil(5) = 5, clamped to 3: no change.
    #   T=70: a in (50, 60) -> 10 on 3 -> ratio 0.83 (outside 0.1) -> ceil(2.5) = 3: none.
    #   T=80: 0 -> 0, clamped to 1; window (60, 80] holds 3 (T=70): stays 3.
    #   T=90: window (70, 90] holds 1 (T=80) and 1: release slots 2 then 1.
    # With provisioning 3 s and a 4 s cold start, the launches at 10 are billed from 13 and
    # serve from 17 (until then everything goes to slot 0: nothing changes at T=20, where
    # 20 on 3 serving is still over the max).
    spec = AutoscaleSpec(
        1,
        3,
        4.0,
        signal="running",
        interval_s=10.0,
        down_cooldown_s=20.0,
        provisioning_s=provisioning_s,
    )
    scaler = Scaler("p", (0, 1, 2), 0.0, 100.0, 1, spec, cold_start_s)
    log, res = _sim(_ramp(), 3, Hybrid(scalers=(scaler,)), engine)
    up, serve = 10.0 + provisioning_s, 10.0 + provisioning_s + cold_start_s
    if serve == 10.0:
        changes = [(10.0, 1, "up", 1), (10.0, 1, "serve", 2), (10.0, 2, "up", 2)]
        changes.append((10.0, 2, "serve", 3))
    else:
        changes = [(up, 1, "up", 1), (up, 2, "up", 1), (serve, 1, "serve", 2)]
        changes.append((serve, 2, "serve", 3))
    assert _log(res) == [
        (0.0, 0, "up", 0),
        (0.0, 0, "serve", 1),
        (10.0, 1, "launch", 1),
        (10.0, 2, "launch", 1),
        *changes,
        (90.0, 2, "release", 2),
        (90.0, 1, "release", 1),
    ]
    arrivals = np.asarray(log.arrival_s)
    replica = np.asarray(log.replica)
    assert (replica[arrivals < serve] == 0).all()  # held slots got nothing
    assert set(replica[arrivals > serve].tolist()) == {0, 1, 2}
    assert np.allclose(np.asarray(log.finish_s), arrivals + 20.0)  # nobody waited
    # (b) billing: slot 0 over [0, 100), slots 1 and 2 from "up" to the release at 90
    runs = billed_runs(res.scale_events, 100.0)
    assert runs == {0: [(0.0, 100.0)], 1: [(up, 90.0)], 2: [(up, 90.0)]}
    assert _billed_s(runs) == _integral_up_s(res.scale_events, 100.0) == 100 + 2 * (90 - up)
    assert pending_runs(res.scale_events) == ({"p": [(10.0, serve)]} if serve > 10 else {})


@pytest.mark.parametrize("engine", ENGINES)
def test_tick_sees_step_ends_but_not_the_instant_decisions_or_later_arrivals(
    engine: Engine,
) -> None:
    # One sequence at a time (max_num_seqs 1). A arrives at 0 with 10 output tokens: steps
    # [0, 1) ... [9, 10), finished at 10.0 — the tick instant. B arrives at 0.5 and waits; C
    # arrives at exactly 10.0. At the tick (scheduled at 0, before C's arrival event):
    # A's last step is applied, B's admission at 10 is not decided yet, C is not yet routed:
    # queue_depth = 1 -> 1 × 1 / 0.5 = 2: one launch. (Seeing B admitted would read 0 and
    # launch nothing; seeing C too would read 2 and launch 2, clamped to the max of 3.)
    w = ([0.0, 0.5, 10.0], [1, 1, 1], [10, 5, 5])
    limits = EngineLimits(
        max_num_seqs=1, max_num_batched_tokens=64, kv_blocks=100, max_model_len=64
    )
    spec = AutoscaleSpec(1, 3, 0.5, interval_s=10.0, tolerance=0.0, down_cooldown_s=0.0)
    scaler = Scaler("p", (0, 1, 2), 0.0, 15.0, 1, spec)
    log, res = _sim(w, 3, Hybrid(scalers=(scaler,)), engine, limits=limits)
    assert [e for e in _log(res) if e[0] == 10.0] == [
        (10.0, 1, "launch", 1),
        (10.0, 1, "up", 1),
        (10.0, 1, "serve", 2),
    ]
    assert log.replica == [0, 0, 1]  # C goes to the new, empty replica
    assert log.first_scheduled_s == [0.0, 10.0, 10.0]


def _billed_s(runs: dict[int, list[tuple[float, float]]]) -> float:
    return sum(b - a for spans in runs.values() for a, b in spans)


def _integral_up_s(events: list[ScaleEvent], end_s: float) -> float:
    """∫ (replicas billed) dt over the log, walked event by event: +1 at "up", −1 at
    "release" (an "up" of a replica already up — a new span — changes nothing)."""
    up: set[int] = set()
    total, last = 0.0, events[0].t_s if events else 0.0
    for e in events:
        total += len(up) * (e.t_s - last)
        last = e.t_s
        if e.kind == "up":
            up.add(e.replica)
        elif e.kind == "release":
            up.discard(e.replica)
    return total + len(up) * (end_s - last)


# ------------------------------------------------------------------------ conservation
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


def _workload(seed: int, n: int, rate: float) -> tuple[list[float], list[int], list[int]]:
    rng = np.random.default_rng(seed)
    arrivals = np.cumsum(rng.exponential(1 / rate, n)).tolist()
    return arrivals, rng.integers(1, 400, n).tolist(), rng.integers(1, 300, n).tolist()


def _api(api_spec: Api, spill: SpillSpec, n: int, *, rpm: int | None = None) -> ApiClient:
    return ApiClient(api_spec(spill=spill, rpm=rpm), np.full(n, 0.5), np.full(n, 100.0))


STEP = StepTimeModel(0.05, 0.02, 32, 1e-4, 1e-6, 1e-8)
LIMITS = EngineLimits(max_num_seqs=16, max_num_batched_tokens=256, kv_blocks=200, max_model_len=800)


@pytest.mark.parametrize("min_replicas", [0, 1])
@pytest.mark.parametrize("api", [False, True])
def test_conservation_with_a_cold_start(api_spec: Api, min_replicas: int, api: bool) -> None:
    w = _workload(3, 600, 20.0)
    n = len(w[0])
    spec = AutoscaleSpec(
        min_replicas, 3, 2.0, interval_s=5.0, down_cooldown_s=10.0, provisioning_s=2.0
    )
    scaler = Scaler("p", (0, 1, 2), 0.0, w[0][-1] + 60.0, min_replicas, spec, 8.0)
    client = _api(api_spec, SpillSpec(queue_over=8), n) if api else None
    log, res = _sim(w, 3, Hybrid(api=client, scalers=(scaler,)), "compiled", LIMITS, STEP)
    out = _outcomes(log, res.unserved)
    assert sum(out.values()) == n
    if min_replicas == 0 and api:
        # nothing serves: the API takes everything, no queue builds, the pool stays at zero
        assert out["api"] + out["dropped"] == n and res.backlogged == 0
        assert res.scale_events == []
        return
    assert any(e.kind == "launch" for e in res.scale_events)
    waits = pending_runs(res.scale_events)["p"]
    assert all(b - a >= 10.0 for a, b in waits)  # provisioning + cold start
    if min_replicas == 0:
        # the first requests wait at the router for the first launch to serve (5 + 10 s)
        assert res.backlogged > 0 and out["unserved"] == 0
        first = np.asarray(log.first_token_s)[np.asarray(log.arrival_s) < 5.0]
        assert (first >= 15.0).all()
    runs = billed_runs(res.scale_events, scaler.end_s)
    assert math.isclose(_billed_s(runs), _integral_up_s(res.scale_events, scaler.end_s))
    assert _billed_s(runs) > 0


# ------------------------------------------------------------------------ engines agree
TARGETS = {
    "queue_depth": [0.25, 1.0],
    "running": [0.5, 2.0],
    "kv_usage": [0.02, 0.1],
    "predicted_ttft": [0.005, 0.05],
}


@st.composite
def scaled_workloads(draw: st.DrawFn) -> dict:
    n = draw(st.integers(5, 60))
    gaps = draw(st.lists(st.floats(0.0, 1.0), min_size=n, max_size=n))
    arrivals = np.cumsum(gaps).tolist()
    inputs = draw(st.lists(st.integers(1, 300), min_size=n, max_size=n))
    outputs = [draw(st.integers(1, 400 - p)) for p in inputs]
    replicas = draw(st.integers(1, 3))
    fixed = draw(st.sampled_from([0, 0, replicas - 1]))  # 0..fixed-1 are not autoscaled
    slots = tuple(range(fixed, replicas))
    horizon = max(arrivals[-1], 1.0)
    signal = draw(st.sampled_from(AUTOSCALE_SIGNALS))
    low = draw(st.integers(0, len(slots)))
    spec = AutoscaleSpec(
        min_replicas=low,
        max_replicas=draw(st.integers(max(low, 1), len(slots))),
        target=draw(st.sampled_from(TARGETS[signal])),
        signal=signal,
        interval_s=draw(st.sampled_from([0.5, 1.0, 2.5])),
        tolerance=draw(st.sampled_from([0.0, 0.1])),
        up_cooldown_s=draw(st.sampled_from([0.0, 2.0])),
        down_cooldown_s=draw(st.sampled_from([0.0, 3.0])),
        provisioning_s=draw(st.sampled_from([0.0, 0.7])),
    )
    start = draw(st.floats(0.0, horizon / 2))
    scaler = Scaler(
        "p",
        slots,
        start,
        start + draw(st.floats(1.0, 2 * horizon + 5.0)),
        draw(st.integers(low, spec.max_replicas)),
        spec,
        draw(st.sampled_from([0.0, 1.3])),
    )
    outages: dict[int, tuple[Outage, ...]] = {}
    if draw(st.booleans()):
        r = draw(st.integers(0, replicas - 1))
        notice = draw(st.floats(0.0, horizon))
        down = notice + draw(st.floats(0.0, 5.0))
        outages[r] = (Outage(notice, down, down + draw(st.floats(2.0, 20.0)), False),)
    return {
        "w": (arrivals, inputs, outputs),
        "replicas": replicas,
        "scaler": scaler,
        "outages": outages,
        "spill": draw(st.sampled_from(["none", "no_replica", "wait", "queue"])),
        "rpm": draw(st.sampled_from([None, None, 20])),
        "routing": draw(st.sampled_from(ROUTING_POLICIES)),
        # a hybrid model's running sequences hold state blocks, which kv_usage counts
        "limits": draw(st.sampled_from([LIMITS, dataclasses.replace(LIMITS, state_blocks=4)])),
    }


def _identical(a: RequestLog, b: RequestLog) -> None:
    for name in ("first_scheduled_s", "first_token_s", "finish_s"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert np.array_equal(x, y, equal_nan=True), name
    for name in ("evictions", "api", "dropped", "replica", "rejected", "preemptions"):
        assert getattr(a, name) == getattr(b, name), name


def _close(a: RequestLog, b: RequestLog) -> None:
    for name in ("first_token_s", "finish_s"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        ok = ~np.isnan(x)
        assert np.max(np.abs(x[ok] - y[ok]), initial=0.0) <= 1e-9, name
    for name in ("evictions", "api", "dropped", "replica"):
        assert getattr(a, name) == getattr(b, name), name


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scaled_workloads())
def test_engines_agree_with_an_autoscaler(api_spec: Api, case: dict) -> None:
    n = len(case["w"][0])

    def hybrid() -> Hybrid:
        api = None
        rpm = case["rpm"]  # a low limit throttles and drops spilled requests
        if case["spill"] == "no_replica":
            api = _api(api_spec, SpillSpec(), n, rpm=rpm)
        elif case["spill"] == "wait":
            api = _api(api_spec, SpillSpec(max_wait_s=0.05, when_no_replica=False), n, rpm=rpm)
        elif case["spill"] == "queue":
            api = _api(api_spec, SpillSpec(queue_over=1), n, rpm=rpm)
        return Hybrid(outages=case["outages"], api=api, probe_s=0.7, scalers=(case["scaler"],))

    seen: dict[str, list[tuple]] = {e: [] for e in ENGINES}
    loads: dict[str, list[tuple]] = {e: [] for e in ENGINES}
    runs = {}
    tick = Autoscaler.tick
    for e in ENGINES:
        # every tick's signal, as each engine reads it (not only the decisions): the lazy and
        # reference engines sum `ReplicaLoad`s (each replica's state compared too), the
        # compiled one reads its arrays
        def spy(
            mech: Autoscaler, t_s: float, signal: float, _seen: list = seen[e]
        ) -> tuple[list[int], list[int]]:
            _seen.append((t_s, signal))
            return tick(mech, t_s, signal)

        def spy_loads(*args: object, _seen: list = loads[e]) -> float:
            _seen.append(args)
            return pool_signal(*args)  # type: ignore[arg-type]

        with (
            mock.patch.object(Autoscaler, "tick", spy),
            mock.patch("sim.model.pool_signal", spy_loads),
        ):
            runs[e] = _sim(
                case["w"], case["replicas"], hybrid(), e, case["limits"], STEP, case["routing"]
            )
    (comp, rc), (lazy, rl), (ref, rr) = runs["compiled"], runs["lazy"], runs["reference"]
    _identical(comp, lazy)
    _close(comp, ref)
    assert seen["compiled"] == seen["lazy"] == seen["reference"]
    assert loads["lazy"] == loads["reference"] and len(loads["lazy"]) == len(seen["lazy"])
    assert rc.scale_events == rl.scale_events == rr.scale_events
    assert rc.timeline == rl.timeline
    assert rc.unserved == rl.unserved == rr.unserved
    assert sum(_outcomes(comp, rc.unserved).values()) == n
    if case["routing"] == "least_outstanding_tokens":  # the window path: arrays in and out
        _same_on_arrays(case, hybrid(), comp, rc)
    end_s = case["scaler"].end_s
    runs_s = billed_runs(rc.scale_events, end_s)
    assert math.isclose(_billed_s(runs_s), _integral_up_s(rc.scale_events, end_s), abs_tol=1e-9)
    kinds = {e.kind for e in rc.scale_events}
    for what in ("launch", "serve", "release"):
        if what in kinds:
            event(what)
    if rc.backlogged:
        event("backlogged")
    if rc.api_throttled_rids:
        event("throttled")
    if any(comp.dropped):
        event("dropped")


def _same_on_arrays(case: dict, hybrid: Hybrid, log: RequestLog, res: SimulationResult) -> None:
    """`simulate_arrays` gives `simulate`'s run (`log`, `res`: compiled) bit for bit."""
    arrivals, inputs, outputs = case["w"]
    requests = MonthRequests(
        1,
        np.asarray(arrivals, dtype=np.float64),
        np.asarray(inputs, dtype=np.int64),
        np.asarray(outputs, dtype=np.int64),
    )
    specs = [ReplicaSpec("p", "g", case["limits"], STEP)] * case["replicas"]
    phases = [FleetPhase(0.0, tuple(range(case["replicas"])))]
    run = simulate_arrays(requests, specs, phases, "compiled", hybrid)
    assert run is not None
    first, finish, rejected, preemptions = run.fleet.outcomes()
    assert np.array_equal(first, log.first_token_s, equal_nan=True)
    assert np.array_equal(finish, log.finish_s, equal_nan=True)
    assert rejected.tolist() == log.rejected and preemptions.tolist() == log.preemptions
    assert run.evictions.tolist() == log.evictions
    assert run.api.tolist() == log.api and run.dropped.tolist() == log.dropped
    assert run.scale_events == res.scale_events
    assert run.api_throttled_rids == res.api_throttled_rids
    assert run.simpy_events == res.simpy_events
    horizon = arrivals[-1] + 10.0
    for start, end in ((0.0, horizon), (arrivals[0] / 2, horizon / 3)):
        replicas = list(range(case["replicas"]))
        busy = busy_inside([res.busy_periods[r] for r in replicas], start, end)
        assert run.fleet.busy_inside(replicas, start, end) == busy


# ------------------------------------------------------------------------ predictive floor
def test_profile_floor_by_hand() -> None:
    profile = [1.0] * 168
    profile[9] = 4.0  # Monday 09-10 the week's peak
    profile[8] = 2.0
    floor = profile_floor(profile, _spec(min_replicas=1, max_replicas=4))
    assert floor[9] == 4 and floor[8] == 2 and floor[0] == 1  # ceil(4 × p / 4)
    assert profile_floor(profile, _spec(min_replicas=2, max_replicas=4))[0] == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_predictive_floor_starts_replicas_one_delay_ahead(engine: Engine) -> None:
    # No load at all: only the floor moves the pool. Hour 1 of the week needs 3 replicas, the
    # others 1; the delay is 100 s (provisioning 40 + cold start 60), ticks every 60 s. The
    # first tick whose t + 100 s falls in hour 1 is t = 3540 s (3540 + 100 = 3640 ≥ 3600):
    # two launches there, up at 3580, serving at 3640; the floor holds to the end of hour 1
    # (it is the larger of this hour's and the hour ahead's): at the tick t = 7200 s it is 1
    # again and, with no stabilisation window, the two are released, highest slot first.
    floor = (1, 3) + (1,) * 166
    spec = _spec(interval_s=60.0, provisioning_s=40.0, max_replicas=3, predictive=True)
    sc = Scaler("p", (0, 1, 2), 0.0, 9000.0, 1, spec, 60.0, floor)
    w = ([8999.0], [10], [2])
    _, res = _sim(w, 3, Hybrid(scalers=(sc,)), engine)
    launches = [(e.t_s, e.replica) for e in res.scale_events if e.kind == "launch"]
    assert launches == [(3540.0, 1), (3540.0, 2)]
    serves = [(e.t_s, e.replica) for e in res.scale_events if e.kind == "serve" and e.t_s > 0]
    assert serves == [(3640.0, 1), (3640.0, 2)]
    releases = [(e.t_s, e.replica) for e in res.scale_events if e.kind == "release"]
    assert releases == [(7200.0, 2), (7200.0, 1)]

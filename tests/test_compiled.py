"""The compiled data plane (`sim.engine.compiled`): the same per-request timestamps as the
one-step-per-event reference engine (≤ 1e-9 s) and the same bits as `FastReplica`, on random
workloads with ties and KV preemption, over 1–3 replicas and every routing policy; JSQ's
router (its scan of changed members, and its change heap and tree) against asking every
replica on larger fleets; phases and rejection.

The first test in a fresh checkout compiles the kernels (~30 s once; numba caches them).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import sim.engine.compiled as core
from sim.engine import EngineLimits, RequestLog, StepTimeModel, prefill_pairs
from sim.engine.compiled import JSQ_SCAN_MAX, compile_kernels
from sim.fleet.routing import ROUTING_POLICIES, two_choices
from sim.fleet.spot import Outage
from sim.model import FleetPhase, Hybrid, ReplicaSpec, simulate, simulate_arrays

STEP = StepTimeModel(
    overhead_s=0.004,
    flat_s=0.006,
    knee_tokens=64,
    per_token_s=2e-5,
    decode_attn_s_per_token=1e-7,
    prefill_attn_s_per_pair=1e-10,
)
FIELDS = ("first_scheduled_s", "first_token_s", "finish_s")


def _run(w: dict, engine: str, routing: str = "least_outstanding_tokens", phases=None):
    log = RequestLog(w["arrivals"], w["inputs"], w["outputs"], w.get("cached"))
    n = w["replicas"]
    specs = [ReplicaSpec("p", "g", w["limits"], w["step"])] * n
    phases = phases or [FleetPhase(0.0, tuple(range(n)))]
    rng = np.random.default_rng(w.get("seed", 0))
    result = simulate(log, specs, phases, engine, routing=routing, routing_rng=rng)  # type: ignore[arg-type]
    return log, result


def _assert_close(a: RequestLog, b: RequestLog) -> None:
    for name in FIELDS:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        ok = ~np.isnan(x)
        assert np.max(np.abs(x[ok] - y[ok]), initial=0.0) <= 1e-9, name
    assert a.preemptions == b.preemptions
    assert a.replica == b.replica
    assert a.rejected == b.rejected


def _assert_identical(a: RequestLog, b: RequestLog) -> None:
    for name in FIELDS:
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert np.array_equal(x, y, equal_nan=True), name
    assert a.preemptions == b.preemptions
    assert a.replica == b.replica
    assert a.rejected == b.rejected


@st.composite
def workloads(draw: st.DrawFn, max_replicas: int = 3, max_n: int = 40) -> dict:
    n = draw(st.integers(1, max_n))
    nice = draw(st.booleans())  # integer-valued times provoke exact ties at step boundaries
    if nice:
        gaps = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    else:
        gaps = draw(st.lists(st.floats(0.0, 2.0), min_size=n, max_size=n))
    arrivals = np.cumsum(np.asarray(gaps, dtype=float)).tolist()
    block = draw(st.sampled_from([1, 4, 16]))
    max_len = 200
    inputs = draw(st.lists(st.integers(1, 150), min_size=n, max_size=n))
    # a few requests longer than max_model_len: rejected
    outputs = [draw(st.integers(1, max_len - p + (p % 7 == 0) * 20)) for p in inputs]
    # prefix-cache hits (vLLM: whole KV blocks, below the prompt's last token), or none
    hit_mode = draw(st.sampled_from(["none", "blocks", "any"]))
    cached = [
        0
        if hit_mode == "none" or p == 1
        else draw(st.integers(0, (p - 1) // block)) * block
        if hit_mode == "blocks"
        else draw(st.integers(0, p - 1))
        for p in inputs
    ]
    seqs = draw(st.integers(1, 12))
    budget = draw(st.integers(seqs, seqs + 300))
    # a hybrid model's recurrent states: blocks each running sequence holds beside its tokens'
    state_blocks = draw(st.sampled_from([0, 0, 1, 5]))
    kv_blocks = draw(st.integers(-(-max_len // block), -(-max_len // block) * 4)) + state_blocks
    if nice:
        cpu = float(draw(st.integers(0, 1)))  # the per-sequence CPU term (0 = off)
        step = StepTimeModel(float(draw(st.integers(1, 3))), 0.0, 0.0, 0.0, 0.0, 0.0, cpu)
    else:
        # overhead 0 is vLLM >= 0.14 (async scheduling: a step is its GPU time), flat > 0 then
        overhead = draw(st.sampled_from([0.0]) | st.floats(1e-3, 0.05))
        step = StepTimeModel(
            overhead_s=overhead,
            flat_s=draw(st.floats(1e-4 if overhead == 0.0 else 0.0, 0.05)),
            knee_tokens=draw(st.floats(0.0, 128.0)),
            per_token_s=draw(st.floats(0.0, 1e-3)),
            decode_attn_s_per_token=draw(st.floats(0.0, 1e-4)),
            prefill_attn_s_per_pair=draw(st.floats(0.0, 1e-6)),
            cpu_per_seq_s=draw(st.sampled_from([0.0, 1e-4, 7.3e-4]) | st.floats(0.0, 2e-3)),
            # a hybrid model's recurrent-state traffic per sequence (Qwen3.5-9B on an H100: 21 us)
            state_s_per_seq=draw(st.sampled_from([0.0, 2.05e-5]) | st.floats(0.0, 1e-4)),
            # an MoE model's expert read (Qwen3.5-35B-A3B on an H200: 20.5 ms, 8 of 256 experts)
            expert_read_s=draw(st.sampled_from([0.0, 0.0205]) | st.floats(0.0, 0.05)),
            expert_share=draw(st.sampled_from([0.03125, 0.25, 1.0]) | st.floats(0.0, 1.0)),
        )
    return {
        "arrivals": arrivals,
        "inputs": inputs,
        "outputs": outputs,
        "cached": cached,
        "step": step,
        "limits": EngineLimits(
            seqs,
            budget,
            kv_blocks,
            max_len,
            block,
            async_scheduling=draw(st.booleans()),
            state_blocks=state_blocks,
        ),
        "replicas": draw(st.integers(1, max_replicas)),
        "seed": draw(st.integers(0, 2**32 - 1)),
    }


def test_kernels_compile_or_load_from_the_cache() -> None:
    assert compile_kernels() >= 0.0


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.sampled_from(ROUTING_POLICIES))
def test_compiled_equals_reference(w: dict, routing: str) -> None:
    compiled, _ = _run(w, "compiled", routing)
    ref, _ = _run(w, "reference", routing)
    _assert_close(compiled, ref)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(), st.sampled_from(ROUTING_POLICIES))
def test_compiled_is_bit_identical_to_fast_replica(w: dict, routing: str) -> None:
    compiled, rc = _run(w, "compiled", routing)
    lazy, rl = _run(w, "lazy", routing)
    _assert_identical(compiled, lazy)
    assert rc.busy_periods == rl.busy_periods
    assert rc.steps == rl.steps
    assert rc.routed == rl.routed


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(max_replicas=24, max_n=200), st.sampled_from([JSQ_SCAN_MAX, 0]))
def test_jsq_change_heap_picks_what_the_full_scan_picks(w: dict, scan_max: int) -> None:
    """The compiled JSQ looks only at replicas whose load may have changed, by a scan or
    (`scan_max` 0) its change heap and tournament tree; `FastReplica`'s router asks every
    replica. Same choices, on fleets up to 24 replicas."""
    core.JSQ_SCAN_MAX = scan_max
    try:
        got, _ = _run(w, "compiled")
    finally:
        core.JSQ_SCAN_MAX = JSQ_SCAN_MAX
    lazy, _ = _run(w, "lazy")
    _assert_identical(got, lazy)


@pytest.mark.parametrize("scan_max", [JSQ_SCAN_MAX, 0])
@pytest.mark.parametrize("replicas", [70, 200])
def test_jsq_on_a_large_fleet_with_ties_picks_what_the_full_scan_picks(
    replicas: int, scan_max: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """JSQ's keys (load, then pool position), scanned or in the tournament tree (`scan_max`
    0), on fleets past the hypothesis test's size, one of them not a power of two: integer
    step times and arrival instants make equal loads and step boundaries at arrival instants
    common."""
    monkeypatch.setattr(core, "JSQ_SCAN_MAX", scan_max)
    rng = np.random.default_rng(replicas)
    n = 4000
    w = {
        "arrivals": np.cumsum(rng.integers(0, 2, n) * 0.125).tolist(),
        "inputs": rng.integers(1, 60, n).tolist(),
        "outputs": rng.integers(1, 40, n).tolist(),
        "limits": EngineLimits(8, 64, 60, 200, 4),
        "step": StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0),
        "replicas": replicas,
    }
    compiled, _ = _run(w, "compiled")
    lazy, _ = _run(w, "lazy")
    _assert_identical(compiled, lazy)
    assert len(set(compiled.replica)) == replicas


@pytest.mark.parametrize("routing", ROUTING_POLICIES)
@pytest.mark.parametrize("seed", range(2))
def test_compiled_equals_reference_under_heavy_preemption(seed: int, routing: str) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    w = {
        "arrivals": np.cumsum(rng.exponential(1 / 40.0, n)).tolist(),
        "inputs": rng.integers(1, 500, n).tolist(),
        "outputs": rng.integers(1, 300, n).tolist(),
        "limits": EngineLimits(64, 512, 60, 800),
        "step": STEP,
        "replicas": 3,
    }
    compiled, rc = _run(w, "compiled", routing)
    ref, rr = _run(w, "reference", routing)
    assert sum(compiled.preemptions) > 100  # the case does exercise preemption
    _assert_close(compiled, ref)
    for x, y in zip(rc.busy_periods, rr.busy_periods, strict=True):
        assert len(x) == len(y)
        assert np.allclose(np.asarray(x), np.asarray(y), rtol=0.0, atol=1e-9)


def test_hand_computed_single_request() -> None:
    """One request on an idle replica: prefill step, then output−1 decode steps."""
    limits = EngineLimits(8, 512, 100, 1000)
    p, o = 100, 4
    w = {"arrivals": [1.0], "inputs": [p], "outputs": [o], "limits": limits}
    log, result = _run({**w, "step": STEP, "replicas": 1}, "compiled")
    prefill = STEP.step_s(p, 0, prefill_pairs(p, 0))
    assert log.first_scheduled_s[0] == 1.0
    assert log.first_token_s[0] == pytest.approx(1.0 + prefill, abs=1e-12)
    decodes = sum(STEP.step_s(1, p + 1 + i, 0) for i in range(o - 1))
    assert log.finish_s[0] == pytest.approx(1.0 + prefill + decodes, abs=1e-12)
    assert result.busy_periods == [[(1.0, log.finish_s[0])]]
    assert result.steps == [o]


def test_phases_route_only_to_their_replicas_and_rejections_are_counted() -> None:
    n = 80
    w = {
        "arrivals": [0.1 * i for i in range(n)],
        "inputs": [50] * n,
        "outputs": [20 if i != 5 else 400 for i in range(n)],  # request 5 is too long
        "limits": EngineLimits(8, 128, 100, 400),
        "step": STEP,
        "replicas": 3,
    }
    phases = [FleetPhase(0.0, (0, 1)), FleetPhase(4.0, (2,)), FleetPhase(6.0, (0, 1, 2))]
    for routing in ROUTING_POLICIES:
        compiled, rc = _run(w, "compiled", routing, phases)
        lazy, rl = _run(w, "lazy", routing, phases)
        _assert_identical(compiled, lazy)
        arrival, replica = np.asarray(compiled.arrival_s), np.asarray(compiled.replica)
        assert set(replica[(arrival >= 4.0) & (arrival < 6.0)].tolist()) == {2}
        assert compiled.rejected[5] and math.isnan(compiled.finish_s[5])
        assert rc.routed == rl.routed == n - 1
        assert rc.simpy_events == 2  # one per later phase start


def test_two_choices_are_distinct_and_cover_the_pool() -> None:
    rng = np.random.default_rng(3)
    seen = set()
    for u1, u2 in rng.random((2000, 2)):
        lo, hi = two_choices(5, float(u1), float(u2))
        assert 0 <= lo < hi < 5
        seen.add((lo, hi))
    assert len(seen) == 10


def test_compiled_runs_hybrid_runs_and_p2c_needs_an_rng() -> None:
    log = RequestLog([0.0], [10], [5])
    spec = [ReplicaSpec("p", "g", EngineLimits(8, 128, 100, 400), STEP)]
    hybrid = Hybrid(outages={0: (Outage(1.0, 2.0, 3.0, fallback=False),)})
    res = simulate(log, spec, [FleetPhase(0.0, (0,))], "compiled", hybrid)
    assert res.reclaims == 1 and not math.isnan(log.finish_s[0])
    with pytest.raises(ValueError, match="routing_rng"):
        simulate(log, spec, [FleetPhase(0.0, (0,))], routing="power_of_two_choices")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads(max_replicas=4), st.floats(0.0, 3.0), st.floats(0.5, 40.0))
def test_one_phase_on_arrays_is_simulate_bit_for_bit(w: dict, start: float, length: float) -> None:
    """A static window read from the core's arrays (`simulate_arrays`: no log lists) has
    the outcomes `simulate` writes into the log and, over a sub-fleet in any order, the busy
    seconds `sim.replication.busy_inside` sums from its busy periods, to the bit."""
    from sim.replication import busy_inside
    from sim.workload import MonthRequests

    n = w["replicas"]
    specs = [ReplicaSpec("p", "g", w["limits"], w["step"])] * n
    order = np.random.default_rng(w["seed"]).permutation(n)
    active = tuple(int(i) for i in order[: max(1, n - 1)])
    phase = FleetPhase(0.0, active)
    req = MonthRequests(
        1,
        np.asarray(w["arrivals"], dtype=float),
        np.asarray(w["inputs"], dtype=np.int64),
        np.asarray(w["outputs"], dtype=np.int64),
    )
    log = RequestLog(w["arrivals"], w["inputs"], w["outputs"])
    res = simulate(log, specs, [phase], "compiled")
    got = simulate_arrays(req, specs, [phase], "fast", Hybrid())
    assert got is not None
    fleet = got.fleet
    assert got.simpy_events == res.simpy_events
    first = len(log) // 3
    first_token, finish, rejected, preemptions = fleet.outcomes(first)
    assert np.array_equal(first_token, np.asarray(log.first_token_s[first:]), equal_nan=True)
    assert np.array_equal(finish, np.asarray(log.finish_s[first:]), equal_nan=True)
    assert rejected.tolist() == log.rejected[first:]
    assert preemptions.tolist() == log.preemptions[first:]
    end = start + length
    expected = busy_inside([res.busy_periods[r] for r in active], start, end)
    assert fleet.busy_inside(active, start, end) == expected
    assert simulate_arrays(req, specs, [phase], "reference", Hybrid()) is None

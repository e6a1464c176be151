"""Closed-loop clients (`sim.engine.closed_loop`): hand-computed cases, and the event-skipping
driver == the reference driver on random workloads."""

from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.engine import EngineLimits, RequestLog, StepTimeModel
from sim.engine.closed_loop import SEND_CLOCK_S, run_closed_loop

ONE_SECOND = StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
LIMITS = EngineLimits(8, 64, 64, 32, 4)


def _run(inputs, outputs, concurrency, think=0.0, engine="lazy", limits=LIMITS, step=ONE_SECOND):
    log = RequestLog([0.0] * len(inputs), inputs, outputs)
    run_closed_loop(log, limits, step, concurrency, think, engine=engine)
    return log


def test_one_client_sends_after_each_completion() -> None:
    """1 s steps. r0 (2 in, 3 out): prefill [0,1), decodes [1,2) [2,3): done at 3. r1 (2, 2)
    is sent at 3 (+0.5 s think time: 3.5): prefill to 4 (4.5), decode to 5 (5.5)."""
    for engine in ("lazy", "reference"):
        log = _run([2, 2], [3, 2], 1, engine=engine)
        assert log.arrival_s == [0.0, 3.0]
        assert log.first_token_s == [1.0, 4.0]
        assert log.finish_s == [3.0, 5.0]
        log = _run([2, 2], [3, 2], 1, think=0.5, engine=engine)
        assert log.arrival_s == [0.0, 3.5]
        assert log.finish_s == [3.0, 5.5]


def test_two_clients_a_completion_sends_into_the_next_step() -> None:
    """Two clients. r0 (2, 3) and r1 (2, 2) at 0: both prefill in [0,1), decode in [1,2); r1
    is done at 2, so r2 (2, 2) is sent at 2 and prefills in [2,3) beside r0's last decode (r0
    done at 3); r2 decodes in [3,4)."""
    for engine in ("lazy", "reference"):
        log = _run([2, 2, 2], [3, 2, 2], 2, engine=engine)
        assert log.arrival_s == [0.0, 0.0, 2.0]
        assert log.first_token_s == [1.0, 1.0, 3.0]
        assert log.finish_s == [3.0, 2.0, 4.0]


def test_a_rejected_request_frees_its_client_at_once() -> None:
    log = _run([2, 40, 2], [2, 2, 2], 1)
    assert log.rejected == [False, True, False]
    assert log.arrival_s == [0.0, 2.0, 2.0]
    assert math.isnan(log.finish_s[1]) and log.finish_s[2] == 4.0


@st.composite
def workloads(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 40))
    block = draw(st.sampled_from([1, 4, 16]))
    max_len = 200
    inputs = draw(st.lists(st.integers(1, 150), min_size=n, max_size=n))
    outputs = [draw(st.integers(1, max_len - p)) for p in inputs]
    seqs = draw(st.integers(1, 12))
    budget = draw(st.integers(seqs, seqs + 300))
    state_blocks = draw(st.sampled_from([0, 0, 1, 5]))  # a hybrid model's recurrent states
    kv_blocks = draw(st.integers(-(-max_len // block), -(-max_len // block) * 4)) + state_blocks
    if draw(st.booleans()):
        step = StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, float(draw(st.integers(0, 1))))
        think = float(draw(st.integers(0, 2)))
    else:
        step = StepTimeModel(
            overhead_s=draw(st.floats(1e-3, 0.05)),
            flat_s=draw(st.floats(0.0, 0.05)),
            knee_tokens=draw(st.floats(0.0, 128.0)),
            per_token_s=draw(st.floats(0.0, 1e-3)),
            decode_attn_s_per_token=draw(st.floats(0.0, 1e-4)),
            prefill_attn_s_per_pair=draw(st.floats(0.0, 1e-6)),
            cpu_per_seq_s=draw(st.floats(0.0, 2e-3)),
        )
        think = draw(st.floats(0.0, 0.5))
    return {
        "inputs": inputs,
        "outputs": outputs,
        "step": step,
        "think": think,
        "concurrency": draw(st.integers(1, 16)),
        "limits": EngineLimits(seqs, budget, kv_blocks, max_len, block, state_blocks=state_blocks),
    }


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_fast_driver_equals_reference_driver(w: dict) -> None:
    a, b = (
        _run(w["inputs"], w["outputs"], w["concurrency"], w["think"], e, w["limits"], w["step"])
        for e in ("lazy", "reference")
    )
    for name in ("arrival_s", "first_token_s", "finish_s"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        ok = ~np.isnan(x)
        assert np.max(np.abs(x[ok] - y[ok]), initial=0.0) <= 1e-9, name
    assert a.preemptions == b.preemptions


def test_a_send_on_another_sequences_step_boundary_is_decided_alike() -> None:
    """Found by hypothesis: 1 ms steps (+1e-10 s per sequence), think 0.0625 s. r4 is sent at
    r1's finish + 0.0625, which in real arithmetic is exactly a step boundary of r3's run; the
    closed forms and the running sums had rounded it to opposite sides (one admission apart).
    On the clients' 2^-30 s clock both engines decide it alike; a think-time send is on it."""
    step = StepTimeModel(0.001, 0.0, 0.0, 0.0, 0.0, 0.0, cpu_per_seq_s=1e-10)
    limits = EngineLimits(2, 2, 200, 200, 1)
    outputs = [1, 116, 1, 52] + [1] * 28
    logs = [_run([1] * 32, outputs, 2, 0.0625, e, limits, step) for e in ("lazy", "reference")]
    for name in ("arrival_s", "first_token_s", "finish_s"):
        x, y = (np.asarray(getattr(log, name)) for log in logs)
        assert np.max(np.abs(x - y)) <= 1e-9, name
    sent = np.asarray(logs[0].arrival_s[2:]) / SEND_CLOCK_S
    assert np.array_equal(sent, np.ceil(sent))

"""The replica engines: a hand-computed event log, and the event-skipping `FastReplica` (engine
"lazy") == reference on random workloads. The compiled data plane has the same checks in
tests/test_compiled.py."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.engine import EngineLimits, RequestLog, StepTimeModel, prefill_pairs
from sim.model import FleetPhase, ReplicaSpec, simulate

STEP = StepTimeModel(
    overhead_s=0.004,
    flat_s=0.006,
    knee_tokens=64,
    per_token_s=2e-5,
    decode_attn_s_per_token=1e-7,
    prefill_attn_s_per_pair=1e-10,
)


def _run(arrivals, inputs, outputs, limits, step, replicas=1, engine="lazy", cached=None):
    log = RequestLog(arrivals, inputs, outputs, cached)
    specs = [ReplicaSpec("p", "g", limits, step)] * replicas
    result = simulate(log, specs, [FleetPhase(0.0, tuple(range(replicas)))], engine)
    return log, result


def test_single_request_event_log_by_hand() -> None:
    """One request on an idle replica: prefill step, then output−1 decode steps."""
    limits = EngineLimits(
        max_num_seqs=8, max_num_batched_tokens=512, kv_blocks=100, max_model_len=1000
    )
    p, o = 100, 4
    log, result = _run([1.0], [p], [o], limits, STEP)
    prefill = STEP.step_s(p, 0, prefill_pairs(p, 0))
    assert log.first_scheduled_s[0] == 1.0
    assert log.first_token_s[0] == pytest.approx(1.0 + prefill, abs=1e-12)
    decodes = sum(STEP.step_s(1, p + 1 + i, 0) for i in range(o - 1))
    assert log.finish_s[0] == pytest.approx(1.0 + prefill + decodes, abs=1e-12)
    assert result.busy_periods == [[(1.0, log.finish_s[0])]]


@pytest.mark.parametrize("engine", ["lazy", "reference", "compiled"])
def test_a_sequences_state_blocks_count_against_admission(engine: str) -> None:
    """Three 4-token prompts at once, 8 blocks of 4 tokens: each needs one block for its tokens,
    so all three fit one step; with 3 state blocks each (a hybrid model's recurrent state) a
    sequence holds 4 blocks, two fit and the third waits for their blocks, freed as they
    finish (one output token: the prefill step samples it)."""

    def limits(state: int) -> EngineLimits:
        return EngineLimits(8, 64, 8, 5, block_size=4, state_blocks=state)

    log, _ = _run([0.0] * 3, [4] * 3, [1] * 3, limits(0), STEP, engine=engine)
    one = STEP.step_s(12, 0, 3 * prefill_pairs(4, 0))
    assert log.finish_s == pytest.approx([one] * 3, abs=1e-12)
    log, _ = _run([0.0] * 3, [4] * 3, [1] * 3, limits(3), STEP, engine=engine)
    two = STEP.step_s(8, 0, 2 * prefill_pairs(4, 0))
    third = two + STEP.step_s(4, 0, prefill_pairs(4, 0))
    assert log.finish_s == pytest.approx([two, two, third], abs=1e-12)
    with pytest.raises(ValueError, match="beside its state"):
        limits(7)  # one block left for tokens: a 5-token request does not fit


def test_chunked_prefill_ttft_at_end_of_last_chunk() -> None:
    limits = EngineLimits(
        max_num_seqs=4, max_num_batched_tokens=64, kv_blocks=100, max_model_len=1000
    )
    log, _ = _run([0.0], [150], [2], limits, STEP)
    chunks = [(64, 0), (64, 64), (22, 128)]
    t = sum(STEP.step_s(c, 0, prefill_pairs(c, cached)) for c, cached in chunks)
    assert log.first_token_s[0] == pytest.approx(t, abs=1e-12)
    assert log.finish_s[0] == pytest.approx(t + STEP.step_s(1, 151, 0), abs=1e-12)


@pytest.mark.parametrize("engine", ["lazy", "reference", "compiled"])
def test_prefix_cache_hit_by_hand(engine: str) -> None:
    """A prompt of 150 tokens whose first 144 (nine 16-token blocks) are in the prefix cache:
    one step computes the last 6, attending to all 150; the second request, 10 tokens with no
    hit, arrives while the KV holds the first one's 10 blocks (cached ones included) and
    waits for the one block left when the cache has 10."""
    limits = EngineLimits(
        max_num_seqs=4, max_num_batched_tokens=64, kv_blocks=10, max_model_len=160
    )
    log, _ = _run([0.0, 0.001], [150, 10], [2, 2], limits, STEP, 1, engine, [144, 0])
    first = STEP.step_s(6, 0, prefill_pairs(6, 144))
    assert log.first_token_s[0] == pytest.approx(first, abs=1e-12)
    decode = STEP.step_s(1, 151, 0)  # the 151st token needs no new block (10 x 16 = 160)
    assert log.finish_s[0] == pytest.approx(first + decode, abs=1e-12)
    assert log.first_scheduled_s[1] == pytest.approx(first + decode, abs=1e-12)
    assert log.preemptions == [0, 0]


def test_arrival_during_decode_run_is_admitted_at_next_step_boundary() -> None:
    limits = EngineLimits(
        max_num_seqs=8, max_num_batched_tokens=512, kv_blocks=100, max_model_len=1000
    )
    step = StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # every step takes exactly 1 s
    log, _ = _run([0.0, 3.5], [10, 10], [10, 3], limits, step)
    assert log.first_scheduled_s[1] == 4.0  # the step in progress at 3.5 s ends at 4 s
    assert log.first_token_s[1] == 5.0
    assert log.finish_s[1] == 7.0
    assert log.finish_s[0] == 10.0


@pytest.mark.parametrize("engine", ["lazy", "reference", "compiled"])
def test_async_scheduling_admits_an_arrival_one_step_later(engine: str) -> None:
    """With async scheduling the batch of the step from 4 s was chosen when the step from 3 s
    began: the request that arrived at 3.5 s joins the step from 5 s. An idle replica
    schedules an arrival at once (the request at 20 s), and with nothing running an arrival
    is not held back either (the one at 30.5 s, after the one at 30 s has finished)."""
    limits = EngineLimits(
        max_num_seqs=8,
        max_num_batched_tokens=512,
        kv_blocks=100,
        max_model_len=1000,
        async_scheduling=True,
    )
    step = StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0)  # every step takes exactly 1 s
    arrivals, inputs, outputs = [0.0, 3.5, 20.0, 30.0, 30.5], [10] * 5, [10, 3, 2, 1, 2]
    log, _ = _run(arrivals, inputs, outputs, limits, step, 1, engine)
    assert log.first_scheduled_s[1] == 5.0  # synchronous V1: 4.0 (the test above)
    assert (log.first_token_s[1], log.finish_s[1]) == (6.0, 8.0)
    assert log.finish_s[0] == 10.0
    assert (log.first_scheduled_s[2], log.finish_s[2]) == (20.0, 22.0)
    assert log.finish_s[3] == 31.0
    assert log.first_scheduled_s[4] == 31.0  # the step that ended at 31 s left nothing running


def test_kv_exhaustion_preempts_newest_and_recomputes() -> None:
    # 4 blocks of 4 tokens: two sequences of 6 prompt tokens need 2 blocks each, then a third
    # block each at 8 tokens: the newest is preempted and recomputed after the first finishes.
    limits = EngineLimits(
        max_num_seqs=4, max_num_batched_tokens=64, kv_blocks=4, max_model_len=16, block_size=4
    )
    step = StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    log, _ = _run([0.0, 0.0], [6, 6], [6, 6], limits, step)
    ref, _ = _run([0.0, 0.0], [6, 6], [6, 6], limits, step, engine="reference")
    assert log.preemptions == [0, 1]
    assert ref.preemptions == [0, 1]
    assert log.finish_s == ref.finish_s
    assert log.finish_s[0] < log.finish_s[1]


def test_request_longer_than_max_model_len_is_rejected_and_counted() -> None:
    limits = EngineLimits(
        max_num_seqs=4, max_num_batched_tokens=64, kv_blocks=100, max_model_len=100
    )
    log, result = _run([0.0, 1.0], [90, 10], [20, 5], limits, STEP)
    assert log.rejected == [True, False]
    assert math.isnan(log.finish_s[0]) and not math.isnan(log.finish_s[1])
    assert result.routed == 1


@st.composite
def workloads(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, 40))
    nice = draw(st.booleans())  # integer-valued times provoke exact ties at step boundaries
    if nice:
        gaps = draw(st.lists(st.integers(0, 5), min_size=n, max_size=n))
    else:
        gaps = draw(st.lists(st.floats(0.0, 2.0), min_size=n, max_size=n))
    arrivals = np.cumsum(np.asarray(gaps, dtype=float)).tolist()
    block = draw(st.sampled_from([1, 4, 16]))
    max_len = 200
    inputs = draw(st.lists(st.integers(1, 150), min_size=n, max_size=n))
    outputs = [draw(st.integers(1, max_len - p)) for p in inputs]
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
        "replicas": draw(st.integers(1, 3)),
    }


def _assert_same(a: RequestLog, b: RequestLog) -> None:
    for name in ("first_scheduled_s", "first_token_s", "finish_s"):
        x, y = np.asarray(getattr(a, name)), np.asarray(getattr(b, name))
        assert np.array_equal(np.isnan(x), np.isnan(y)), name
        ok = ~np.isnan(x)
        assert np.max(np.abs(x[ok] - y[ok]), initial=0.0) <= 1e-9, name
    assert a.preemptions == b.preemptions
    assert a.replica == b.replica


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(workloads())
def test_fast_engine_equals_reference(w: dict) -> None:
    args = (w["arrivals"], w["inputs"], w["outputs"], w["limits"], w["step"], w["replicas"])
    fast, _ = _run(*args, "lazy", w["cached"])
    ref, _ = _run(*args, "reference", w["cached"])
    _assert_same(fast, ref)


@pytest.mark.parametrize("seed", range(4))
def test_fast_engine_equals_reference_under_heavy_preemption(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n = 3000
    arrivals = np.cumsum(rng.exponential(1 / 40.0, n)).tolist()
    inputs = rng.integers(1, 500, n).tolist()
    outputs = rng.integers(1, 300, n).tolist()
    limits = EngineLimits(64, 512, 60, 800)
    fast, rf = _run(arrivals, inputs, outputs, limits, STEP, 2, "lazy")
    ref, rr = _run(arrivals, inputs, outputs, limits, STEP, 2, "reference")
    assert sum(fast.preemptions) > 100  # the case does exercise preemption
    _assert_same(fast, ref)
    for x, y in zip(rf.busy_periods, rr.busy_periods, strict=True):
        assert len(x) == len(y)
        assert np.allclose(np.asarray(x), np.asarray(y), rtol=0.0, atol=1e-9)


def test_fast_engine_uses_at_most_one_simpy_event_per_request() -> None:
    rng = np.random.default_rng(7)
    n = 5000
    arrivals = np.cumsum(rng.exponential(1 / 20.0, n)).tolist()
    limits = EngineLimits(256, 4096, 20000, 4096)
    _, result = _run(
        arrivals,
        rng.integers(1, 2000, n).tolist(),
        rng.integers(1, 400, n).tolist(),
        limits,
        STEP,
        4,
    )
    assert result.simpy_events <= n


def test_cpu_per_sequence_term_by_hand() -> None:
    """Two requests of 1 prompt token and 3 output tokens arriving together, overhead 1 s and
    0.5 s of CPU per sequence: every step has both sequences, so each takes 1 + 2·0.5 = 2 s;
    step 1 prefills both (first token at 2 s), steps 2 and 3 decode (finish at 6 s)."""
    step = StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, cpu_per_seq_s=0.5)
    limits = EngineLimits(8, 64, 64, 32, 4)
    for engine in ("reference", "lazy", "compiled"):
        log, _ = _run([0.0, 0.0], [1, 1], [3, 3], limits, step, engine=engine)
        assert log.first_token_s == [2.0, 2.0], engine
        assert log.finish_s == [6.0, 6.0], engine


def test_recurrent_state_term_is_charged_per_sequence_like_cpu_time() -> None:
    """The same two requests as `test_cpu_per_sequence_term_by_hand`, with the 0.5 s per sequence
    split into 0.25 s of CPU and 0.25 s of recurrent-state traffic (a hybrid model's
    `state_s_per_seq`): the same steps of 1 + 2·0.5 = 2 s on every engine; `scaled` scales the
    state term (GPU time) and not the CPU term."""
    step = StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, cpu_per_seq_s=0.25, state_s_per_seq=0.25)
    assert step.per_seq_s == 0.5 and step.step_s(2, 0, 0, seqs=2) == 2.0
    limits = EngineLimits(8, 64, 64, 32, 4)
    for engine in ("reference", "lazy", "compiled"):
        log, _ = _run([0.0, 0.0], [1, 1], [3, 3], limits, step, engine=engine)
        assert log.first_token_s == [2.0, 2.0], engine
        assert log.finish_s == [6.0, 6.0], engine
    doubled = step.scaled(2.0)
    assert (doubled.state_s_per_seq, doubled.cpu_per_seq_s) == (0.5, 0.25)
    assert step.with_cpu(0.0).state_s_per_seq == 0.25


def test_moe_expert_read_follows_the_experts_a_step_touches() -> None:
    """An MoE step reads the share 1 − (1 − k/E)^T of its routed experts: with k/E = 1/2 and a
    4 s read of every expert, a lone prefill token reads 2 s, two decodes 3 s, by hand. Two
    requests of 1 prompt token and 3 output tokens arriving together (budget 64): step 1
    prefills both (T = 2: 1 + 3 = 4 s, first tokens at 4 s), steps 2 and 3 decode both (T = 2,
    4 s each): finished at 12 s on every engine. One request alone: 1 + 2 = 3 s a step."""
    step = StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, expert_read_s=4.0, expert_share=0.5)
    assert step.linear_s(1) == 2.0 and step.linear_s(2) == 3.0 and step.linear_s(3) == 3.5
    limits = EngineLimits(8, 64, 64, 32, 4)
    for engine in ("reference", "lazy", "compiled"):
        log, _ = _run([0.0, 0.0], [1, 1], [3, 3], limits, step, engine=engine)
        assert log.first_token_s == [4.0, 4.0], engine
        assert log.finish_s == [12.0, 12.0], engine
        log, _ = _run([0.0], [1], [3], limits, step, engine=engine)
        assert log.finish_s == [9.0], engine
    assert step.scaled(2.0).expert_read_s == 8.0 and step.scaled(2.0).expert_share == 0.5
    with pytest.raises(ValueError, match="expert_share"):
        StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0, expert_read_s=1.0, expert_share=1.5)


def _v0(seqs: int, budget: int, kv: int, max_len: int, bs: int, steps: int = 1) -> EngineLimits:
    return EngineLimits(seqs, budget, kv, max_len, bs, scheduler="v0", num_scheduler_steps=steps)


def test_v0_prefill_first_pauses_decodes_by_hand() -> None:
    """V0 (no chunked prefill): A (2 prompt tokens, 3 output) at 0, B (2, 2) at 1.5; each step
    costs 1 s. Step 1 [0,1) prefills A (first token at 1); step 2 [1,2) decodes A; B arrives
    at 1.5, so step 3 [2,3) is B's prefill alone (A waits: prefill first), step 4 [3,4) decodes
    both: A's last token and B's last token at 4. V1 would have run A's decode with B's prefill
    in step 3, finishing A at 3."""
    step = StepTimeModel(1.0, 0.0, 0.0, 0.0, 0.0, 0.0)
    log, _ = _run([0.0, 1.5], [2, 2], [3, 2], _v0(8, 64, 64, 32, 4), step, engine="fast")
    assert log.first_token_s == [1.0, 3.0]
    assert log.finish_s == [4.0, 4.0]
    v1, _ = _run([0.0, 1.5], [2, 2], [3, 2], EngineLimits(8, 64, 64, 32, 4), step)
    assert v1.finish_s == [3.0, 4.0]


def test_v0_multi_step_tokens_reach_the_client_in_bursts() -> None:
    """num_scheduler_steps 4, steps of 0.5 s CPU + 0.5 s GPU; a decode group pays the CPU
    time once, at its first step (multi-step scheduling's point: vllm-project/vllm#6854). A
    (1 prompt token, 3 output) prefills in [0,1) (first token at 1), then its decode group runs
    4 steps [1,2) [2,2.5) [2.5,3) [3,3.5) although A needs 2: the client gets them at 3.5. B
    arriving at 1.5 waits for the group: prefill [3.5,4.5), group [4.5,7), finishes at 7
    (3 output tokens: 1 + 2 of the group). With one step per group every step pays 1 s: A
    decodes [1,2), B's prefill goes first [2,3) (V0), both decode [3,4), B alone [4,5)."""
    step = StepTimeModel(0.5, 0.5, 1e9, 0.0, 0.0, 0.0)
    limits = _v0(8, 64, 64, 32, 4, steps=4)
    log, _ = _run([0.0, 1.5], [1, 1], [3, 3], limits, step, engine="reference")
    assert log.first_token_s == [1.0, 4.5]
    assert log.finish_s == [3.5, 7.0]
    single, _ = _run([0.0, 1.5], [1, 1], [3, 3], _v0(8, 64, 64, 32, 4), step, engine="reference")
    assert single.finish_s == [4.0, 5.0]


def test_v0_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_model_len"):
        _v0(8, 16, 64, 32, 4)
    with pytest.raises(ValueError, match="num_scheduler_steps"):
        EngineLimits(8, 64, 64, 32, 4, num_scheduler_steps=2)

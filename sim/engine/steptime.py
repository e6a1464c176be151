"""Step-time model of one continuous-batching iteration (DESIGN §4).

    step_time_s = overhead_s + per_seq_s · n_seqs                 (CPU, and recurrent state reads)
                + flat_s + per_token_s · max(0, T − knee_tokens)     (GEMMs etc.: roofline in T)
                + expert_read_s · (1 − (1 − expert_share)^T)          (MoE: the experts T touch)
                + decode_attn_s_per_token · Σ_decode context_tokens   (decode attention, KV reads)
                + prefill_attn_s_per_pair · Σ_chunks (c·p + c(c+1)/2) (causal query-key pairs)

`n_seqs` is the number of sequences in the step (decodes and prefill chunks), and
`per_seq_s` = `cpu_per_seq_s` + `state_s_per_seq`; `T` is the number of tokens computed in the
step; a decode entry computes one token whose
attention spans `context_tokens` = tokens already in its KV + 1; a prefill chunk of `c` tokens
after `p` cached tokens attends over `c·p + c(c+1)/2` query-key pairs. An entry computing exactly
one token is charged as a decode (this is what makes a decode-only batch's step time an exact
linear function of the step index, which the event-skipping engine sums in closed form).

An MoE model's step reads the routed experts its T tokens are sent to, not all of them: with
each token routed to k of E experts (`expert_share` = k/E) uniformly, an expert escapes all T
tokens with probability (1 − k/E)^T, so the expected share of the routed-expert weights read
is 1 − (1 − k/E)^T: k/E for a lone decode, all of them within a few dozen tokens for a
fine-grained MoE. `expert_read_s` is the time to read all of them; `flat_s` then holds the
weights every step reads (attention, embeddings, shared experts). The term depends on T only,
so a decode run of a fixed batch still has a constant linear part. Dense models: 0.
Coefficients are fitted from real profiles (docs/calibration.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

COEFFICIENTS = (
    "overhead_s",
    "flat_s",
    "knee_tokens",
    "per_token_s",
    "decode_attn_s_per_token",
    "prefill_attn_s_per_pair",
)
"""The six step-time coefficients, in the order of `StepTimeModel`'s fields (and of the flat
`[[entry]]` tables of `sim/data/step_time.toml`)."""
EXPERT_TERMS = ("expert_read_s", "expert_share")
"""The MoE expert-read coefficients: optional in a catalog entry (absent = 0, a dense model)."""


@dataclass(frozen=True, slots=True)
class StepTimeModel:
    """The step-time model of one replica: the one type that carries the six coefficients
    (fitted catalog entries, roofline estimates, fits, the engines all use it).

    overhead_s: per-step CPU cost (schedule, sampling, input preparation, output processing), s.
    flat_s: non-attention GPU time of a step with T <= knee_tokens (weight-read bound), s.
    knee_tokens: tokens per step beyond which the non-attention time grows linearly (>= 0).
    per_token_s: non-attention seconds added per token beyond the knee.
    decode_attn_s_per_token: attention seconds per context token of each decoding sequence.
    prefill_attn_s_per_pair: attention seconds per causal query-key pair of a prefill chunk.
    cpu_per_seq_s: CPU seconds per sequence in the step (scheduling, sampling, detokenisation,
        the API server's streaming; DESIGN §13). Not one of the six fitted `COEFFICIENTS`: it is
        set per vLLM version family (`sim.engine.versions`), 0 = off (the default, so every
        catalog entry and golden run is unchanged). A decode run of n sequences adds
        n·cpu_per_seq_s to every step, a constant, so the closed form k·a + b·k(k−1)/2 stays exact.
    state_s_per_seq: GPU seconds per sequence in the step spent reading and writing its recurrent
        state: the linear-attention (Gated DeltaNet) layers of a hybrid model keep a fixed-size
        state per sequence instead of a KV cache, and every step that advances the sequence
        streams it in and out (`ModelShape.state_bytes_per_seq`; the roofline sets it, 0 for
        every model without such layers). Charged like `cpu_per_seq_s` (`per_seq_s`), but it is
        GPU time: `scaled` scales it and `with_cpu` keeps it.
    expert_read_s: GPU seconds to read every routed expert's weights (MoE; see the module
        docstring), 0 for a dense model. Set by the roofline; a fitted entry may carry it.
    expert_share: share of the routed experts one token is sent to (experts_per_token /
        experts, in [0, 1]); 0 for a dense model.
    """

    overhead_s: float
    flat_s: float
    knee_tokens: float
    per_token_s: float
    decode_attn_s_per_token: float
    prefill_attn_s_per_pair: float
    cpu_per_seq_s: float = 0.0
    state_s_per_seq: float = 0.0
    expert_read_s: float = 0.0
    expert_share: float = 0.0

    def __post_init__(self) -> None:
        for name in (*COEFFICIENTS, *EXPERT_TERMS, "cpu_per_seq_s", "state_s_per_seq"):
            value = getattr(self, name)
            if not value >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if self.overhead_s + self.flat_s <= 0.0:
            raise ValueError("overhead_s + flat_s must be > 0: a step cannot take zero time")
        if self.expert_share > 1.0:
            raise ValueError(f"expert_share must be <= 1, got {self.expert_share!r}")

    @property
    def per_seq_s(self) -> float:
        """Seconds per sequence in a step: CPU time plus recurrent-state traffic (the engines
        charge this; with no state it is `cpu_per_seq_s` exactly)."""
        return self.cpu_per_seq_s + self.state_s_per_seq

    def linear_s(self, tokens: int) -> float:
        """Time of the token-linear operators (and the MoE expert read) for a step of `tokens`
        tokens, in seconds. The engines inline this same expression, in this order."""
        extra = tokens - self.knee_tokens
        linear = self.flat_s + self.per_token_s * extra if extra > 0.0 else self.flat_s
        if self.expert_read_s > 0.0:
            linear += self.expert_read_s * (1.0 - power(1.0 - self.expert_share, tokens))
        return linear

    def step_s(
        self, tokens: int, decode_context_tokens: int, prefill_pairs: int, seqs: int = 0
    ) -> float:
        """Duration of one step of `seqs` sequences, in seconds.

        The engines evaluate this same expression in this order (overhead + CPU first), so that
        cpu_per_seq_s = 0 adds an exact 0.0 and leaves every timestamp bit-identical.
        """
        return (
            self.overhead_s
            + self.per_seq_s * seqs
            + self.linear_s(tokens)
            + self.decode_attn_s_per_token * decode_context_tokens
            + self.prefill_attn_s_per_pair * prefill_pairs
        )

    def scaled(self, factor: float) -> StepTimeModel:
        """The same model with every time multiplied by `factor` (calibration uncertainty)."""
        return StepTimeModel(
            overhead_s=self.overhead_s * factor,
            flat_s=self.flat_s * factor,
            knee_tokens=self.knee_tokens,
            per_token_s=self.per_token_s * factor,
            decode_attn_s_per_token=self.decode_attn_s_per_token * factor,
            prefill_attn_s_per_pair=self.prefill_attn_s_per_pair * factor,
            cpu_per_seq_s=self.cpu_per_seq_s,  # CPU time: not the GPU fit's uncertainty
            state_s_per_seq=self.state_s_per_seq * factor,
            expert_read_s=self.expert_read_s * factor,
            expert_share=self.expert_share,
        )

    def with_cpu(self, cpu_per_seq_s: float) -> StepTimeModel:
        """The same GPU coefficients with `cpu_per_seq_s` set."""
        return replace(self, cpu_per_seq_s=cpu_per_seq_s)


def power(x: float, n: int) -> float:
    """x**n for an integer n >= 0 by binary exponentiation: the same multiplications, in the
    same order, as the compiled engines' (`sim.engine.compiled.replica.expert_read_s`), so all
    three engines get the same bits (libm's `pow`, rounded otherwise, cost the compiled
    routing loop time even on a branch it never took)."""
    p = 1.0
    while n > 0:
        if n & 1:
            p *= x
        x *= x
        n >>= 1
    return p


def decode_steps_within(a: float, b: float, delta_s: float) -> int:
    """Steps of a decode run that end within `delta_s` (>= 0) seconds of its start.

    Step i (0-based) of a run takes `a + b·i` seconds, so k steps take k·a + b·k(k−1)/2: the
    largest such k <= delta_s, from the quadratic, then corrected for rounding either way.
    """
    if b == 0.0:
        k = int(delta_s / a)
    else:
        h = a - 0.5 * b
        k = int((-h + math.sqrt(h * h + 2.0 * b * delta_s)) / b)
    while k > 0 and k * (a + b * (k - 1) * 0.5) > delta_s:
        k -= 1
    while (k + 1) * (a + b * k * 0.5) <= delta_s:
        k += 1
    return k


def prefill_pairs(chunk_tokens: int, cached_tokens: int) -> int:
    """Causal query-key pairs of a prefill chunk of `chunk_tokens` after `cached_tokens`."""
    return chunk_tokens * cached_tokens + chunk_tokens * (chunk_tokens + 1) // 2


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """vLLM scheduler limits of one replica.

    max_num_seqs: sequences in the running batch (vLLM `--max-num-seqs`).
    max_num_batched_tokens: token budget per step (chunked prefill, `--max-num-batched-tokens`).
    kv_blocks: KV-cache blocks of `block_size` tokens on the replica (vLLM `num_gpu_blocks`).
    state_blocks: blocks each running sequence holds besides those of its tokens: a hybrid
        model's recurrent states (the linear-attention layers' state per sequence, in blocks of
        the same pool: vLLM's hybrid KV-cache manager gives a request its state pages from the
        pool its KV blocks come from; `sim.engine.kv`). Taken when the sequence is first
        scheduled, freed when it finishes or is preempted; 0 for every other model.
    max_model_len: longest request (prompt + output tokens) the replica accepts.
    scheduler: "v1" (vLLM >= 0.8, and V0 with chunked prefill: running sequences first, then
        prefill chunks) or "v0" (vLLM 0.5-0.7 without chunked prefill: whole prompts first in a
        prefill-only step, decodes otherwise; `sim.engine.reference`). See `sim.engine.versions`.
    num_scheduler_steps: V0 multi-step scheduling: a decode batch runs this many steps before
        the scheduler runs again, and its tokens reach the client at the end (1 = off).
    async_scheduling: V1 async scheduling (the default from vLLM 0.14, `--async-scheduling`
        before): the engine core schedules step N+1 as soon as step N is launched, so the
        batch of a step is chosen when the step before it starts, and a request that arrives
        while a step runs joins the step after next, not the next one
        (vllm/v1/engine/core.py `step_with_batch_queue`: the next batch is scheduled before
        blocking on the running one's output; new requests are read between engine steps).
        The engines admit a waiting request only if it was queued by the start of the step
        that just ended, unless nothing was running (an idle engine schedules it at once).
    """

    max_num_seqs: int
    max_num_batched_tokens: int
    kv_blocks: int
    max_model_len: int
    block_size: int = 16
    scheduler: str = "v1"
    num_scheduler_steps: int = 1
    async_scheduling: bool = False
    state_blocks: int = 0

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            # vLLM refuses this too: every running decode must fit in one step's budget.
            raise ValueError("max_num_batched_tokens must be >= max_num_seqs")
        if self.block_size < 1 or self.max_model_len < 1:
            raise ValueError("block_size and max_model_len must be >= 1")
        if self.scheduler not in ("v0", "v1"):
            raise ValueError(f"scheduler must be 'v0' or 'v1', got {self.scheduler!r}")
        if self.num_scheduler_steps < 1 or (self.num_scheduler_steps > 1 and self.v1):
            raise ValueError("num_scheduler_steps must be >= 1, and 1 with the V1 scheduler")
        if self.async_scheduling and not self.v1:
            raise ValueError("async_scheduling needs the V1 scheduler")
        if not self.v1 and self.max_num_batched_tokens < self.max_model_len:
            # vLLM V0 refuses this too without chunked prefill: a prompt is never split.
            raise ValueError(
                "V0 without chunked prefill needs max_num_batched_tokens >= max_model_len"
            )
        if self.state_blocks < 0:
            raise ValueError(f"state_blocks must be >= 0, got {self.state_blocks}")
        if (self.kv_blocks - self.state_blocks) * self.block_size < self.max_model_len:
            raise ValueError(
                f"KV cache of {self.kv_blocks * self.block_size} tokens cannot hold one "
                f"request of max_model_len {self.max_model_len}"
                + (f" beside its state ({self.state_blocks} blocks)" if self.state_blocks else "")
            )

    @property
    def v1(self) -> bool:
        """Whether the V1 scheduler runs (every engine); V0 runs on the reference engine only."""
        return self.scheduler == "v1"

    def accepts(self, input_tokens: int, output_tokens: int) -> bool:
        """Whether a request fits the model length (vLLM rejects longer ones)."""
        return (
            input_tokens >= 1
            and output_tokens >= 1
            and (input_tokens + output_tokens <= self.max_model_len)
        )

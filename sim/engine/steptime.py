"""Step-time model of one continuous-batching iteration (DESIGN §4).

    step_time_s = overhead_s
                + flat_s + per_token_s · max(0, T − knee_tokens)     (GEMMs etc.: roofline in T)
                + decode_attn_s_per_token · Σ_decode context_tokens   (decode attention, KV reads)
                + prefill_attn_s_per_pair · Σ_chunks (c·p + c(c+1)/2) (causal query-key pairs)

`T` is the number of tokens computed in the step; a decode entry computes one token whose
attention spans `context_tokens` = tokens already in its KV + 1; a prefill chunk of `c` tokens
after `p` cached tokens attends over `c·p + c(c+1)/2` query-key pairs. An entry computing exactly
one token is charged as a decode (this is what makes a decode-only batch's step time an exact
linear function of the step index, which the event-skipping engine sums in closed form).
Coefficients are fitted from real profiles (docs/calibration.md).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sim.catalog import COEFFICIENTS


class Coefficients(Protocol):
    """Anything holding the six coefficients as attributes (see `COEFFICIENTS`)."""

    @property
    def overhead_s(self) -> float: ...
    @property
    def flat_s(self) -> float: ...
    @property
    def knee_tokens(self) -> float: ...
    @property
    def per_token_s(self) -> float: ...
    @property
    def decode_attn_s_per_token(self) -> float: ...
    @property
    def prefill_attn_s_per_pair(self) -> float: ...


@dataclass(frozen=True, slots=True)
class StepTimeModel:
    """Coefficients of the step-time model, all in seconds (per token / per pair where named)."""

    overhead_s: float
    flat_s: float
    knee_tokens: float
    per_token_s: float
    decode_attn_s_per_token: float
    prefill_attn_s_per_pair: float

    @classmethod
    def of(cls, c: Coefficients) -> StepTimeModel:
        """The model of a record carrying the six coefficients (catalog entry, spec, roofline)."""
        return cls(*(getattr(c, name) for name in COEFFICIENTS))

    def __post_init__(self) -> None:
        for name in COEFFICIENTS:
            value = getattr(self, name)
            if not value >= 0.0:
                raise ValueError(f"{name} must be >= 0, got {value!r}")
        if self.overhead_s + self.flat_s <= 0.0:
            raise ValueError("overhead_s + flat_s must be > 0: a step cannot take zero time")

    def linear_s(self, tokens: int) -> float:
        """Time of the token-linear operators for a step of `tokens` tokens, in seconds."""
        extra = tokens - self.knee_tokens
        return self.flat_s + (self.per_token_s * extra if extra > 0.0 else 0.0)

    def step_s(self, tokens: int, decode_context_tokens: int, prefill_pairs: int) -> float:
        """Duration of one step, in seconds."""
        return (
            self.overhead_s
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
        )


def prefill_pairs(chunk_tokens: int, cached_tokens: int) -> int:
    """Causal query-key pairs of a prefill chunk of `chunk_tokens` after `cached_tokens`."""
    return chunk_tokens * cached_tokens + chunk_tokens * (chunk_tokens + 1) // 2


@dataclass(frozen=True, slots=True)
class EngineLimits:
    """vLLM scheduler limits of one replica.

    max_num_seqs: sequences in the running batch (vLLM `--max-num-seqs`).
    max_num_batched_tokens: token budget per step (chunked prefill, `--max-num-batched-tokens`).
    kv_blocks: KV-cache blocks of `block_size` tokens on the replica (vLLM `num_gpu_blocks`).
    max_model_len: longest request (prompt + output tokens) the replica accepts.
    """

    max_num_seqs: int
    max_num_batched_tokens: int
    kv_blocks: int
    max_model_len: int
    block_size: int = 16

    def __post_init__(self) -> None:
        if self.max_num_seqs < 1:
            raise ValueError(f"max_num_seqs must be >= 1, got {self.max_num_seqs}")
        if self.max_num_batched_tokens < self.max_num_seqs:
            # vLLM refuses this too: every running decode must fit in one step's budget.
            raise ValueError("max_num_batched_tokens must be >= max_num_seqs")
        if self.block_size < 1 or self.max_model_len < 1:
            raise ValueError("block_size and max_model_len must be >= 1")
        if self.kv_blocks * self.block_size < self.max_model_len:
            raise ValueError(
                f"KV cache of {self.kv_blocks * self.block_size} tokens cannot hold one "
                f"request of max_model_len {self.max_model_len}"
            )

    def accepts(self, input_tokens: int, output_tokens: int) -> bool:
        """Whether a request fits the model length (vLLM rejects longer ones)."""
        return (
            input_tokens >= 1
            and output_tokens >= 1
            and (input_tokens + output_tokens <= self.max_model_len)
        )

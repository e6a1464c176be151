"""GPU and model tables shipped with the package (data only; sources in the TOML comments).

KV capacity follows vLLM's memory accounting (DESIGN §4):

    kv_bytes = memory × gpu_memory_utilization × tp − weights − activation_reserve
    kv_tokens = kv_bytes ÷ (2 × layers × kv_heads × head_dim × dtype_bytes)

with `activation_reserve` the peak activation memory of one step of `max_num_batched_tokens`
tokens (MLP intermediates and residual stream in the model dtype, plus fp32 logits for
`max_num_seqs` sampled rows) — a first-principles estimate of what vLLM's profiling run
measures; a measured `kv_blocks` (vLLM's `num_gpu_blocks` log line) overrides it.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cache
from importlib import resources

GIB = 1024**3
DTYPE_BYTES = {"fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}


@dataclass(frozen=True)
class GpuSpec:
    name: str
    memory_gb: float
    price_usd_per_hour: float
    price_source: str


@dataclass(frozen=True)
class ModelShape:
    name: str
    hf_id: str
    params: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_position: int

    def kv_bytes_per_token(self, dtype: str, tp: int) -> float:
        """KV-cache bytes one token occupies on one GPU of a `tp`-way replica."""
        return 2.0 * self.layers * self.kv_heads * self.head_dim * DTYPE_BYTES[dtype] / tp


def _load(name: str) -> dict[str, dict[str, object]]:
    text = resources.files("sim").joinpath("data", name).read_text(encoding="utf-8")
    return tomllib.loads(text)


@cache
def gpus() -> dict[str, GpuSpec]:
    """The GPU table, by catalog name (e.g. ``"a100-80gb"``)."""
    out = {}
    for name, row in _load("gpus.toml").items():
        out[name] = GpuSpec(
            name=name,
            memory_gb=float(row["memory_gb"]),  # type: ignore[arg-type]
            price_usd_per_hour=float(row["price_usd_per_hour"]),  # type: ignore[arg-type]
            price_source=str(row["price_source"]),
        )
    return out


@cache
def models() -> dict[str, ModelShape]:
    """The model-shape table, by catalog name (e.g. ``"llama-3-8b"``)."""
    out = {}
    for name, row in _load("models.toml").items():
        out[name] = ModelShape(
            name=name,
            hf_id=str(row["hf_id"]),
            params=float(row["params"]),  # type: ignore[arg-type]
            **{
                k: int(row[k])  # type: ignore[call-overload]
                for k in ModelShape.__dataclass_fields__
                if k not in ("name", "hf_id", "params")
            },
        )
    return out


def kv_capacity_tokens(
    model: ModelShape,
    gpu: GpuSpec,
    *,
    dtype: str,
    tp: int,
    gpu_memory_utilization: float,
    max_num_batched_tokens: int,
    max_num_seqs: int,
) -> float:
    """KV-cache capacity of one replica in tokens (negative when the model does not fit)."""
    per_gpu_budget = gpu.memory_gb * 1e9 * gpu_memory_utilization
    weights = model.params * DTYPE_BYTES[dtype] / tp
    activations = (
        max_num_batched_tokens
        * (2 * model.intermediate + 4 * model.hidden)
        * DTYPE_BYTES[dtype]
        / tp
        + max_num_seqs * model.vocab * 4.0
    )
    return (per_gpu_budget - weights - activations) / model.kv_bytes_per_token(dtype, tp)

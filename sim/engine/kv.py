"""KV-cache capacity of one replica, following vLLM's memory accounting (DESIGN §4).

Per GPU of a `tp`-way replica:

    kv_bytes  = memory × gpu_memory_utilization − weights ÷ tp − activation_reserve
    kv_tokens = kv_bytes ÷ (2 × layers × kv_heads × head_dim × kv_dtype_bytes ÷ tp)

Weights are counted at their own precision (`weight_dtype`: fp16/bf16, fp8, int8 or int4 for
AWQ/GPTQ, see `ModelShape.weight_bytes`), the KV cache at `kv_dtype`. `activation_reserve` is the
peak activation memory of one step of `max_num_batched_tokens` tokens (MLP intermediates and the
residual stream in 16 bits — vLLM keeps activations in the model dtype whatever the weight or KV
precision — plus fp32 logits for `max_num_seqs` sampled rows), a first-principles stand-in for
what vLLM's profiling run measures.

Measured against vLLM-reported block counts (tests/test_hardware.py): with `memory_gb` the
datasheet's nominal GB (1e9 bytes) the estimate is 4-12 % BELOW vLLM's count (nominal GB
under-count the device's real GiB by ~7 %, which more than covers the CUDA context, CUDA graphs
and allocator slack this formula leaves out). A measured `kv_blocks` (vLLM's `num_gpu_blocks`)
overrides the estimate: `kv_cache(settings, gpu)` is the one function every caller uses.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.config import EngineSpec
from sim.data import GpuSpec, ModelShape, models
from sim.engine.catalog import gpu_spec

ACTIVATION_BYTES = 2.0
"""Bytes per activation element (fp16/bf16, vLLM's model dtype)."""
LOGIT_BYTES = 4.0
"""vLLM's sampler upcasts logits to fp32."""


def weight_bytes_per_gpu(model: ModelShape, weight_dtype: str, tp: int) -> float:
    """Weight bytes held by each GPU of a `tp`-way replica (weights are sharded evenly)."""
    return model.weight_bytes(weight_dtype) / tp


def activation_reserve_bytes(
    model: ModelShape, *, tp: int, max_num_batched_tokens: int, max_num_seqs: int
) -> float:
    """Peak activation bytes per GPU of one profiling step (see the module docstring)."""
    width = 2 * model.intermediate * max(1, model.experts_per_token) + 4 * model.hidden
    return (
        max_num_batched_tokens * width * ACTIVATION_BYTES / tp
        + max_num_seqs * model.vocab * LOGIT_BYTES
    )


def kv_capacity_tokens(
    model: ModelShape,
    gpu: GpuSpec,
    *,
    dtype: str,
    tp: int,
    gpu_memory_utilization: float,
    max_num_batched_tokens: int,
    max_num_seqs: int,
    weight_dtype: str | None = None,
) -> float:
    """KV-cache capacity of one replica in tokens (negative when the model does not fit).

    dtype: the KV-cache dtype (and the weights' unless `weight_dtype` is given).
    """
    per_gpu_budget = gpu.memory_gb * 1e9 * gpu_memory_utilization
    weights = weight_bytes_per_gpu(model, weight_dtype or dtype, tp)
    activations = activation_reserve_bytes(
        model, tp=tp, max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs
    )
    return (per_gpu_budget - weights - activations) / model.kv_bytes_per_token(dtype, tp)


@dataclass(frozen=True)
class KvCache:
    """KV-cache capacity of one replica: `blocks` of the engine's block size, and the estimate
    in tokens it came from (negative when weights and activations alone exceed the memory)."""

    blocks: int
    tokens: float


def kv_cache(settings: EngineSpec, gpu: str) -> KvCache:
    """The ONE KV-capacity function: `settings.kv_blocks` when measured, else the estimate of
    `sim.engine.kv.kv_capacity_tokens` for the model on `gpu`, in whole blocks."""
    if settings.kv_blocks is not None:
        return KvCache(settings.kv_blocks, float(settings.kv_blocks * settings.block_size))
    tokens = kv_capacity_tokens(
        models()[settings.model],
        gpu_spec(gpu, settings.calibration),  # packaged, or the calibration file's [[gpu]]
        dtype=settings.dtype,
        weight_dtype=settings.weight_dtype,
        tp=settings.tp,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        max_num_batched_tokens=settings.max_num_batched_tokens,
        max_num_seqs=settings.max_num_seqs,
    )
    return KvCache(max(0, int(tokens // settings.block_size)), tokens)


def kv_shortfall(settings: EngineSpec, gpu: str, kv: KvCache) -> str | None:
    """Why the model cannot serve one `max_model_len` request on `gpu`, or None when it can."""
    capacity = kv.blocks * settings.block_size
    if capacity >= settings.max_model_len:
        return None
    precision = settings.dtype
    if settings.weight_dtype is not None:
        precision = f"weights {settings.weight_dtype}, KV {settings.dtype}"
    per_token = models()[settings.model].kv_bytes_per_token(settings.dtype, settings.tp)
    # Negative `tokens` (weights and activations alone exceed the budget) count too.
    short_gb = (settings.max_model_len - min(capacity, kv.tokens)) * per_token / 1e9
    return (
        f"{settings.model} ({precision}, tp {settings.tp}) on {gpu}: "
        f"KV cache holds {capacity} tokens, less than max_model_len "
        f"{settings.max_model_len}; short by {short_gb:.2f} GB per GPU"
    )

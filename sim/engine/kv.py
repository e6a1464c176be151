"""KV-cache capacity of one replica, following vLLM's memory accounting (DESIGN §4).

Per GPU of a `tp`-way replica:

    kv_bytes  = device_memory × gpu_memory_utilization − weights ÷ tp − activation_reserve
                − NON_TORCH_RESERVE_BYTES
    kv_tokens = (kv_bytes − states × state_bytes_per_seq)
                ÷ (2 × attention layers × kv_heads × head_dim × kv_dtype_bytes ÷ tp)

`state_bytes_per_seq` is 0 except for hybrid models (Qwen3-Next, Qwen3.5), whose linear-attention
layers keep a fixed recurrent state per running sequence in the same memory pool as the KV
blocks (vLLM's hybrid KV-cache manager gives each request one state slot per such layer). The
engines count tokens only, so the estimate sets aside `states` of them: `max_num_seqs`, the most
the engine runs at once, or, where the pool cannot hold that many beside one `max_model_len`
request (vLLM's own start-up requirement, which a server with `--max-num-seqs 2048` passes), as
many as leave room for that request. With fewer sequences running vLLM lends their slots to
tokens (and it rounds attention blocks up to the state's page size, which this leaves out).

`device_memory` is what the device reports to CUDA (`GpuSpec.device_memory_bytes`: measured
where a source gives it, else the datasheet capacity scaled by the measured share of a GPU with
the same kind of memory; sim/data/gpus.toml). vLLM multiplies that figure, not the datasheet's
nominal GB: an "80GB" A100 reports 79.25 GiB = 85.1e9 bytes.

Weights are counted at their own precision (`weight_dtype`: fp16/bf16, fp8, int8 or int4 for
AWQ/GPTQ, see `ModelShape.weight_bytes`), the KV cache at `kv_dtype`. `activation_reserve` is the
peak activation memory of one step of `max_num_batched_tokens` tokens (MLP intermediates and the
residual stream in 16 bits — vLLM keeps activations in the model dtype whatever the weight or KV
precision — plus fp32 logits for `max_num_seqs` sampled rows), a first-principles stand-in for
what vLLM's profiling run measures.

`NON_TORCH_RESERVE_BYTES` stands for what the activation term leaves out (the CUDA context,
NCCL and cuBLAS workspaces, CUDA graphs, allocator slack): the largest remainder measured on
the vLLM-reported KV sizes of tests/test_hardware.py, rounded up, so that the estimate never
gives more blocks than vLLM found there (measured: -0.5 % to -12.3 %). A measured `kv_blocks`
(vLLM's `num_gpu_blocks`) overrides the estimate: `kv_cache(settings, gpu)` is the one function
every caller uses.

Before device memory was used (nominal GB x 1e9, no reserve term) the estimate was 4-12 % below
vLLM on consumer GPUs and 8-18 % below on an A100 (the Qwen2-7B rows of vllm-public-runs), and
it kept a 65.5 GB Qwen3-32B off one 80 GB GPU at its 40,960-token context, which vLLM served.
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
NON_TORCH_RESERVE_BYTES = 0.95e9
"""Memory outside the activation term, per GPU: the largest remainder (device memory x
utilisation − weights − activations − reported KV) of the measured cases in tests/test_hardware.py
is 0.92 GB (RTX 4090, vLLM 0.19, which also holds CUDA graphs); the A100 Qwen2-7B rows of vLLM
0.10 leave 0.29 GB. Rounded up so no measured case gets more blocks than vLLM reported."""


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
    max_model_len: int = 0,
) -> float:
    """KV-cache capacity of one replica in tokens (negative when the model does not fit).

    dtype: the KV-cache dtype (and the weights' unless `weight_dtype` is given).
    max_model_len: the longest request; a hybrid model keeps room for one (module docstring).
    """
    per_gpu_budget = gpu.device_memory_bytes * gpu_memory_utilization - NON_TORCH_RESERVE_BYTES
    weights = weight_bytes_per_gpu(model, weight_dtype or dtype, tp)
    activations = activation_reserve_bytes(
        model, tp=tp, max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs
    )
    pool = per_gpu_budget - weights - activations
    per_token = model.kv_bytes_per_token(dtype, tp)
    state = model.state_bytes_per_seq(dtype, tp)
    if state > 0:
        room = (pool - max_model_len * per_token) // state  # states beside one longest request
        pool -= min(max_num_seqs, max(room, 1)) * state
    return pool / per_token


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
        max_model_len=settings.max_model_len,
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

"""KV-cache capacity of one replica, following vLLM's memory accounting (DESIGN §4).

Per GPU of a `tp`-way replica:

    kv_bytes  = device_memory × gpu_memory_utilization − weights ÷ tp − activation_reserve
                − NON_TORCH_RESERVE_BYTES
    kv_tokens = kv_bytes ÷ (2 × attention layers × kv_heads × head_dim × kv_dtype_bytes ÷ tp)

`state_bytes_per_seq` is 0 except for hybrid models (Qwen3-Next, Qwen3.5), whose linear-attention
layers keep a fixed recurrent state per running sequence in the same memory pool as the KV
blocks: vLLM's hybrid KV-cache manager gives each running request its state pages from the pool
its KV blocks come from, and takes them back when it finishes or is preempted. So the pool is
counted whole, in blocks, and each running sequence holds `state_blocks` of them besides its
tokens' (`EngineLimits.state_blocks`, in every engine):

    state_blocks = ⌈state_bytes_per_seq ÷ (block_size × kv bytes per token)⌉

An idle engine holds tokens only; one running 1,000 sequences holds 1,000 states. vLLM sizes
its pages differently (it raises the attention block size until one attention page is as large
as one layer's state page, and gives a request one state page per group of linear layers), so
a request's attention tokens round up to a coarser page there; this estimate rounds them to
`block_size` and the state to whole blocks. Before the engines held states, the estimate set
aside `max_num_seqs` of them from the token pool up front (or as many as left room for one
`max_model_len` request): every slot reserved whether a sequence used it or not.

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

import math
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
) -> float:
    """KV-cache capacity of one replica in tokens (negative when the model does not fit): the
    whole pool, recurrent states included (`state_blocks` says what a running sequence's takes).

    dtype: the KV-cache dtype (and the weights' unless `weight_dtype` is given).
    """
    per_gpu_budget = gpu.device_memory_bytes * gpu_memory_utilization - NON_TORCH_RESERVE_BYTES
    weights = weight_bytes_per_gpu(model, weight_dtype or dtype, tp)
    activations = activation_reserve_bytes(
        model, tp=tp, max_num_batched_tokens=max_num_batched_tokens, max_num_seqs=max_num_seqs
    )
    pool = per_gpu_budget - weights - activations
    return pool / model.kv_bytes_per_token(dtype, tp)


def state_blocks(model: ModelShape, *, dtype: str, tp: int, block_size: int) -> int:
    """KV blocks one running sequence's recurrent state takes (module docstring); 0 for a
    model without linear-attention layers."""
    state = model.state_bytes_per_seq(dtype, tp)
    if state <= 0:
        return 0
    return math.ceil(state / (block_size * model.kv_bytes_per_token(dtype, tp)))


def engine_state_blocks(settings: EngineSpec) -> int:
    """`state_blocks` of the engine `settings` describe: 0 for a model not in the catalog (a
    measured `kv_blocks` may name any model) or one without linear-attention layers."""
    model = models().get(settings.model)
    if model is None:
        return 0
    return state_blocks(model, dtype=settings.dtype, tp=settings.tp, block_size=settings.block_size)


@dataclass(frozen=True)
class KvCache:
    """KV-cache capacity of one replica: `blocks` of the engine's block size, the estimate in
    tokens it came from (negative when the weights and activations alone exceed the memory),
    and the blocks each running sequence's recurrent state takes (`state_blocks`)."""

    blocks: int
    tokens: float
    state_blocks: int = 0


def kv_cache(settings: EngineSpec, gpu: str) -> KvCache:
    """The ONE KV-capacity function: `settings.kv_blocks` when measured, else the estimate of
    `sim.engine.kv.kv_capacity_tokens` for the model on `gpu`, in whole blocks; with the blocks
    a running sequence's state takes (`state_blocks`, from the model's shape either way)."""
    bs = settings.block_size
    state = engine_state_blocks(settings)
    if settings.kv_blocks is not None:
        return KvCache(settings.kv_blocks, float(settings.kv_blocks * bs), state)
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
    return KvCache(max(0, int(tokens // bs)), tokens, state)


def kv_shortfall(settings: EngineSpec, gpu: str, kv: KvCache) -> str | None:
    """Why the model cannot serve one `max_model_len` request on `gpu`, or None when it can."""
    capacity = (kv.blocks - kv.state_blocks) * settings.block_size  # beside one state
    if capacity >= settings.max_model_len:
        return None
    precision = settings.dtype
    if settings.weight_dtype is not None:
        precision = f"weights {settings.weight_dtype}, KV {settings.dtype}"
    per_token = models()[settings.model].kv_bytes_per_token(settings.dtype, settings.tp)
    # Negative `tokens` (weights and activations alone exceed the budget) count too.
    held = min(capacity, kv.tokens - kv.state_blocks * settings.block_size)
    short_gb = (settings.max_model_len - held) * per_token / 1e9
    state = f" beside one sequence's state ({kv.state_blocks} blocks)" if kv.state_blocks else ""
    return (
        f"{settings.model} ({precision}, tp {settings.tp}) on {gpu}: "
        f"KV cache holds {capacity} tokens{state}, less than max_model_len "
        f"{settings.max_model_len}; short by {short_gb:.2f} GB per GPU"
    )

"""Step-time coefficients from specs alone, for (model, GPU, TP, dtype) with no fitted entry.

DESIGN §4's fallback. It returns coefficients of the same step-time model the fitted catalogue
uses (`sim.engine.catalog`), per GPU of a `tp`-way replica, all in seconds:

    flat_s       = layers × layer_floor_s + weight_bytes ÷ (bandwidth × mem_efficiency)
                   + 2 × layers × all-reduce latency                          (tp > 1)
    per_token_s  = 2 × active_params ÷ tp ÷ (peak FLOP/s × flop_efficiency)
                   + 2 × layers × hidden × 2 bytes ÷ all-reduce bandwidth     (tp > 1)
    knee_tokens  = knee_fraction × weight-read time ÷ per_token_s   (the ridge, where compute
                   time crosses weight-read time, times a measured fraction: real steps start
                   to grow before the ideal ridge, and a two-piece line fitted to them bends
                   earlier)
    decode_attn_s_per_token  = KV bytes per token per GPU ÷ (bandwidth × attn_mem_efficiency)
    prefill_attn_s_per_pair  = 4 × attention layers × heads ÷ tp × head_dim
                               ÷ (fp16 FLOP/s × attn_flop_efficiency)
    state_s_per_seq          = 2 × recurrent-state bytes per sequence per GPU
                               ÷ (bandwidth × attn_mem_efficiency)          (hybrid models)
    overhead_s   = the CPU per-step overhead measured for the fitted entries

The all-reduce latency is that of the kernel vLLM runs (`allreduce_latency_s`): its own
custom all-reduce where the GPUs are fully connected by NVLink, NCCL's elsewhere. The latency
matters at small batches, where the custom kernel serves (messages up to 8 MiB); at prefill
sizes NCCL takes over and the bytes, charged at NCCL's bandwidth either way, dominate.

The efficiencies, the per-layer floor, NCCL's all-reduce latency and the interconnect efficiency
are MEASURED by `scripts/fit_vidur_step_time.py` against the fitted A100/H100 entries and Vidur's
all-reduce profiles, and stored in the `[roofline]` table of `sim/data/step_time.toml` with the
leave-one-out error of the whole method; `residual_sd_log` there is the spread every roofline
entry carries.

Precision: weights are read at their stored width (`ModelShape.weight_bytes`: fp8 and int8 half
of fp16, AWQ/GPTQ int4 a quarter plus group scales, embeddings kept in 16 bits); GEMMs run at the
GPU's FP8 peak only for fp8 weights on a GPU with FP8 tensor cores (W8A8 on Ada, Hopper,
Blackwell, CDNA3), and at the fp16 peak otherwise (FP8 on Ampere and int4 are weight-only
kernels that dequantise to fp16). An fp8 KV cache halves the bytes a decode reads per token of
context; attention itself is computed at the fp16 peak.

Hybrid models (Qwen3-Next, Qwen3.5): their Gated DeltaNet layers are linear attention with a
fixed recurrent state per sequence (`ModelShape.state_bytes_per_seq`). Their projections are
parameters like any other (in the GEMM terms above); they add no KV bytes per context token and no
query-key pairs, so the attention terms count the softmax-attention layers only; and each sequence
in a step reads its state and writes it back, memory traffic charged per sequence at the attention
kernels' bandwidth (`state_s_per_seq`). The recurrence's own arithmetic (about 4 × value heads ×
key and value head widths FLOPs per token per layer, 0.3 % of Qwen3.5-9B's GEMM FLOPs) is left out.

MoE: a step of T tokens multiplies every token by the `experts_per_token` experts it routes to,
so compute follows the active parameters, but the weights it READS are the shared ones plus the
experts the batch touches, E·(1 − (1 − k/E)^T) per MoE layer in expectation under uniform routing
(`sim.data.hardware.expected_experts_touched`). The read therefore rises from k experts at
T = 1 to all E within a few dozen tokens for fine-grained MoEs. The step-time model carries that
curve exactly (`StepTimeModel.expert_read_s`, the read of every routed expert, and
`expert_share` = k/E): `flat_s` is the fixed time and the read of the weights every step
streams, and the knee is the dense one's, taken at the full read (by then a batch of a few
hundred tokens touches every expert). The experts are read at the fused-MoE kernels' own memory
efficiency and each MoE layer adds those kernels' fixed time (`moe_mem_efficiency`,
`moe_layer_floor_s`: fitted on published kernel timings by `scripts/fit_moe_kernels.py`; the
weights every step streams stay at the dense `mem_efficiency`). (Until 2026-12 a two-piece line
was fitted to the curve instead; it departed from it by up to 80 % at 16-64 tokens, and MoE runs
came out 15-65 % fast in the public-runs replay: docs/validation.md.)
Dense models keep the closed form above.
"""

from __future__ import annotations

import contextlib
import functools
import math
from collections.abc import Iterator
from dataclasses import dataclass, fields

from sim.data import GpuSpec, ModelShape, read_toml
from sim.data.hardware import weight_bytes_per_param
from sim.engine.steptime import StepTimeModel
from sim.errors import ConfigError, Problem

CATALOG_FILE = "step_time.toml"
ALLREDUCE_ELEMENT_BYTES = 2.0
"""All-reduced activations are fp16/bf16."""


@dataclass(frozen=True)
class RooflineFactors:
    """Measured constants of the roofline (see the module docstring; units in the names).

    mem_efficiency: achieved / peak memory bandwidth when streaming weights.
    flop_efficiency: achieved / peak dense FLOP/s of the linear layers at large batch.
    weight_only_flop_efficiency: the same for weight-only quantised GEMMs (`weight_only`:
        Marlin-style kernels that dequantise int4 AWQ/GPTQ, or FP8 weights on a GPU without FP8
        tensor cores, to fp16 in the loop), against the fp16 peak: fitted on the published vLLM
        runs by `scripts/fit_weight_only.py` (Marlin's own README: close to ideal speedups up to
        batches of 16-32 tokens, less beyond).
    attn_mem_efficiency, attn_flop_efficiency: the same for decode and prefill attention.
    moe_mem_efficiency: achieved / peak memory bandwidth of vLLM's fused-MoE kernels reading the
        experts a batch touches (bf16 and FP8 W8A8; `scripts/fit_moe_kernels.py`: the median
        over five published kernel benchmarks, 0.54-0.93). Weight-only MoE kernels (Marlin:
        int4, MXFP4, FP8 without FP8 tensor cores) keep `mem_efficiency`: no timings of them.
    moe_layer_floor_s: fixed time of one MoE layer's fused-experts kernels per step (routing
        alignment, two grouped GEMMs' launches), beyond the experts' read: the same fit's
        median intercept (23-56 us), charged to every MoE layer of every step.
    knee_fraction: fitted knee / ideal ridge point (tokens), median over the fitted entries.
    layer_floor_s: fixed GPU time per layer per step (small kernels, attention launch).
    nccl_latency_s: latency of one single-node NCCL all-reduce of a small message (Vidur's
        profiles: eager launches, as vLLM runs NCCL where its custom kernel does not run).
    custom_allreduce_latency_s: latency of one all-reduce of a small message by vLLM's custom
        kernel, which it runs between GPUs fully connected by NVLink (published, not fitted:
        `scripts/fit_vidur_step_time.py`'s `CUSTOM_ALLREDUCE_LATENCY_S`).
    link_efficiency: NCCL bus bandwidth / the datasheet's interconnect bandwidth.
    overhead_s: CPU time per step (scheduling, sampling, input preparation) as Vidur profiled
        it (vLLM of early 2024, eager kernels): the fitted entries' value, kept for the
        leave-one-out check against them.
    serving_overhead_s: the per-step time a roofline step carries on top of its GPU terms:
        today Vidur's `overhead_s`. A run that names its vLLM version replaces it by that
        version's CPU time (`sim.engine.versions`: none with async scheduling, a CPU time per
        sequence for synchronous V1), as it does for the fitted entries.
    residual_sd_log: SD of log(fitted / roofline) step time, leave-one-entry-out.
    leave_one_out_mape: MAPE of roofline vs fitted step time, leave-one-entry-out (fraction).
    source: how the numbers were measured.
    """

    mem_efficiency: float
    flop_efficiency: float
    weight_only_flop_efficiency: float
    attn_mem_efficiency: float
    attn_flop_efficiency: float
    moe_mem_efficiency: float
    moe_layer_floor_s: float
    knee_fraction: float
    layer_floor_s: float
    nccl_latency_s: float
    custom_allreduce_latency_s: float
    link_efficiency: float
    overhead_s: float
    serving_overhead_s: float
    residual_sd_log: float
    leave_one_out_mape: float
    source: str


def weight_read_bytes(model: ModelShape, weight_dtype: str) -> float:
    """Bytes of weights one step streams from memory (all experts for an MoE model): the
    checkpoint's weights less the input embedding, which a step does not stream but gathers
    (one row per token it processes), and less `extra_params` (a vision encoder, 16-bit), which
    runs only on image inputs: the text steps simulated here never touch it, though it takes
    its memory (`sim.engine.kv`). The lm_head is streamed in full; a tied lm_head is the embedding
    matrix, read once."""
    gathered = 0.0 if model.tie_embeddings else model.vocab * model.hidden * 2.0
    return model.weight_bytes(weight_dtype) - gathered - model.extra_params * 2.0


def allreduce_bandwidth_bytes_per_s(gpu: GpuSpec, tp: int, link_efficiency: float) -> float:
    """Algorithm bandwidth of a ring all-reduce over `tp` GPUs (message bytes per second).

    NCCL's bus bandwidth (link_efficiency × datasheet) is shared by 2(tp − 1)/tp message copies.
    """
    bus = gpu.interconnect_gb_per_s * 1e9 * link_efficiency
    return bus * tp / (2.0 * (tp - 1))


CUSTOM_ALLREDUCE_WORLD_SIZES = (2, 4, 6, 8)
"""TP degrees vLLM's custom all-reduce serves (`vllm/distributed/device_communicators/
custom_all_reduce.py`, `_SUPPORTED_WORLD_SIZES`; 16 joined later and no GPU here has 16 per
node)."""


def uses_custom_allreduce(gpu: GpuSpec, tp: int) -> bool:
    """Whether vLLM all-reduces a `tp`-way replica on `gpu` with its custom kernel rather than
    NCCL's: for a supported degree, on GPUs that NVLink connects all to all (SXM boards with
    NVSwitch), or two GPUs joined by an NVLink bridge. vLLM turns the kernel off for more than
    two GPUs without full NVLink ("not supported on more than two PCIe-only GPUs") and for two
    PCIe GPUs whose peer-to-peer test fails (every GeForce card); two PCIe data-centre GPUs may
    pass it, which is not modelled (NCCL's time is kept: the slower one)."""
    if tp not in CUSTOM_ALLREDUCE_WORLD_SIZES:
        return False
    if gpu.interconnect == "nvlink-bridge":
        return tp == 2
    return gpu.interconnect.startswith("nvlink")


def allreduce_latency_s(gpu: GpuSpec, tp: int, factors: RooflineFactors) -> float:
    """Latency (s) of one small all-reduce over `tp` GPUs of type `gpu` as vLLM runs it."""
    if uses_custom_allreduce(gpu, tp):
        return factors.custom_allreduce_latency_s
    return factors.nccl_latency_s


def roofline_step_time(
    model: ModelShape,
    gpu: GpuSpec,
    *,
    tp: int,
    weight_dtype: str,
    kv_dtype: str,
    factors: RooflineFactors,
) -> tuple[StepTimeModel, str]:
    """Roofline step times for `model` on `tp` GPUs of type `gpu` (see module doc), and their
    provenance in words. Their spread is `factors.residual_sd_log`."""
    if tp < 1:
        raise ValueError(f"tp must be >= 1, got {tp}")
    f = factors
    bw = gpu.memory_bandwidth_gb_per_s * 1e9
    flops = gpu.tflops(weight_dtype) * 1e12
    fp16_flops = gpu.fp16_dense_tflops * 1e12
    if bw <= 0 or flops <= 0:
        raise ValueError(f"{gpu.name}: needs memory bandwidth and FLOPs for a roofline")
    weight_read_s = weight_read_bytes(model, weight_dtype) / tp / (bw * f.mem_efficiency)
    fixed_s, per_token_s = _fixed_and_per_token_s(model, gpu, tp, flops, f, weight_dtype)
    expert_read_s = expert_share = 0.0
    flat_s = fixed_s + weight_read_s
    moe_eff = f.mem_efficiency if weight_only(gpu, weight_dtype) else f.moe_mem_efficiency
    if model.is_moe:
        # the experts leave the flat weight read (charged at the dense kernels' efficiency)
        # for the touched-experts term, read at the fused-MoE kernels' efficiency; each MoE
        # layer adds its kernels' fixed time (`scripts/fit_moe_kernels.py`)
        expert_bytes = model.expert_weight_params() * weight_bytes_per_param(weight_dtype) / tp
        flat_s += model.moe_layers * f.moe_layer_floor_s - expert_bytes / (bw * f.mem_efficiency)
        expert_read_s = expert_bytes / (bw * moe_eff)
        expert_share = model.experts_per_token / model.experts
    knee_tokens = f.knee_fraction * weight_read_s / per_token_s
    decode = model.kv_bytes_per_token(kv_dtype, tp) / (bw * f.attn_mem_efficiency)
    q_width = model.heads * model.head_dim / tp
    prefill = 4.0 * model.attention_layers * q_width / (fp16_flops * f.attn_flop_efficiency)
    state = 2.0 * model.state_bytes_per_seq(kv_dtype, tp) / (bw * f.attn_mem_efficiency)
    step = StepTimeModel(
        overhead_s=f.serving_overhead_s,
        flat_s=flat_s,
        knee_tokens=knee_tokens,
        per_token_s=per_token_s,
        decode_attn_s_per_token=decode,
        prefill_attn_s_per_pair=prefill,
        state_s_per_seq=state,
        expert_read_s=expert_read_s,
        expert_share=expert_share,
    )
    shape = ""
    if model.is_moe:
        shape = (
            f" (MoE: the experts a batch touches, read at {moe_eff:.2f} of the"
            f" bandwidth, and {f.moe_layer_floor_s * 1e6:.0f} us of fused-MoE kernels per layer,"
            " from published kernel timings)"
        )
    if weight_only(gpu, weight_dtype):
        shape += (
            f" (weight-only GEMMs at {f.weight_only_flop_efficiency:.2f} of the fp16 peak, fitted"
            " on published vLLM runs)"
        )
    if model.linear_attention_layers:
        shape += (
            f" (hybrid: {model.linear_attention_layers} of {model.layers} layers linear"
            " attention, a recurrent state per sequence)"
        )
    if tp > 1:
        kernel = "vLLM's custom kernel" if uses_custom_allreduce(gpu, tp) else "NCCL"
        shape += f" (all-reduce: {kernel}, {allreduce_latency_s(gpu, tp, f) * 1e6:.1f} us)"
    return step, (
        f"UNCALIBRATED roofline from specs ({gpu.spec_source}; {model.hf_id} config.json),"
        f" weights {weight_dtype}, KV {kv_dtype}, TP{tp}{shape}; efficiencies measured against the"
        f" fitted catalogue, leave-one-out step-time MAPE {f.leave_one_out_mape:.0%}"
        f" (sim/data/step_time.toml [roofline])"
    )


def weight_only(gpu: GpuSpec, weight_dtype: str) -> bool:
    """Whether weights of `weight_dtype` run weight-only kernels on `gpu` (dequantised to fp16
    inside the GEMM: vLLM's Marlin kernels for AWQ/GPTQ int4, and for FP8 weights on a GPU
    without FP8 tensor cores), rather than a 16-bit GEMM or FP8 W8A8."""
    return weight_dtype == "int4" or (weight_dtype == "fp8" and gpu.fp8_dense_tflops is None)


def _fixed_and_per_token_s(
    model: ModelShape, gpu: GpuSpec, tp: int, flops: float, f: RooflineFactors, weight_dtype: str
) -> tuple[float, float]:
    """(per-step fixed s, s per token) of the linear part: layer floors and all-reduce latency;
    GEMM compute on the active parameters (at the weight-only kernels' efficiency where they
    run) and all-reduce bytes."""
    fixed_s = model.layers * f.layer_floor_s
    eff = f.weight_only_flop_efficiency if weight_only(gpu, weight_dtype) else f.flop_efficiency
    compute_s_per_token = 2.0 * model.active_params() / tp / (flops * eff)
    comm_s_per_token = 0.0
    if tp > 1:
        algbw = allreduce_bandwidth_bytes_per_s(gpu, tp, f.link_efficiency)
        fixed_s += 2 * model.layers * allreduce_latency_s(gpu, tp, f)
        comm_s_per_token = 2 * model.layers * model.hidden * ALLREDUCE_ELEMENT_BYTES / algbw
    return fixed_s, compute_s_per_token + comm_s_per_token


_FLOAT_FIELDS = tuple(f.name for f in fields(RooflineFactors) if f.name != "source")


def parse_roofline_factors(doc: dict[str, object], file: str) -> RooflineFactors:
    """Validate the `[roofline]` table of a step-time catalogue document."""
    raw = doc.get("roofline")
    if not isinstance(raw, dict):
        raise ConfigError([Problem(file, "roofline", "missing [roofline] table", has_value=False)])
    problems = [
        Problem(file, f"roofline.{k}", "unknown key", has_value=False)
        for k in sorted(set(raw) - {f.name for f in fields(RooflineFactors)})
    ]
    for k in _FLOAT_FIELDS:
        v = raw.get(k)
        ok = isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)
        if not ok or v < 0:  # type: ignore[operator]
            problems.append(Problem(file, f"roofline.{k}", "must be a finite number >= 0", v))
    if not isinstance(raw.get("source"), str):
        problems.append(Problem(file, "roofline.source", "must be a string", raw.get("source")))
    if problems:
        raise ConfigError(problems)
    return RooflineFactors(
        source=str(raw["source"]),
        **{k: float(raw[k]) for k in _FLOAT_FIELDS},  # type: ignore[arg-type]
    )


_OVERRIDE: list[RooflineFactors] = []


@functools.cache
def _shipped_roofline_factors() -> RooflineFactors:
    return parse_roofline_factors(read_toml(CATALOG_FILE), f"sim/data/{CATALOG_FILE}")


def load_roofline_factors() -> RooflineFactors:
    """The measured roofline constants shipped in `sim/data/step_time.toml` (cached), or those
    of the innermost `roofline_factors_override` block."""
    return _OVERRIDE[-1] if _OVERRIDE else _shipped_roofline_factors()


@contextlib.contextmanager
def roofline_factors_override(factors: RooflineFactors) -> Iterator[None]:
    """Within the block, every roofline uses `factors` (fitting the constants by replay)."""
    _OVERRIDE.append(factors)
    try:
        yield
    finally:
        _OVERRIDE.pop()

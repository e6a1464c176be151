"""Step-time coefficients from specs alone, for (model, GPU, TP, dtype) with no fitted entry.

DESIGN §4's fallback. It returns coefficients of the same step-time model the fitted catalogue
uses (`sim.engine.catalog`), per GPU of a `tp`-way replica, all in seconds:

    flat_s       = layers × layer_floor_s + weight_bytes ÷ (bandwidth × mem_efficiency)
                   + 2 × layers × allreduce_latency_s                         (tp > 1)
    per_token_s  = 2 × active_params ÷ tp ÷ (peak FLOP/s × flop_efficiency)
                   + 2 × layers × hidden × 2 bytes ÷ all-reduce bandwidth     (tp > 1)
    knee_tokens  = knee_fraction × weight-read time ÷ per_token_s   (the ridge, where compute
                   time crosses weight-read time, times a measured fraction: real steps start
                   to grow before the ideal ridge, and a two-piece line fitted to them bends
                   earlier)
    decode_attn_s_per_token  = KV bytes per token per GPU ÷ (bandwidth × attn_mem_efficiency)
    prefill_attn_s_per_pair  = 4 × layers × heads ÷ tp × head_dim ÷ (fp16 FLOP/s × attn_flop_eff.)
    overhead_s   = the CPU per-step overhead measured for the fitted entries

The efficiencies, the per-layer floor, the all-reduce latency and the interconnect efficiency
are MEASURED by `scripts/fit_vidur_step_time.py` against the fitted A100/H100 entries and Vidur's
all-reduce profiles, and stored in the `[roofline]` table of `sim/data/step_time.toml` with the
leave-one-out error of the whole method; `residual_sd_log` there is the spread every roofline
entry carries. MoE models read all experts' weights (true once a step routes to most experts:
with 128 experts and 8 per token, 32 tokens touch 87 % of them) and multiply by the active ones.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, fields

from sim.data import GpuSpec, ModelShape, read_toml
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
    attn_mem_efficiency, attn_flop_efficiency: the same for decode and prefill attention.
    knee_fraction: fitted knee / ideal ridge point (tokens), median over the fitted entries.
    layer_floor_s: fixed GPU time per layer per step (small kernels, attention launch).
    allreduce_latency_s: latency of one single-node all-reduce of a small message.
    link_efficiency: NCCL bus bandwidth / the datasheet's interconnect bandwidth.
    overhead_s: CPU time per step (scheduling, sampling, input preparation).
    residual_sd_log: SD of log(fitted / roofline) step time, leave-one-entry-out.
    leave_one_out_mape: MAPE of roofline vs fitted step time, leave-one-entry-out (fraction).
    source: how the numbers were measured.
    """

    mem_efficiency: float
    flop_efficiency: float
    attn_mem_efficiency: float
    attn_flop_efficiency: float
    knee_fraction: float
    layer_floor_s: float
    allreduce_latency_s: float
    link_efficiency: float
    overhead_s: float
    residual_sd_log: float
    leave_one_out_mape: float
    source: str


def allreduce_bandwidth_bytes_per_s(gpu: GpuSpec, tp: int, link_efficiency: float) -> float:
    """Algorithm bandwidth of a ring all-reduce over `tp` GPUs (message bytes per second).

    NCCL's bus bandwidth (link_efficiency × datasheet) is shared by 2(tp − 1)/tp message copies.
    """
    bus = gpu.interconnect_gb_per_s * 1e9 * link_efficiency
    return bus * tp / (2.0 * (tp - 1))


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
    weight_read_s = model.weight_bytes(weight_dtype) / tp / (bw * f.mem_efficiency)
    fixed_s = model.layers * f.layer_floor_s
    compute_s_per_token = 2.0 * model.active_params() / tp / (flops * f.flop_efficiency)
    comm_s_per_token = 0.0
    if tp > 1:
        algbw = allreduce_bandwidth_bytes_per_s(gpu, tp, f.link_efficiency)
        fixed_s += 2 * model.layers * f.allreduce_latency_s
        comm_s_per_token = 2 * model.layers * model.hidden * ALLREDUCE_ELEMENT_BYTES / algbw
    per_token_s = compute_s_per_token + comm_s_per_token
    decode = model.kv_bytes_per_token(kv_dtype, tp) / (bw * f.attn_mem_efficiency)
    q_width = model.heads * model.head_dim / tp
    prefill = 4.0 * model.layers * q_width / (fp16_flops * f.attn_flop_efficiency)
    step = StepTimeModel(
        overhead_s=f.overhead_s,
        flat_s=fixed_s + weight_read_s,
        knee_tokens=f.knee_fraction * weight_read_s / per_token_s,
        per_token_s=per_token_s,
        decode_attn_s_per_token=decode,
        prefill_attn_s_per_pair=prefill,
    )
    return step, (
        f"UNCALIBRATED roofline from specs ({gpu.spec_source}; {model.hf_id} config.json),"
        f" weights {weight_dtype}, KV {kv_dtype}, TP{tp}; efficiencies measured against the"
        f" fitted catalogue, leave-one-out step-time MAPE {f.leave_one_out_mape:.0%}"
        f" (sim/data/step_time.toml [roofline])"
    )


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


@functools.cache
def load_roofline_factors() -> RooflineFactors:
    """The measured roofline constants shipped in `sim/data/step_time.toml`. Cached."""
    return parse_roofline_factors(read_toml(CATALOG_FILE), f"sim/data/{CATALOG_FILE}")

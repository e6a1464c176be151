"""Fit the step-time catalog (sim/data/step_time.toml) from Vidur profiles.

Usage, from the repository root:

    python scripts/fit_vidur_step_time.py [--data ../shared/data] [--out sim/data/step_time.toml]

Reads the profile copies in `--data`, fits every catalog entry with `sim.calibration.fit`, prints
the coefficients, held-out errors and cross-checks, and writes the TOML. `docs/calibration.md`
describes the method; this script is its executable form, and the numbers there come from here.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sim.calibration.fit import (
    FloatArray,
    causal_pairs,
    fit_affine,
    fit_piecewise_linear,
    fit_through_origin,
    holdout_mask,
    mape,
    max_ape,
    piecewise_linear,
    wape,
)
from sim.data import GpuSpec, gpus, models
from sim.data import ModelShape as HfShape
from sim.engine.roofline import (
    RooflineFactors,
    load_roofline_factors,
    roofline_step_time,
    uses_custom_allreduce,
    weight_read_bytes,
)
from sim.engine.steptime import COEFFICIENTS, StepTimeModel
from sim.errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent

VIDUR_COMMIT = "7d47513363ec447a741ac5e47241580b47724fbf"
VIDUR_CONFIG_COMMIT = "2bb7a086c74cd4639e86ff74ab07cd1fa0f9a97f"
VIDUR_LEGACY_COMMIT = "e2d00e9afba96cec9f0e7ea560bbfc4a539fae6a"
LLMSERVINGSIM_COMMIT = "5daddb21a545658d5150b535712d0494584b5278"

MS = 1e-3  # seconds per millisecond
NS = 1e-9  # seconds per nanosecond
FP16_BYTES = 2
CUSTOM_ALLREDUCE_LATENCY_S = 9.2e-6
"""Latency of one all-reduce of a small message by vLLM's custom kernel on H100 SXM: the median of
the nine times sglang PR #2904 (github.com/sgl-project/sglang/pull/2904, 2025-01-15) measured
for vLLM's kernel at 512 B, 4 KiB and 32 KiB on 2, 4 and 8 GPUs (8.5-11.8 us; 8.5-10.1 us at
512 B and 4 KiB), where the bytes add nothing. Measured without CUDA graphs, so it carries a
kernel launch that vLLM's graph-captured decode steps do not: an upper bound (vLLM's own
graph-mode benchmark, PR #24111 on H100, gives 7 us for a whole 0.5 MiB message on 2 GPUs).
Vidur profiled NCCL instead (its Sarathi-Serve harness), ~40 us per small all-reduce on 4 H100s.
Taken for A100 SXM too, for want of a measurement there."""
CUSTOM_ALLREDUCE_MAX_BYTES = 8 * 2**20
"""Largest message vLLM's custom all-reduce takes (`CustomAllreduce(max_size=8192 * 1024)`);
larger ones (prefill chunks of hundreds of tokens) go to NCCL."""
H100_HBM_BYTES_PER_S = 3.35e12  # H100 SXM5 80GB spec, used only to flag implausible rows

# Non-attention ops Vidur times per transformer layer (mlp.csv). `add` is the residual add after
# the MLP, the one add Vidur times and its own predictor counts once per layer. `emb` is counted
# once per step.
LAYER_OPS = (
    "input_layernorm",
    "attn_pre_proj",
    "attn_rope",
    "attn_post_proj",
    "post_attention_layernorm",
    "mlp_up_proj",
    "mlp_act",
    "mlp_down_proj",
    "add",
)
ALL_OPS = ("emb", *LAYER_OPS)
GEMM_OPS = ("attn_pre_proj", "attn_post_proj", "mlp_up_proj", "mlp_down_proj")
SMALL_OPS = ("input_layernorm", "attn_rope", "post_attention_layernorm", "mlp_act", "add")

# Token counts fitted: up to a large vLLM max_num_batched_tokens (or the profile's maximum).
FIT_MAX_TOKENS = 8192
# Held-out rows: every 5th distinct key (num_tokens, kv_cache_size, chunk or batch size).
HOLDOUT_EVERY, HOLDOUT_OFFSET = 5, 2
# lm_head runs on the last token of each sequence only, so it is charged as a constant at this
# many sequences (weight-read bound: within ~5 % from 1 to 128 sequences, +13 % at 256).
LM_HEAD_REF_SEQS = 64
# The per-iteration CPU cost grows with batch size; the model's constant is taken here.
OVERHEAD_REF_BATCH = 32


# ============================================================================ loading


@dataclass(frozen=True)
class ModelShape:
    """A model's shape, from Vidur's model_configs YAML."""

    key: str  # catalog name
    vidur_name: str  # org/name under vidur-profiling/compute/<gpu>/
    num_layers: int
    hidden: int
    q_heads: int
    kv_heads: int
    mlp_hidden: int
    vocab: int

    @property
    def head_dim(self) -> int:
        return self.hidden // self.q_heads

    @property
    def lm_head_over_mlp_up(self) -> float:
        """lm_head GEMM size over the fused gate/up GEMM's (same input, same TP split)."""
        return self.vocab / (2 * self.mlp_hidden)


def load_shape(data: Path, key: str, vidur_name: str) -> ModelShape:
    path = data / "vidur-profiling/model_configs" / f"{vidur_name}.yml"
    # The configs are flat `key: value` YAML; no YAML library needed.
    cfg = dict(
        (k.strip(), v.strip())
        for k, v in (ln.split(":", 1) for ln in path.read_text().splitlines() if ":" in ln)
    )
    return ModelShape(
        key=key,
        vidur_name=vidur_name,
        num_layers=int(cfg["num_layers"]),
        hidden=int(cfg["embedding_dim"]),
        q_heads=int(cfg["num_q_heads"]),
        kv_heads=int(cfg["num_kv_heads"]),
        mlp_hidden=int(cfg["mlp_hidden_dim"]),
        vocab=int(cfg["vocab_size"]),
    )


@dataclass(frozen=True)
class OpTable:
    """Median op times (ms) of one layer per distinct num_tokens (duplicate rows averaged)."""

    tokens: FloatArray
    ops_ms: dict[str, FloatArray]

    def up_to(self, max_tokens: float) -> OpTable:
        keep = self.tokens <= max_tokens
        return OpTable(self.tokens[keep], {k: v[keep] for k, v in self.ops_ms.items()})

    def at(self, op: str, tokens: float) -> float:
        return float(np.interp(tokens, self.tokens, self.ops_ms[op]))

    def layer_ms(self, ops: Sequence[str] = LAYER_OPS) -> FloatArray:
        return np.asarray(sum(self.ops_ms[op] for op in ops), dtype=np.float64)


def load_ops(data: Path, gpu: str, vidur_name: str, tp: int) -> OpTable:
    path = data / "vidur-profiling/compute" / gpu / vidur_name / "mlp.csv"
    df = pl.read_csv(path).filter(pl.col("num_tensor_parallel_workers") == tp)
    if df.height == 0:
        raise SystemExit(f"{path}: no rows for TP {tp}")
    agg = (
        df.group_by("num_tokens")
        .agg(pl.col(f"time_stats.{op}.median").mean().alias(op) for op in ALL_OPS)
        .sort("num_tokens")
    )
    return OpTable(
        agg["num_tokens"].to_numpy().astype(np.float64),
        {op: agg[op].to_numpy().astype(np.float64) for op in ALL_OPS},
    )


def allreduce_medians_ms(data: Path, topo: str, workers: int) -> tuple[FloatArray, FloatArray]:
    """(message bytes, median time in ms) of Vidur's single-node NCCL all-reduce profile of
    `workers` GPUs on `topo`, by size."""
    df = (
        pl.read_csv(data / "vidur-profiling/network" / topo / "all_reduce.csv")
        .filter((pl.col("num_workers") == workers) & (pl.col("devices_per_node") == workers))
        .group_by("size")
        .agg(pl.col("time_stats.all_reduce.median").median())
        .sort("size")
    )
    size = df["size"].to_numpy().astype(np.float64)
    return size, df["time_stats.all_reduce.median"].to_numpy().astype(np.float64)


def load_allreduce_ms(
    data: Path, topo: str, gpu: GpuSpec, workers: int
) -> Callable[[FloatArray], FloatArray]:
    """All-reduce time (ms) of a message of `nbytes` over `workers` GPUs of type `gpu`, as vLLM
    runs it: where it uses its custom kernel (`uses_custom_allreduce`) and the message fits it,
    that kernel's latency plus the bytes at NCCL's measured algorithm bandwidth; otherwise the
    median single-node NCCL time Vidur measured."""
    size, t = allreduce_medians_ms(data, topo, workers)
    # Small messages are latency-bound and noisy (0.02-0.06 ms row to row); a running median of
    # 5 neighbours keeps single outliers out of the fit.
    smooth = np.array([np.median(t[max(0, i - 2) : i + 3]) for i in range(t.size)])

    def nccl_ms(nbytes: FloatArray) -> FloatArray:
        return np.asarray(np.interp(nbytes, size, smooth), dtype=np.float64)

    if not uses_custom_allreduce(gpu, workers):
        return nccl_ms
    fit = affine_allreduce(size, t, topo, gpu, workers)
    algbw = fit.bus_bytes_per_s * workers / (2 * (workers - 1))

    def vllm_ms(nbytes: FloatArray) -> FloatArray:
        custom_ms = (CUSTOM_ALLREDUCE_LATENCY_S + nbytes / algbw) / MS
        return np.where(nbytes <= CUSTOM_ALLREDUCE_MAX_BYTES, custom_ms, nccl_ms(nbytes))

    return vllm_ms


@dataclass(frozen=True)
class AttnRows:
    """One layer's attention rows of a Vidur-format attention.csv, times in seconds."""

    decode_ctx: FloatArray  # context summed over the batch: batch_size * kv_cache_size
    decode_kv: FloatArray  # kv_cache_size per sequence (the hold-out key)
    decode_s: FloatArray
    prefill_chunk: FloatArray
    prefill_cached: FloatArray  # kv_cache_size: tokens already cached before the chunk
    prefill_s: FloatArray
    q_heads_per_gpu: int
    kv_heads_per_gpu: int
    head_dim: int


def load_attention(path: Path, with_reshapes: bool) -> AttnRows:
    """Decode and prefill rows; `with_reshapes` adds the input/output reshape ops (legacy file)."""
    df = pl.read_csv(path, infer_schema_length=None)
    shape = df.select("n_embd", "n_q_head", "n_kv_head", "num_tensor_parallel_workers").unique()
    if shape.height != 1:
        raise SystemExit(f"{path}: expected one model shape, got {shape.height}")
    n_embd, q, kv, tp = shape.row(0)

    def ms(col: str) -> pl.Expr:
        return pl.col(f"time_stats.{col}.median").cast(pl.Float64).fill_null(0.0)

    extra = ms("attn_input_reshape") + ms("attn_output_reshape") if with_reshapes else pl.lit(0.0)
    dec = df.filter(~pl.col("is_prefill")).with_columns(t=ms("attn_decode") + extra)
    pre = df.filter(pl.col("is_prefill")).with_columns(t=ms("attn_prefill") + extra)
    return AttnRows(
        decode_ctx=(dec["batch_size"] * dec["kv_cache_size"]).to_numpy().astype(np.float64),
        decode_kv=dec["kv_cache_size"].to_numpy().astype(np.float64),
        decode_s=dec["t"].to_numpy() * MS,
        prefill_chunk=pre["prefill_chunk_size"].to_numpy().astype(np.float64),
        prefill_cached=pre["kv_cache_size"].to_numpy().astype(np.float64),
        prefill_s=pre["t"].to_numpy() * MS,
        q_heads_per_gpu=q // tp,
        kv_heads_per_gpu=kv // tp,
        head_dim=n_embd // q,
    )


# ============================================================================ fits


Errors = tuple[float, float, float]  # held-out MAPE, WAPE, max APE (fractions)


def _errors(pred: FloatArray, obs: FloatArray) -> Errors:
    return mape(pred, obs), wape(pred, obs), max_ape(pred, obs)


@dataclass(frozen=True)
class AttnFit:
    """Per-layer attention coefficients at the source profile's shape (seconds)."""

    floor_s: float  # decode intercept: the attention kernel's cost at ~zero context
    decode_s_per_token: float
    prefill_s_per_pair: float
    decode_heldout: Errors
    prefill_heldout: Errors


def fit_attention(rows: AttnRows) -> AttnFit:
    """Decode: `floor + b * sum(ctx)`; prefill: `floor + b * pairs`, with the decode floor fixed.

    The floor is charged once per layer per step inside flat_s, so the prefill slope is fitted
    with that same floor, as the step-time model will use it.
    """
    dmask = holdout_mask(rows.decode_kv, HOLDOUT_EVERY, HOLDOUT_OFFSET)
    dec = fit_affine(rows.decode_ctx[~dmask], rows.decode_s[~dmask])
    pairs = causal_pairs(rows.prefill_chunk, rows.prefill_cached)
    pmask = holdout_mask(rows.prefill_chunk, HOLDOUT_EVERY, HOLDOUT_OFFSET)
    pre = fit_through_origin(pairs[~pmask], rows.prefill_s[~pmask], offset=dec.intercept)
    return AttnFit(
        floor_s=dec.intercept,
        decode_s_per_token=dec.slope,
        prefill_s_per_pair=pre,
        decode_heldout=_errors(
            dec.intercept + dec.slope * rows.decode_ctx[dmask], rows.decode_s[dmask]
        ),
        prefill_heldout=_errors(dec.intercept + pre * pairs[pmask], rows.prefill_s[pmask]),
    )


@dataclass(frozen=True)
class OverheadFit:
    intercept_s: float
    per_seq_s: float
    lm_head_removed_s: float  # at the reference batch
    heldout: Errors
    source_model: str
    source_tp: int

    @property
    def at_ref_s(self) -> float:
        return self.intercept_s + self.per_seq_s * OVERHEAD_REF_BATCH


def fit_overhead(data: Path) -> OverheadFit:
    """Per-iteration CPU cost vs batch size, from Vidur's A100 cpu_overheads.csv.

    schedule + sampler_e2e + prepare_inputs_e2e + process_model_outputs (medians). The sampler of
    Sarathi-Serve, the engine Vidur profiled, also runs the lm_head GEMM; that GEMM is charged in
    flat_s instead, so its estimate (the same model's mlp_up_proj profile scaled by
    vocab / (2 * mlp_hidden)) is subtracted. ray_comm_time (Ray-era worker RPC) is left out.
    """
    df = pl.read_csv(data / "vidur-profiling/legacy_e2d00e9/a100/cpu_overheads.csv")
    (model,) = df["model_name"].unique().to_list()
    (tp,) = df["tensor_parallel_degree"].unique().to_list()
    shape = load_shape(data, model, model)
    ops = load_ops(data, "a100", model, tp)
    batch = df["batch_size"].to_numpy().astype(np.float64)
    cols = ("schedule", "sampler_e2e", "prepare_inputs_e2e", "process_model_outputs")
    total_ms = np.asarray(sum(df[f"{c}_median"].to_numpy() for c in cols), dtype=np.float64)
    lm_ms = np.array([ops.at("mlp_up_proj", b) for b in batch]) * shape.lm_head_over_mlp_up
    y = (total_ms - lm_ms) * MS
    mask = holdout_mask(batch, HOLDOUT_EVERY, HOLDOUT_OFFSET)
    aff = fit_affine(batch[~mask], y[~mask])
    return OverheadFit(
        intercept_s=aff.intercept,
        per_seq_s=aff.slope,
        lm_head_removed_s=float(np.interp(OVERHEAD_REF_BATCH, batch, lm_ms)) * MS,
        heldout=_errors(aff.intercept + aff.slope * batch[mask], y[mask]),
        source_model=model,
        source_tp=tp,
    )


@dataclass(frozen=True)
class LinearFit:
    flat_s: float
    knee_tokens: float
    per_token_s: float
    heldout_mape: float
    heldout_max_ape: float
    heldout_sd_log: float  # SD of log(profile / fit) on the held-out token counts
    n_train: int
    n_heldout: int
    band_errors: str  # MAPE and max APE by token band, all rows


def linear_target_s(
    shape: ModelShape,
    ops: OpTable,
    tp: int,
    attn_floor_s: float,
    allreduce_ms: Callable[[FloatArray], FloatArray] | None,
) -> FloatArray:
    """Whole-model non-attention time of a step (s) at each profiled token count.

    layers x (LAYER_OPS + attention floor) + emb + final norm (one more input_layernorm)
    + lm_head (constant, at LM_HEAD_REF_SEQS) + layers x 2 all-reduces of T x hidden fp16 (TP>1).
    """
    lm_head_ms = ops.at("mlp_up_proj", LM_HEAD_REF_SEQS) * shape.lm_head_over_mlp_up
    once_ms = ops.ops_ms["emb"] + ops.ops_ms["input_layernorm"] + lm_head_ms
    total = shape.num_layers * (ops.layer_ms() * MS + attn_floor_s) + once_ms * MS
    if tp > 1:
        if allreduce_ms is None:
            raise ValueError("TP > 1 needs an all-reduce profile")
        comm_ms = allreduce_ms(ops.tokens * shape.hidden * FP16_BYTES)
        total = total + 2 * shape.num_layers * comm_ms * MS
    return np.asarray(total, dtype=np.float64)


def fit_linear(tokens: FloatArray, target_s: FloatArray) -> LinearFit:
    mask = holdout_mask(tokens, HOLDOUT_EVERY, HOLDOUT_OFFSET)
    fit = fit_piecewise_linear(tokens[~mask], target_s[~mask])
    ape = np.abs(piecewise_linear(tokens, *fit) / target_s - 1)
    bands = []
    for lo, hi in ((0, 64), (64, 512), (512, 2048), (2048, int(tokens.max()))):
        m = (tokens > lo) & (tokens <= hi)
        bands.append(f"({lo},{hi}] {np.mean(ape[m]):.1%} (max {np.max(ape[m]):.0%})")
    return LinearFit(
        flat_s=fit.flat_s,
        knee_tokens=fit.knee_tokens,
        per_token_s=fit.per_token_s,
        heldout_mape=float(np.mean(ape[mask])),
        heldout_max_ape=float(np.max(ape[mask])),
        heldout_sd_log=float(
            np.std(np.log(target_s[mask] / piecewise_linear(tokens[mask], *fit)), ddof=1)
        ),
        n_train=int((~mask).sum()),
        n_heldout=int(mask.sum()),
        band_errors="; ".join(bands),
    )


# ============================================================================ transfers


def transfer_ops(src_a100: OpTable, ref_a100: OpTable, ref_h100: OpTable) -> OpTable:
    """H100 op times = A100 op times x (H100 / A100) of the same op in a reference model, at the
    same token count. Only token counts present in all three tables are kept."""
    common = np.intersect1d(np.intersect1d(src_a100.tokens, ref_a100.tokens), ref_h100.tokens)

    def pick(tab: OpTable, op: str) -> FloatArray:
        return tab.ops_ms[op][np.searchsorted(tab.tokens, common)]

    return OpTable(
        common,
        {op: pick(src_a100, op) * pick(ref_h100, op) / pick(ref_a100, op) for op in ALL_OPS},
    )


@dataclass(frozen=True)
class Speedups:
    """H100-over-A100 speed-ups measured on Vidur's Llama-2-7B TP1 profiles (one harness)."""

    memory_bound: float  # GEMM sum, median over T <= 64 (weight-read bound)
    compute_bound: float  # GEMM sum, median over T >= 1024 (FLOP bound)
    small_kernel: float  # norms/rope/act/add, median over T <= 16 (launch bound)


def measure_speedups(ref_a100: OpTable, ref_h100: OpTable) -> Speedups:
    if not np.array_equal(ref_a100.tokens, ref_h100.tokens):
        raise SystemExit("Llama-2-7B A100 and H100 profiles differ in token counts")
    t = ref_a100.tokens
    g = ref_a100.layer_ms(GEMM_OPS) / ref_h100.layer_ms(GEMM_OPS)
    s = ref_a100.layer_ms(SMALL_OPS) / ref_h100.layer_ms(SMALL_OPS)
    return Speedups(
        memory_bound=float(np.median(g[t <= 64])),
        compute_bound=float(np.median(g[t >= 1024])),
        small_kernel=float(np.median(s[t <= 16])),
    )


def attention_on_h100(a100: AttnFit, sp: Speedups) -> AttnFit:
    """No usable H100 attention profile exists here (Vidur's is missing; LLMServingSim's decode
    rows exceed HBM bandwidth), so the A100 fit is divided by the measured speed-ups: decode is
    KV-read bound, prefill FLOP bound, the floor launch bound."""
    return AttnFit(
        floor_s=a100.floor_s / sp.small_kernel,
        decode_s_per_token=a100.decode_s_per_token / sp.memory_bound,
        prefill_s_per_pair=a100.prefill_s_per_pair / sp.compute_bound,
        decode_heldout=a100.decode_heldout,
        prefill_heldout=a100.prefill_heldout,
    )


def scale_attention(
    fit: AttnFit, src: AttnRows, shape: ModelShape, tp: int
) -> tuple[float, float, float, float]:
    """Per-layer coefficients at the source shape -> whole model at `shape` and `tp`.

    decode (KV-read bound): x KV bytes per token per GPU, kv_heads / tp * head_dim.
    prefill (FLOP bound): x query heads per GPU * head_dim.
    Returns (decode_s_per_token, prefill_s_per_pair, decode_scale, prefill_scale).
    """
    dec_scale = (shape.kv_heads // tp * shape.head_dim) / (src.kv_heads_per_gpu * src.head_dim)
    pre_scale = (shape.q_heads // tp * shape.head_dim) / (src.q_heads_per_gpu * src.head_dim)
    return (
        fit.decode_s_per_token * dec_scale * shape.num_layers,
        fit.prefill_s_per_pair * pre_scale * shape.num_layers,
        dec_scale,
        pre_scale,
    )


# ============================================================================ cross-checks


def check_transfer_leave_one_out(
    data: Path, ref_a100: OpTable, ref_h100: OpTable
) -> tuple[list[tuple[str, float]], float]:
    """The per-op transfer applied to every other Vidur model with both A100 and H100 profiles:
    predicted vs measured H100 per-layer time over all common token counts.
    Returns (description, MAPE) per model and TP, and the SD of log(predicted / measured) pooled
    over all of them (the transfer's own spread)."""
    out = []
    logs: list[FloatArray] = []
    for name in (
        "meta-llama/Llama-2-70b-hf",
        "codellama/CodeLlama-34b-Instruct-hf",
        "internlm/internlm-20b",
        "Qwen/Qwen-72B",
    ):
        for tp in (1, 2, 4, 8):
            h = load_ops(data, "h100", name, tp)
            d = transfer_ops(load_ops(data, "a100", name, tp), ref_a100, ref_h100)
            common = np.intersect1d(h.tokens, d.tokens)
            e = (
                d.layer_ms()[np.searchsorted(d.tokens, common)]
                / h.layer_ms()[np.searchsorted(h.tokens, common)]
                - 1
            )
            err = float(np.mean(np.abs(e)))
            logs.append(np.log1p(e))
            out.append(
                (
                    f"{name} TP{tp}: MAPE {err:.1%}, median bias {np.median(e):+.1%},"
                    f" max APE {np.max(np.abs(e)):.0%}",
                    err,
                )
            )
    return out, float(np.std(np.concatenate(logs), ddof=1))


def check_llmservingsim_8b(data: Path, derived: OpTable) -> list[str]:
    """Derived H100 Llama-3-8B vs LLMServingSim's own H100 Llama-3.1-8B TP1 layer profile."""
    path = data / "llmservingsim/perf_models/H100/meta-llama/Llama-3.1-8B/tp1/layers.csv"
    lss = (
        pl.read_csv(path)
        .filter(pl.col("kv_cache") == 0)
        .pivot(on="layer_name", index="input", values="latency(ns)")
        .sort("input")
    )
    t = lss["input"].to_numpy().astype(np.float64)
    gemms = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
    lss_gemm_ms = np.asarray(sum(lss[c].to_numpy() for c in gemms), dtype=np.float64) * NS / MS
    common = np.intersect1d(t, derived.tokens)
    e = (
        derived.layer_ms(GEMM_OPS)[np.searchsorted(derived.tokens, common)]
        / lss_gemm_ms[np.searchsorted(t, common)]
        - 1
    )
    p10, p90 = np.percentile(e, [10, 90])
    lm_lss_ms = float(np.interp(LM_HEAD_REF_SEQS, t, lss["lm_head"].to_numpy() * NS / MS))
    return [
        f"LLMServingSim H100 Llama-3.1-8B check: GEMMs per layer, ours / theirs - 1 over"
        f" 1..{common.max():.0f} tokens: median {np.median(e):+.1%}, p10 {p10:+.1%},"
        f" p90 {p90:+.1%}; their lm_head at {LM_HEAD_REF_SEQS} seqs {lm_lss_ms:.3f} ms",
    ]


def check_llmservingsim_attention(data: Path, h100: AttnFit, a100_rows: AttnRows) -> list[str]:
    path = data / "llmservingsim/perf_models/H100/meta-llama/Llama-3.1-70B/tp4/attention.csv"
    lss = load_attention(path, with_reshapes=False)
    kv_bytes = lss.decode_ctx * lss.kv_heads_per_gpu * lss.head_dim * 2 * FP16_BYTES
    too_fast = float(np.mean(kv_bytes / lss.decode_s > H100_HBM_BYTES_PER_S))
    big = lss.prefill_chunk >= 512
    pairs = causal_pairs(lss.prefill_chunk[big], lss.prefill_cached[big])
    theirs = lss.prefill_s[big] * a100_rows.q_heads_per_gpu / lss.q_heads_per_gpu
    e = (h100.floor_s + h100.prefill_s_per_pair * pairs) / theirs - 1
    return [
        f"LLMServingSim H100 attention: {too_fast:.0%} of decode rows imply KV reads above"
        " 3.35 TB/s (decode rows unused); prefill rows with chunk >= 512"
        f" (n={int(big.sum())}, head-scaled): ours / theirs - 1 median {np.median(e):+.0%},"
        f" range {e.min():+.0%}..{e.max():+.0%}",
    ]


# ============================================================================ entries


@dataclass(frozen=True)
class Target:
    shape: ModelShape
    gpu: str  # catalog name, e.g. "a100-80gb"
    tp: int
    derived_from_a100: bool  # no Vidur H100 profile: transfer the A100 one


@dataclass(frozen=True)
class Shared:
    """Fits and checks shared by all entries."""

    ref_a100: OpTable
    ref_h100: OpTable
    speedups: Speedups
    attn_rows: AttnRows
    attn: dict[str, AttnFit]  # by Vidur GPU folder name
    overhead: OverheadFit
    h100_checks: list[str]
    transfer_checks: list[tuple[str, float]]  # (description, MAPE)
    transfer_sd_log: float  # pooled SD of log(transferred / measured) over transfer_checks


@dataclass(frozen=True)
class Entry:
    """One catalog entry: the StepTimeEntry fields plus the provenance comments."""

    model: str
    gpu: str
    tp: int
    dtype: str
    overhead_s: float
    flat_s: float
    knee_tokens: float
    per_token_s: float
    decode_attn_s_per_token: float
    prefill_attn_s_per_pair: float
    heldout_mape: float
    residual_sd_log: float
    source: str
    notes: tuple[str, ...]
    heldout_max_ape: float


def fit_shared(data: Path, ref: ModelShape) -> Shared:
    ref_a100 = load_ops(data, "a100", ref.vidur_name, 1)
    ref_h100 = load_ops(data, "h100", ref.vidur_name, 1)
    speedups = measure_speedups(ref_a100, ref_h100)
    rows = load_attention(
        data / "vidur-profiling/legacy_e2d00e9/a100/attention.csv", with_reshapes=True
    )
    a100 = fit_attention(rows)
    h100 = attention_on_h100(a100, speedups)
    transfer_checks, transfer_sd_log = check_transfer_leave_one_out(data, ref_a100, ref_h100)
    return Shared(
        ref_a100=ref_a100,
        ref_h100=ref_h100,
        speedups=speedups,
        attn_rows=rows,
        attn={"a100": a100, "h100": h100},
        overhead=fit_overhead(data),
        h100_checks=check_llmservingsim_attention(data, h100, rows),
        transfer_checks=transfer_checks,
        transfer_sd_log=transfer_sd_log,
    )


def fit_entry(data: Path, tgt: Target, sh: Shared) -> Entry:
    shape, tp = tgt.shape, tgt.tp
    gpu = tgt.gpu.split("-")[0]  # Vidur folder: a100 / h100
    if tgt.derived_from_a100:
        a100_ops = load_ops(data, "a100", shape.vidur_name, tp)
        ops = transfer_ops(a100_ops, sh.ref_a100, sh.ref_h100)
        linear_src = (
            f"compute/a100/{shape.vidur_name}/mlp.csv x per-op H100/A100 ratio at equal tokens"
            f" from compute/{{h100,a100}}/meta-llama/Llama-2-7b-hf/mlp.csv"
        )
    else:
        ops = load_ops(data, gpu, shape.vidur_name, tp)
        linear_src = f"compute/{gpu}/{shape.vidur_name}/mlp.csv"
    ops = ops.up_to(FIT_MAX_TOKENS)
    attn = sh.attn[gpu]
    topo = f"{gpu}_dgx"
    allreduce = load_allreduce_ms(data, topo, gpus()[tgt.gpu], tp) if tp > 1 else None
    lin = fit_linear(ops.tokens, linear_target_s(shape, ops, tp, attn.floor_s, allreduce))
    dec, pre, dec_scale, pre_scale = scale_attention(attn, sh.attn_rows, shape, tp)
    ov = sh.overhead

    comm = (
        f" + 2 all-reduces/layer (vLLM's custom kernel to {CUSTOM_ALLREDUCE_MAX_BYTES >> 20} MiB,"
        f" network/{topo}/all_reduce.csv beyond)"
        if tp > 1
        else ""
    )
    h100_attn = " / measured H100 speed-ups" if gpu == "h100" else ""
    source = (
        f"Vidur profiling @ {VIDUR_COMMIT[:7]} (MIT). Linear: {linear_src}{comm}, TP{tp},"
        f" tokens 1..{ops.tokens.max():.0f}. Attention: legacy_e2d00e9/a100/attention.csv"
        f" (70B TP2 shape){h100_attn}, decode x{dec_scale:g} (KV bytes/token/GPU), prefill"
        f" x{pre_scale:g} (q heads x head_dim/GPU). Overhead: legacy_e2d00e9/a100/"
        f"cpu_overheads.csv at batch {OVERHEAD_REF_BATCH}. See docs/calibration.md."
    )
    lm_head_ms = ops.at("mlp_up_proj", LM_HEAD_REF_SEQS) * shape.lm_head_over_mlp_up
    notes = [
        f"{shape.key} on {tgt.gpu}, TP{tp}, fp16"
        + (" -- DERIVED from A100 (Vidur has no H100 profile)" if tgt.derived_from_a100 else ""),
        f"linear: fitted on {lin.n_train} token counts, {lin.n_heldout} held out (every"
        f" {HOLDOUT_EVERY}th): held-out MAPE {lin.heldout_mape:.2%}, max APE"
        f" {lin.heldout_max_ape:.1%}, SD of log(profile / fit) {lin.heldout_sd_log:.4f}",
        f"linear MAPE by token band, all rows: {lin.band_errors}",
        f"linear = {shape.num_layers} x (9 per-layer ops + attention floor"
        f" {attn.floor_s * 1e6:.2f} us) + emb + final norm + lm_head {lm_head_ms:.3f} ms"
        f" (at {LM_HEAD_REF_SEQS} seqs){comm}",
        f"attention held-out on the A100 source rows: decode MAPE {attn.decode_heldout[0]:.1%}"
        f" (WAPE {attn.decode_heldout[1]:.1%}), prefill MAPE {attn.prefill_heldout[0]:.1%}"
        f" (WAPE {attn.prefill_heldout[1]:.1%})",
        f"overhead = {ov.intercept_s * 1e3:.3f} ms + {ov.per_seq_s * 1e3:.4f} ms per running"
        f" sequence at batch {OVERHEAD_REF_BATCH}; the per-sequence part is not in the model",
    ]
    if gpu == "h100":
        sp = sh.speedups
        notes.append(
            f"H100 attention = A100 fit / speed-ups {sp.memory_bound:.3f}x (decode),"
            f" {sp.compute_bound:.3f}x (prefill), {sp.small_kernel:.3f}x (floor)"
        )
        notes += sh.h100_checks
    residual_sd_log = lin.heldout_sd_log
    if tgt.derived_from_a100:
        residual_sd_log = float(np.hypot(lin.heldout_sd_log, sh.transfer_sd_log))
        mapes = [m for _, m in sh.transfer_checks]
        notes.append(
            f"transfer error, NOT in heldout_mape: leave-one-model-out per-layer MAPE"
            f" {min(mapes):.1%}..{max(mapes):.1%} (median {float(np.median(mapes)):.1%}) over"
            f" {len(mapes)} Vidur model/TP cases; residual_sd_log = hypot(held-out"
            f" {lin.heldout_sd_log:.4f}, transfer {sh.transfer_sd_log:.4f})"
        )
        notes += check_llmservingsim_8b(data, ops)
    return Entry(
        model=shape.key,
        gpu=tgt.gpu,
        tp=tp,
        dtype="fp16",
        overhead_s=ov.at_ref_s,
        flat_s=lin.flat_s,
        knee_tokens=lin.knee_tokens,
        per_token_s=lin.per_token_s,
        decode_attn_s_per_token=dec,
        prefill_attn_s_per_pair=pre,
        heldout_mape=lin.heldout_mape,
        residual_sd_log=residual_sd_log,
        source=source,
        notes=tuple(notes),
        heldout_max_ape=lin.heldout_max_ape,
    )


def check_published_tpot(data: Path, entries: Sequence[Entry]) -> list[str]:
    """Model decode-step time next to published light-load vLLM TPOTs for Llama-3(.1)-8B.

    The model's step is evaluated at batch 1 and 10 with 1024 context tokens per sequence
    (ShareGPT-like requests have a few hundred to ~1k tokens of context while decoding).
    """
    pub = pl.read_csv(data / "vllm-published-benchmarks/published_numbers.csv").filter(
        pl.col("model").str.contains("8B")
        & pl.col("metric").is_in(["median_tpot", "tpot_p50", "mean_tpot"])
        & pl.col("load_point").str.contains(r"concurrency=1$|10 concurrent|QPS=2$")
    )
    lines = []
    for e in entries:
        if e.model != "llama-3-8b":
            continue
        steps = []
        for batch in (1, 10):
            t = e.overhead_s + e.flat_s + e.per_token_s * max(0.0, batch - e.knee_tokens)
            steps.append((t + e.decode_attn_s_per_token * batch * 1024) * 1e3)
        gpu = e.gpu.split("-")[0].upper()
        published = [
            f"{r['value']} ms ({r['source_id']}, {r['engine']}, {r['load_point']}, {r['metric']})"
            for r in pub.filter(pl.col("gpu").str.starts_with(gpu)).iter_rows(named=True)
        ]
        lines.append(
            f"{e.model} {e.gpu}: model decode step {steps[0]:.2f} ms (batch 1), {steps[1]:.2f} ms"
            f" (batch 10), 1024 context; published TPOT: {'; '.join(published)}"
        )
    return lines


# ============================================================================ roofline

# Steps the roofline is judged on: decode batches of B sequences with 1024 tokens of context
# each, and single fresh prefill chunks of C tokens (the regimes a serving step spends time in).
GRID_DECODE_BATCHES = (1, 8, 32, 64, 128, 256)
GRID_DECODE_CONTEXT = 1024
GRID_PREFILL_CHUNKS = (128, 512, 2048, 8192)


def grid_step_s(c: StepTimeModel) -> FloatArray:
    """Step times (s) of `c` on the judging grid (decode steps, then prefill steps)."""
    decode = [c.step_s(b, b * GRID_DECODE_CONTEXT, 0) for b in GRID_DECODE_BATCHES]
    prefill = [c.step_s(ch, 0, ch * (ch + 1) // 2) for ch in GRID_PREFILL_CHUNKS]
    return np.array(decode + prefill)


@dataclass(frozen=True)
class AllReduceFit:
    topo: str
    workers: int
    latency_s: float
    bus_bytes_per_s: float  # NCCL bus bandwidth: algbw x 2(n-1)/n
    link_efficiency: float  # bus bandwidth / datasheet interconnect bandwidth


def fit_allreduce(data: Path, topo: str, gpu: GpuSpec, workers: int) -> AllReduceFit:
    """`time = latency + bytes / algbw` on Vidur's single-node all-reduce medians, 2 KB-64 MB."""
    return affine_allreduce(*allreduce_medians_ms(data, topo, workers), topo, gpu, workers)


def affine_allreduce(
    size: FloatArray, t_ms: FloatArray, topo: str, gpu: GpuSpec, workers: int
) -> AllReduceFit:
    """`time = latency + bytes / algbw` fitted on all-reduce medians (`allreduce_medians_ms`)."""
    t = t_ms * MS
    aff = fit_affine(size, t)
    bus = (1.0 / aff.slope) * 2 * (workers - 1) / workers
    return AllReduceFit(topo, workers, aff.intercept, bus, bus / (gpu.interconnect_gb_per_s * 1e9))


@dataclass(frozen=True)
class RooflineResult:
    factors: RooflineFactors
    allreduce: list[AllReduceFit]
    per_entry: list[str]  # report lines
    per_entry_mape: dict[tuple[str, str, int], float]  # leave-one-out step-time MAPE
    coef_ratios: list[str]


def _comm_terms(
    shape: HfShape, gpu: GpuSpec, tp: int, ar: AllReduceFit | None
) -> tuple[float, float]:
    """(fixed s, s per token) of 2 all-reduces per layer: the latency of the kernel vLLM runs
    (its custom one, or NCCL's as measured), the bytes at NCCL's measured bandwidth."""
    if tp == 1 or ar is None:
        return 0.0, 0.0
    algbw = ar.bus_bytes_per_s * tp / (2 * (tp - 1))
    latency_s = CUSTOM_ALLREDUCE_LATENCY_S if uses_custom_allreduce(gpu, tp) else ar.latency_s
    return 2 * shape.layers * latency_s, 2 * shape.layers * shape.hidden * 2.0 / algbw


def _measure_factors(
    rows: Sequence[tuple[Entry, HfShape, GpuSpec, AllReduceFit | None]],
    link_eff: float,
    latency_s: float,
    overhead_s: float,
) -> tuple[float, float, float, float, float, float]:
    """(mem_eff, layer_floor_s, flop_eff, attn_mem_eff, attn_flop_eff, knee_fraction) from the
    fitted entries.

    flat - measured comm = weight_read_bytes / (bw x mem_eff) + layers x floor: two-coefficient
    NNLS on relative error; the other efficiencies are medians of ideal / fitted.
    """
    design, target, flop_e, dec_e, pre_e, ridge = [], [], [], [], [], []
    for e, shape, gpu, ar in rows:
        bw = gpu.memory_bandwidth_gb_per_s * 1e9
        fixed, per_tok = _comm_terms(shape, gpu, e.tp, ar)
        flat_mem = e.flat_s - fixed
        read = weight_read_bytes(shape, "fp16")
        design.append([read / e.tp / bw / flat_mem, shape.layers / flat_mem])
        target.append(1.0)
        ideal_pt = 2 * shape.active_params() / e.tp / (gpu.fp16_dense_tflops * 1e12)
        flop_e.append(ideal_pt / (e.per_token_s - per_tok))
        ridge.append((shape, gpu, e, fixed))
        dec_e.append(shape.kv_bytes_per_token("fp16", e.tp) / bw / e.decode_attn_s_per_token)
        q = shape.heads * shape.head_dim / e.tp
        ideal_pre = 4 * shape.layers * q / (gpu.fp16_dense_tflops * 1e12)
        pre_e.append(ideal_pre / e.prefill_attn_s_per_pair)
    from scipy.optimize import nnls

    (inv_eff, floor), _ = nnls(np.array(design), np.array(target))
    # The ideal ridge with the measured efficiencies: weight-read time / per-token time.
    knee_frac = [
        e.knee_tokens / ((e.flat_s - fixed - shape.layers * floor) / e.per_token_s)
        for shape, _, e, fixed in ridge
    ]
    return (
        1.0 / inv_eff,
        float(floor),
        float(np.median(flop_e)),
        float(np.median(dec_e)),
        float(np.median(pre_e)),
        float(np.median(knee_frac)),
    )


def calibrate_roofline(data: Path, entries: Sequence[Entry], overhead_s: float) -> RooflineResult:
    """Measure the roofline's constants against the fitted entries, and its leave-one-out error."""
    hw_gpus, hw_models = gpus(), models()
    # Not measured here: carried over from the shipped table (Vidur's overhead). The CPU time
    # of a versioned run comes from sim.engine.versions (scripts/fit_v1_cpu.py).
    try:
        serving_overhead_s = load_roofline_factors().serving_overhead_s
    except ConfigError:
        serving_overhead_s = overhead_s
    ars = {}
    for g, topo in (("a100-80gb", "a100_dgx"), ("h100-80gb", "h100_dgx")):
        for n in (2, 4, 8):
            ars[(g, n)] = fit_allreduce(data, topo, hw_gpus[g], n)
    link_eff = float(np.median([a.link_efficiency for a in ars.values()]))
    latency = float(np.median([a.latency_s for a in ars.values()]))
    rows = [
        (e, hw_models[e.model], hw_gpus[e.gpu], ars.get((e.gpu, e.tp)) if e.tp > 1 else None)
        for e in entries
    ]

    def factors(
        sub: Sequence[tuple[Entry, HfShape, GpuSpec, AllReduceFit | None]],
        sd: float = 0.0,
        loo: float = 0.0,
    ) -> RooflineFactors:
        mem, floor, flop, dec, pre, knee = _measure_factors(sub, link_eff, latency, overhead_s)
        return RooflineFactors(
            mem_efficiency=mem,
            flop_efficiency=flop,
            # fitted on vLLM runs (scripts/fit_weight_only.py), not on Vidur's fp16 profiles
            weight_only_flop_efficiency=load_roofline_factors().weight_only_flop_efficiency,
            attn_mem_efficiency=dec,
            attn_flop_efficiency=pre,
            # fitted on published fused-MoE kernel timings (scripts/fit_moe_kernels.py)
            moe_mem_efficiency=load_roofline_factors().moe_mem_efficiency,
            moe_layer_floor_s=load_roofline_factors().moe_layer_floor_s,
            knee_fraction=knee,
            layer_floor_s=floor,
            nccl_latency_s=latency,
            custom_allreduce_latency_s=CUSTOM_ALLREDUCE_LATENCY_S,
            link_efficiency=link_eff,
            overhead_s=overhead_s,
            serving_overhead_s=serving_overhead_s,
            residual_sd_log=sd,
            leave_one_out_mape=loo,
            source="",
        )

    def coefs_of(e: Entry) -> StepTimeModel:
        return StepTimeModel(*(getattr(e, name) for name in COEFFICIENTS))

    def roof(f: RooflineFactors, shape: HfShape, gpu: GpuSpec, tp: int) -> StepTimeModel:
        step, _ = roofline_step_time(
            shape, gpu, tp=tp, weight_dtype="fp16", kv_dtype="fp16", factors=f
        )
        # Judged against Vidur-era entries: with their (Vidur-measured) CPU overhead.
        return dataclasses.replace(step, overhead_s=f.overhead_s)

    logs, lines, mapes = [], [], {}
    for i, (e, shape, gpu, _) in enumerate(rows):
        f = factors([r for j, r in enumerate(rows) if j != i])
        fit, pred = grid_step_s(coefs_of(e)), grid_step_s(roof(f, shape, gpu, e.tp))
        lr = np.log(fit / pred)
        logs.append(lr)
        mapes[(e.model, e.gpu, e.tp)] = float(np.mean(np.abs(pred / fit - 1)))
        lines.append(
            f"{e.model} {e.gpu} TP{e.tp}: leave-one-out step-time MAPE"
            f" {mapes[(e.model, e.gpu, e.tp)]:.1%} (decode B=1 {pred[0] / fit[0] - 1:+.0%},"
            f" B=256 {pred[5] / fit[5] - 1:+.0%}; prefill 2048 {pred[8] / fit[8] - 1:+.0%})"
        )
    # The roofline is judged against the fits, which carry their own error against the
    # profiles: the spread it gets combines both (in quadrature, with the entries' median).
    sd_vs_fit = float(np.std(np.concatenate(logs), ddof=1))
    sd = float(np.hypot(sd_vs_fit, np.median([e.residual_sd_log for e in entries])))
    lines.append(
        f"pooled SD of log(fit / roofline) {sd_vs_fit:.4f}; residual_sd_log = hypot(that,"
        f" median entry residual_sd_log) = {sd:.4f}"
    )
    loo = float(np.mean(list(mapes.values())))
    full = factors(rows, sd, loo)
    ratios = []
    for e, shape, gpu, _ in rows:
        r = roof(full, shape, gpu, e.tp)
        ratios.append(
            f"{e.model} {e.gpu} TP{e.tp}: roofline / fit  flat {r.flat_s / e.flat_s:.2f}"
            f"  per_token {r.per_token_s / e.per_token_s:.2f}  knee {r.knee_tokens:.0f} vs"
            f" {e.knee_tokens:.0f}  decode_attn"
            f" {r.decode_attn_s_per_token / e.decode_attn_s_per_token:.2f}"
            f"  prefill_attn {r.prefill_attn_s_per_pair / e.prefill_attn_s_per_pair:.2f}"
        )
    source = (
        f"Measured by scripts/fit_vidur_step_time.py against the {len(rows)} fitted entries"
        f" (A100/H100 datasheet peaks in sim/data/gpus.toml, shapes in sim/data/models.toml) and"
        f" Vidur network/{{a100,h100}}_dgx/all_reduce.csv (TP 2/4/8: NCCL); vLLM's custom"
        f" all-reduce latency from sglang PR #2904's H100 table; error = leave-one-entry-out"
        f" over {len(GRID_DECODE_BATCHES)} decode and {len(GRID_PREFILL_CHUNKS)} prefill steps"
        f" per entry. See docs/catalog.md."
    )
    return RooflineResult(
        dataclasses.replace(full, source=source), list(ars.values()), lines, mapes, ratios
    )


def render_roofline(r: RooflineResult) -> list[str]:
    f = r.factors
    lines = [
        "",
        "# Roofline fallback for pairs with no entry (sim.hardware.roofline): constants MEASURED",
        "# against the entries above; leave-one-entry-out step-time error per entry:",
        *(f"#   {ln}" for ln in r.per_entry),
        "# all-reduce fits (latency + bytes / algbw) on Vidur's profiles:",
        *(
            f"#   {a.topo} x{a.workers}: latency {a.latency_s * 1e6:.1f} us, bus bandwidth"
            f" {a.bus_bytes_per_s / 1e9:.0f} GB/s = {a.link_efficiency:.2f} x datasheet"
            for a in r.allreduce
        ),
        "[roofline]",
    ]
    for fld in dataclasses.fields(f):
        v = getattr(f, fld.name)
        lines.append(f"{fld.name} = {_toml_str(v) if isinstance(v, str) else _toml_float(v)}")
    return lines


# ============================================================================ output

TOML_FLOATS = (
    "overhead_s",
    "flat_s",
    "knee_tokens",
    "per_token_s",
    "decode_attn_s_per_token",
    "prefill_attn_s_per_pair",
    "heldout_mape",
    "residual_sd_log",
)


def _toml_float(x: float) -> str:
    s = f"{x:.6g}"
    return s if any(c in s for c in ".e") else s + ".0"


def _toml_str(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_toml(entries: Sequence[Entry], roof: RooflineResult) -> str:
    lines = [
        "# Step-time coefficients of one vLLM replica step, per (model, gpu, tp, dtype).",
        "# GENERATED by scripts/fit_vidur_step_time.py: do not edit by hand, rerun the script.",
        "# All times in SECONDS, whole model (all layers); method in docs/calibration.md:",
        "#   step_time_s = overhead_s + flat_s + per_token_s * max(0, T - knee_tokens)",
        "#               + decode_attn_s_per_token * sum(decode context tokens)",
        "#               + prefill_attn_s_per_pair * sum(c * p + c * (c + 1) / 2)",
        "# heldout_mape: fraction (0.03 = 3 %), held-out MAPE of the flat/knee/per_token fit",
        "# against its profile; it does NOT include transfer error for derived entries.",
        "# Data (copies in shared/data, see each SOURCE.md):",
        f"#   Vidur (MIT) github.com/microsoft/vidur: compute/, network/ @ {VIDUR_COMMIT};",
        f"#   model_configs/ @ {VIDUR_CONFIG_COMMIT};",
        f"#   legacy attention.csv, cpu_overheads.csv @ {VIDUR_LEGACY_COMMIT}.",
        f"#   LLMServingSim (MIT) github.com/casys-kaist/LLMServingSim @ {LLMSERVINGSIM_COMMIT}",
        "#   (cross-checks only).",
    ]
    for e in entries:
        lines += ["", *(f"# {n}" for n in e.notes), "[[entry]]"]
        lines += [f"model = {_toml_str(e.model)}", f"gpu = {_toml_str(e.gpu)}"]
        lines += [f"tp = {e.tp}", f"dtype = {_toml_str(e.dtype)}"]
        lines += [f"{k} = {_toml_float(getattr(e, k))}" for k in TOML_FLOATS]
        lines.append(f"source = {_toml_str(e.source)}")
    lines += render_roofline(roof)
    return "\n".join(lines) + "\n"


def print_report(sh: Shared, entries: Sequence[Entry]) -> None:
    sp, a, ov = sh.speedups, sh.attn["a100"], sh.overhead
    print(
        f"H100 speed-ups over A100 (Vidur Llama-2-7B TP1): memory-bound GEMMs"
        f" {sp.memory_bound:.3f}x, compute-bound GEMMs {sp.compute_bound:.3f}x,"
        f" small kernels {sp.small_kernel:.3f}x"
    )
    r = sh.attn_rows
    print(
        f"A100 attention per layer ({r.q_heads_per_gpu} q / {r.kv_heads_per_gpu} kv heads per GPU):"
        f" floor {a.floor_s * 1e6:.2f} us; decode {a.decode_s_per_token:.4g} s/token, held-out"
        f" MAPE {a.decode_heldout[0]:.1%} WAPE {a.decode_heldout[1]:.1%} max"
        f" {a.decode_heldout[2]:.0%}; prefill {a.prefill_s_per_pair:.4g} s/pair, held-out MAPE"
        f" {a.prefill_heldout[0]:.1%} WAPE {a.prefill_heldout[1]:.1%} max"
        f" {a.prefill_heldout[2]:.0%}"
    )
    for line in sh.h100_checks:
        print(line)
    print(
        f"CPU overhead ({ov.source_model} TP{ov.source_tp}): {ov.intercept_s * 1e3:.3f} ms +"
        f" {ov.per_seq_s * 1e3:.4f} ms/seq = {ov.at_ref_s * 1e3:.3f} ms at batch"
        f" {OVERHEAD_REF_BATCH} (lm_head {ov.lm_head_removed_s * 1e3:.3f} ms removed);"
        f" held-out MAPE {ov.heldout[0]:.1%}"
    )
    print("H100 transfer, leave-one-model-out on Vidur models with both GPUs:")
    for line, _ in sh.transfer_checks:
        print("  " + line)
    print()
    print(
        f"{'model':12} {'gpu':10} {'tp':>2} {'ovh ms':>6} {'flat ms':>7} {'knee':>6}"
        f" {'us/tok':>7} {'dec ns/tok':>10} {'pre ns/pair':>11} {'held-out MAPE':>13}"
        f" {'max APE':>7}"
    )
    for e in entries:
        print(
            f"{e.model:12} {e.gpu:10} {e.tp:>2} {e.overhead_s * 1e3:6.3f} {e.flat_s * 1e3:7.3f}"
            f" {e.knee_tokens:6.1f} {e.per_token_s * 1e6:7.3f}"
            f" {e.decode_attn_s_per_token * 1e9:10.3f} {e.prefill_attn_s_per_pair * 1e9:11.4f}"
            f" {e.heldout_mape:13.2%} {e.heldout_max_ape:7.1%}"
        )
        print("    " + e.notes[2])


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description="Fit sim/data/step_time.toml from Vidur profiles.")
    ap.add_argument(
        "--data",
        type=Path,
        default=REPO_ROOT / "../shared/data",
        help="folder holding vidur-profiling/ and llmservingsim/ (default: ../shared/data)",
    )
    ap.add_argument("--out", type=Path, default=REPO_ROOT / "sim/data/step_time.toml")
    args = ap.parse_args(argv)
    data = args.data.resolve()

    l3 = load_shape(data, "llama-3-8b", "meta-llama/Meta-Llama-3-8B")
    l2_7 = load_shape(data, "llama-2-7b", "meta-llama/Llama-2-7b-hf")
    l2_70 = load_shape(data, "llama-2-70b", "meta-llama/Llama-2-70b-hf")
    l3_70 = load_shape(data, "llama-3-70b", "meta-llama/Meta-Llama-3-70B")
    cl34 = load_shape(data, "codellama-34b", "codellama/CodeLlama-34b-Instruct-hf")
    q72 = load_shape(data, "qwen-72b", "Qwen/Qwen-72B")
    targets = [
        Target(l3, "a100-80gb", 1, derived_from_a100=False),
        Target(l3, "h100-80gb", 1, derived_from_a100=True),
        Target(l2_7, "a100-80gb", 1, derived_from_a100=False),
        Target(l2_7, "h100-80gb", 1, derived_from_a100=False),
        Target(l2_70, "a100-80gb", 4, derived_from_a100=False),
        Target(l2_70, "h100-80gb", 4, derived_from_a100=False),
        Target(l3_70, "a100-80gb", 4, derived_from_a100=False),
        Target(cl34, "a100-80gb", 2, derived_from_a100=False),
        Target(cl34, "h100-80gb", 2, derived_from_a100=False),
        Target(q72, "a100-80gb", 4, derived_from_a100=False),
        Target(q72, "h100-80gb", 4, derived_from_a100=False),
    ]
    shared = fit_shared(data, l2_7)
    entries = [fit_entry(data, t, shared) for t in targets]
    print_report(shared, entries)
    roof = calibrate_roofline(data, entries, shared.overhead.at_ref_s)
    f = roof.factors
    print(
        f"\nRoofline constants: mem_eff {f.mem_efficiency:.3f}, layer floor"
        f" {f.layer_floor_s * 1e6:.1f} us, flop_eff {f.flop_efficiency:.3f}, attn mem_eff"
        f" {f.attn_mem_efficiency:.3f}, attn flop_eff {f.attn_flop_efficiency:.3f}, knee fraction"
        f" {f.knee_fraction:.3f}, all-reduce"
        f" latency NCCL {f.nccl_latency_s * 1e6:.1f} us, vLLM's custom kernel"
        f" {f.custom_allreduce_latency_s * 1e6:.1f} us, link_eff {f.link_efficiency:.3f}"
    )
    for line in roof.per_entry + roof.coef_ratios:
        print("  " + line)
    print(
        f"  pooled: leave-one-out MAPE {f.leave_one_out_mape:.1%}, residual_sd_log"
        f" {f.residual_sd_log:.4f}"
    )
    print("\nAgainst published light-load vLLM TPOT (shared/data/vllm-published-benchmarks):")
    for line in check_published_tpot(data, entries):
        print("  " + line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    tmp = args.out.with_suffix(".toml.tmp")
    tmp.write_text(render_toml(entries, roof))
    tmp.replace(args.out)  # atomic: a failed run never leaves a half-written catalog
    print(f"\nwrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

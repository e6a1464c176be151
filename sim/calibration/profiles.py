"""Refit the step-time model from operator profiles (`sim calibrate profiles`).

Each source is turned into *step samples* — (tokens T, Σ decode context, Σ prefill pairs,
seconds) for a whole-model step — and fitted by `sim.calibration.fit.fit_step_time` with every 5th
distinct key held out (`sim.calibration.fit.holdout_mask`). Terms a source cannot identify are taken
from a base catalog entry, and the entry's `source` says which.

* `vidur`: per-layer GPU op times against tokens (`compute/<gpu>/<org>/<model>/mlp.csv`);
  fits flat, knee and per-token; overhead and both attention terms come from the base entry.
* `llmservingsim`: per-layer op times including attention at an empty cache, 1..2048 tokens
  (`layers.csv`); fits flat, knee, per-token and prefill attention; overhead and decode
  attention come from the base entry.
* `splitwise`: whole prefill batches and decode iterations (`perf_model.csv`); fits every term.
* `distserve`: published latency-model coefficients (`profiler-*.json`) sampled on a grid;
  fits every term.

Operator profiles are GPU time only; Splitwise and DistServe time whole iterations, so their
host overhead lands in `flat_s` and `overhead_s` is 0. Vidur and LLMServingSim rows are per
GPU of a TP group (as the catalog); TP all-reduces are not added here (the packaged Vidur fits
add them: `scripts/fit_vidur_step_time.py`).
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sim.calibration.fit import FloatArray, StepTimeFit, causal_pairs, fit_step_time, holdout_mask
from sim.data import models
from sim.engine.catalog import CatalogKey, StepTimeEntry
from sim.engine.steptime import StepTimeModel
from sim.errors import TraceError

SOURCES = ("vidur", "llmservingsim", "splitwise", "distserve")
MS, NS = 1e-3, 1e-9

VIDUR_LAYER_OPS = (
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
LSS_LAYER_OPS = (
    "input_layernorm",
    "q_proj",
    "k_proj",
    "v_proj",
    "rope",
    "o_proj",
    "post_layernorm",
    "gate_proj",
    "up_proj",
    "down_proj",
    "act_fn",
)
FIT_MAX_TOKENS = 8192


@dataclass(frozen=True)
class StepSamples:
    """Whole-model step samples of one (model, gpu, tp) from one source (seconds, tokens).

    key: the value whose every 5th distinct level is held out (tokens, or a row-group rank).
    whole_step: the times include host overhead (whole iterations), not GPU ops alone.
    """

    model: str
    gpu: str
    tp: int
    tokens: FloatArray
    decode_context_tokens: FloatArray
    prefill_pairs: FloatArray
    times_s: FloatArray
    key: FloatArray
    whole_step: bool
    description: str


@dataclass(frozen=True)
class ProfileFit:
    """A fitted catalog entry and the fit behind it."""

    entry: StepTimeEntry
    fit: StepTimeFit
    samples: StepSamples


def catalog_model_name(name: str) -> str:
    """`Meta-Llama-3-8B` → `llama-3-8b`, `Llama-2-70b-hf` → `llama-2-70b`, `llama2-70b` →
    `llama-2-70b`, `facebook/opt-13b` → `opt-13b`."""
    base = name.rsplit("/", 1)[-1].lower().removeprefix("meta-").removesuffix("-hf")
    return re.sub(r"^llama(\d)", r"llama-\1", base)


def _fail(file: Path | str, message: str, value: object = None) -> TraceError:
    return TraceError(str(file), None, None, value, message)


def _read_csv(path: Path) -> pl.DataFrame:
    if not path.is_file():
        raise _fail(path, "no such file", str(path))
    try:
        return pl.read_csv(path, infer_schema_length=10_000)
    except pl.exceptions.PolarsError as err:
        raise _fail(path, "cannot read CSV", str(err).splitlines()[0][:80]) from None


def _need(path: Path, frame: pl.DataFrame, columns: Sequence[str]) -> None:
    for col in columns:
        if col not in frame.columns:
            raise TraceError(str(path), None, col, None, "missing column")


# ------------------------------------------------------------------------------ Vidur


def _flat_yaml(path: Path) -> dict[str, str]:
    if not path.is_file():
        raise _fail(path, "no such file", str(path))
    lines = path.read_text(encoding="utf-8").splitlines()
    return {k.strip(): v.strip() for k, v in (ln.split(":", 1) for ln in lines if ":" in ln)}


def vidur_samples(root: Path, gpu: str, model: str, tp: int = 1) -> StepSamples:
    """Vidur `compute/<gpu>/<model>/mlp.csv` (model as `org/name`) at TP `tp`, T <= 8192.

    Step time at T tokens = layers × Σ per-layer op medians + embedding + final norm + lm_head,
    with lm_head charged as a constant (logits only for the last token of each sequence):
    `mlp_up_proj(64 tokens) × vocab / (2 × mlp_hidden)`, as docs/calibration.md §3.1.
    """
    path = root / "compute" / gpu / model / "mlp.csv"
    cfg = _flat_yaml(root / "model_configs" / f"{model}.yml")
    try:
        layers, vocab, mlp_hidden = (
            int(cfg[k]) for k in ("num_layers", "vocab_size", "mlp_hidden_dim")
        )
    except (KeyError, ValueError):
        raise _fail(
            root / "model_configs" / f"{model}.yml", "needs num_layers, vocab_size, mlp_hidden_dim"
        ) from None
    raw = _read_csv(path)
    ops = ("emb", *VIDUR_LAYER_OPS)
    cols = [f"time_stats.{op}.median" for op in ops]
    _need(path, raw, ["num_tokens", "num_tensor_parallel_workers", *cols])
    df = (
        raw.filter(pl.col("num_tensor_parallel_workers") == tp)
        .group_by("num_tokens")
        .agg(pl.col(c).mean().alias(op) for c, op in zip(cols, ops, strict=True))
        .sort("num_tokens")
        .filter(pl.col("num_tokens") <= FIT_MAX_TOKENS)
    )
    if df.height < 10:
        raise _fail(path, f"fewer than 10 token counts at TP {tp}", df.height)
    t = df["num_tokens"].to_numpy().astype(np.float64)
    layer_ms = sum(df[op].to_numpy() for op in VIDUR_LAYER_OPS)
    lm_head_ms = float(np.interp(64.0, t, df["mlp_up_proj"].to_numpy())) * vocab / (2 * mlp_hidden)
    ms = layers * layer_ms + df["emb"].to_numpy() + df["input_layernorm"].to_numpy() + lm_head_ms
    zero = np.zeros_like(t)
    return StepSamples(
        model=catalog_model_name(model),
        gpu=_gpu_name(gpu),
        tp=tp,
        tokens=t,
        decode_context_tokens=zero,
        prefill_pairs=zero,
        times_s=np.asarray(ms, dtype=np.float64) * MS,
        key=t,
        whole_step=False,
        description=f"Vidur compute/{gpu}/{model}/mlp.csv, TP{tp}, tokens 1..{int(t.max())} "
        f"({layers} layers x 9 ops + emb + final norm + lm_head {lm_head_ms:.3f} ms)",
    )


def _gpu_name(vidur_gpu: str) -> str:
    return {"a100": "a100-80gb", "h100": "h100-80gb", "a40": "a40"}.get(vidur_gpu, vidur_gpu)


# ------------------------------------------------------------------------------ LLMServingSim


def llmservingsim_samples(path: Path, layers: int, gpu: str = "h100-80gb") -> StepSamples:
    """LLMServingSim `perf_models/<GPU>/<org>/<model>/tp<N>/layers.csv` (ns per layer op).

    At `input` = c tokens (empty KV cache): layers × (Σ linear ops + attn) + embedding + final
    norm + lm_head(1 token, constant). The attention of c tokens at empty cache is a prefill
    of c(c+1)/2 causal pairs; decode attention (a context > 0) is not profiled.
    """
    raw = _read_csv(path)
    _need(path, raw, ["layer_name", "input", "latency(ns)"])
    wide = (
        raw.group_by("input", "layer_name")
        .agg(pl.col("latency(ns)").mean())
        .pivot(on="layer_name", index="input", values="latency(ns)")
        .sort("input")
    )
    names = (*LSS_LAYER_OPS, "attn", "embedding", "final_layernorm", "lm_head")
    _need(path, wide, names)
    t = wide["input"].to_numpy().astype(np.float64)
    lm_head_ns = float(wide.filter(pl.col("input") == wide["input"].min())["lm_head"][0])
    per_layer = sum(wide[op].to_numpy() for op in (*LSS_LAYER_OPS, "attn"))
    ns = layers * per_layer + wide["embedding"].to_numpy() + wide["final_layernorm"].to_numpy()
    ns = ns + lm_head_ns
    model_dir = path.parent.parent.name
    tp_dir = path.parent.name
    tp = int(tp_dir.removeprefix("tp")) if tp_dir.removeprefix("tp").isdigit() else 1
    return StepSamples(
        model=catalog_model_name(model_dir),
        gpu=gpu,
        tp=tp,
        tokens=t,
        decode_context_tokens=np.zeros_like(t),
        prefill_pairs=layers * causal_pairs(t, np.zeros_like(t)),
        times_s=np.asarray(ns, dtype=np.float64) * NS,
        key=t,
        whole_step=False,
        description=f"LLMServingSim {model_dir}/{tp_dir}/layers.csv, tokens "
        f"{int(t.min())}..{int(t.max())} ({layers} layers x (11 ops + attn) + embedding + "
        f"final norm + lm_head {lm_head_ns * 1e-6:.3f} ms)",
    )


# ------------------------------------------------------------------------------ Splitwise


def splitwise_samples(path: Path, model: str, gpu: str, tp: int) -> StepSamples:
    """Splitwise `perf_model.csv` rows of (model, hardware, tensor_parallel) as whole steps.

    A prefill row (batch b of prompts of p tokens, no chunking) is one step of T = b·p tokens
    and b·p(p+1)/2 pairs taking `prompt_time`; a decode row is one step of T = b tokens whose
    mean context is p + token_size/2 per sequence, taking `token_time`. The batch-64 rows at
    TP2 are dropped (SOURCE.md: suspect, lower than batch 32). Held out: every 5th distinct
    (prompt_size, batch_size, token_size) configuration.
    """
    raw = _read_csv(path)
    cols = ["model", "hardware", "tensor_parallel", "prompt_size", "batch_size", "token_size"]
    _need(path, raw, [*cols, "prompt_time", "token_time"])
    df = raw.filter(
        (pl.col("model") == model) & (pl.col("hardware") == gpu) & (pl.col("tensor_parallel") == tp)
    ).filter(~((pl.col("tensor_parallel") == 2) & (pl.col("batch_size") == 64)))
    if df.height < 10:
        raise _fail(path, f"fewer than 10 rows for {model} {gpu} TP{tp}", df.height)
    df = (
        df.group_by("prompt_size", "batch_size", "token_size")
        .agg(pl.col("prompt_time").median(), pl.col("token_time").median())
        .sort("prompt_size", "batch_size", "token_size")
    )
    b = df["batch_size"].to_numpy().astype(np.float64)
    p = df["prompt_size"].to_numpy().astype(np.float64)
    o = df["token_size"].to_numpy().astype(np.float64)
    rank = np.arange(df.height, dtype=np.float64)
    zero = np.zeros_like(b)
    return StepSamples(
        model=catalog_model_name(model),
        gpu=gpu,
        tp=tp,
        tokens=np.concatenate([b * p, b]),
        decode_context_tokens=np.concatenate([zero, b * (p + o / 2.0)]),
        prefill_pairs=np.concatenate([b * causal_pairs(p, zero), zero]),
        times_s=np.concatenate([df["prompt_time"].to_numpy(), df["token_time"].to_numpy()]) * MS,
        key=np.concatenate([rank, rank]),
        whole_step=True,
        description=f"Splitwise perf_model.csv {model} {gpu} TP{tp}: {df.height} prefill + "
        f"{df.height} decode configurations (medians of repeats)",
    )


# ------------------------------------------------------------------------------ DistServe


def distserve_samples(path: Path, model: str, tp: int) -> StepSamples:
    """DistServe's fitted latency model (`profiler-a100-80g.*.json`), sampled on a grid.

    DistServe (simdistserve/estimators) predicts, in ms, a prefill of total tokens N with
    Σ len² = S as `a + b·N + c·S`, and a decode step of batch B with total context K as
    `a + b·K + c·B` (coefficient set by B against `decoding_large_small_bs_threshold`).
    Grid: prefill of B ∈ {1, 2, 4, 8} prompts of {32, 64, …, 2048} tokens; decode of
    B ∈ {1, 2, 4, …, 256} sequences with contexts {128, 256, …, 4096}. Held out: every 5th
    distinct configuration.
    """
    if not path.is_file():
        raise _fail(path, "no such file", str(path))
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        coefs = doc[model][str(tp)]
        pre = [float(x) for x in coefs["prefill"]]
        small = [float(x) for x in coefs["decoding_smallbs"]]
        large = [float(x) for x in coefs["decoding_largebs"]]
        threshold = float(coefs["decoding_large_small_bs_threshold"])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise _fail(path, "not valid JSON") from None
    except (KeyError, TypeError, ValueError):
        have = sorted(doc) if isinstance(doc, dict) else []
        raise _fail(path, f"no coefficients for {model} TP{tp}; models: {have}", model) from None
    rows: list[tuple[float, float, float, float]] = []
    for batch in (1, 2, 4, 8):
        for length in (32, 64, 128, 256, 512, 1024, 2048):
            n = batch * length
            ms = pre[0] + pre[1] * n + pre[2] * batch * length**2
            rows.append((n, 0.0, batch * length * (length + 1) / 2.0, ms))
    for batch in (1, 2, 4, 8, 16, 32, 64, 128, 256):
        c = small if batch <= threshold else large
        for ctx in (128, 256, 512, 1024, 2048, 4096):
            rows.append((batch, batch * ctx, 0.0, c[0] + c[1] * batch * ctx + c[2] * batch))
    arr = np.asarray(rows, dtype=np.float64)
    if np.any(arr[:, 3] <= 0):
        raise _fail(path, f"coefficients for {model} TP{tp} predict non-positive times")
    return StepSamples(
        model=catalog_model_name(model),
        gpu="a100-80gb",
        tp=tp,
        tokens=arr[:, 0],
        decode_context_tokens=arr[:, 1],
        prefill_pairs=arr[:, 2],
        times_s=arr[:, 3] * MS,
        key=np.arange(len(rows), dtype=np.float64),
        whole_step=True,
        description=f"DistServe {path.name} {model} TP{tp} latency model sampled on a grid "
        f"({len(rows)} steps)",
    )


PROFILE_SOURCES = ("vidur", "llmservingsim", "splitwise", "distserve")


def profile_samples(
    source: str,
    path: Path,
    *,
    model: str | None = None,
    gpu: str | None = None,
    tp: int = 1,
    layers: int | None = None,
) -> StepSamples:
    """Whole-step samples of an operator profile `path` from `source` (one of
    `PROFILE_SOURCES`). What each source needs: vidur `model` (org/name) and `gpu`; splitwise
    `model` and `gpu`; distserve `model`; llmservingsim the model's `layers` (default: the
    catalog's, by the folder's model name) and `gpu` (default h100-80gb, its profiles' GPU).
    A ValueError names a missing argument."""

    def need(value: str | None, option: str) -> str:
        if value is None:
            raise ValueError(f"{source} needs {option}")
        return value

    match source:
        case "vidur":
            return vidur_samples(path, need(gpu, "--gpu"), need(model, "--model"), tp)
        case "llmservingsim":
            name = catalog_model_name(path.parent.parent.name)
            n_layers = layers or (models()[name].layers if name in models() else None)
            if n_layers is None:
                raise ValueError(f"{name} is not in the model catalog: pass --layers")
            return llmservingsim_samples(path, n_layers, gpu or "h100-80gb")
        case "splitwise":
            return splitwise_samples(path, need(model, "--model"), need(gpu, "--gpu"), tp)
        case "distserve":
            return distserve_samples(path, need(model, "--model"), tp)
    raise ValueError(f"unknown profile source {source!r}: one of {', '.join(PROFILE_SOURCES)}")


# ------------------------------------------------------------------------------ fit


def fit_profile(
    samples: StepSamples, base: StepTimeEntry | None, dtype: str = "fp16"
) -> ProfileFit:
    """Fit `samples`; take unidentified terms (and overhead, for GPU-only profiles) from `base`.

    A ValueError names what is missing when `base` is needed but None.
    """
    held = holdout_mask(samples.key)
    fit = fit_step_time(
        samples.tokens,
        samples.decode_context_tokens,
        samples.prefill_pairs,
        samples.times_s,
        held,
    )
    borrowed: list[str] = []

    def term(value: float, name: str) -> float:
        if not math.isnan(value):
            return value
        if base is None:
            raise ValueError(f"{name} is not identified by this source: give a base entry")
        borrowed.append(name)
        return float(getattr(base.step, name))

    decode = term(fit.decode_attn_s_per_token, "decode_attn_s_per_token")
    prefill = term(fit.prefill_attn_s_per_pair, "prefill_attn_s_per_pair")
    overhead = 0.0 if samples.whole_step else term(math.nan, "overhead_s")
    base_note = ""
    if borrowed:
        assert base is not None  # term() raised otherwise
        m, g, tp, d = base.key
        base_note = f" {', '.join(borrowed)} from catalog entry {m}/{g}/tp{tp}/{d}."
    whole = " Whole-iteration times: host overhead is inside flat_s." if samples.whole_step else ""
    entry = StepTimeEntry(
        model=samples.model,
        gpu=samples.gpu,
        tp=samples.tp,
        dtype=dtype,
        step=StepTimeModel(
            overhead_s=overhead,
            flat_s=fit.flat_s,
            knee_tokens=fit.knee_tokens,
            per_token_s=fit.per_token_s,
            decode_attn_s_per_token=decode,
            prefill_attn_s_per_pair=prefill,
        ),
        heldout_mape=fit.heldout_mape,
        residual_sd_log=fit.heldout_sd_log,
        source=f"sim calibrate profiles: {samples.description}; held-out MAPE "
        f"{fit.heldout_mape:.2%} (max {fit.heldout_max_ape:.1%}, {fit.n_heldout} of "
        f"{fit.n_train + fit.n_heldout} samples).{base_note}{whole}",
    )
    return ProfileFit(entry, fit, samples)


def base_entry_for(
    catalog: dict[CatalogKey, StepTimeEntry], key: CatalogKey
) -> StepTimeEntry | None:
    """The catalog entry of `key`, else, on the same GPU (and TP if possible), the one whose
    model name is closest (`llama-3.1-8b` → `llama-3-8b`); None when the GPU is uncatalogued."""
    if key in catalog:
        return catalog[key]
    model, gpu, tp, dtype = key
    for same in (
        [k for k in catalog if k[1] == gpu and k[2] == tp and k[3] == dtype],
        [k for k in catalog if k[1] == gpu and k[3] == dtype],
    ):
        if same:
            best = max(
                sorted(same), key=lambda k: difflib.SequenceMatcher(None, model, k[0]).ratio()
            )
            return catalog[best]
    return None


# ------------------------------------------------------------------------------ TOML


def _toml_float(x: float) -> str:
    return f"{x:.6g}" if x != 0 else "0.0"


def render_entries(entries: Sequence[StepTimeEntry], header: str) -> str:
    """Entries as `[[entry]]` tables with the fields of `sim/data/step_time.toml`."""
    lines = [f"# {ln}" if ln else "#" for ln in header.splitlines()]
    for e in entries:
        lines += [
            "",
            "[[entry]]",
            f"model = {json.dumps(e.model)}",
            f"gpu = {json.dumps(e.gpu)}",
            f"tp = {e.tp}",
            f"dtype = {json.dumps(e.dtype)}",
        ]
        for name, value in e.as_row().items():
            if name not in ("model", "gpu", "tp", "dtype", "source"):
                lines.append(f"{name} = {_toml_float(float(value))}")
        lines.append(f"source = {json.dumps(e.source, ensure_ascii=False)}")
    return "\n".join(lines) + "\n"

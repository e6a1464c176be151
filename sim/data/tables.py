"""The GPU and model-shape tables (`gpus.toml`, `models.toml`): validated when first read, each
problem one located line (`sim.errors.Problem`), then cached; and the name lookups over them
(`canonical_model_name`). The types they build are `sim.data.hardware`'s."""

from __future__ import annotations

import math
from functools import cache
from typing import Any

from sim.data.hardware import SSM_STATE_BYTES, GpuSpec, ModelShape
from sim.data.loader import read_toml
from sim.errors import ConfigError, Problem

_GPU_STR = ("price_source", "spec_source", "interconnect")
_GPU_FLOAT = (
    "memory_gb",
    "device_memory_gib",
    "price_usd_per_hour",
    "memory_bandwidth_gb_per_s",
    "fp16_dense_tflops",
    "interconnect_gb_per_s",
)
_GPU_OPTIONAL_PAIRS = (
    ("fp8_dense_tflops", None),
    ("spot_price_usd_per_hour", "spot_price_source"),
    ("alt_price_usd_per_hour", "alt_price_source"),
    ("alt_spot_price_usd_per_hour", "alt_spot_price_source"),
)
_MODEL_INT = (
    "layers",
    "hidden",
    "heads",
    "kv_heads",
    "head_dim",
    "intermediate",
    "vocab",
    "max_position",
)
_LINEAR_ATTENTION = (
    "linear_attention_layers",
    "linear_key_heads",
    "linear_value_heads",
    "linear_key_head_dim",
    "linear_value_head_dim",
    "linear_conv_kernel",
)
_MODEL_OPTIONAL_INT = (
    "experts",
    "experts_per_token",
    "shared_experts",
    "dense_layers",
    "dense_intermediate",
    "kv_lora_rank",
    "qk_rope_head_dim",
    "q_lora_rank",
    "v_head_dim",
    "sliding_window",
    "sliding_window_layers",
    "extra_params",
    *_LINEAR_ATTENTION,
)
_MODEL_OPTIONAL_BOOL = ("qkv_bias", "qk_norm", "tie_embeddings", "attn_output_gate")
_MODEL_TOGETHER = (
    ("experts", "experts_per_token"),
    ("dense_layers", "dense_intermediate"),
    ("kv_lora_rank", "qk_rope_head_dim", "v_head_dim"),
    ("sliding_window", "sliding_window_layers"),
    _LINEAR_ATTENTION,
)
_MODEL_NEEDS_EXPERTS = ("shared_experts", "dense_layers")


def _positive_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def parse_gpus(doc: dict[str, Any], file: str = "sim/data/gpus.toml") -> dict[str, GpuSpec]:
    """Validate a parsed GPU table (one TOML table per GPU) and build the specs."""
    problems: list[Problem] = []
    known = {f for f in GpuSpec.__dataclass_fields__ if f != "name"}
    out: dict[str, GpuSpec] = {}
    for name, row in doc.items():
        n_before = len(problems)
        for k in sorted(set(row) - known):
            problems.append(Problem(file, f"{name}.{k}", "unknown key", has_value=False))
        for k in _GPU_FLOAT:
            if not _positive_number(row.get(k)):
                problems.append(Problem(file, f"{name}.{k}", "must be a number > 0", row.get(k)))
        for k in _GPU_STR:
            if not isinstance(row.get(k), str) or not row[k].strip():
                problems.append(Problem(file, f"{name}.{k}", "must be a non-empty string", None))
        for num, src in _GPU_OPTIONAL_PAIRS:
            if num in row and not _positive_number(row[num]):
                problems.append(Problem(file, f"{name}.{num}", "must be a number > 0", row[num]))
            if src is not None and (num in row) != (src in row):
                problems.append(
                    Problem(file, f"{name}.{num}", f"needs {src} beside it", has_value=False)
                )
        if len(problems) > n_before:
            continue
        out[name] = GpuSpec(name=name, **row)
    if problems:
        raise ConfigError(problems)
    return out


def parse_models(doc: dict[str, Any], file: str = "sim/data/models.toml") -> dict[str, ModelShape]:
    """Validate a parsed model table (one TOML table per model) and build the shapes.

    Every alias (and every `hf_id`) must name one model only; aliases are matched
    case-insensitively by `canonical_model_name`.
    """
    problems: list[Problem] = []
    known = {f for f in ModelShape.__dataclass_fields__ if f != "name"}
    out: dict[str, ModelShape] = {}
    owner: dict[str, str] = {}
    for name, row in doc.items():
        n_before = len(problems)
        for k in sorted(set(row) - known):
            problems.append(Problem(file, f"{name}.{k}", "unknown key", has_value=False))
        for k in (*_MODEL_INT, *_MODEL_OPTIONAL_INT, "params"):
            if k not in row and k in _MODEL_OPTIONAL_INT:
                continue
            v = row.get(k)
            if not _positive_number(v) or (k != "params" and not isinstance(v, int)):
                problems.append(Problem(file, f"{name}.{k}", "must be a positive integer", v))
        for k in _MODEL_OPTIONAL_BOOL:
            if k in row and not isinstance(row[k], bool):
                problems.append(Problem(file, f"{name}.{k}", "must be true or false", row[k]))
        if not isinstance(row.get("hf_id"), str):
            problems.append(Problem(file, f"{name}.hf_id", "must be a string", row.get("hf_id")))
        aliases = row.get("aliases", [])
        if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
            problems.append(Problem(file, f"{name}.aliases", "must be a list of strings", aliases))
            aliases = []
        for group in _MODEL_TOGETHER:
            if len({k in row for k in group}) > 1:
                problems.append(Problem(file, name, f"{', '.join(group)} go together"))
        for k in _MODEL_NEEDS_EXPERTS:
            if k in row and "experts" not in row:
                problems.append(Problem(file, f"{name}.{k}", "needs experts", row[k]))
        dense, layers = row.get("dense_layers"), row.get("layers")
        if isinstance(dense, int) and isinstance(layers, int) and dense >= layers:
            problems.append(Problem(file, f"{name}.dense_layers", "must be < layers", dense))
        ssm = row.get("ssm_state_dtype")
        if ssm is not None and (ssm not in SSM_STATE_BYTES or "linear_attention_layers" not in row):
            why = f"must be one of {', '.join(SSM_STATE_BYTES)}, with linear_attention_layers"
            problems.append(Problem(file, f"{name}.ssm_state_dtype", why, ssm))
        linear = row.get("linear_attention_layers")
        if isinstance(linear, int) and isinstance(layers, int) and linear >= layers:
            problems.append(
                Problem(file, f"{name}.linear_attention_layers", "must be < layers", linear)
            )
        for alias in (row.get("hf_id"), *aliases):
            if not isinstance(alias, str):
                continue
            key = alias.lower()
            if owner.get(key, name) != name:
                problems.append(
                    Problem(file, f"{name}.aliases", f"also names {owner[key]!r}", alias)
                )
            owner[key] = name
        if len(problems) > n_before:
            continue
        out[name] = ModelShape(
            name=name, **{**row, "params": float(row["params"]), "aliases": tuple(aliases)}
        )
    for alias, name in owner.items():
        if alias in out and alias != name:
            problems.append(Problem(file, f"{name}.aliases", f"is the name of {alias!r}", alias))
    if problems:
        raise ConfigError(problems)
    return out


@cache
def gpus() -> dict[str, GpuSpec]:
    """The GPU table, by catalog name (e.g. ``"a100-80gb"``). Read once; treat as read-only."""
    return parse_gpus(read_toml("gpus.toml"))


@cache
def models() -> dict[str, ModelShape]:
    """The model-shape table, by catalog name (e.g. ``"llama-3-8b"``). Read-only, cached."""
    return parse_models(read_toml("models.toml"))


@cache
def model_aliases() -> dict[str, str]:
    """Every alias and Hugging Face id in the model table, lower-cased, to its catalog name."""
    out: dict[str, str] = {}
    for name, m in models().items():
        for alias in (m.hf_id, *m.aliases):
            out[alias.lower()] = name
    return out


def canonical_model_name(name: str) -> str | None:
    """The catalog name for `name`: itself when it is one, else the model whose `hf_id` or
    `aliases` match it (case-insensitive, e.g. "meta-llama/Llama-3.1-8B-Instruct" ->
    "llama-3.1-8b"); None when nothing matches. Callers that take user input (the experiment
    reader, `sim bench --model`) map names through this before looking up `models()`."""
    if name in models():
        return name
    return model_aliases().get(name.lower())

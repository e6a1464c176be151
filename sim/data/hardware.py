"""The GPU and model tables shipped with the package (`sim/data/gpus.toml`, `models.toml`).

Data only: every number's source is in the TOML beside it. Both tables are validated when first
read (a missing or mistyped key is a `ConfigError` naming the file and key), then cached.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cache
from typing import Any

from sim.data.loader import read_toml
from sim.errors import ConfigError, Problem

GIB = 1024**3
DTYPE_BYTES = {"fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
"""Bytes per element of each dtype (weights or KV cache)."""

QUANT_GROUP_SIZE = 128
"""Weights per quantisation group of int4 (AWQ/GPTQ) checkpoints: the default `group_size` of
AutoAWQ and of GPTQ checkpoints in vLLM's docs. Each group stores one fp16 scale and one packed
4-bit zero point, i.e. 2.5 bytes per 128 weights on top of the 0.5 bytes per weight."""

QUANTIZATION_WEIGHT_DTYPE = {"awq": "int4", "gptq": "int4", "fp8": "fp8", "int8": "int8"}
"""vLLM `--quantization` names accepted in `[engine] quantization`, and the weight dtype each
stores (AWQ/GPTQ: 4-bit weights with fp16 activations; fp8: 8-bit float weights; int8: W8A8)."""


def weight_bytes_per_param(weight_dtype: str) -> float:
    """Average bytes per quantised (linear-layer) weight, including group scales for int4."""
    if weight_dtype == "int4":
        return DTYPE_BYTES["int4"] + 2.5 / QUANT_GROUP_SIZE
    return DTYPE_BYTES[weight_dtype]


@dataclass(frozen=True)
class GpuSpec:
    """One GPU type (per GPU, not per instance).

    memory_gb: device memory in 1e9 bytes, as the datasheet states it.
    memory_bandwidth_gb_per_s: peak memory bandwidth, 1e9 bytes/s.
    fp16_dense_tflops / fp8_dense_tflops: dense tensor-core peak, 1e12 FLOP/s (None: no FP8
        tensor cores, so FP8 weights are computed in fp16).
    interconnect: link kind ("nvlink4", "pcie4", ...); interconnect_gb_per_s its datasheet
        GPU-to-GPU bandwidth, 1e9 bytes/s.
    price_usd_per_hour: on-demand price per GPU-hour; spot_price_usd_per_hour the spot price in
        the same source, or None when the source lists none (spot unavailable, not guessed).
    alt_*: a second provider's price, for comparison and for experiments that pick it.
    *_source: where each number comes from.
    """

    name: str
    memory_gb: float
    price_usd_per_hour: float
    price_source: str
    memory_bandwidth_gb_per_s: float = 0.0
    fp16_dense_tflops: float = 0.0
    fp8_dense_tflops: float | None = None
    interconnect: str = ""
    interconnect_gb_per_s: float = 0.0
    spec_source: str = ""
    spot_price_usd_per_hour: float | None = None
    spot_price_source: str | None = None
    alt_price_usd_per_hour: float | None = None
    alt_price_source: str | None = None
    alt_spot_price_usd_per_hour: float | None = None
    alt_spot_price_source: str | None = None

    @property
    def has_spot_price(self) -> bool:
        """Whether the price source lists a spot price for this GPU."""
        return self.spot_price_usd_per_hour is not None

    def tflops(self, weight_dtype: str) -> float:
        """Dense peak for matmuls with weights of `weight_dtype` (1e12 FLOP/s).

        FP8 weights use the FP8 tensor-core peak where the GPU has one (vLLM's W8A8 path); int8,
        int4 and FP8 on GPUs without FP8 cores run weight-only kernels that compute in fp16.
        """
        if weight_dtype == "fp8" and self.fp8_dense_tflops is not None:
            return self.fp8_dense_tflops
        return self.fp16_dense_tflops


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer's shape, from its Hugging Face config.json.

    params: total parameters. intermediate: MLP width (one expert's width for MoE).
    experts / experts_per_token: 0 / 0 for dense models.
    """

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
    experts: int = 0
    experts_per_token: int = 0
    qkv_bias: bool = False
    qk_norm: bool = False

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    def kv_bytes_per_token(self, dtype: str, tp: int) -> float:
        """KV-cache bytes one token occupies on one GPU of a `tp`-way replica."""
        return 2.0 * self.layers * self.kv_heads * self.head_dim * DTYPE_BYTES[dtype] / tp

    @property
    def embedding_params(self) -> int:
        """Input embedding plus the (untied) lm_head: kept in 16-bit by quantised checkpoints."""
        return 2 * self.vocab * self.hidden

    def _layer_params(self, experts_used: int) -> int:
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        attn = self.hidden * (q + 2 * kv) + q * self.hidden
        attn += (q + 2 * kv) if self.qkv_bias else 0
        attn += 2 * self.head_dim if self.qk_norm else 0
        mlp = 3 * self.hidden * self.intermediate  # gated MLP: gate, up, down
        if self.is_moe:
            mlp = experts_used * mlp + self.hidden * self.experts  # + router
        return attn + mlp + 2 * self.hidden  # + two RMSNorms

    def param_count(self) -> int:
        """Total parameters implied by the shape (checked against `params` in the tests)."""
        return self.embedding_params + self.layers * self._layer_params(self.experts) + self.hidden

    def active_params(self) -> float:
        """Parameters one token's forward pass multiplies by (all of them for a dense model)."""
        if not self.is_moe:
            return self.params
        per_layer = self._layer_params(self.experts_per_token)
        return float(self.embedding_params + self.layers * per_layer + self.hidden)

    def weight_bytes(self, weight_dtype: str) -> float:
        """Bytes of the whole checkpoint's weights with linear layers stored as `weight_dtype`.

        Quantised checkpoints (fp8, int8, AWQ/GPTQ int4) keep the embedding and lm_head in 16
        bits, as vLLM loads them; norms and biases are negligible and counted at the same rate.
        """
        if DTYPE_BYTES[weight_dtype] == 2.0:
            return self.params * 2.0
        quantised = self.params - self.embedding_params
        return quantised * weight_bytes_per_param(weight_dtype) + self.embedding_params * 2.0


_GPU_STR = ("price_source", "spec_source", "interconnect")
_GPU_FLOAT = (
    "memory_gb",
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
_MODEL_OPTIONAL_INT = ("experts", "experts_per_token")
_MODEL_OPTIONAL_BOOL = ("qkv_bias", "qk_norm")


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
    """Validate a parsed model table (one TOML table per model) and build the shapes."""
    problems: list[Problem] = []
    known = {f for f in ModelShape.__dataclass_fields__ if f != "name"}
    out: dict[str, ModelShape] = {}
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
        if ("experts" in row) != ("experts_per_token" in row):
            problems.append(Problem(file, name, "experts and experts_per_token go together"))
        if len(problems) > n_before:
            continue
        out[name] = ModelShape(name=name, **{**row, "params": float(row["params"])})
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

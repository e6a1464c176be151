"""Hardware and model facts: the GPU and model tables, KV-cache capacity, the roofline.

`tables` holds the shipped data (`sim/data/gpus.toml`, `models.toml`), `memory` the KV-cache
capacity (vLLM's memory accounting), `roofline` step-time coefficients from specs for pairs
without a fitted catalogue entry. This package imports nothing from `sim` but `sim.errors`.
"""

from sim.hardware.memory import activation_reserve_bytes, kv_capacity_tokens, weight_bytes_per_gpu
from sim.hardware.roofline import (
    RooflineCoefficients,
    RooflineFactors,
    load_roofline_factors,
    parse_roofline_factors,
    roofline_coefficients,
)
from sim.hardware.tables import (
    DTYPE_BYTES,
    GIB,
    QUANTIZATION_WEIGHT_DTYPE,
    GpuSpec,
    ModelShape,
    gpus,
    models,
    parse_gpus,
    parse_models,
    weight_bytes_per_param,
)

__all__ = [
    "DTYPE_BYTES",
    "GIB",
    "QUANTIZATION_WEIGHT_DTYPE",
    "GpuSpec",
    "ModelShape",
    "RooflineCoefficients",
    "RooflineFactors",
    "activation_reserve_bytes",
    "gpus",
    "kv_capacity_tokens",
    "load_roofline_factors",
    "models",
    "parse_gpus",
    "parse_models",
    "parse_roofline_factors",
    "roofline_coefficients",
    "weight_bytes_per_gpu",
    "weight_bytes_per_param",
]

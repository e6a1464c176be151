"""The packaged data (TOML tables beside this package, each number with its source) and the
one loader that reads them. A leaf: imports nothing from `sim` but `sim.errors`.

- `gpus()`, `models()`: the GPU and model-shape tables (`gpus.toml`, `models.toml`;
  `sim.data.tables`), and `canonical_model_name` (a Hugging Face id or alias to its entry).
- `api_providers()`: dated API list prices and limits (`api.toml`).
- `spot_market_rows()`: spot markets (`spot_markets.toml`; `sim.fleet.spot` types them).
- `sharegpt_lengths(sampler)`: ShareGPT V3's (input, output) token lengths as vLLM's benchmark
  samples them (`sharegpt_v3_llama3.csv`), or as GPUStack's guidellm wrapper sends them
  (`sharegpt_v3_first_turns_llama3.csv`; SOURCE.md).
- `read_toml(name)`: any packaged table (`step_time.toml` is typed by `sim.engine.catalog`).
"""

from sim.data.hardware import (
    DTYPE_BYTES,
    GIB,
    QUANTIZATION_WEIGHT_DTYPE,
    GpuSpec,
    ModelShape,
    weight_bytes_per_param,
)
from sim.data.loader import (
    api_providers,
    packaged,
    read_toml,
    read_toml_file,
    sharegpt_lengths,
    spot_market_rows,
)
from sim.data.tables import canonical_model_name, gpus, models, parse_gpus, parse_models

__all__ = [
    "DTYPE_BYTES",
    "GIB",
    "QUANTIZATION_WEIGHT_DTYPE",
    "GpuSpec",
    "ModelShape",
    "api_providers",
    "canonical_model_name",
    "gpus",
    "models",
    "packaged",
    "parse_gpus",
    "parse_models",
    "read_toml",
    "read_toml_file",
    "sharegpt_lengths",
    "spot_market_rows",
    "weight_bytes_per_param",
]

"""The one reader of the packaged TOML tables beside this file (and of users' TOML data files),
and of the packaged ShareGPT length table.

Every packaged table is read once and cached; treat what it returns as read-only.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from importlib.abc import Traversable
from pathlib import Path
from typing import Any

from sim.errors import ConfigError, Problem


def packaged(*parts: str) -> Traversable:
    """A file shipped in `sim/data/` (e.g. ``packaged("validation", "cases.toml")``)."""
    return resources.files("sim.data").joinpath(*parts)


@cache
def read_toml(name: str) -> dict[str, Any]:
    """The packaged table `sim/data/<name>` (e.g. ``"gpus.toml"``), parsed."""
    return tomllib.loads(packaged(*name.split("/")).read_text(encoding="utf-8"))


def read_toml_file(path: str | Path) -> dict[str, Any]:
    """A user's TOML data file (e.g. a step-time catalog written by `sim calibrate`), parsed;
    a located `ConfigError` when it cannot be read or is not TOML."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(
            [Problem(str(path), "", f"cannot read file: {err.strerror}", has_value=False)]
        ) from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise ConfigError(
            [Problem(str(path), "", f"not valid TOML: {err}", has_value=False)]
        ) from None


def api_providers() -> dict[str, dict[str, Any]]:
    """Rows of `api.toml`'s `[apis]` by name (e.g. ``"claude-haiku-4-5"``): dated list prices,
    and published latency and rate-limit figures where a source gives them."""
    apis: dict[str, dict[str, Any]] = read_toml("api.toml")["apis"]
    return apis


def spot_market_rows() -> dict[str, dict[str, Any]]:
    """Rows of `spot_markets.toml`'s `[markets]` by name (`sim.fleet.spot` types them)."""
    rows: dict[str, dict[str, Any]] = read_toml("spot_markets.toml")["markets"]
    return rows


SHAREGPT_FILES = {
    "vllm": "sharegpt_v3_llama3.csv",
    "first-turns": "sharegpt_v3_first_turns_llama3.csv",
}
"""(input, output) token lengths of ShareGPT V3 in Llama-3 tokens, per sampler
(scripts/derive_sharegpt_lengths.py, sim/data/SOURCE.md): "vllm", as `vllm bench serve
--dataset-name sharegpt` samples them (vLLM's length filters); "first-turns", every
conversation's first human/gpt turn in file order, unfiltered, as GPUStack's benchmark-runner
(a guidellm wrapper) converts the file and guidellm sends it (N requests: the first N)."""


@cache
def sharegpt_lengths(sampler: str = "vllm") -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The packaged ShareGPT table of `sampler` (`SHAREGPT_FILES`) as (input tokens, output
    tokens), row by row in file order."""
    name = SHAREGPT_FILES[sampler]
    lines = packaged(name).read_text(encoding="utf-8").split()
    if lines[0] != "input_tokens,output_tokens":
        raise ValueError(f"sim/data/{name}: unexpected header {lines[0]!r}")
    pairs = [line.split(",") for line in lines[1:]]
    return tuple(int(a) for a, _ in pairs), tuple(int(b) for _, b in pairs)

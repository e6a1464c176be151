"""The dated table of paid LLM APIs (`sim/data/api.toml`): list prices, and published latency
and rate-limit figures where a public source gives them (each row names its sources).

A leaf module: rows are plain dicts, validated by `sim.config` when an experiment names one.
"""

from __future__ import annotations

import tomllib
from functools import cache
from importlib import resources
from typing import Any


@cache
def api_providers() -> dict[str, dict[str, Any]]:
    """Rows of sim/data/api.toml's `[apis]` by name (e.g. ``"claude-haiku-4-5"``)."""
    path = resources.files("sim").joinpath("data", "api.toml")
    if not path.is_file():
        return {}
    apis: dict[str, dict[str, Any]] = tomllib.loads(path.read_text(encoding="utf-8"))["apis"]
    return apis

"""GPUs a user defines in a calibration file (`[[gpu]]` tables beside its `[[entry]]` tables),
in the fields and units of the packaged table (`sim/data/gpus.toml`, `GpuSpec`).

    [[gpu]]
    name = "my-l40s-like"
    memory_gb = 48.0
    memory_bandwidth_gb_per_s = 864.0
    fp16_dense_tflops = 362.05
    fp8_dense_tflops = 733.0                 # optional: FP8 tensor-core peak
    interconnect = "pcie4"                   # optional, with interconnect_gb_per_s (tp > 1)
    interconnect_gb_per_s = 64.0
    price_usd_per_hour = 0.86                # on-demand, per GPU-hour
    spot_price_usd_per_hour = 0.43           # optional
    source = "copied from sim/data/gpus.toml [l40s]"

The experiment reader (`sim.config`) reads them to accept pools on these GPUs and to take their
prices; `sim.engine.catalog` reads them again (cached) to resolve the engine on them.
"""

from __future__ import annotations

import math
import re
from typing import Any

from sim.data.hardware import GpuSpec
from sim.data.tables import gpus
from sim.errors import ConfigError, Problem

USER_GPU_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
_REQUIRED_NUMBERS = (
    "memory_gb",
    "memory_bandwidth_gb_per_s",
    "fp16_dense_tflops",
    "price_usd_per_hour",
)
_OPTIONAL_NUMBERS = (
    "fp8_dense_tflops",
    "spot_price_usd_per_hour",
    "interconnect_gb_per_s",
    "device_memory_gib",
)
_KEYS = ("name", *_REQUIRED_NUMBERS, *_OPTIONAL_NUMBERS, "interconnect", "source")


def _positive_number(v: object) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) and v > 0


def parse_user_gpus(rows: object, file: str) -> dict[str, GpuSpec]:
    """Validate the `[[gpu]]` tables (`rows`, the parsed `gpu` key; None when absent) of the
    calibration file `file` and build their specs, by name, in file order.

    Required: `name`, `memory_gb`, `memory_bandwidth_gb_per_s`, `fp16_dense_tflops`,
    `price_usd_per_hour` (on-demand) and `source` (where the numbers come from). Optional:
    `fp8_dense_tflops`, `spot_price_usd_per_hour`, `device_memory_gib` (what the device
    reports to CUDA; without it the KV estimate takes `memory_gb`), and `interconnect` with
    `interconnect_gb_per_s`. Numbers must be finite and > 0, as in the packaged table
    (`sim.data.tables.parse_gpus`). A packaged GPU's name, or a name given twice, is refused:
    a user GPU adds to the catalog, never replaces a row of it. `source` becomes the spec's
    `spec_source` and every price's source. All problems are collected, then raised at once as
    a `ConfigError` naming `file` and the key path (`gpu[0].memory_gb`).
    """
    if rows is None:
        return {}
    if not isinstance(rows, list):
        raise ConfigError([Problem(file, "gpu", "must be a list of [[gpu]] tables", rows)])
    packaged = gpus()
    problems: list[Problem] = []
    out: dict[str, GpuSpec] = {}
    for i, row in enumerate(rows):
        path = f"gpu[{i}]"
        if not isinstance(row, dict):
            problems.append(Problem(file, path, "must be a table", row))
            continue
        n_before = len(problems)
        _check_row(row, path, file, problems)
        name = row.get("name")
        if "name" in row and (not isinstance(name, str) or not USER_GPU_NAME.fullmatch(name)):
            problems.append(
                Problem(file, f"{path}.name", "must be letters, digits, '.', '_', '+' or '-'", name)
            )
        elif isinstance(name, str) and name in packaged:
            problems.append(
                Problem(
                    file,
                    f"{path}.name",
                    "is a packaged GPU (sim/data/gpus.toml); give yours another name",
                    name,
                )
            )
        elif isinstance(name, str) and name in out:
            problems.append(Problem(file, f"{path}.name", "is defined twice", name))
        if len(problems) > n_before or not isinstance(name, str):
            continue
        out[name] = _spec(name, row)
    if problems:
        raise ConfigError(problems)
    return out


def _check_row(row: dict[str, Any], path: str, file: str, problems: list[Problem]) -> None:
    for k in sorted(set(row) - set(_KEYS)):
        problems.append(Problem(file, f"{path}.{k}", "unknown key", has_value=False))
    for k in ("name", *_REQUIRED_NUMBERS, "source"):
        if k not in row:
            problems.append(Problem(file, f"{path}.{k}", "missing", has_value=False))
    for k in ("source", "interconnect"):
        if k in row and (not isinstance(row[k], str) or not row[k].strip()):
            problems.append(Problem(file, f"{path}.{k}", "must be a non-empty string", row[k]))
    for k in (*_REQUIRED_NUMBERS, *_OPTIONAL_NUMBERS):
        if k in row and not _positive_number(row[k]):
            problems.append(Problem(file, f"{path}.{k}", "must be a number > 0", row[k]))
    if ("interconnect" in row) != ("interconnect_gb_per_s" in row):
        given = "interconnect" if "interconnect" in row else "interconnect_gb_per_s"
        problems.append(
            Problem(
                file,
                f"{path}.{given}",
                "interconnect and interconnect_gb_per_s go together",
                row[given],
            )
        )


def _spec(name: str, row: dict[str, Any]) -> GpuSpec:
    source = str(row["source"]).strip()
    spot = row.get("spot_price_usd_per_hour")
    fp8 = row.get("fp8_dense_tflops")
    return GpuSpec(
        name=name,
        memory_gb=float(row["memory_gb"]),
        price_usd_per_hour=float(row["price_usd_per_hour"]),
        price_source=source,
        memory_bandwidth_gb_per_s=float(row["memory_bandwidth_gb_per_s"]),
        fp16_dense_tflops=float(row["fp16_dense_tflops"]),
        fp8_dense_tflops=None if fp8 is None else float(fp8),
        interconnect=str(row.get("interconnect", "")),
        interconnect_gb_per_s=float(row.get("interconnect_gb_per_s", 0.0)),
        spec_source=source,
        spot_price_usd_per_hour=None if spot is None else float(spot),
        spot_price_source=None if spot is None else source,
        device_memory_gib=float(row.get("device_memory_gib", 0.0)),
    )

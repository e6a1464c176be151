"""The recommended plan as a runnable experiment file (`reports/<name>/plan.toml`).

The input experiment is read again as data, its `[fleet]`/`[[plans]]` replaced by the
recommended months (scheduled pools with their `schedule` rules, autoscaled ones with their
`autoscale` table), its `[engine] tp` set to the degree the plan was found at (and its
`[engine] calibration` to the calibration file the search used, as a relative path), its name
suffixed `-plan`, and every file path of its `[workload]`
rewritten relative to the folder the plan is written to, so `sim run
reports/<name>/plan.toml` works from the same working directory as the input did. Written
with tomli-w (a TOML writer is not in the standard library; tomli-w is the writer of the same
author as Python's `tomllib`).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import tomli_w

from sim.config import AutoscaleSpec, PlanSpec, PoolSpec
from sim.data import read_toml_file
from sim.planning.schedules import rule_table

PATH_KEYS = ("weekly_profile", "lengths", "trace", "include", "file")


def _rebase(value: Any, source_dir: Path, target_dir: Path) -> Any:
    if isinstance(value, dict):
        return {
            k: (
                _relative(v, source_dir, target_dir)
                if k in PATH_KEYS and isinstance(v, str)
                else _rebase(v, source_dir, target_dir)
            )
            for k, v in value.items()
        }
    return value


def _relative(path: str, source_dir: Path, target_dir: Path) -> str:
    p = Path(path)
    if p.is_absolute() or not (source_dir / p).exists():
        return path
    return Path(os.path.relpath((source_dir / p).resolve(), target_dir.resolve())).as_posix()


def autoscale_table(spec: AutoscaleSpec) -> dict[str, Any]:
    """An autoscaler as the experiment file writes it: the bounds, target and signal, and every
    other setting that differs from its default (`sim.config.AutoscaleSpec`)."""
    out: dict[str, Any] = {
        "min_replicas": spec.min_replicas,
        "max_replicas": spec.max_replicas,
        "signal": spec.signal,
        "target": spec.target,
    }
    default = AutoscaleSpec(spec.min_replicas, spec.max_replicas, spec.target)
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if f.name not in out and value != getattr(default, f.name):
            out[f.name] = value
    return out


def pool_table(pool: PoolSpec) -> dict[str, Any]:
    """One pool as the experiment file writes it, its schedule rules or autoscaler included."""
    out: dict[str, Any] = {
        "name": pool.name,
        "gpu": pool.gpu,
        "count": pool.count,
        "market": pool.market,
    }
    if pool.schedule:
        out["schedule"] = [rule_table(r) for r in pool.schedule]
    if pool.autoscale is not None:
        out["autoscale"] = autoscale_table(pool.autoscale)
    return out


def plan_document(
    experiment_file: str,
    plan: PlanSpec,
    name: str,
    target_dir: Path,
    usd_per_hour: dict[str, float] | None = None,
    tp: int | None = None,
    calibration: str | None = None,
) -> str:
    """The text of the runnable experiment (see the module docstring); `usd_per_hour` (the
    search's price list) is written into `[cost.gpu_usd_per_hour]` for the GPUs it uses, `tp`
    (the plan's tensor-parallel degree) into `[engine] tp`, `calibration` (the calibration
    file the search used: the file's key or `--calibration`) into `[engine] calibration`,
    relative to `target_dir`, so the plan's GPU types from that file are known to `sim run`."""
    doc = read_toml_file(experiment_file)
    source_dir = Path(experiment_file).resolve().parent
    doc.pop("plans", None)
    doc.pop("fleet", None)
    doc.pop("plan", None)
    doc["name"] = name
    if tp is not None:
        doc.setdefault("engine", {})["tp"] = tp
    if calibration is not None:
        where = os.path.relpath(Path(calibration).resolve(), target_dir.resolve())
        doc.setdefault("engine", {})["calibration"] = Path(where).as_posix()
    if "workload" in doc:
        doc["workload"] = _rebase(doc["workload"], source_dir, target_dir)
    months = [{"pools": [pool_table(p) for p in month.pools]} for month in plan.fleet]
    if "api" in doc and not plan.api:  # one plan that does not spill: [[plans]] says so
        doc["plans"] = [{"name": "recommended", "api": False, "months": months}]
    else:
        doc["fleet"] = {"months": months}
    used = sorted({p.gpu for month in plan.fleet for p in month.pools})
    if usd_per_hour:
        cost = doc.setdefault("cost", {})
        table = cost.setdefault("gpu_usd_per_hour", {})
        for gpu in used:
            table[gpu] = usd_per_hour[gpu]
    header = (
        f"# The plan `sim plan` recommends for {Path(experiment_file).name}: run it with\n"
        f"#   sim run {target_dir.as_posix()}/plan.toml\n"
    )
    return header + tomli_w.dumps(doc)

"""Writing a run's folder: manifest.json, months/summary/hourly parquet, report.html.

The folder is built beside its destination and swapped in with renames, so an existing good
report is never replaced by a half-written one. Temporary folders of a writer that was killed
(`.NAME.tmp-PID`, `.NAME.old-PID` of a process no longer running) are removed by the next write.
A filesystem failure (read-only, disk full, a file where a folder should be) is a `ReportError`:
one line, exit code 2.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any

from sim.errors import SimError
from sim.report.page import write_report
from sim.runner import Results


class ReportError(SimError):
    """The report folder cannot be written (one line naming the path and the reason)."""


def _finite(value: Any) -> Any:
    """`value` with every non-finite float as None (strict JSON has no NaN or Infinity)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(v) for v in value]
    return value


def resolved_config(results: Results) -> dict[str, Any]:
    return dataclasses.asdict(results.spec)


def write_results(results: Results, out_dir: Path) -> Path:
    """Write every output of `results` into `out_dir` atomically; return the folder."""
    out_dir = Path(out_dir)
    try:
        return _write_results(results, out_dir)
    except OSError as err:
        where = err.filename if err.filename is not None else out_dir
        raise ReportError(
            f"cannot write the report {out_dir}: {where}: {err.strerror or err}"
        ) from None


def clean_stale(out_dir: Path) -> None:
    """Remove `.NAME.tmp-PID` / `.NAME.old-PID` folders beside `out_dir` left by a killed
    writer (its process gone)."""
    parent = out_dir.parent
    if not parent.is_dir():
        return
    prefixes = [f".{out_dir.name}.tmp-"]
    if out_dir.is_dir():  # else an `.old-` folder may hold the only copy of the last report
        prefixes.append(f".{out_dir.name}.old-")
    for prefix in prefixes:
        for path in parent.glob(f"{glob_escape(prefix)}*"):
            pid = path.name[len(prefix) :]
            if pid.isdigit() and not _alive(int(pid)) and not path.is_symlink():
                shutil.rmtree(path, ignore_errors=True)


def glob_escape(text: str) -> str:
    return "".join(f"[{c}]" if c in "*?[" else c for c in text)


def _alive(pid: int) -> bool:
    if pid == os.getpid():
        return False  # our own leftovers from an earlier write in this process
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _write_results(results: Results, out_dir: Path) -> Path:
    parent = out_dir.parent
    if parent.exists() and not parent.is_dir():
        raise ReportError(f"{parent}: is a file, not a folder: choose another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise ReportError(f"{out_dir}: exists and is not a folder: choose another --out")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    clean_stale(out_dir)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        manifest = results.manifest() | {"config": resolved_config(results)}
        (tmp / "manifest.json").write_text(
            json.dumps(_finite(manifest), indent=2, default=str) + "\n"
        )
        results.months.write_parquet(tmp / "months.parquet")
        results.summary.write_parquet(tmp / "summary.parquet")
        results.hourly.write_parquet(tmp / "hourly.parquet")
        results.risk.write_parquet(tmp / "risk.parquet")
        if len(results.spec.all_plans()) > 1:
            results.paired.write_parquet(tmp / "paired.parquet")
        if not results.timeline.is_empty():
            results.timeline.write_parquet(tmp / "timeline.parquet")
            results.timeline_events.write_parquet(tmp / "timeline_events.parquet")
        if not results.fleet_week.is_empty():
            results.fleet_week.write_parquet(tmp / "fleet_week.parquet")
            results.scale_events.write_parquet(tmp / "scale_events.parquet")
        meta = {k: v for k, v in manifest.items() if k != "config"} | {
            "replications": len(results.replications_done),
            "config": manifest["config"],
        }
        write_report(
            tmp,
            results.months,
            results.summary,
            results.hourly,
            meta,
            paired=results.paired,
            timeline=results.timeline,
            timeline_events=results.timeline_events,
            fleet_week=results.fleet_week,
            scale_events=results.scale_events,
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir

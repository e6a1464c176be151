"""Writing a run's folder: manifest.json, months/summary/hourly parquet, report.html.

The folder is built beside its destination and swapped in with renames, so an existing good
report is never replaced by a half-written one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
from pathlib import Path
from typing import Any

from sim.report.page import write_report
from sim.runner import Results


def resolved_config(results: Results) -> dict[str, Any]:
    return dataclasses.asdict(results.spec)


def write_results(results: Results, out_dir: Path) -> Path:
    """Write every output of `results` into `out_dir` atomically; return the folder."""
    out_dir = Path(out_dir)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_dir.parent / f".{out_dir.name}.tmp-{os.getpid()}"
    old = out_dir.parent / f".{out_dir.name}.old-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        manifest = results.manifest() | {"config": resolved_config(results)}
        (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=str) + "\n")
        results.months.write_parquet(tmp / "months.parquet")
        results.summary.write_parquet(tmp / "summary.parquet")
        results.hourly.write_parquet(tmp / "hourly.parquet")
        if len(results.spec.all_plans()) > 1:
            results.paired.write_parquet(tmp / "paired.parquet")
        if not results.timeline.is_empty():
            results.timeline.write_parquet(tmp / "timeline.parquet")
            results.timeline_events.write_parquet(tmp / "timeline_events.parquet")
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
        )
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if out_dir.exists():
        out_dir.rename(old)
    tmp.rename(out_dir)
    shutil.rmtree(old, ignore_errors=True)
    return out_dir

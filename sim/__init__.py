"""sim: Monte Carlo capacity planner for self-hosted LLM inference.

Library first; the `sim` command is a thin layer over these calls::

    from sim import load_experiment, run_experiment, write_results
    results = run_experiment(load_experiment("experiments/growth20pct.toml"), jobs=2)
    results.summary  # polars: per (plan, month, metric) mean and p5/p50/p95 across replications
    write_results(results, Path("reports/growth20pct"))  # manifest, parquet tables, report.html

`write_results` and `write_report` are imported on first use (they load the charting stack).
"""

from __future__ import annotations

from typing import Any

from sim.experiment import Experiment, load_experiment
from sim.runner import Results, run_experiment

__all__ = [
    "Experiment",
    "Results",
    "load_experiment",
    "run_experiment",
    "write_report",
    "write_results",
]

_REPORT = ("write_report", "write_results")


def __getattr__(name: str) -> Any:
    if name in _REPORT:
        # Imported here so that `import sim` does not load altair and vl-convert.
        from sim import report

        return getattr(report, name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")

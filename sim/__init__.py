"""sim: Monte Carlo capacity planner for self-hosted LLM inference.

Library first; the `sim` command is a thin layer over these calls::

    from sim import load_experiment, run_experiment, write_results, plan_experiment
    results = run_experiment(load_experiment("experiments/growth20pct.toml"), jobs=2)
    results.summary  # polars: per (plan, month, metric) mean and p5/p50/p95 across replications
    write_results(results, Path("reports/growth20pct"))  # manifest, parquet tables, report.html
    plan = plan_experiment(load_experiment("experiments/growth20pct.toml"), jobs=2)
    write_plan_report(plan, Path("reports/growth20pct"))  # plan.html, plan.toml

Every name is imported on first use (PEP 562), so `import sim` — and with it every `sim`
command's start-up — loads only what the call needs (NOTE: `sim --version` 0.6 s → 0.2 s).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sim.experiment import Experiment, load_experiment
    from sim.planning import Plan, plan_experiment
    from sim.report import write_report, write_results
    from sim.report.plan import write_plan_report
    from sim.runner import Results, run_experiment

_WHERE = {
    "Experiment": "sim.experiment",
    "load_experiment": "sim.experiment",
    "Results": "sim.runner",
    "run_experiment": "sim.runner",
    "Plan": "sim.planning",
    "plan_experiment": "sim.planning",
    "write_report": "sim.report",
    "write_results": "sim.report",
    "write_plan_report": "sim.report.plan",
}

__all__ = [
    "Experiment",
    "Plan",
    "Results",
    "load_experiment",
    "plan_experiment",
    "run_experiment",
    "write_plan_report",
    "write_report",
    "write_results",
]


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module 'sim' has no attribute {name!r}")

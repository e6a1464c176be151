"""sim: Monte Carlo capacity planner for self-hosted LLM inference.

Library first; the `sim` command is a thin layer over these calls::

    from sim import load_experiment, run_experiment
    results = run_experiment(load_experiment("experiments/growth20pct.toml"), jobs=2)
    results.summary  # polars: per (plan, month, metric) mean and p5/p50/p95 across replications
"""

from sim.experiment import Experiment, load_experiment
from sim.runner import Results, run_experiment

__all__ = ["Experiment", "Results", "load_experiment", "run_experiment"]

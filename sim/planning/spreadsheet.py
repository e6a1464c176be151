"""The plan a spreadsheet would write, to show what the simulation adds.

A spreadsheet sizes each month as ⌈average requests/s ÷ one replica's throughput⌉: no
queueing, no bursts, no weekly peak. Here the throughput is the GPU's capacity at the SLO
(`sim.capacity`: the largest steady Poisson rate meeting p95 TTFT and TPOT — already kinder
than a benchmark's saturation figure) and the average is the month's expected rate at nominal
growth. The plan is then simulated on the search's replications, so its cost and its risk sit
beside the recommendation's.
"""

from __future__ import annotations

import math

from sim.capacity import capacities
from sim.config import MonthPlan, PlanSpec, PoolSpec
from sim.engine import resolve_engine
from sim.experiment import Experiment
from sim.units import SECONDS_PER_MONTH


def mean_rate_per_s(exp: Experiment, month: int) -> float:
    """The expected arrival rate of 1-based `month` at nominal growth (requests/s): the
    average load a spreadsheet divides, and the floor of the plan search."""
    growth = (1.0 + exp.spec.workload.growth.mean_monthly) ** (month - 1)
    start = (month - 1) * SECONDS_PER_MONTH
    arrivals = exp.traffic().expected_arrivals(start, start + SECONDS_PER_MONTH, growth)
    return arrivals / SECONDS_PER_MONTH


def spreadsheet_plan(exp: Experiment, gpu: str) -> tuple[PlanSpec, float]:
    """The spreadsheet plan on `gpu` (on-demand, no API) and the throughput it assumed
    (requests/s per replica)."""
    spec = exp.spec
    engine = resolve_engine(spec.engine, [gpu])
    rate_per_replica = capacities(engine, [gpu], exp.lengths, spec.slo)[gpu].requests_per_s
    months = []
    for m in range(1, spec.months + 1):
        mean_rate = mean_rate_per_s(exp, m)
        count = max(1, math.ceil(mean_rate / rate_per_replica)) if rate_per_replica > 0 else 1
        months.append(MonthPlan((PoolSpec("spreadsheet", gpu, count, "on_demand"),)))
    return PlanSpec("spreadsheet", tuple(months), False), rate_per_replica

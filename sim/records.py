"""The records of a run, owned in one place: per-request outcome arrays and the schemas of the
flat tables (polars) a run produces.

`Outcomes`: per request of one simulated request set, inputs and what happened to it.
`months`: one row per (plan, replication, month); `hourly`: GPU utilisation per hour of week;
`summary`: per (plan, month, metric) quantiles across replications; `paired`: plan differences;
`timeline`: fleet state around one reclaim. docs/glossary.md defines every column by formula.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


def exact_dot(a: npt.ArrayLike, b: npt.ArrayLike) -> float:
    """Σ a_i × b_i, exactly rounded: `math.fsum` of the products (each an IEEE-rounded
    float64), so the same bits on every CPU.

    NOTE: `np.dot` hands float vectors to BLAS, whose dot kernel is chosen per CPU (OpenBLAS:
    Zen, Haswell, SkyLakeX, ...) and adds in its own order: month tables (weighted counts,
    utilisation and its standard error, the spot bill) differed in the last bit between an AMD
    EPYC and the machine that recorded tests/golden/ — and would between the nodes of a Ray
    cluster. A run's tables are reproducible on any machine only if no sum depends on it.
    """
    return math.fsum(np.multiply(a, b, dtype=np.float64).tolist())


@dataclass(frozen=True)
class Outcomes:
    """Per-request inputs and outcomes of one simulated request set (NaN time = never).

    evictions: times the request was taken off a reclaimed replica; api: spilled to the API;
    dropped: dropped by the API's rate limit; throttled: got a 429 at least once.
    """

    arrival_s: FloatArray
    first_token_s: FloatArray
    finish_s: FloatArray
    input_tokens: IntArray
    output_tokens: IntArray
    rejected: BoolArray
    preemptions: IntArray
    evictions: IntArray
    api: BoolArray
    dropped: BoolArray
    throttled: BoolArray


MONTH_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "plan": pl.String,
    "replication": pl.Int64,
    "month": pl.Int64,
    "requests": pl.Int64,
    "finished": pl.Int64,
    "rejected": pl.Int64,
    "in_flight_at_end": pl.Int64,
    "preemptions": pl.Int64,  # KV-cache recompute preemptions inside vLLM (not spot)
    "spot_preemptions": pl.Int64,  # spot reclaims of the plan's instances in the month
    "requeued": pl.Int64,  # requests taken off a reclaimed replica and routed again
    "api_requests": pl.Int64,  # requests spilled to the API (dropped ones included)
    "api_dropped": pl.Int64,  # dropped by the API's rate limit
    "api_throttled": pl.Int64,  # got a 429 at least once
    "api_input_tokens": pl.Int64,
    "api_output_tokens": pl.Int64,
    "ttft_p50_s": pl.Float64,
    "ttft_p95_s": pl.Float64,
    "ttft_p99_s": pl.Float64,
    "tpot_p50_s": pl.Float64,
    "tpot_p95_s": pl.Float64,
    "e2e_p50_s": pl.Float64,
    "e2e_p95_s": pl.Float64,
    "e2e_p99_s": pl.Float64,
    "slo_attainment": pl.Float64,
    "gpu_utilisation": pl.Float64,  # busy time: any sequence running (docs/glossary.md)
    # tokens served ÷ what the planned replicas serve at the SLO (sim.capacity; the runner
    # fills it after the replications, null in a replication's own rows)
    "token_utilisation": pl.Float64,
    "replicas": pl.Int64,
    "gpu_hours": pl.Float64,
    "gpu_cost_usd": pl.Float64,
    "gpu_cost_on_demand_usd": pl.Float64,
    "gpu_cost_spot_usd": pl.Float64,
    "gpu_cost_reserved_usd": pl.Float64,
    "gpu_hours_on_demand": pl.Float64,  # GPU-hours by market (spot fallbacks are on-demand)
    "gpu_hours_spot": pl.Float64,
    "gpu_hours_reserved": pl.Float64,
    "scale_ups": pl.Int64,  # replicas an autoscaler launched in the month (weighted if sampled)
    "cold_start_delayed": pl.Int64,  # requests arriving while a launched replica was starting
    "serving_replica_hours": pl.Float64,  # when the fleet moves within the month; NaN if fixed
    "ops_cost_usd": pl.Float64,
    "api_cost_usd": pl.Float64,
    "cost_usd": pl.Float64,  # GPU + operations + API
    "all_api_cost_usd": pl.Float64,  # the same month's tokens, all on the API (NaN: no [api])
    "savings_vs_all_api_usd": pl.Float64,
    "usd_per_million_tokens": pl.Float64,
    "input_tokens": pl.Int64,
    "output_tokens": pl.Int64,
    "growth_factor": pl.Float64,
    # standard errors of the sampled-horizon estimator (NaN when the month was fully simulated)
    "ttft_p95_se_s": pl.Float64,
    "slo_attainment_se": pl.Float64,
    "gpu_utilisation_se": pl.Float64,
}

# Per (plan, month): SLO misses (`miss`), p95 TTFT over its SLO (`ttft`) and p95 TPOT over its
# SLO (`tpot`) across `n` replications: count k, share p = k/n, two-sided 95 % Clopper–Pearson
# interval [p_lo, p_hi] (sim.stats.risk.risk_table).
RISK_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "plan": pl.String,
    "month": pl.Int64,
    "n": pl.Int64,
    **{
        f"{prefix}_{name}{suffix}": (pl.Int64 if prefix == "k" else pl.Float64)
        for name in ("miss", "ttft", "tpot")
        for prefix, suffix in (("k", ""), ("p", ""), ("p", "_lo"), ("p", "_hi"))
    },
}

HOURLY_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "plan": pl.String,
    "replication": pl.Int64,
    "month": pl.Int64,
    "hour_of_week": pl.Int64,
    "utilisation": pl.Float64,
}

SUMMARY_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "plan": pl.String,
    "month": pl.Int64,
    "metric": pl.String,
    "mean": pl.Float64,
    "p5": pl.Float64,
    "p50": pl.Float64,
    "p95": pl.Float64,
}

# KPIs summarised across replications (the numeric columns of MONTH_SCHEMA but the keys).
SUMMARY_METRICS: tuple[str, ...] = tuple(
    k for k in MONTH_SCHEMA if k not in ("plan", "replication", "month")
)

# Paired differences between plans (`[[plans]]`): per replication, plan minus the first plan
# (the baseline) of the same replication — common random numbers — then quantiles across
# replications. One row per (plan, month, metric); the baseline has no rows.
PAIRED_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "plan": pl.String,
    "baseline": pl.String,
    "month": pl.Int64,
    "metric": pl.String,
    "mean": pl.Float64,
    "p5": pl.Float64,
    "p50": pl.Float64,
    "p95": pl.Float64,
    "p_better": pl.Float64,  # share of replications in which the plan is better on the metric
}

PAIRED_METRICS: tuple[tuple[str, int], ...] = (
    # (metric, +1 if more is better, -1 if less is better)
    ("cost_usd", -1),
    ("gpu_cost_usd", -1),
    ("api_cost_usd", -1),
    ("ttft_p95_s", -1),
    ("e2e_p95_s", -1),
    ("slo_attainment", 1),
    ("ttft_p95_above_slo", -1),
)

# One sampled replication around a spot reclaim, for the report's risk page: fleet state
# every few seconds (replicas healthy, requests waiting/running on them, waiting at the router,
# cumulative API spills), and the reclaim events themselves.
TIMELINE_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "plan": pl.String,
    "t_s": pl.Float64,
    "healthy_replicas": pl.Int64,
    "waiting": pl.Int64,
    "running": pl.Int64,
    "router_backlog": pl.Int64,
    "api_spilled": pl.Int64,
}

TIMELINE_EVENTS_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "plan": pl.String,
    "replica": pl.Int64,
    "event": pl.String,  # "notice" | "down" | "up"
    "t_s": pl.Float64,
}

# One week of the fleet that moves (schedules, autoscalers), for the report: every plan whose
# pools move within a month, replayed over the first week of its busiest month in replication
# 0 (`sim.week`), probed every few minutes — replicas serving, requests waiting/running on
# them, waiting at the router, cumulative API spills — and its scale events.
FLEET_WEEK_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "plan": pl.String,
    "t_s": pl.Float64,  # plan seconds
    "serving_replicas": pl.Int64,
    "waiting": pl.Int64,
    "running": pl.Int64,
    "router_backlog": pl.Int64,
    "api_spilled": pl.Int64,
}

SCALE_EVENTS_SCHEMA: dict[str, type[pl.DataType] | pl.DataType] = {
    "plan": pl.String,
    "t_s": pl.Float64,
    "pool": pl.String,
    "replica": pl.Int64,
    "event": pl.String,  # "launch", "up" (billed from here), "serve", "release"
    "serving_after": pl.Int64,  # the pool's replicas serving after the event
}

"""Schemas of the flat tables a run produces (polars), owned in one place.

`months`: one row per (plan, replication, month); `hourly`: GPU utilisation per hour of week;
`summary`: per (plan, month, metric) quantiles across replications. docs/glossary.md defines
every column by formula.
"""

from __future__ import annotations

import polars as pl

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
    "gpu_utilisation": pl.Float64,
    "replicas": pl.Int64,
    "gpu_hours": pl.Float64,
    "gpu_cost_usd": pl.Float64,
    "gpu_cost_on_demand_usd": pl.Float64,
    "gpu_cost_spot_usd": pl.Float64,
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

"""Per-month KPIs of one replication, and their distribution across replications.

Percentiles within a month are exact (numpy's linear interpolation over every request of the
month, no streaming sketch): a full-horizon month holds at most a few hundred thousand requests,
so exactness costs little. Definitions of every KPI are in docs/glossary.md.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from sim.records import (
    HOURLY_SCHEMA,
    MONTH_SCHEMA,
    PAIRED_METRICS,
    PAIRED_SCHEMA,
    SUMMARY_METRICS,
    SUMMARY_SCHEMA,
)

FloatArray = npt.NDArray[np.float64]
HOUR_S = 3600.0
HOURS_PER_WEEK = 168


@dataclass(frozen=True)
class MonthCost:
    """What the plan pays in one month (from the plan, not from the simulation)."""

    replicas: int
    gpu_hours: float
    gpu_cost_usd: float
    ops_cost_usd: float


@dataclass(frozen=True)
class SpotBill:
    """One month of a plan's spot slots: GPU-hours and dollars by market, and reclaims."""

    spot_gpu_hours: float = 0.0
    spot_usd: float = 0.0
    fallback_gpu_hours: float = 0.0  # on-demand replacements after `spot.fallback_after_s`
    fallback_usd: float = 0.0
    reclaims: int = 0


@dataclass(frozen=True)
class ApiUse:
    """One month's traffic on the overflow API (weighted sums on a sampled horizon)."""

    requests: int = 0
    dropped: int = 0
    throttled: int = 0
    input_tokens: int = 0
    output_tokens: int = 0


NO_SPOT = SpotBill()
NO_API = ApiUse()


@dataclass(frozen=True)
class RequestArrays:
    """Per-request inputs and outcomes of one replication, as numpy arrays (NaN = never)."""

    arrival_s: FloatArray
    first_token_s: FloatArray
    finish_s: FloatArray
    input_tokens: npt.NDArray[np.int64]
    output_tokens: npt.NDArray[np.int64]
    rejected: npt.NDArray[np.bool_]
    preemptions: npt.NDArray[np.int64]
    evictions: npt.NDArray[np.int64] | None = None  # None: no spot in the plan
    api: npt.NDArray[np.bool_] | None = None  # None: no API in the plan
    dropped: npt.NDArray[np.bool_] | None = None
    throttled: npt.NDArray[np.bool_] | None = None


def cost_fields(
    cost: MonthCost,
    input_tokens: int,
    output_tokens: int,
    spot: SpotBill = NO_SPOT,
    api: ApiUse = NO_API,
    api_prices: tuple[float, float] | None = None,
) -> dict[str, object]:
    """The cost and hybrid columns of a month row.

    GPU on-demand cost and operations come from the plan; spot cost from the replication's
    reclaims; API cost from the spilled tokens at list prices (`api_prices` = input and output
    USD per million tokens). The all-API bill prices the month's tokens — every accepted
    request's input and output — on that API.
    """
    per_m_in, per_m_out = api_prices if api_prices is not None else (math.nan, math.nan)
    api_usd = (api.input_tokens * per_m_in + api.output_tokens * per_m_out) / 1e6
    if api_prices is None:
        api_usd = 0.0
    gpu_usd = cost.gpu_cost_usd + spot.spot_usd + spot.fallback_usd
    total = gpu_usd + cost.ops_cost_usd + api_usd
    all_api = (input_tokens * per_m_in + output_tokens * per_m_out) / 1e6
    tokens = input_tokens + output_tokens
    return {
        "spot_preemptions": spot.reclaims,
        "api_requests": api.requests,
        "api_dropped": api.dropped,
        "api_throttled": api.throttled,
        "api_input_tokens": api.input_tokens,
        "api_output_tokens": api.output_tokens,
        "replicas": cost.replicas,
        "gpu_hours": cost.gpu_hours + spot.spot_gpu_hours + spot.fallback_gpu_hours,
        "gpu_cost_usd": gpu_usd,
        "gpu_cost_on_demand_usd": cost.gpu_cost_usd + spot.fallback_usd,
        "gpu_cost_spot_usd": spot.spot_usd,
        "ops_cost_usd": cost.ops_cost_usd,
        "api_cost_usd": api_usd,
        "cost_usd": total,
        "all_api_cost_usd": all_api,
        "savings_vs_all_api_usd": all_api - total,
        "usd_per_million_tokens": total / tokens * 1e6 if tokens else float("nan"),
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
    }


def _pct(values: FloatArray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


def busy_by_hour(periods: Sequence[tuple[float, float]], hours: int) -> FloatArray:
    """Busy seconds of one replica in each hour [h·3600, (h+1)·3600) for h < `hours`.

    `periods` are disjoint busy intervals in time order. Uses the cumulative busy time
    F(x) = Σ_i clip(x − s_i, 0, e_i − s_i) evaluated at the hour edges.
    """
    edges = np.arange(hours + 1, dtype=np.float64) * HOUR_S
    if not periods:
        return np.zeros(hours)
    arr = np.asarray(periods, dtype=np.float64)
    starts, ends = arr[:, 0], arr[:, 1]
    cum = np.concatenate(([0.0], np.cumsum(ends - starts)))
    done = np.searchsorted(ends, edges, side="right")  # periods fully before each edge
    partial = np.zeros_like(edges)
    inside = done < len(starts)
    idx = done[inside]
    partial[inside] = np.clip(edges[inside] - starts[idx], 0.0, None)
    busy_to_edge = cum[done] + partial
    return np.diff(busy_to_edge)


def month_rows(
    *,
    plan: str,
    replication: int,
    requests: RequestArrays,
    month_s: float,
    months: int,
    busy_hours: Sequence[FloatArray],
    active: Sequence[Sequence[int]],
    costs: Sequence[MonthCost],
    growth: Sequence[float],
    slo_ttft_s: float,
    slo_tpot_s: float,
    spot: Sequence[SpotBill] | None = None,
    api_prices: tuple[float, float] | None = None,
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """KPI rows (one per month) and hour-of-week utilisation rows of one replication.

    `busy_hours[r]` is replica r's busy seconds per hour of the horizon; `active[m]` lists the
    replicas that month m (0-based) routes to; utilisation is their busy share of that month.
    """
    horizon_s = months * month_s
    arrival = requests.arrival_s
    month_of = np.minimum((arrival // month_s).astype(np.int64), months - 1)
    accepted = ~requests.rejected
    ttft = requests.first_token_s - arrival
    e2e = requests.finish_s - arrival
    multi = requests.output_tokens > 1
    tpot = np.full(arrival.shape, np.nan)
    tpot[multi] = (requests.finish_s[multi] - requests.first_token_s[multi]) / (
        requests.output_tokens[multi] - 1
    )
    meets = accepted & (ttft <= slo_ttft_s) & (~multi | (tpot <= slo_tpot_s))
    hours_per_month = round(month_s / HOUR_S)
    rows: list[dict[str, object]] = []
    hourly: list[dict[str, object]] = []
    for m in range(months):
        sel = month_of == m
        acc = sel & accepted
        n = int(sel.sum())
        finished = int((acc & (requests.finish_s <= horizon_s)).sum())
        served = acc & ~np.isnan(requests.finish_s)  # not dropped by the API, not unserved
        ttft_m = ttft[served]
        tpot_m = tpot[served & multi]
        e2e_m = e2e[served]
        reps = list(active[m])
        h0, h1 = m * hours_per_month, (m + 1) * hours_per_month
        busy = np.zeros(hours_per_month)
        for r in reps:
            busy += busy_hours[r][h0:h1]
        capacity_s = len(reps) * month_s
        cost = costs[m]
        api = _api_use(requests, sel)
        tokens_in = int(requests.input_tokens[served].sum())
        tokens_out = int(requests.output_tokens[served].sum())
        rows.append(
            {
                "plan": plan,
                "replication": replication,
                "month": m + 1,
                "requests": n,
                "finished": finished,
                "rejected": int((sel & requests.rejected).sum()),
                "in_flight_at_end": int(acc.sum()) - finished - api.dropped,
                "preemptions": int(requests.preemptions[sel].sum()),
                "requeued": int(requests.evictions[sel].sum())
                if requests.evictions is not None
                else 0,
                "ttft_p50_s": _pct(ttft_m, 50),
                "ttft_p95_s": _pct(ttft_m, 95),
                "ttft_p99_s": _pct(ttft_m, 99),
                "tpot_p50_s": _pct(tpot_m, 50),
                "tpot_p95_s": _pct(tpot_m, 95),
                "e2e_p50_s": _pct(e2e_m, 50),
                "e2e_p95_s": _pct(e2e_m, 95),
                "e2e_p99_s": _pct(e2e_m, 99),
                "slo_attainment": float(meets[sel].mean()) if n else float("nan"),
                "gpu_utilisation": float(busy.sum() / capacity_s),
                **cost_fields(
                    cost,
                    tokens_in,
                    tokens_out,
                    spot[m] if spot is not None else NO_SPOT,
                    api,
                    api_prices,
                ),
                "growth_factor": float(growth[m]),
                "ttft_p95_se_s": float("nan"),
                "slo_attainment_se": float("nan"),
                "gpu_utilisation_se": float("nan"),
            }
        )
        how = np.arange(h0, h1) % HOURS_PER_WEEK
        busy_how = np.bincount(how, weights=busy, minlength=HOURS_PER_WEEK)
        hours_how = np.bincount(how, minlength=HOURS_PER_WEEK).astype(np.float64)
        util = busy_how / (hours_how * HOUR_S * len(reps))
        for h in range(HOURS_PER_WEEK):
            hourly.append(
                {
                    "plan": plan,
                    "replication": replication,
                    "month": m + 1,
                    "hour_of_week": h,
                    "utilisation": float(util[h]),
                }
            )
    return rows, hourly


def _api_use(requests: RequestArrays, sel: npt.NDArray[np.bool_]) -> ApiUse:
    if requests.api is None:
        return ApiUse()
    on_api = sel & requests.api
    dropped = on_api & requests.dropped if requests.dropped is not None else on_api & False
    served = on_api & ~dropped
    throttled = on_api & requests.throttled if requests.throttled is not None else dropped
    return ApiUse(
        requests=int(on_api.sum()),
        dropped=int(dropped.sum()),
        throttled=int(throttled.sum()),
        input_tokens=int(requests.input_tokens[served].sum()),
        output_tokens=int(requests.output_tokens[served].sum()),
    )


def months_frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    """Rows → the `months` table, sorted by (plan, replication, month)."""
    return pl.DataFrame(rows, schema=MONTH_SCHEMA).sort("plan", "replication", "month")


def hourly_frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=HOURLY_SCHEMA).sort(
        "plan", "replication", "month", "hour_of_week"
    )


def summarise(months: pl.DataFrame, slo_ttft_s: float) -> pl.DataFrame:
    """Mean and p5/p50/p95 across replications of every KPI, per (plan, month).

    Adds the metric `p_ttft_p95_above_slo`: the share of replications whose month p95 TTFT
    exceeds the SLO (an estimate of P(p95 TTFT > SLO) for that month).
    """
    long = months.unpivot(
        index=["plan", "replication", "month"], on=list(SUMMARY_METRICS), variable_name="metric"
    ).with_columns(pl.col("value").cast(pl.Float64))
    q = pl.col("value")
    summary = long.group_by("plan", "month", "metric").agg(
        q.mean().alias("mean"),
        q.quantile(0.05, "linear").alias("p5"),
        q.quantile(0.50, "linear").alias("p50"),
        q.quantile(0.95, "linear").alias("p95"),
    )
    risk = (
        months.group_by("plan", "month")
        # months without an accepted request (p95 is NaN) have no p95 to compare: left out
        .agg(
            (pl.col("ttft_p95_s") > slo_ttft_s)
            .filter(~pl.col("ttft_p95_s").is_nan())
            .cast(pl.Float64)
            .mean()
            .alias("mean")
        )
        .with_columns(
            pl.lit("p_ttft_p95_above_slo").alias("metric"),
            pl.col("mean").alias("p5"),
            pl.col("mean").alias("p50"),
            pl.col("mean").alias("p95"),
        )
    )
    out = pl.concat([summary, risk.select(summary.columns)])
    out = out.select(list(SUMMARY_SCHEMA)).cast(SUMMARY_SCHEMA)  # type: ignore[arg-type]
    return out.sort("plan", "month", "metric")


def paired_differences(
    months: pl.DataFrame, slo_ttft_s: float, plans: Sequence[str]
) -> pl.DataFrame:
    """Each plan minus the first plan, replication by replication, summarised across them.

    Replication k of every plan saw the same traffic, reclaims and API latency (common random
    numbers), so the per-replication difference isolates the plan's effect. `p_better` is the
    share of replications in which the plan did better on the metric (ties count half). The
    metric `ttft_p95_above_slo` is the 0/1 breach indicator, so its mean difference is the
    change in P(p95 TTFT > SLO).
    """
    present = set(months["plan"].unique().to_list())
    plans = [p for p in plans if p in present]
    if len(plans) < 2:
        return pl.DataFrame(schema=PAIRED_SCHEMA)
    base_name = plans[0]
    frame = months.with_columns(
        (pl.col("ttft_p95_s") > slo_ttft_s).cast(pl.Float64).alias("ttft_p95_above_slo")
    )
    names = [m for m, _ in PAIRED_METRICS]
    base = frame.filter(pl.col("plan") == base_name).select(
        "replication", "month", *[pl.col(m).alias(f"{m}__base") for m in names]
    )
    out = []
    for plan in plans[1:]:
        joined = frame.filter(pl.col("plan") == plan).join(
            base, on=["replication", "month"], how="inner"
        )
        for metric, sign in PAIRED_METRICS:
            diff = (pl.col(metric) - pl.col(f"{metric}__base")).cast(pl.Float64)
            better = pl.when(diff * sign > 0).then(1.0).when(diff == 0).then(0.5).otherwise(0.0)
            out.append(
                joined.group_by("month").agg(
                    pl.lit(plan).alias("plan"),
                    pl.lit(base_name).alias("baseline"),
                    pl.lit(metric).alias("metric"),
                    diff.mean().alias("mean"),
                    diff.quantile(0.05, "linear").alias("p5"),
                    diff.quantile(0.50, "linear").alias("p50"),
                    diff.quantile(0.95, "linear").alias("p95"),
                    better.mean().alias("p_better"),
                )
            )
    result = pl.concat(out).select(list(PAIRED_SCHEMA)).cast(PAIRED_SCHEMA)  # type: ignore[arg-type]
    order = {p: i for i, p in enumerate(plans)}
    return (
        result.with_columns(pl.col("plan").replace_strict(order).alias("_o"))
        .sort("_o", "month", "metric")
        .drop("_o")
    )

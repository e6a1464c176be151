"""Tables across replications: the `months`/`hourly` frames, the summary of every KPI across
replications, and the paired differences between plans (common random numbers).
"""

from __future__ import annotations

from collections.abc import Sequence

import polars as pl

from sim.config import SloSpec
from sim.records import (
    HOURLY_SCHEMA,
    MONTH_SCHEMA,
    PAIRED_METRICS,
    PAIRED_SCHEMA,
    SUMMARY_METRICS,
    SUMMARY_SCHEMA,
)
from sim.stats.risk import missed_slo


def months_frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    """Rows → the `months` table, sorted by (plan, replication, month)."""
    return pl.DataFrame(rows, schema=MONTH_SCHEMA).sort("plan", "replication", "month")


def hourly_frame(rows: list[dict[str, object]]) -> pl.DataFrame:
    return pl.DataFrame(rows, schema=HOURLY_SCHEMA).sort(
        "plan", "replication", "month", "hour_of_week"
    )


PROBABILITIES = ("p_ttft_p95_above_slo", "p_tpot_p95_above_slo", "p_miss_slo")
"""Summary metrics that are shares of replications (mean = the estimate; p5 = p50 = p95 = mean;
their k/n and Clopper–Pearson intervals are in `sim.stats.risk.risk_table`)."""


def summarise(months: pl.DataFrame, slo: SloSpec) -> pl.DataFrame:
    """Mean and p5/p50/p95 across replications of every KPI, per (plan, month).

    Adds three shares of replications: `p_ttft_p95_above_slo` and `p_tpot_p95_above_slo` (the
    month's p95 TTFT / TPOT exceeds its SLO; months without a p95 are left out) and
    `p_miss_slo` (`sim.stats.risk.missed_slo`: either, in one definition).
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

    def above(column: str, limit: float) -> pl.Expr:
        # months without an accepted request (p95 is NaN) have no p95 to compare: left out
        return (pl.col(column) > limit).filter(~pl.col(column).is_nan()).cast(pl.Float64).mean()

    shares = (
        months.with_columns(missed_slo(slo))
        .group_by("plan", "month")
        .agg(
            above("ttft_p95_s", slo.ttft_s).alias("p_ttft_p95_above_slo"),
            above("tpot_p95_s", slo.tpot_s).alias("p_tpot_p95_above_slo"),
            pl.col("missed_slo").cast(pl.Float64).mean().alias("p_miss_slo"),
        )
        .unpivot(index=["plan", "month"], variable_name="metric", value_name="mean")
        .with_columns(pl.col("mean").alias(q) for q in ("p5", "p50", "p95"))
    )
    out = pl.concat([summary, shares.select(summary.columns)])
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

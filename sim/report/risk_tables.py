"""The risk section's tables: cost split and spot/API activity per plan, paired differences,
and what the replayed reclaim did.

Each table is a frame first (``*_table``), then HTML (``*_html``); all read the runner's tables
only. Columns a table needs but an old ``months.parquet`` lacks are left out; a table with none
of its columns returns ``None``.
"""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Final

import polars as pl

from sim.report.risk import spills_per_minute, timeline_origin_s
from sim.report.shell import _plans
from sim.report.tables import _format, _risk_class

# (months column, heading) of the cost table: medians across replications.
COST_COLUMNS: Final = (
    ("gpu_cost_on_demand_usd", "On-demand GPU"),
    ("gpu_cost_spot_usd", "Spot GPU"),
    ("api_cost_usd", "API"),
    ("ops_cost_usd", "Operations"),
    ("cost_usd", "Total"),
)
SAVINGS: Final = "savings_vs_all_api_usd"
# (months column, heading) of the activity table: median and p95 across replications.
ACTIVITY_COLUMNS: Final = (
    ("spot_preemptions", "Spot reclaims"),
    ("requeued", "Requests re-queued"),
    ("api_requests", "API requests"),
    ("api_dropped", "API dropped"),
)
# (paired metric, heading, format kind) of the paired-differences table.
PAIRED_COLUMNS: Final = (
    ("cost_usd", "Δ cost (USD / month)", "d-usd"),
    ("ttft_p95_s", "Δ p95 TTFT (s)", "d-seconds"),
    ("slo_attainment", "Δ SLO attainment", "d-pp"),
    ("ttft_p95_above_slo", "Δ P(p95 TTFT > SLO)", "d-pp"),
)


def _ordered(table: pl.DataFrame, plans: Sequence[str]) -> pl.DataFrame:
    order = {plan: i for i, plan in enumerate(plans)}
    return (
        table.with_columns(pl.col("plan").replace_strict(order, return_dtype=pl.Int64).alias("_o"))
        .sort("_o", "month")
        .drop("_o")
    )


def _table(head1: list[str], head2: list[str] | None, body: list[str]) -> str:
    rows = "<tr>" + "".join(head1) + "</tr>"
    if head2:
        rows += "\n<tr>" + "".join(head2) + "</tr>"
    return (
        f'<table class="summary">\n<thead>\n{rows}\n</thead>\n<tbody>\n'
        + "\n".join(body)
        + "\n</tbody>\n</table>"
    )


def _num(text: str, cls: str = "") -> str:
    return f'<td class="num {cls}">{text}</td>' if cls else f'<td class="num">{text}</td>'


# --------------------------------------------------------------------------- cost and activity


def cost_table(months: pl.DataFrame, budget_usd: float | None = None) -> pl.DataFrame | None:
    """Per (plan, month): the median across replications of each cost part and of the total,
    ``p_over_budget`` (share of replications whose month cost exceeded the budget; with a
    budget), and the savings against an all-API bill (``savings_p5/p50/p95``; NaN without
    ``[api]``). Medians of parts need not add up to the median total."""
    parts = [c for c, _ in COST_COLUMNS if c in months.columns]
    if "cost_usd" not in parts or len(parts) < 3 or not months.height:
        return None
    aggs = [pl.col(c).median() for c in parts]
    if budget_usd is not None:
        aggs.append((pl.col("cost_usd") > budget_usd).mean().alias("p_over_budget"))
    if SAVINGS in months.columns:
        aggs += [
            pl.col(SAVINGS).quantile(q, "linear").alias(f"savings_{name}")
            for q, name in ((0.05, "p5"), (0.5, "p50"), (0.95, "p95"))
        ]
    table = months.group_by("plan", "month", maintain_order=True).agg(aggs)
    return _ordered(table, _plans(months))


def activity_table(months: pl.DataFrame) -> pl.DataFrame | None:
    """Per (plan, month): ``{column}_p50`` and ``{column}_p95`` across replications of each of
    ``ACTIVITY_COLUMNS`` (counts in the month)."""
    cols = [c for c, _ in ACTIVITY_COLUMNS if c in months.columns]
    if not cols or not months.height:
        return None
    table = months.group_by("plan", "month", maintain_order=True).agg(
        *(pl.col(c).cast(pl.Float64).median().alias(f"{c}_p50") for c in cols),
        *(pl.col(c).cast(pl.Float64).quantile(0.95, "linear").alias(f"{c}_p95") for c in cols),
    )
    return _ordered(table, _plans(months))


def cost_table_html(table: pl.DataFrame) -> str:
    parts = [(c, h) for c, h in COST_COLUMNS if c in table.columns]
    budget = "p_over_budget" in table.columns
    savings = "savings_p50" in table.columns and not table["savings_p50"].is_nan().all()
    head1 = ['<th rowspan="2">Plan</th>', '<th rowspan="2">Month</th>']
    head1.append(f'<th colspan="{len(parts)}">Median cost (USD / month)</th>')
    if budget:
        head1.append('<th rowspan="2">P(cost &gt; budget)</th>')
    if savings:
        head1.append('<th colspan="2">Saving vs all-API (USD / month)</th>')
    head2 = [f"<th>{html.escape(h)}</th>" for _, h in parts]
    if savings:
        head2 += ["<th>median</th>", "<th>p5 … p95</th>"]
    body = []
    for row in table.iter_rows(named=True):
        cells = [f"<td>{html.escape(str(row['plan']))}</td>", f"<td>{row['month']}</td>"]
        cells += [_num(_format(row[c], "usd")) for c, _ in parts]
        if budget:
            p = row["p_over_budget"]
            cells.append(_num(_format(p, "share"), _risk_class(p)))
        if savings:
            cells.append(_num(_format(row["savings_p50"], "usd")))
            span = f"{_format(row['savings_p5'], 'usd')} … {_format(row['savings_p95'], 'usd')}"
            cells.append(_num(span))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table(head1, head2, body)


def activity_table_html(table: pl.DataFrame) -> str:
    cols = [(c, h) for c, h in ACTIVITY_COLUMNS if f"{c}_p50" in table.columns]
    head1 = ['<th rowspan="2">Plan</th>', '<th rowspan="2">Month</th>']
    head1 += [f'<th colspan="2">{html.escape(h)}</th>' for _, h in cols]
    head2 = ["<th>median</th><th>p95</th>"] * len(cols)
    body = []
    for row in table.iter_rows(named=True):
        cells = [f"<td>{html.escape(str(row['plan']))}</td>", f"<td>{row['month']}</td>"]
        for c, _ in cols:
            cells += [_num(_format(row[f"{c}_{q}"], "count")) for q in ("p50", "p95")]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table(head1, head2, body)


# --------------------------------------------------------------------------- paired


def paired_table(paired: pl.DataFrame) -> pl.DataFrame | None:
    """Per (plan, month) of every plan but the baseline: ``{metric}_{mean,p5,p95,p_better}``
    for each of ``PAIRED_COLUMNS`` in ``paired``; ``None`` when there is no difference (one
    plan, or an old run)."""
    rows = paired.filter(pl.col("metric").is_in([m for m, _, _ in PAIRED_COLUMNS]))
    if rows.is_empty():
        return None
    keys = rows.select("plan", "month").unique(maintain_order=True)
    table = keys
    for metric, _, _ in PAIRED_COLUMNS:
        part = rows.filter(pl.col("metric") == metric).select(
            "plan",
            "month",
            *(pl.col(c).alias(f"{metric}_{c}") for c in ("mean", "p5", "p95", "p_better")),
        )
        if not part.is_empty():
            table = table.join(part, on=["plan", "month"], how="left", maintain_order="left")
    return _ordered(table, _plans(keys))


def _better(p: object) -> str:
    if not isinstance(p, float) or p != p:
        return ""
    return "better-high" if p >= 0.9 else "better-low" if p <= 0.1 else ""


def paired_table_html(table: pl.DataFrame, baseline: str) -> str:
    shown = [m for m in PAIRED_COLUMNS if f"{m[0]}_mean" in table.columns]
    head1 = ['<th rowspan="2">Plan</th>', '<th rowspan="2">Month</th>']
    head1 += [f'<th colspan="3">{html.escape(title)}</th>' for _, title, _ in shown]
    head2 = ["<th>mean</th><th>p5 … p95</th><th>P(better)</th>"] * len(shown)
    body = []
    for row in table.iter_rows(named=True):
        plan = f"{html.escape(str(row['plan']))} − {html.escape(baseline)}"
        cells = [f"<td>{plan}</td>", f"<td>{row['month']}</td>"]
        for metric, _, kind in shown:
            span = f"{_format(row[f'{metric}_p5'], kind)} … {_format(row[f'{metric}_p95'], kind)}"
            p = row[f"{metric}_p_better"]
            cells += [
                _num(_format(row[f"{metric}_mean"], kind)),
                _num(span),
                _num(_format(p, "share"), _better(p)),
            ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table(head1, head2, body)


# --------------------------------------------------------------------------- timeline


def timeline_table(timeline: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """What the replayed reclaim did, per plan: reclaim notices in the window, fewest healthy
    replicas, most requests waiting (on replicas + at the router), most running, and requests
    spilled to the API in the window and in its busiest minute."""
    notices = (
        events.filter(pl.col("event") == "notice")
        .group_by("plan")
        .agg(pl.len().cast(pl.Int64).alias("notices"))
    )
    per_minute = (
        spills_per_minute(timeline, timeline_origin_s(timeline, events))
        .group_by("plan")
        .agg(pl.col("spills").max().alias("spills_peak_min"))
    )
    state = timeline.group_by("plan", maintain_order=True).agg(
        pl.col("healthy_replicas").max().alias("replicas_max"),
        pl.col("healthy_replicas").min().alias("replicas_min"),
        (pl.col("waiting") + pl.col("router_backlog")).max().alias("waiting_max"),
        pl.col("running").max().alias("running_max"),
        (pl.col("api_spilled").max() - pl.col("api_spilled").min()).alias("spills"),
    )
    return (
        state.join(notices, on="plan", how="left", maintain_order="left")
        .join(per_minute, on="plan", how="left", maintain_order="left")
        .with_columns(pl.col("notices").fill_null(0))
        .select(
            "plan",
            "notices",
            "replicas_max",
            "replicas_min",
            "waiting_max",
            "running_max",
            "spills",
            "spills_peak_min",
        )
    )


def timeline_table_html(table: pl.DataFrame) -> str:
    heads = (
        "Plan",
        "Reclaim notices",
        "Healthy replicas (most → fewest)",
        "Most requests waiting",
        "Most running",
        "API spills in the window",
        "API spills, busiest minute",
    )
    body = []
    for row in table.iter_rows(named=True):
        cells = [
            f"<td>{html.escape(str(row['plan']))}</td>",
            _num(_format(row["notices"], "count")),
            _num(f"{row['replicas_max']} → {row['replicas_min']}"),
            _num(_format(row["waiting_max"], "count")),
            _num(_format(row["running_max"], "count")),
            _num(_format(row["spills"], "count")),
            _num(_format(row["spills_peak_min"], "count")),
        ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table([f"<th>{h}</th>" for h in heads], None, body)

"""The risk page of a run (`risk.html` beside `report.html`): hybrid plans at a glance.

Shows, per plan: monthly cost p5/p50/p95 against the budget; P(p95 TTFT > SLO) per month; the
hybrid columns (spot reclaims, re-queued requests, API traffic and dollars, savings against an
all-API bill); the paired differences from the first plan; and the timeline of one sampled
replication around a spot reclaim — healthy replicas, requests waiting (on replicas and at the
router) and API spills per minute, with the reclaim notice, deadline and replacement marked.
Charts are pure functions of the run's tables (polars in, altair out).
"""

from __future__ import annotations

import html
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import altair as alt
import polars as pl

from sim.report import (
    _CSS,
    _EMBED_LOOP,
    _EMBED_OPTIONS,
    Chart,
    _atomic_write,
    _inline,
    _script_json,
    _vega_bundle,
    write_png,
)

HYBRID_ROWS = (
    ("spot_preemptions", "spot reclaims", "{:,.0f}"),
    ("requeued", "requests re-queued", "{:,.0f}"),
    ("api_requests", "API requests", "{:,.0f}"),
    ("api_dropped", "API dropped", "{:,.0f}"),
    ("gpu_cost_on_demand_usd", "on-demand GPU $", "{:,.0f}"),
    ("gpu_cost_spot_usd", "spot GPU $", "{:,.0f}"),
    ("api_cost_usd", "API $", "{:,.0f}"),
    ("cost_usd", "total $", "{:,.0f}"),
    ("savings_vs_all_api_usd", "saving vs all-API $", "{:+,.0f}"),
)
PAIRED_ROWS = (
    ("cost_usd", "Δ cost $", "{:+,.0f}"),
    ("ttft_p95_s", "Δ p95 TTFT s", "{:+.3f}"),
    ("slo_attainment", "Δ SLO attainment", "{:+.2%}"),
    ("ttft_p95_above_slo", "Δ P(p95 TTFT > SLO)", "{:+.0%}"),
)


def cost_vs_budget_chart(summary: pl.DataFrame, budget_usd: float | None) -> Chart:
    """Monthly cost per plan: median point, p5–p95 bar, and the budget line if any."""
    rows = summary.filter(pl.col("metric") == "cost_usd").select(
        "plan", "month", "p5", "p50", "p95"
    )
    base = alt.Chart(_inline(rows)).encode(
        x=alt.X("month:O", title="month"),
        xOffset="plan:N",
        color=alt.Color("plan:N", title="plan"),
    )
    layers: list[Any] = [
        base.mark_rule(strokeWidth=3).encode(
            y=alt.Y("p5:Q", title="monthly cost (USD), p5–p95 and median"), y2="p95:Q"
        ),
        base.mark_point(filled=True, size=60).encode(
            y="p50:Q", tooltip=["plan:N", "month:O", "p5:Q", "p50:Q", "p95:Q"]
        ),
    ]
    if budget_usd is not None:
        layers.append(
            alt.Chart({"values": [{"budget": budget_usd}]})
            .mark_rule(color="firebrick", strokeDash=[6, 3])
            .encode(y="budget:Q")
        )
    chart: Chart = alt.layer(*layers).properties(
        title="Cost per month vs budget", width=560, height=260
    )
    return chart


def breach_chart(summary: pl.DataFrame, slo_ttft_s: float | None) -> Chart:
    """P(p95 TTFT > SLO) per month and plan (share of replications breaching)."""
    rows = summary.filter(pl.col("metric") == "p_ttft_p95_above_slo").select(
        "plan", "month", "mean"
    )
    slo = f" {slo_ttft_s:g} s" if slo_ttft_s is not None else ""
    chart: Chart = (
        alt.Chart(_inline(rows))
        .mark_line(point=True)
        .encode(
            x=alt.X("month:O", title="month"),
            y=alt.Y(
                "mean:Q",
                title=f"P(p95 TTFT > SLO{slo})",
                scale=alt.Scale(domain=[0, 1]),
                axis=alt.Axis(format="%"),
            ),
            color=alt.Color("plan:N", title="plan"),
            tooltip=["plan:N", "month:O", alt.Tooltip("mean:Q", format=".0%")],
        )
        .properties(title="SLO-breach probability per month", width=560, height=220)
    )
    return chart


def timeline_chart(timeline: pl.DataFrame, events: pl.DataFrame) -> alt.VConcatChart:
    """Per plan: healthy replicas, requests waiting, API spills per minute; reclaim events."""
    t0 = float(timeline["t_s"].min())  # type: ignore[arg-type]
    charts = []
    for plan in timeline["plan"].unique(maintain_order=True).to_list():
        tl = timeline.filter(pl.col("plan") == plan).sort("t_s")
        minute = ((pl.col("t_s") - t0) // 60).cast(pl.Int64)
        spills = (
            tl.with_columns(minute.alias("minute"))
            .group_by("minute")
            .agg(pl.col("api_spilled").max())
            .sort("minute")
            .with_columns(pl.col("api_spilled").diff().fill_null(0).alias("value"))
            .select(
                (pl.col("minute") * 1.0).alias("t_min"),
                pl.lit("API spills / min").alias("series"),
                "value",
            )
        )
        state = tl.select(
            ((pl.col("t_s") - t0) / 60).alias("t_min"),
            (pl.col("waiting") + pl.col("router_backlog"))
            .cast(pl.Float64)
            .alias("requests waiting"),
            pl.col("healthy_replicas").cast(pl.Float64).alias("healthy replicas"),
        ).unpivot(index="t_min", variable_name="series", value_name="value")
        data = pl.concat([state, spills.cast({"value": pl.Float64})])
        lines = (
            alt.Chart(_inline(data))
            .mark_line(interpolate="step-after")
            .encode(
                x=alt.X("t_min:Q", title="minutes from the window start"),
                y=alt.Y("value:Q", title="count"),
                color=alt.Color("series:N", title=""),
            )
        )
        ev = events.filter(pl.col("plan") == plan).select(
            ((pl.col("t_s") - t0) / 60).alias("t_min"), "event"
        )
        layers: list[Any] = [lines]
        if ev.height:
            layers.append(
                alt.Chart(_inline(ev))
                .mark_rule(strokeDash=[4, 3], color="gray")
                .encode(x="t_min:Q", tooltip=["event:N", "t_min:Q"])
            )
        charts.append(alt.layer(*layers).properties(title=f"{plan}", width=560, height=160))
    return alt.vconcat(*charts).properties(
        title="One sampled replication around a spot reclaim "
        "(dashed: notice, deadline, replacement up)"
    )


def _median_table(months: pl.DataFrame) -> str:
    med = months.group_by("plan", "month").agg(
        [pl.col(c).median() for c, _, _ in HYBRID_ROWS if c in months.columns]
    )
    month_list = sorted(med["month"].unique().to_list())
    head = "".join(f"<th>month {m}</th>" for m in month_list)
    body = []
    for plan in months["plan"].unique(maintain_order=True).to_list():
        cells = {r["month"]: r for r in med.filter(pl.col("plan") == plan).iter_rows(named=True)}
        for col, name, fmt in HYBRID_ROWS:
            vals = "".join(f"<td>{fmt.format(cells[m][col])}</td>" for m in month_list)
            body.append(f"<tr><th>{html.escape(plan)}: {html.escape(name)}</th>{vals}</tr>")
    return f"<table><tr><th>median across replications</th>{head}</tr>{''.join(body)}</table>"


def _paired_table(paired: pl.DataFrame) -> str:
    if paired.is_empty():
        return "<p>One plan only: no paired differences.</p>"
    month_list = sorted(paired["month"].unique().to_list())
    head = "".join(f"<th>month {m}</th>" for m in month_list)
    cell = {(r["plan"], r["metric"], r["month"]): r for r in paired.iter_rows(named=True)}
    body = []
    for plan in paired["plan"].unique(maintain_order=True).to_list():
        for metric, name, fmt in PAIRED_ROWS:
            vals = []
            for m in month_list:
                q = cell.get((plan, metric, m))
                vals.append(
                    ""
                    if q is None
                    else f"<td>{fmt.format(q['mean'])}<br><small>{fmt.format(q['p5'])}…"
                    f"{fmt.format(q['p95'])} · better in {q['p_better']:.0%}</small></td>"
                )
            body.append(
                f"<tr><th>{html.escape(plan)}: {html.escape(name)}</th>{''.join(vals)}</tr>"
            )
    base = html.escape(str(paired["baseline"][0]))
    return (
        f"<p>Each plan minus <b>{base}</b>, replication by replication (same traffic, reclaims "
        "and API latencies), then mean and p5…p95 across replications.</p>"
        f"<table><tr><th>plan: metric</th>{head}</tr>{''.join(body)}</table>"
    )


def risk_charts(
    summary: pl.DataFrame,
    timeline: pl.DataFrame,
    events: pl.DataFrame,
    meta: Mapping[str, Any],
) -> dict[str, Chart]:
    """The risk page's charts by name (also their PNG file stems)."""
    budget = meta.get("budget_usd_per_month")
    slo = meta.get("slo_ttft_s")
    charts: dict[str, Chart] = {
        "risk_cost_vs_budget": cost_vs_budget_chart(
            summary, float(budget) if isinstance(budget, int | float) else None
        ),
        "risk_slo_breach": breach_chart(
            summary, float(slo) if isinstance(slo, int | float) else None
        ),
    }
    if not timeline.is_empty():
        charts["risk_timeline"] = timeline_chart(timeline, events)
    return charts


def render_risk_html(
    months: pl.DataFrame,
    summary: pl.DataFrame,
    paired: pl.DataFrame,
    timeline: pl.DataFrame,
    events: pl.DataFrame,
    meta: Mapping[str, Any],
) -> str:
    """One self-contained, offline page (same JavaScript inlining as report.html)."""
    name = html.escape(str(meta.get("experiment", "experiment")))
    sections = [
        f'<div class="chart" id="chart-{k}"></div>\n'
        f'<script type="application/json" data-vega-spec="chart-{k}">'
        f"{_script_json(c.to_dict())}</script>"
        for k, c in risk_charts(summary, timeline, events, meta).items()
    ]
    no_timeline = (
        "<p>No timeline: no plan has spot pools, or no replication had a reclaim.</p>"
        if timeline.is_empty()
        else ""
    )
    steps = meta.get("step_times") or {}
    flag = (
        "<p><b>UNCALIBRATED</b> step times (roofline from specs) for: "
        + ", ".join(html.escape(g) for g, v in steps.items() if v == "uncalibrated")
        + "</p>"
        if any(v == "uncalibrated" for v in steps.values())
        else ""
    )
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{name}: risk</title>
<style>{_CSS}</style>
<script type="text/javascript">
{_vega_bundle()}
</script>
</head>
<body>
<h1>{name}: risk of each plan</h1>
{flag}
<p><a href="report.html">main report</a></p>
<h2>Cost, spot and API per month</h2>
{_median_table(months)}
<h2>Paired differences</h2>
{_paired_table(paired)}
<h2>Charts</h2>
{no_timeline}
{chr(10).join(sections)}
<script type="text/javascript">
var EMBED_OPTIONS = {_script_json(_EMBED_OPTIONS)};
{_EMBED_LOOP}
</script>
</body>
</html>
"""


def write_risk_report(
    out_dir: Path,
    months: pl.DataFrame,
    summary: pl.DataFrame,
    paired: pl.DataFrame,
    timeline: pl.DataFrame,
    events: pl.DataFrame,
    meta: Mapping[str, Any],
    *,
    pngs: bool = True,
) -> Path:
    """Write `out_dir/risk.html` (and one PNG per chart); returns the page's path."""
    out_dir = Path(out_dir)
    page = out_dir / "risk.html"
    text = render_risk_html(months, summary, paired, timeline, events, meta)
    _atomic_write(page, text.encode("utf-8"))
    if pngs:
        for key, chart in risk_charts(summary, timeline, events, meta).items():
            write_png(chart, out_dir / f"{key}.png")
    return page

"""The report's main charts: p95 TTFT and cost fan charts, cost by component, utilisation heatmap.

Each is a pure function of one of the runner's frames (``summary``, ``months`` or ``hourly``;
see ``sim.report``), one colour (or one panel) per plan, the plans in the frame's order.
"""

from __future__ import annotations

from typing import Final

import altair as alt
import polars as pl

from sim.report.shell import _inline, _plans

DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

_FAN_WIDTH: Final = 640
_FAN_HEIGHT: Final = 300
_REFERENCE_COLOUR: Final = "#222222"  # not red: the third plan colour is red


def reference_line(y: alt.Y, label: str) -> list[alt.Chart]:
    """A dashed horizontal rule at the datum of `y` (an SLO, a budget), labelled at its left."""
    one_row = {"values": [{"label": label}]}
    return [
        alt.Chart(one_row)
        .mark_rule(color=_REFERENCE_COLOUR, strokeDash=[6, 4], size=2)
        .encode(y=y),
        alt.Chart(one_row)
        .mark_text(align="left", dx=4, dy=-8, color=_REFERENCE_COLOUR, fontWeight="bold")
        .encode(y=y, x=alt.value(0), text="label:N"),
    ]


_HEAT_COLUMNS: Final = 6

# Cost components of `cost_breakdown_chart`: (months column, label), in stacking order.
# "Other" is the residual, cost − the parts present (API overflow in old tables without
# `api_cost_usd`, for instance).
COST_PARTS: Final = (
    ("gpu_cost_on_demand_usd", "On-demand GPU"),
    ("gpu_cost_spot_usd", "Spot GPU"),
    ("gpu_cost_usd", "GPU"),
    ("api_cost_usd", "API"),
    ("ops_cost_usd", "Operations"),
    ("other_cost_usd", "Other"),
)


def _metric_rows(summary: pl.DataFrame, metric: str) -> pl.DataFrame:
    rows = summary.filter(pl.col("metric") == metric).select(
        "plan", "month", "mean", "p5", "p50", "p95"
    )
    if rows.is_empty():
        raise ValueError(f"summary has no rows for metric {metric!r}")
    return rows.sort("month", maintain_order=True)


def _month_axis(rows: pl.DataFrame) -> alt.X:
    first, last = int(rows.get_column("month").min()), int(rows.get_column("month").max())  # type: ignore[arg-type]
    return alt.X(
        "month:Q",
        title="Month",
        scale=alt.Scale(domain=[first, max(last, first + 1)], nice=False),
        axis=alt.Axis(tickMinStep=1, format="d"),
    )


# --------------------------------------------------------------------------- charts


def fan_chart(
    summary: pl.DataFrame,
    metric: str,
    title: str,
    y_title: str,
    slo: float | None = None,
    *,
    slo_label: str | None = None,
    y_format: str | None = None,
) -> alt.LayerChart:
    """Fan chart of one metric by month: a p5–p95 band and the p50 line, one colour per plan.

    The band spans the 5th to 95th percentile of the monthly value across replications; the
    line is the median. ``slo`` adds a dashed horizontal rule at that y value, labelled
    ``slo_label`` (default ``"SLO {slo}"``); the y scale always includes it.
    """
    rows = _metric_rows(summary, metric)
    x = _month_axis(rows)
    axis = alt.Axis(format=y_format) if y_format else alt.Axis()
    plan_scale = alt.Scale(domain=_plans(rows))
    # One legend for both layers; drawn as strokes so it matches the median lines.
    legend = alt.Legend(symbolType="stroke", symbolStrokeWidth=3, symbolOpacity=1)
    colour = alt.Color("plan:N", title="Plan", scale=plan_scale, legend=legend)
    fmt = y_format or ",.4~g"
    band = (
        alt.Chart()
        .mark_area(opacity=0.22)
        .encode(
            x=x,
            y=alt.Y("p5:Q", title=y_title, axis=axis),
            y2="p95:Q",
            color=colour,
        )
    )
    line = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("p50:Q", title=y_title, axis=axis),
            color=colour,
            tooltip=[
                alt.Tooltip("plan:N", title="Plan"),
                alt.Tooltip("month:Q", title="Month"),
                alt.Tooltip("p5:Q", title="p5", format=fmt),
                alt.Tooltip("p50:Q", title="p50", format=fmt),
                alt.Tooltip("p95:Q", title="p95", format=fmt),
                alt.Tooltip("mean:Q", title="mean", format=fmt),
            ],
        )
    )
    layers: list[alt.Chart] = [band, line]
    if slo is not None:
        y_slo = alt.Y(datum=slo, title=y_title, axis=axis)
        layers += reference_line(y_slo, slo_label or f"SLO {slo:g}")
    subtitle = "Band: 5th–95th percentile across replications · line: median"
    return alt.LayerChart(
        layer=layers,
        data=_inline(rows),
        title=alt.TitleParams(title, subtitle=subtitle, anchor="start"),
        width=_FAN_WIDTH,
        height=_FAN_HEIGHT,
    )


def ttft_fan_chart(summary: pl.DataFrame, slo_ttft_s: float | None) -> alt.LayerChart:
    """Fan chart of each month's p95 time to first token, with the TTFT SLO as a rule."""
    return fan_chart(
        summary,
        "ttft_p95_s",
        "p95 time to first token by month",
        "p95 TTFT (s)",
        slo=slo_ttft_s,
        slo_label=None if slo_ttft_s is None else f"SLO: p95 TTFT ≤ {slo_ttft_s:g} s",
    )


def cost_fan_chart(summary: pl.DataFrame) -> alt.LayerChart:
    """Fan chart of total monthly cost (GPU + operations + any API overflow), in USD."""
    return fan_chart(summary, "cost_usd", "Monthly cost", "Cost (USD / month)", y_format="$,.0f")


def token_utilisation_fan_chart(summary: pl.DataFrame) -> alt.LayerChart:
    """Fan chart of token utilisation: tokens served ÷ what the month's replicas serve at the
    SLO (docs/glossary.md); 100 % is the fleet's steady-state capacity at the SLO."""
    return fan_chart(
        summary,
        "token_utilisation",
        "Token utilisation (of capacity at the SLO)",
        "Tokens served ÷ capacity",
        1.0,
        slo_label="capacity at the SLO",
        y_format=".0%",
    )


def replicas_chart(summary: pl.DataFrame) -> alt.Chart:
    """Replicas per month and plan (the plan's fleet; the same in every replication)."""
    rows = _metric_rows(summary, "replicas")
    chart: alt.Chart = (
        alt.Chart(data=_inline(rows), title="Replicas per month")
        .mark_bar()
        .encode(
            x=alt.X("month:O", title="Month", axis=alt.Axis(labelAngle=0)),
            y=alt.Y("p50:Q", title="Replicas", axis=alt.Axis(tickMinStep=1)),
            color=alt.Color("plan:N", title="Plan", scale=alt.Scale(domain=_plans(rows))),
            xOffset="plan:N",
            tooltip=["plan:N", "month:Q", alt.Tooltip("p50:Q", title="replicas")],
        )
        .properties(width=_FAN_WIDTH, height=160)
    )
    return chart


def utilisation_heatmap(hourly: pl.DataFrame) -> alt.VConcatChart:
    """Mean GPU utilisation by hour of week: a day × hour grid per month, one block per plan.

    Utilisation is averaged across replications; the colour scale is fixed to 0–100 % so that
    panels, months and plans compare directly.
    """
    if hourly.is_empty():
        raise ValueError("hourly has no rows")
    cells = (
        hourly.group_by("plan", "month", "hour_of_week", maintain_order=True)
        .agg(pl.col("utilisation").mean())
        .with_columns(
            (pl.col("hour_of_week") % 24).alias("hour"),
            pl.col("hour_of_week")
            .floordiv(24)
            .replace_strict(list(range(7)), list(DAYS), return_dtype=pl.String)
            .alias("day"),
        )
        .sort("month", "hour_of_week", maintain_order=True)
    )
    panel = (
        alt.Chart()
        .mark_rect()
        .encode(
            x=alt.X(
                "hour:O", title="Hour of day", axis=alt.Axis(values=[0, 6, 12, 18], labelAngle=0)
            ),
            y=alt.Y("day:O", title=None, sort=list(DAYS)),
            color=alt.Color(
                "utilisation:Q",
                title="GPU utilisation",
                scale=alt.Scale(domain=[0, 1], scheme="orangered"),
                legend=alt.Legend(format=".0%"),
            ),
            tooltip=[
                alt.Tooltip("plan:N", title="Plan"),
                alt.Tooltip("month:O", title="Month"),
                alt.Tooltip("day:N", title="Day"),
                alt.Tooltip("hour:O", title="Hour"),
                alt.Tooltip("utilisation:Q", title="Mean utilisation", format=".1%"),
            ],
        )
        .properties(width=24 * 8, height=7 * 14)
    )
    blocks = [
        panel.facet(
            facet=alt.Facet(
                "month:O",
                title=None,
                header=alt.Header(labelExpr="'Month ' + datum.value", labelFontWeight="bold"),
            ),
            columns=min(_HEAT_COLUMNS, cells.get_column("month").n_unique()),
            data=_inline(cells.filter(pl.col("plan") == plan)),
            title=alt.TitleParams(f"Plan: {plan}", anchor="start"),
        )
        for plan in _plans(hourly)
    ]
    return alt.vconcat(*blocks).properties(
        title=alt.TitleParams(
            "Mean GPU utilisation by hour of week",
            subtitle="Mean across replications · hour of week 0 = Monday 00:00",
            anchor="start",
        )
    )


def cost_breakdown_chart(months: pl.DataFrame) -> alt.FacetChart:
    """Mean monthly cost by component, stacked by month, one panel per plan.

    Components: on-demand GPU, spot GPU (or GPU, for tables without the market split), API,
    operations, and other (= total − the parts present). Spot, API and other are shown only
    when material (> 0.5 % of all cost). Means across replications: means are linear, so the
    parts add up to the mean total.
    """
    split = {"gpu_cost_on_demand_usd", "gpu_cost_spot_usd"} <= set(months.columns)
    present = [
        c
        for c, _ in COST_PARTS
        if c in months.columns and not (c == "gpu_cost_usd" and split) and c != "other_cost_usd"
    ]
    mean = (
        months.group_by("plan", "month", maintain_order=True)
        .agg(pl.col(*present, "cost_usd").mean())
        .with_columns(
            (pl.col("cost_usd") - pl.sum_horizontal(present))
            .clip(lower_bound=0.0)
            .alias("other_cost_usd")
        )
    )
    total = float(mean.get_column("cost_usd").abs().sum())
    optional = {"gpu_cost_spot_usd", "api_cost_usd", "other_cost_usd"}
    shown = [*present, "other_cost_usd"]
    parts = {
        c: label
        for c, label in COST_PARTS
        if c in shown and (c not in optional or float(mean.get_column(c).sum()) > 0.005 * total)
    }
    long = (
        mean.unpivot(index=["plan", "month"], on=list(parts), variable_name="part")
        .with_columns(
            pl.col("part").replace_strict(parts, return_dtype=pl.String).alias("component"),
            pl.col("part")
            .replace_strict({c: i for i, c in enumerate(parts)}, return_dtype=pl.Int64)
            .alias("stack_order"),
        )
        .select("plan", "month", "component", "stack_order", pl.col("value").alias("usd"))
    )
    chart: alt.FacetChart = (
        alt.Chart()
        .mark_bar()
        .encode(
            x=alt.X("month:O", title="Month", axis=alt.Axis(labelAngle=0)),
            y=alt.Y(
                "usd:Q",
                title="Mean cost (USD / month)",
                stack="zero",
                axis=alt.Axis(format="$,.0f"),
            ),
            color=alt.Color(
                "component:N",
                title="Component",
                # not the plans' palette: a component is not a plan
                scale=alt.Scale(domain=list(parts.values()), scheme="set2"),
            ),
            order=alt.Order("stack_order:Q"),
            tooltip=[
                alt.Tooltip("plan:N", title="Plan"),
                alt.Tooltip("month:O", title="Month"),
                alt.Tooltip("component:N", title="Component"),
                alt.Tooltip("usd:Q", title="Mean USD", format="$,.0f"),
            ],
        )
        .properties(width=280, height=220)
        .facet(
            facet=alt.Facet("plan:N", title=None, sort=_plans(mean)),
            columns=3,
            data=_inline(long),
            title=alt.TitleParams(
                "Mean monthly cost by component",
                subtitle="Mean across replications",
                anchor="start",
            ),
        )
    )
    return chart

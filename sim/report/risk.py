"""The risk section's charts: cost against the budget, SLO-breach probability, one reclaim replayed.

Pure functions of the runner's tables (see ``sim.report``): ``summary`` for the first two, and
for the third ``timeline`` (fleet state every few seconds of one sampled replication, per plan:
``t_s, healthy_replicas, waiting, running, router_backlog, api_spilled`` — the last cumulative)
with ``events`` (``plan, replica, event, t_s``; event ``notice`` | ``down`` | ``up``: the reclaim
notice, the instance gone, its replacement serving).
"""

from __future__ import annotations

from typing import Final

import altair as alt
import polars as pl

from sim.report.charts import _metric_rows, reference_line
from sim.report.shell import _inline, _plans
from sim.report.tables import P_ABOVE_SLO

_WIDTH: Final = 640
_HEIGHT: Final = 260

# Reclaim events: label, rule colour and dash, in time order.
EVENTS: Final = {
    "notice": ("reclaim notice", "#777777", [6, 3]),
    "down": ("instance down", "#b00020", [1, 0]),
    "up": ("replacement up", "#1b9e77", [6, 3]),
}
# Timeline series: (name, colour); one panel each.
_REPLICAS: Final = ("healthy replicas", "#4c78a8")
_WAITING: Final = ("requests waiting (replicas + router)", "#d95f02")
_RUNNING: Final = ("requests running", "#7570b3")
_SPILLS: Final = ("API spills / min", "#e7298a")
_SERIES: Final = (_REPLICAS, _RUNNING, _WAITING, _SPILLS)
# Timeline panels, top to bottom: (panel, y title).
PANELS: Final = {
    "replicas": "Healthy replicas",
    "running": "Requests running",
    "waiting": "Requests waiting",
    "spills": "API spills / min",
}


def cost_budget_chart(summary: pl.DataFrame, budget_usd: float | None) -> alt.LayerChart:
    """Monthly cost per plan: the p5–p95 range across replications as a bar, the median as a
    point, plans side by side within each month; the budget as a labelled dashed rule."""
    rows = _metric_rows(summary, "cost_usd")
    plans = _plans(rows)
    colour = alt.Color(
        "plan:N", title="Plan", scale=alt.Scale(domain=plans), legend=alt.Legend(symbolOpacity=1)
    )
    x = alt.X("month:O", title="Month", axis=alt.Axis(labelAngle=0))
    offset = alt.XOffset("plan:N", scale=alt.Scale(domain=plans))
    y_title = "Cost (USD / month)"
    axis = alt.Axis(format="$,.0f")
    tooltip = [
        alt.Tooltip("plan:N", title="Plan"),
        alt.Tooltip("month:O", title="Month"),
        *(alt.Tooltip(f"{q}:Q", title=q, format="$,.0f") for q in ("p5", "p50", "p95")),
    ]
    layers: list[alt.Chart] = [
        alt.Chart()
        .mark_bar(opacity=0.45, width={"band": 0.8})
        .encode(
            x=x,
            xOffset=offset,
            y=alt.Y("p5:Q", title=y_title, axis=axis, scale=alt.Scale(zero=False)),
            y2="p95:Q",
            color=colour,
            tooltip=tooltip,
        ),
        alt.Chart()
        .mark_point(filled=True, size=70, opacity=1)
        .encode(
            x=x, xOffset=offset, y=alt.Y("p50:Q", title=y_title), color=colour, tooltip=tooltip
        ),
    ]
    if budget_usd is not None:
        y_budget = alt.Y(datum=budget_usd, title=y_title)
        layers += reference_line(y_budget, f"Budget ${budget_usd:,.0f} / month")
    subtitle = "Bar: 5th–95th percentile across replications · point: median"
    return alt.LayerChart(
        layer=layers,
        data=_inline(rows),
        title=alt.TitleParams("Monthly cost against the budget", subtitle=subtitle, anchor="start"),
        width=_WIDTH,
        height=_HEIGHT,
    )


def breach_chart(summary: pl.DataFrame, slo_ttft_s: float | None) -> alt.LayerChart:
    """P(p95 TTFT > SLO) per month, one bar per plan: the share of replications whose month
    p95 TTFT exceeded the SLO (summary metric ``p_ttft_p95_above_slo``), on a fixed 0–100 %
    scale so that no risk looks like no bar."""
    rows = summary.filter(pl.col("metric") == P_ABOVE_SLO).select("plan", "month", "mean")
    if rows.is_empty():
        raise ValueError(f"summary has no rows for metric {P_ABOVE_SLO!r}")
    plans = _plans(rows)
    slo = "SLO" if slo_ttft_s is None else f"SLO {slo_ttft_s:g} s"
    x = alt.X("month:O", title="Month", axis=alt.Axis(labelAngle=0))
    offset = alt.XOffset("plan:N", scale=alt.Scale(domain=plans))
    y = alt.Y(
        "mean:Q",
        title=f"P(p95 TTFT > {slo})",
        scale=alt.Scale(domain=[0, 1]),
        axis=alt.Axis(format="%"),
    )
    colour = alt.Color("plan:N", title="Plan", scale=alt.Scale(domain=plans))
    tooltip = [
        alt.Tooltip("plan:N", title="Plan"),
        alt.Tooltip("month:O", title="Month"),
        alt.Tooltip("mean:Q", title="P(breach)", format=".0%"),
    ]
    bars = alt.Chart().mark_bar().encode(x=x, xOffset=offset, y=y, color=colour, tooltip=tooltip)
    # a tick at the top of each bar: a 0 % month shows as a line on the axis, not as nothing
    ticks = (
        alt.Chart()
        .mark_tick(thickness=3, orient="horizontal")
        .encode(x=x, xOffset=offset, y=y, color=colour, tooltip=tooltip)
    )
    return alt.LayerChart(
        layer=[bars, ticks],
        data=_inline(rows.sort("month", maintain_order=True)),
        title=alt.TitleParams(
            "Probability of missing the TTFT SLO, by month",
            subtitle=f"Share of replications whose month p95 TTFT exceeded the {slo}",
            anchor="start",
        ),
        width=_WIDTH,
        height=200,
    )


# --------------------------------------------------------------------------- timeline


def timeline_origin_s(timeline: pl.DataFrame, events: pl.DataFrame) -> float:
    """Time zero of the timeline chart: the first reclaim notice, else the first sample."""
    notices = events.filter(pl.col("event") == "notice").get_column("t_s")
    first = notices.min() if notices.len() else timeline.get_column("t_s").min()
    return float(first)  # type: ignore[arg-type]


def spills_per_minute(timeline: pl.DataFrame, origin_s: float) -> pl.DataFrame:
    """API spills per whole minute from ``origin_s``, per plan: the difference of the
    cumulative ``api_spilled`` between the last samples of consecutive minutes (the first
    minute: its last sample minus its first). Columns ``plan, minute, spills``."""
    by_minute = (
        timeline.sort("t_s")
        .with_columns(((pl.col("t_s") - origin_s) / 60.0).floor().cast(pl.Int64).alias("minute"))
        .group_by("plan", "minute", maintain_order=True)
        .agg(pl.col("api_spilled").first().alias("first"), pl.col("api_spilled").last())
        .sort("minute", maintain_order=True)
    )
    previous = pl.col("api_spilled").shift(1).over("plan")
    return by_minute.select(
        "plan",
        "minute",
        (pl.col("api_spilled") - previous.fill_null(pl.col("first"))).alias("spills"),
    )


def timeline_frame(timeline: pl.DataFrame, events: pl.DataFrame) -> pl.DataFrame:
    """The chart's long table: ``plan, panel, series, t_min, t_end_min, value, event, key``.

    Panels (``PANELS``): ``replicas`` (healthy replicas), ``waiting`` (requests waiting, on
    replicas + at the router), ``running`` (requests running), ``spills`` (API spills per
    minute, spanning ``t_min``–``t_end_min``).
    Every panel also gets one row per reclaim event of its plan (``series`` = "event") so the
    rules appear in each; ``key`` (the event, else the series) picks the colour; minutes count
    from ``timeline_origin_s``.
    """
    origin = timeline_origin_s(timeline, events)
    t_min = ((pl.col("t_s") - origin) / 60.0).alias("t_min")
    state = timeline.select(
        "plan",
        t_min,
        pl.col("healthy_replicas").cast(pl.Float64).alias(_REPLICAS[0]),
        (pl.col("waiting") + pl.col("router_backlog")).cast(pl.Float64).alias(_WAITING[0]),
        pl.col("running").cast(pl.Float64).alias(_RUNNING[0]),
    ).unpivot(index=["plan", "t_min"], variable_name="series", value_name="value")
    panels = {_REPLICAS[0]: "replicas", _WAITING[0]: "waiting", _RUNNING[0]: "running"}
    state = state.with_columns(
        pl.col("series").replace_strict(panels, return_dtype=pl.String).alias("panel"),
        pl.lit(None, dtype=pl.Float64).alias("t_end_min"),
    )
    spills = spills_per_minute(timeline, origin).select(
        "plan",
        pl.col("minute").cast(pl.Float64).alias("t_min"),
        pl.lit(_SPILLS[0]).alias("series"),
        pl.col("spills").cast(pl.Float64).alias("value"),
        pl.lit("spills").alias("panel"),
        (pl.col("minute") + 1).cast(pl.Float64).alias("t_end_min"),
    )
    ev = events.select(
        "plan",
        ((pl.col("t_s") - origin) / 60.0).alias("t_min"),
        pl.col("event").replace_strict(
            {k: v[0] for k, v in EVENTS.items()}, default=pl.col("event"), return_dtype=pl.String
        ),
    )
    marks = pl.concat(
        [
            ev.with_columns(pl.lit(panel).alias("panel"), pl.lit("event").alias("series"))
            for panel in PANELS
        ]
    ).with_columns(
        pl.lit(None, dtype=pl.Float64).alias("value"),
        pl.lit(None, dtype=pl.Float64).alias("t_end_min"),
    )
    columns = ["plan", "panel", "series", "t_min", "t_end_min", "value", "event", "key"]
    series = pl.concat([state, spills], how="diagonal").with_columns(
        pl.lit(None, dtype=pl.String).alias("event")
    )
    both = pl.concat([series, marks], how="diagonal")
    return both.with_columns(pl.coalesce("event", "series").alias("key")).select(columns)


def _timeline_row(
    data: pl.DataFrame,
    plans: list[str],
    panel: str,
    x_domain: list[float],
    width: int,
    *,
    first: bool,
    last: bool,
) -> alt.FacetChart:
    """One row of the timeline: the panel's series and the event rules, one column per plan."""
    rows = data.filter(pl.col("panel") == panel)
    values = rows.filter(pl.col("series") != "event").get_column("value")
    top = max(1.0, float(values.max() or 0.0))  # type: ignore[arg-type]
    x = alt.X(
        "t_min:Q",
        title="Minutes from the reclaim notice" if last else None,
        scale=alt.Scale(domain=x_domain, nice=False),
    )
    # whole numbers: integer ticks even for a panel of 0–2 replicas
    ticks = list(range(int(top) + 1)) if top <= 6 else None
    y = alt.Y(
        "value:Q",
        title=PANELS[panel],
        scale=alt.Scale(domain=[0, top * 1.05], nice=False),
        axis=alt.Axis(format="d", values=ticks) if ticks else alt.Axis(format="d"),
    )
    # One colour scale for every series and event of every row: vconcat shares it, so the
    # chart has one legend.
    labels = [v[0] for v in EVENTS.values()]
    colour = alt.Color(
        "key:N",
        title=None,
        scale=alt.Scale(
            domain=[s for s, _ in _SERIES] + labels,
            range=[c for _, c in _SERIES] + [v[1] for v in EVENTS.values()],
        ),
        legend=alt.Legend(orient="right"),
    )
    tooltip = [
        alt.Tooltip("plan:N", title="Plan"),
        alt.Tooltip("series:N", title="Series"),
        alt.Tooltip("t_min:Q", title="Minute", format=".1f"),
        alt.Tooltip("value:Q", title="Value", format=",.0f"),
    ]
    base = alt.Chart().transform_filter(alt.datum.series != "event")
    if panel == "spills":  # minutes without a spill draw nothing (not a bar of height 0)
        lines = (
            base.transform_filter(alt.datum.value > 0)
            .mark_bar(opacity=0.85)
            .encode(x=x, x2="t_end_min:Q", y=y, y2=alt.Y2(datum=0), color=colour, tooltip=tooltip)
        )
    else:
        lines = base.mark_line(interpolate="step-after", strokeWidth=1.8).encode(
            x=x, y=y, color=colour, tooltip=tooltip
        )
    rules = (
        alt.Chart()
        .transform_filter(alt.datum.series == "event")
        .mark_rule(strokeWidth=1.6)
        .encode(
            x=x,
            color=colour,
            strokeDash=alt.StrokeDash(
                "key:N",
                scale=alt.Scale(domain=labels, range=[v[2] for v in EVENTS.values()]),
                legend=None,
            ),
            tooltip=[
                alt.Tooltip("plan:N", title="Plan"),
                alt.Tooltip("event:N", title="Event"),
                alt.Tooltip("t_min:Q", title="Minute", format=".1f"),
            ],
        )
    )
    header = (
        alt.Header(labelFontWeight="bold", labelFontSize=13) if first else alt.Header(labels=False)
    )
    chart: alt.FacetChart = (
        alt.layer(lines, rules)
        .properties(width=width, height=110)
        .facet(
            column=alt.Column("plan:N", title=None, sort=plans, header=header),
            data=_inline(rows.sort("plan", "series", "t_min")),
        )
    )
    return chart


def timeline_chart(timeline: pl.DataFrame, events: pl.DataFrame) -> alt.VConcatChart:
    """One sampled replication around a spot reclaim, one column per plan, a row per panel
    (``PANELS``): healthy replicas; requests running; requests waiting (on replicas and at the
    router); API spills per minute. Vertical rules mark each reclaim notice, instance down and
    replacement up, in every panel; x is minutes from the first notice, shared by all panels,
    and y is shared by the plans of a row.

    Every plan replays the same traffic and the same reclaims (common random numbers), so the
    columns compare directly: the reclaim takes replicas away, the queue grows where nothing
    absorbs it, and a plan with API overflow spills instead.
    """
    if timeline.is_empty():
        raise ValueError("timeline has no rows")
    data = timeline_frame(timeline, events)
    plans = _plans(timeline)
    ends = data.select(
        pl.col("t_min").min().alias("first"), pl.max_horizontal("t_min", "t_end_min").max()
    )
    x_domain = [float(v) for v in ends.row(0)]
    width = max(220, 900 // max(1, len(plans)))
    last = len(PANELS) - 1
    return alt.vconcat(
        *(
            _timeline_row(data, plans, panel, x_domain, width, first=i == 0, last=i == last)
            for i, panel in enumerate(PANELS)
        ),
        spacing=8,
    ).properties(
        title=alt.TitleParams(
            "One spot reclaim, replayed on every plan",
            subtitle=(
                "One sampled replication: same traffic and reclaims for every plan · "
                "rules: reclaim notice, instance down, replacement up"
            ),
            anchor="start",
        )
    )

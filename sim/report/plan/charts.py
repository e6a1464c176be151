"""`sim plan`'s charts, pure functions of its tables: monthly cost against the all-API bill,
replicas per month, and the sensitivity tornado."""

from __future__ import annotations

import altair as alt
import polars as pl

from sim.report.shell import _inline


def cost_chart(table: pl.DataFrame, api_usd: list[float]) -> alt.LayerChart:
    """Monthly cost of the plan (p5–p95 band) beside the all-API bill."""
    data = table.select("month", "cost_usd", "cost_p5_usd", "cost_p95_usd").with_columns(
        pl.Series("all_api_usd", api_usd)
    )
    base = alt.Chart(data=_inline(data)).encode(x=alt.X("month:O", title="month"))
    band = base.mark_area(opacity=0.25).encode(
        y=alt.Y("cost_p5_usd:Q", title="USD per month"), y2="cost_p95_usd:Q"
    )
    own = base.mark_line(point=True).encode(y="cost_usd:Q", tooltip=["month:O", "cost_usd:Q"])
    api = base.mark_line(strokeDash=[6, 4], color="#c44").encode(
        y="all_api_usd:Q", tooltip=["month:O", "all_api_usd:Q"]
    )
    return alt.LayerChart(layer=[band, own, api]).properties(
        title="Monthly cost: the plan (line, p5–p95 band) vs all-API (dashed)", width=520
    )


def replicas_chart(table: pl.DataFrame) -> alt.Chart:
    """Replicas per month, coloured by fleet."""
    data = table.select(
        "month", "fleet", pl.col("fleet").str.extract(r"^(\d+)").cast(pl.Int64).alias("replicas")
    )
    chart: alt.Chart = (
        alt.Chart(data=_inline(data))
        .mark_bar()
        .encode(
            x=alt.X("month:O", title="month"),
            y=alt.Y("replicas:Q", title="replicas", axis=alt.Axis(tickMinStep=1)),
            color=alt.Color("fleet:N", title="fleet"),
            tooltip=["month:O", "fleet:N", "replicas:Q"],
        )
        .properties(title="Replicas per month", width=520, height=160)
    )
    return chart


def tornado_chart(table: pl.DataFrame) -> alt.HConcatChart:
    """Per factor, the change from the baseline at its low and high end: P(miss) and cost."""
    data = _inline(table)

    def panel(column: str, title: str, fmt: str) -> alt.Chart:
        chart: alt.Chart = (
            alt.Chart(data=data)
            .mark_bar()
            .encode(
                y=alt.Y("factor:N", title=None, sort=None),
                x=alt.X(f"{column}:Q", title=title, axis=alt.Axis(format=fmt)),
                color=alt.Color(
                    "end:N", title="end", scale=alt.Scale(range=["#4c78a8", "#e45756"])
                ),
                yOffset="end:N",
                tooltip=["factor:N", "setting:N", alt.Tooltip(f"{column}:Q", format=fmt)],
            )
            .properties(width=300, height=alt.Step(14))
        )
        return chart

    return alt.hconcat(
        panel("d_p_miss", "change in P(a month misses the SLO)", "+.0%"),
        panel("d_cost_usd", "change in monthly cost (USD)", "+,.0f"),
    ).properties(title="What moves the answer (one factor at a time, same replications)")

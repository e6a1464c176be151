"""One sampled week of the fleets that move: replicas serving and requests waiting on the plan
clock (hour 0 = Monday 00:00), and the week's scale events and extremes in numbers."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Final

import altair as alt
import polars as pl

from sim.report.charts import DAYS
from sim.report.risk_tables import _num, _table
from sim.report.scaling.fleet import _in_order
from sim.report.shell import _inline, _plans
from sim.report.tables import _format
from sim.units import HOURS_PER_WEEK, SECONDS_PER_HOUR

# Scale events of the sampled week, in lifecycle order: (event, heading).
SCALE_EVENTS: Final = (
    ("launch", "Launches"),
    ("up", "Up (billed from)"),
    ("serve", "Start serving"),
    ("release", "Releases"),
)
# Vega-Lite's default colours for nominal data, in order: the i-th plan of the run gets the
# i-th, so a chart showing only some plans keeps each plan's colour from the other charts.
TABLEAU10: Final = (
    "#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b",
    "#eeca3b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac",
)  # fmt: skip


# --------------------------------------------------------------------------- the week chart


def span_words(hours: float) -> str:
    """ "One week" or, when the replay was cut to its first day, "One day"."""
    return "One week" if hours > 48 else "One day"


def week_frame(fleet_week: pl.DataFrame) -> pl.DataFrame:
    """The chart's table: ``plan, hour, when, serving_replicas, waiting``; ``hour`` counts from
    Monday 00:00 of the week of the first probe (the plan clock's t = 0 is a Monday 00:00),
    ``when`` is its label ("Tue 18:05"), ``waiting`` is on replicas plus at the router."""
    week_s = HOURS_PER_WEEK * SECONDS_PER_HOUR
    first = float(fleet_week.get_column("t_s").min())  # type: ignore[arg-type]
    origin_s = (first // week_s) * week_s
    hour = (pl.col("t_s") - origin_s) / SECONDS_PER_HOUR
    minute = (hour * 60).round(0).cast(pl.Int64)
    day = (minute // (24 * 60)) % 7
    when = pl.format(
        "{} {}:{}",
        day.replace_strict(list(range(7)), list(DAYS), return_dtype=pl.String),
        ((minute // 60) % 24).cast(pl.String).str.zfill(2),
        (minute % 60).cast(pl.String).str.zfill(2),
    )
    return fleet_week.sort("t_s").select(
        "plan",
        hour.alias("hour"),
        when.alias("when"),
        "serving_replicas",
        (pl.col("waiting") + pl.col("router_backlog")).alias("waiting"),
    )


def _count_axis(top: int) -> alt.Axis:
    """Whole-number ticks: every integer up to a small ``top``, else Vega's own."""
    if top <= 6:
        return alt.Axis(values=list(range(top + 1)), format="d")
    return alt.Axis(format=",d", tickMinStep=1)


def fleet_week_chart(
    fleet_week: pl.DataFrame, plans: Sequence[str] | None = None
) -> alt.VConcatChart:
    """Replicas serving (top) and requests waiting (bottom) over the sampled week, one colour
    per plan (``plans`` fixes the order and colours, as in the other charts), as step lines:
    the fleet holds its value until the next probe. The x axis is the plan clock's day and hour,
    a tick every midnight."""
    if fleet_week.is_empty():
        raise ValueError("fleet_week has no rows")
    data = week_frame(fleet_week)
    every = _in_order(fleet_week, plans) if plans is None else list(plans)
    every += [p for p in _plans(fleet_week) if p not in every]
    domain = _in_order(fleet_week, every)
    colours = [TABLEAU10[every.index(p) % len(TABLEAU10)] for p in domain]
    lo, hi = float(data["hour"].min()), float(data["hour"].max())  # type: ignore[arg-type]
    # ticks at midnights over a week; every 3 hours when the replay was cut to a day
    # (`sim.week.WEEK_MAX_REQUESTS`)
    step = 24 if hi - lo > 48 else 3
    midnights = [
        step * d for d in range(int(lo // step), int(hi // step) + 2) if lo <= step * d <= hi
    ]
    days = "[" + ",".join(f"'{d}'" for d in DAYS) + "]"
    scale = alt.Scale(domain=[lo, hi], nice=False)
    x = alt.X(
        "hour:Q",
        title="Plan clock (day and hour of the week)",
        scale=scale,
        axis=alt.Axis(
            values=midnights,
            labelExpr=f"{days}[floor(datum.value / 24) % 7] + ' ' + "
            "(datum.value % 24 < 10 ? '0' : '') + (datum.value % 24) + ':00'",
        ),
    )
    colour = alt.Color("plan:N", title="Plan", scale=alt.Scale(domain=domain, range=colours))
    tooltip = [
        alt.Tooltip("plan:N", title="Plan"),
        alt.Tooltip("when:N", title="When"),
        alt.Tooltip("serving_replicas:Q", title="Replicas serving"),
        alt.Tooltip("waiting:Q", title="Requests waiting"),
    ]
    top = max(1, int(data["serving_replicas"].max()))  # type: ignore[arg-type]
    most = max(1, int(data["waiting"].max()))  # type: ignore[arg-type]
    replicas = (
        alt.Chart()
        .mark_line(interpolate="step-after", strokeWidth=2)
        .encode(
            x=alt.X(
                "hour:Q", scale=scale, axis=alt.Axis(labels=False, values=midnights), title=None
            ),
            y=alt.Y(
                "serving_replicas:Q",
                title="Replicas serving",
                scale=alt.Scale(domain=[0, top + 0.5], nice=False),
                axis=_count_axis(top),
            ),
            color=colour,
            tooltip=tooltip,
        )
        .properties(width=900, height=160)
    )
    waiting = (
        alt.Chart()
        .mark_line(interpolate="step-after", strokeWidth=1.2)
        .encode(
            x=x,
            # whole requests: explicit ticks for a short queue (no "0, 1, 1" labels)
            y=alt.Y("waiting:Q", title="Requests waiting", axis=_count_axis(most)),
            color=colour,
            tooltip=tooltip,
        )
        .properties(width=900, height=130)
    )
    return alt.vconcat(replicas, waiting, data=_inline(data), spacing=6).properties(
        title=alt.TitleParams(
            f"{span_words(hi - lo)} of the busiest month: replicas serving and requests waiting",
            subtitle=(
                "Replication 0, probed every few minutes · waiting: on the replicas and at the "
                "router · plans whose fleet does not move are not replayed"
            ),
            anchor="start",
        )
    )


def week_table(
    fleet_week: pl.DataFrame | None,
    scale_events: pl.DataFrame | None,
    plans: Sequence[str] | None = None,
) -> pl.DataFrame | None:
    """Per plan of the sampled week: scale events by kind (``SCALE_EVENTS``), fewest and most
    replicas serving, most requests waiting (replicas + router) and API spills in the week.
    ``None`` when both tables are empty or absent."""
    parts = []
    if fleet_week is not None and fleet_week.height:
        parts.append(
            fleet_week.sort("t_s")
            .group_by("plan", maintain_order=True)
            .agg(
                pl.col("serving_replicas").min().alias("serving_min"),
                pl.col("serving_replicas").max().alias("serving_max"),
                (pl.col("waiting") + pl.col("router_backlog")).max().alias("waiting_max"),
                (pl.col("api_spilled").last() - pl.col("api_spilled").first()).alias("spills"),
            )
        )
    if scale_events is not None and scale_events.height:
        parts.append(
            scale_events.group_by("plan", maintain_order=True).agg(
                (pl.col("event") == e).sum().cast(pl.Int64).alias(e) for e, _ in SCALE_EVENTS
            )
        )
    if not parts:
        return None
    table = parts[0]
    for part in parts[1:]:
        table = table.join(part, on="plan", how="full", coalesce=True, maintain_order="left")
    order = {p: i for i, p in enumerate(_in_order(table, plans))}
    return table.with_columns(
        pl.col(e).fill_null(0) for e, _ in SCALE_EVENTS if e in table.columns
    ).sort(pl.col("plan").replace_strict(order, return_dtype=pl.Int64))


def week_table_html(table: pl.DataFrame) -> str:
    events = [(e, h) for e, h in SCALE_EVENTS if e in table.columns]
    state = "serving_min" in table.columns
    heads = ["Plan"] + [h for _, h in events]
    if state:
        heads += ["Replicas serving (fewest → most)", "Most requests waiting", "API spills"]
    body = []
    for row in table.iter_rows(named=True):
        cells = [f"<td>{html.escape(str(row['plan']))}</td>"]
        cells += [_num(_format(row[e], "count")) for e, _ in events]
        if state:
            span = (
                f"{_format(row['serving_min'], 'count')} → {_format(row['serving_max'], 'count')}"
            )
            cells += [
                _num(span),
                _num(_format(row["waiting_max"], "count")),
                _num(_format(row["spills"], "count")),
            ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table([f"<th>{html.escape(h)}</th>" for h in heads], None, body)

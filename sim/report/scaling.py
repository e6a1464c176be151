"""The "Fleets that move" section: what schedules and autoscalers save, and what they cost in risk.

A plan *moves* when its replicas change within a month: a pool with a ``schedule`` (replicas by
hour of week) or an ``autoscale`` policy (reactive, with cold starts). The section answers one
question — how much cheaper is the moving plan than the baseline (the first plan), for the same
traffic, and does it miss the SLO more often? — and shows the evidence:

- the saving: per month, the paired difference of the monthly cost against the baseline
  (replication by replication on the same traffic — common random numbers — then the median
  and 5th–95th percentile across replications) and P(miss SLO) of both
  (``sim.stats.risk.risk_table``: k of n replications whose month missed the SLO);
- one sampled week of the busiest month (``fleet_week``, probed every few minutes): replicas
  serving and requests waiting, on the plan clock (hour 0 = Monday 00:00);
- instance-hours and cost by market (on-demand, spot, reserved), and the mean replicas up:
  GPU-hours ÷ GPUs per replica (``tp``) ÷ 730 h;
- autoscaler launches and cold starts per month (``scale_ups``: replicas launched;
  ``cold_start_delayed``: requests that arrived while a launched replica was still starting),
  and the scale events of the sampled week (``scale_events``).

Every function reads the runner's frames only (``sim.records`` has their schemas); columns an
older ``months.parquet`` lacks leave their part out.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any, Final

import altair as alt
import polars as pl

from sim.config import SloSpec
from sim.report.charts import DAYS
from sim.report.risk_tables import _num, _ordered, _table
from sim.report.shell import _inline, _plans
from sim.report.tables import _format
from sim.stats.risk import risk_table
from sim.stats.summary import paired_differences
from sim.units import HOURS_PER_MONTH, HOURS_PER_WEEK, MARKETS, SECONDS_PER_HOUR

# (market, heading) in table order; the months columns are gpu_hours_{market} and
# gpu_cost_{market}_usd.
MARKET_NAMES: Final = {"on_demand": "On-demand", "spot": "Spot", "reserved": "Reserved"}
# Scale events of the sampled week, in lifecycle order: (event, heading).
SCALE_EVENTS: Final = (
    ("launch", "Launches"),
    ("up", "Up (billed from)"),
    ("serve", "Start serving"),
    ("release", "Releases"),
)
_SAME_USD: Final = 0.5  # a median paired difference below this is "the same cost"
# Vega-Lite's default colours for nominal data, in order: the i-th plan of the run gets the
# i-th, so a chart showing only some plans keeps each plan's colour from the other charts.
TABLEAU10: Final = (
    "#4c78a8", "#f58518", "#e45756", "#72b7b2", "#54a24b",
    "#eeca3b", "#b279a2", "#ff9da6", "#9d755d", "#bab0ac",
)  # fmt: skip


def _in_order(frame: pl.DataFrame, plans: Sequence[str] | None) -> list[str]:
    """The plans of ``frame``: those of ``plans`` first, in its order (config order, the
    runner's ``months`` being sorted by name), then any other in order of appearance."""
    present = _plans(frame)
    first = [p for p in plans or () if p in present]
    return first + [p for p in present if p not in first]


# --------------------------------------------------------------------------- which plans move


def configured_movers(config: Mapping[str, Any]) -> list[str]:
    """Plans of the resolved config (``meta["config"]``) with a pool that has a schedule or
    an autoscale policy in some month."""
    movers = []
    for plan in config.get("plans") or ():
        if not isinstance(plan, Mapping):
            continue
        pools = [
            pool
            for month in plan.get("fleet") or ()
            if isinstance(month, Mapping)
            for pool in month.get("pools") or ()
            if isinstance(pool, Mapping)
        ]
        if any(pool.get("schedule") or pool.get("autoscale") for pool in pools):
            movers.append(str(plan.get("name")))
    return movers


def moving_plans(
    months: pl.DataFrame,
    config: Mapping[str, Any],
    fleet_week: pl.DataFrame | None = None,
    scale_events: pl.DataFrame | None = None,
    plans: Sequence[str] | None = None,
) -> list[str]:
    """Plans that move, in the order of ``plans`` (else of ``months``): configured so
    (``configured_movers``), or seen moving — probed in ``fleet_week``, with scale events, or
    with autoscaler launches."""
    seen = set(configured_movers(config))
    for frame in (fleet_week, scale_events):
        if frame is not None and "plan" in frame.columns:
            seen |= set(frame.get_column("plan").unique().to_list())
    if "scale_ups" in months.columns:
        seen |= set(months.filter(pl.col("scale_ups") > 0).get_column("plan").unique().to_list())
    order = _in_order(months, plans) if "plan" in months.columns else list(plans or ())
    return [p for p in order if p in seen] + sorted(p for p in seen if p not in order)


def markets_used(months: pl.DataFrame) -> list[str]:
    """Markets with GPU-hours in some row (``MARKETS`` order); none when the columns are absent."""
    return [
        m
        for m in MARKETS
        if f"gpu_hours_{m}" in months.columns
        and float(months.get_column(f"gpu_hours_{m}").fill_nan(0.0).fill_null(0.0).sum()) > 0
    ]


def shows_scaling(movers: Sequence[str], months: pl.DataFrame) -> bool:
    """The section is shown when some plan moves or some plan buys reserved instances."""
    return bool(movers) or "reserved" in markets_used(months)


# --------------------------------------------------------------------------- the week chart


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
    midnights = [24 * d for d in range(int(lo // 24), int(hi // 24) + 2) if lo <= 24 * d <= hi]
    days = "[" + ",".join(f"'{d}'" for d in DAYS) + "]"
    scale = alt.Scale(domain=[lo, hi], nice=False)
    x = alt.X(
        "hour:Q",
        title="Plan clock (day and hour of the week)",
        scale=scale,
        axis=alt.Axis(
            values=midnights, labelExpr=f"{days}[floor(datum.value / 24) % 7] + ' 00:00'"
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
            "One week of the busiest month: replicas serving and requests waiting",
            subtitle=(
                "Replication 0, probed every few minutes · waiting: on the replicas and at the "
                "router · plans whose fleet does not move are not replayed"
            ),
            anchor="start",
        )
    )


# --------------------------------------------------------------------------- tables


def market_table(
    months: pl.DataFrame, tp: int | None = None, plans: Sequence[str] | None = None
) -> pl.DataFrame | None:
    """Per (plan, month), medians across replications: GPU-hours and GPU cost per market used
    (``gpu_hours_{market}``, ``gpu_cost_{market}_usd``) and in total, the mean replicas up
    (``mean_up`` = GPU-hours ÷ ``tp`` ÷ 730; GPUs when ``tp`` is unknown) and the most
    replicas the month can have up (``replicas``). Plans in the order of ``plans``. ``None``
    without ``gpu_hours``."""
    if "gpu_hours" not in months.columns or not months.height:
        return None
    cols = [f"gpu_hours_{m}" for m in markets_used(months)] + ["gpu_hours"]
    cols += [
        c
        for c in [f"gpu_cost_{m}_usd" for m in markets_used(months)] + ["gpu_cost_usd", "replicas"]
        if c in months.columns
    ]
    per = float(tp) if tp else 1.0
    table = months.group_by("plan", "month", maintain_order=True).agg(
        *(pl.col(c).cast(pl.Float64).median() for c in cols),
        (pl.col("gpu_hours") / per / HOURS_PER_MONTH).median().alias("mean_up"),
    )
    return _ordered(table, _in_order(months, plans))


def market_table_html(table: pl.DataFrame, tp: int | None) -> str:
    used = [m for m in MARKETS if f"gpu_hours_{m}" in table.columns]
    # one market: its name in the heading, not a column equal to the total
    markets = used if len(used) > 1 else []
    costs = [m for m in markets if f"gpu_cost_{m}_usd" in table.columns]
    only = f" ({MARKET_NAMES[used[0]].lower()})" if len(used) == 1 else ""
    cost_total = "gpu_cost_usd" in table.columns
    unit = "replicas" if tp else "GPUs"
    span = ' rowspan="2"' if markets else ""  # one heading row when there is no split
    head1 = [f"<th{span}>Plan</th>", f"<th{span}>Month</th>"]
    head1.append(f'<th colspan="{len(markets) + 1}">GPU-hours{only}</th>')
    if costs or cost_total:
        money = f"GPU cost{only} (USD / month)"
        head1.append(f'<th colspan="{len(costs) + cost_total}">{money}</th>')
    head1.append(f"<th{span}>Mean {unit} up</th>")
    if "replicas" in table.columns:
        head1.append(f"<th{span}>Most replicas up</th>")
    head2 = [f"<th>{MARKET_NAMES[m]}</th>" for m in markets] + ["<th>Total</th>"]
    head2 += [f"<th>{MARKET_NAMES[m]}</th>" for m in costs] + ["<th>Total</th>"] * cost_total
    body = []
    for row in table.iter_rows(named=True):
        cells = [f"<td>{html.escape(str(row['plan']))}</td>", f"<td>{row['month']}</td>"]
        cells += [_num(_format(row[f"gpu_hours_{m}"], "count")) for m in markets]
        cells.append(_num(_format(row["gpu_hours"], "count")))
        cells += [_num(_format(row[f"gpu_cost_{m}_usd"], "usd")) for m in costs]
        if cost_total:
            cells.append(_num(_format(row["gpu_cost_usd"], "usd")))
        cells.append(_num(f"{row['mean_up']:.2f}" if row["mean_up"] is not None else "—"))
        if "replicas" in table.columns:
            cells.append(_num(_format(row["replicas"], "count")))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table(head1, head2 if markets else None, body)


def cold_start_table(
    months: pl.DataFrame, plans: Sequence[str] | None = None
) -> pl.DataFrame | None:
    """Per (plan, month), medians across replications of ``scale_ups`` (replicas the
    autoscaler launched), ``cold_start_delayed`` (requests that arrived while a launched
    replica was starting) and their share of the month's requests (``cold_share``). ``None``
    without those columns."""
    if not {"scale_ups", "cold_start_delayed"} <= set(months.columns) or not months.height:
        return None
    aggs = [pl.col(c).cast(pl.Float64).median() for c in ("scale_ups", "cold_start_delayed")]
    if "requests" in months.columns:
        share = pl.col("cold_start_delayed") / pl.col("requests").cast(pl.Float64)
        aggs.append(share.median().alias("cold_share"))
    table = months.group_by("plan", "month", maintain_order=True).agg(aggs)
    return _ordered(table, _in_order(months, plans))


def cold_start_table_html(table: pl.DataFrame) -> str:
    share = "cold_share" in table.columns
    heads = ["Plan", "Month", "Replicas launched", "Requests delayed by a cold start"]
    heads += ["Share of the month's requests"] * share
    body = []
    for row in table.iter_rows(named=True):
        cells = [f"<td>{html.escape(str(row['plan']))}</td>", f"<td>{row['month']}</td>"]
        cells += [_num(_format(row[c], "count")) for c in ("scale_ups", "cold_start_delayed")]
        if share:
            value = row["cold_share"]
            cells.append(_num("—" if value is None else f"{100 * value:.2f} %"))
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table([f"<th>{html.escape(h)}</th>" for h in heads], None, body)


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


# --------------------------------------------------------------------------- the saving


def saving_table(
    months: pl.DataFrame,
    paired: pl.DataFrame | None,
    slo: SloSpec | None,
    plans: Sequence[str],
) -> pl.DataFrame | None:
    """Per (plan, month) of every plan but the baseline (``plans[0]``): the paired difference
    of the monthly cost against the baseline (``d_cost_p5/p50/p95``, from ``paired``, else
    computed from ``months``) and, with an ``slo``, SLO misses of the plan and the baseline
    (``n``, ``k_plan``, ``k_base``, ``p_plan``, ``p_base``) and ``d_p_miss`` = p_plan − p_base.
    ``None`` with fewer than two plans or no cost difference."""
    if len(plans) < 2 or "cost_usd" not in months.columns or not months.height:
        return None
    if paired is None or paired.filter(pl.col("metric") == "cost_usd").is_empty():
        slo_ttft = slo.ttft_s if slo is not None else float("inf")
        paired = paired_differences(months, slo_ttft, plans)
    cost = paired.filter(pl.col("metric") == "cost_usd")
    if cost.is_empty():
        return None
    table = cost.select(
        "plan",
        "baseline",
        "month",
        *(pl.col(q).alias(f"d_cost_{q}") for q in ("p5", "p50", "p95")),
    )
    needed = {"finished", "in_flight_at_end", "ttft_p95_s", "tpot_p95_s"}
    if slo is not None and needed <= set(months.columns):
        risk = risk_table(months, slo).select("plan", "month", "n", "k_miss", "p_miss")
        table = (
            table.join(
                risk.rename({"k_miss": "k_plan", "p_miss": "p_plan"}),
                on=["plan", "month"],
                how="left",
                maintain_order="left",
            )
            .join(
                risk.select(
                    pl.col("plan").alias("baseline"),
                    "month",
                    pl.col("k_miss").alias("k_base"),
                    pl.col("p_miss").alias("p_base"),
                ),
                on=["baseline", "month"],
                how="left",
                maintain_order="left",
            )
            .with_columns((pl.col("p_plan") - pl.col("p_base")).alias("d_p_miss"))
        )
    return _ordered(table, _in_order(table, plans))


def _months_text(months: Sequence[int]) -> str:
    """[1, 2, 3, 5] -> "months 1–3 and 5"; [4] -> "month 4"."""
    runs: list[list[int]] = []
    for m in sorted(months):
        if runs and m == runs[-1][-1] + 1:
            runs[-1].append(m)
        else:
            runs.append([m])
    parts = [f"{r[0]}–{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return ("months " if len(months) > 1 else "month ") + text


def _usd_span(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return f"${lo:,.0f}" if round(lo) == round(hi) else f"${lo:,.0f}–${hi:,.0f}"


def _worst(rows: pl.DataFrame, k: str) -> str:
    worst = rows.sort(k, "month", descending=[True, False]).row(0, named=True)
    if not worst[k]:
        return f"0 of {worst['n']} in every month"
    return f"{worst[k]} of {worst['n']} at worst (month {worst['month']})"


def saving_sentences(table: pl.DataFrame) -> list[str]:
    """One sentence per plan of ``saving_table``: where it costs less (or more) than the
    baseline, by how much a month (the range of the monthly medians of the paired
    differences), and P(miss SLO) of both."""
    lines = []
    for plan in _plans(table):
        rows = table.filter(pl.col("plan") == plan)
        base = str(rows["baseline"][0])
        d = (
            rows.select("month", "d_cost_p50")
            .drop_nulls()
            .filter(pl.col("d_cost_p50").is_not_nan())
        )
        less = d.filter(pl.col("d_cost_p50") <= -_SAME_USD)
        more = d.filter(pl.col("d_cost_p50") >= _SAME_USD)
        same = d.filter(pl.col("d_cost_p50").abs() < _SAME_USD)
        clauses = []
        if less.height:
            span = _usd_span([-v for v in less["d_cost_p50"].to_list()])
            where = _months_text(less["month"].to_list())
            clauses.append(f"{span} a month less than {base} in {where}")
        if more.height:
            span = _usd_span(more["d_cost_p50"].to_list())
            where = _months_text(more["month"].to_list())
            clauses.append(f"{span} a month more than {base} in {where}")
        if not clauses:
            text = f"Plan {plan} costs the same as {base} in every month"
        else:
            text = f"Plan {plan} costs " + ", and ".join(clauses)
            if same.height:
                text += f", and the same in {_months_text(same['month'].to_list())}"
        text += " (median paired difference on the same traffic)"
        if "k_plan" in rows.columns and rows["k_plan"].is_not_null().all():
            k_plan, k_base = _worst(rows, "k_plan"), _worst(rows, "k_base")
            if k_plan == k_base and k_plan.endswith("every month"):
                text += f"; P(miss SLO) {k_plan} for both"
            else:
                text += f"; P(miss SLO) {k_plan} for {plan}, {k_base} for {base}"
        lines.append(text + ".")
    return lines


def _identical(table: pl.DataFrame) -> pl.Expr:
    """Rows of ``saving_table`` where the plan costs what the baseline costs in every
    replication (p5 = p50 = p95 = 0) and misses the SLO as often (when known)."""
    same = pl.all_horizontal((pl.col(f"d_cost_{q}") == 0) for q in ("p5", "p50", "p95"))
    if "d_p_miss" in table.columns:
        same = same & (pl.col("d_p_miss") == 0)
    return same.fill_null(False)


def identical_months(table: pl.DataFrame) -> dict[str, list[int]]:
    """Per plan of ``saving_table``, the months identical to the baseline (``_identical``)."""
    rows = table.filter(_identical(table))
    return {p: rows.filter(pl.col("plan") == p)["month"].to_list() for p in _plans(rows)}


def saving_table_html(table: pl.DataFrame) -> str:
    risk = "k_plan" in table.columns
    head1 = ['<th rowspan="2">Plan</th>', '<th rowspan="2">Month</th>']
    head1.append('<th colspan="2">Δ cost against the baseline (USD / month)</th>')
    if risk:
        head1.append('<th colspan="3">P(miss SLO): k of n replications</th>')
    head2 = ["<th>median</th><th>p5 … p95</th>"]
    if risk:
        head2.append("<th>plan</th><th>baseline</th><th>Δ P(miss)</th>")
    body = []
    for row in table.iter_rows(named=True):
        plan = f"{html.escape(str(row['plan']))} − {html.escape(str(row['baseline']))}"
        span = f"{_format(row['d_cost_p5'], 'd-usd')} … {_format(row['d_cost_p95'], 'd-usd')}"
        cells = [f"<td>{plan}</td>", f"<td>{row['month']}</td>"]
        cells += [_num(_format(row["d_cost_p50"], "d-usd")), _num(span)]
        if risk:
            n = row["n"]
            cells += [
                _num("—" if row["k_plan"] is None else f"{row['k_plan']} of {n}"),
                _num("—" if row["k_base"] is None else f"{row['k_base']} of {n}"),
                _num(_format(row["d_p_miss"], "d-pp")),
            ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table(head1, head2, body)


# --------------------------------------------------------------------------- the section


def scaling_charts(
    fleet_week: pl.DataFrame | None, plans: Sequence[str] | None = None
) -> dict[str, alt.VConcatChart]:
    """The section's charts by name (also the PNG file stems): the sampled week, if any."""
    if fleet_week is None or not fleet_week.height:
        return {}
    return {"fleet_week": fleet_week_chart(fleet_week, plans)}


def scaling_section_html(
    months: pl.DataFrame,
    plans: Sequence[str],
    movers: Sequence[str],
    chart_html: str,
    *,
    slo: SloSpec | None = None,
    tp: int | None = None,
    paired: pl.DataFrame | None = None,
    fleet_week: pl.DataFrame | None = None,
    scale_events: pl.DataFrame | None = None,
) -> str:
    """The section (``<h2 id="scaling">``): the saving in words and as a table, the week
    chart (``chart_html``, the embedded ``scaling_charts``), instance-hours by market, launches
    and cold starts, the week's scale events. Empty when ``shows_scaling`` is false."""
    if not shows_scaling(movers, months):
        return ""
    who = ", ".join(movers) if movers else "no plan"
    parts = [
        '<h2 id="scaling">Fleets that move</h2>',
        f'<p class="note">Plans whose replicas change within a month (a schedule or an '
        f"autoscaler): {html.escape(who)}.</p>",
    ]
    saving = saving_table(months, paired, slo, plans)
    if saving is not None:
        parts += [f"<p><b>{html.escape(s)}</b></p>" for s in saving_sentences(saving)]
        parts.append(f"<h3>Saving against {html.escape(plans[0])}</h3>")
        parts.append(
            '<p class="note">Each plan minus the baseline, replication by replication on the '
            "same traffic (common random numbers): the median and the 5th–95th percentile "
            "across replications. P(miss SLO): replications whose month p95 TTFT or TPOT "
            "exceeded its SLO.</p>"
        )
        same = identical_months(saving)
        if same:
            parts.append(
                f'<p class="note">Left out, identical to {html.escape(plans[0])} in every '
                "replication (cost and SLO misses): "
                + html.escape("; ".join(f"{p}, {_months_text(m)}" for p, m in same.items()))
                + ".</p>"
            )
        kept = saving.filter(~_identical(saving))
        parts.append(saving_table_html(kept) if kept.height else "")
    if chart_html:
        parts.append("<h3>One week of the busiest month</h3>")
        parts.append(chart_html)
    week = week_table(fleet_week, scale_events, plans)
    if week is not None:
        parts.append(
            '<p class="note">The same week in numbers: scale events by kind, and the extremes '
            "of the fleet and its queue.</p>"
        )
        parts.append(week_table_html(week))
    markets = market_table(months, tp, plans)
    if markets is not None:
        unit = f"GPU-hours ÷ {tp} GPU(s) per replica ÷ 730 h" if tp else "GPU-hours ÷ 730 h (GPUs)"
        parts.append("<h3>Instance-hours and cost by market</h3>")
        parts.append(
            '<p class="note">Medians across replications (parts need not add up to the median '
            f"total). Mean up: {html.escape(unit)}; most up: the month's largest fleet.</p>"
        )
        parts.append(market_table_html(markets, tp))
    cold = cold_start_table(months, plans)
    if cold is not None:
        parts.append("<h3>Autoscaler launches and cold starts</h3>")
        numbers = cold.select(pl.exclude("plan", "month")).fill_nan(0.0).fill_null(0.0)
        if float(numbers.sum().sum_horizontal().item()) > 0:
            parts.append(cold_start_table_html(cold))
        else:
            parts.append(
                '<p class="note">No autoscaler launched a replica and no request waited for a '
                "cold start in any replication (scheduled replicas start ahead of their "
                "hours).</p>"
            )
    return "\n".join(parts)


def scaling_answer_lines(
    months: pl.DataFrame,
    plans: Sequence[str],
    movers: Sequence[str],
    *,
    slo: SloSpec | None = None,
    paired: pl.DataFrame | None = None,
) -> list[str]:
    """The saving sentences of the plans that move (or of every plan, when the baseline
    moves), for the page's answer."""
    if not movers or len(plans) < 2:
        return []
    table = saving_table(months, paired, slo, plans)
    if table is None:
        return []
    if plans[0] not in movers:
        table = table.filter(pl.col("plan").is_in(list(movers)))
    return saving_sentences(table) if table.height else []

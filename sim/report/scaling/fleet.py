"""Which plans move, and what their fleets buy: instance-hours and cost by market, the mean
replicas up, autoscaler launches and cold starts per month (medians across replications)."""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from typing import Any, Final

import polars as pl

from sim.report.risk_tables import _num, _ordered, _table
from sim.report.shell import _plans
from sim.report.tables import _format
from sim.units import HOURS_PER_MONTH, MARKETS

# (market, heading) in table order; the months columns are gpu_hours_{market} and
# gpu_cost_{market}_usd.
MARKET_NAMES: Final = {"on_demand": "On-demand", "spot": "Spot", "reserved": "Reserved"}


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

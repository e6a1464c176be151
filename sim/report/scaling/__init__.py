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

Modules: ``fleet`` (which plans move; instance-hours by market, launches and cold starts),
``week`` (the sampled week: chart and table), ``saving`` (against the baseline: table and
sentences); this one assembles the section and the page's answer line.
"""

from __future__ import annotations

import html
from collections.abc import Sequence

import altair as alt
import polars as pl

from sim.config import SloSpec
from sim.report.scaling.fleet import (
    MARKET_NAMES,
    cold_start_table,
    cold_start_table_html,
    configured_movers,
    market_table,
    market_table_html,
    markets_used,
    moving_plans,
    shows_scaling,
)
from sim.report.scaling.saving import (
    identical_months,
    saving_html,
    saving_sentences,
    saving_table,
    saving_table_html,
)
from sim.report.scaling.week import (
    SCALE_EVENTS,
    TABLEAU10,
    fleet_week_chart,
    span_words,
    week_frame,
    week_table,
    week_table_html,
)

__all__ = [
    "MARKET_NAMES",
    "SCALE_EVENTS",
    "TABLEAU10",
    "cold_start_table",
    "cold_start_table_html",
    "configured_movers",
    "fleet_week_chart",
    "identical_months",
    "market_table",
    "market_table_html",
    "markets_used",
    "moving_plans",
    "saving_html",
    "saving_sentences",
    "saving_table",
    "saving_table_html",
    "scaling_answer_lines",
    "scaling_charts",
    "scaling_section_html",
    "shows_scaling",
    "week_frame",
    "week_table",
    "week_table_html",
]

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
        parts.append(saving_html(saving, plans[0]))
    if chart_html:
        span = "One week"
        if fleet_week is not None and not fleet_week.is_empty():
            t = fleet_week.get_column("t_s")
            span = span_words((float(t.max()) - float(t.min())) / 3600.0)  # type: ignore[arg-type]
        parts.append(f"<h3>{span} of the busiest month</h3>")
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

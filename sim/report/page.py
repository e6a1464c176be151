"""``report.html``: the run header, the SLO-risk table, the charts, the risk section; and saving.

The page depends only on its arguments (no clock), so the same results give the same bytes.
"""

from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import polars as pl

from sim.config import SloSpec
from sim.report.charts import (
    cost_breakdown_chart,
    cost_fan_chart,
    replicas_chart,
    token_utilisation_fan_chart,
    ttft_fan_chart,
    utilisation_heatmap,
)
from sim.report.risk import breach_chart, cost_budget_chart, timeline_chart
from sim.report.risk_tables import (
    activity_table,
    activity_table_html,
    cost_table,
    cost_table_html,
    paired_table,
    paired_table_html,
    timeline_table,
    timeline_table_html,
)
from sim.report.scaling import (
    moving_plans,
    scaling_answer_lines,
    scaling_charts,
    scaling_section_html,
    shows_scaling,
)
from sim.report.shell import Chart, _atomic_write, _plans, chart_blocks, html_page, write_png
from sim.report.tables import P_ABOVE_SLO, summary_table_html
from sim.stats.risk import risk_table


def _number(meta: Mapping[str, Any], key: str) -> float | None:
    value = meta.get(key)
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def report_charts(
    months: pl.DataFrame, summary: pl.DataFrame, hourly: pl.DataFrame, meta: Mapping[str, Any]
) -> dict[str, Chart]:
    """The report's main charts by name (also the PNG file stems), in page order."""
    charts: dict[str, Chart] = {
        "ttft_fan": ttft_fan_chart(summary, _number(meta, "slo_ttft_s")),
        "cost_fan": cost_fan_chart(summary),
    }
    metrics = set(summary.get_column("metric").unique().to_list()) if summary.height else set()
    if "token_utilisation" in metrics:
        charts["token_utilisation_fan"] = token_utilisation_fan_chart(summary)
    if "replicas" in metrics:
        charts["replicas"] = replicas_chart(summary)
    if {"gpu_cost_usd", "ops_cost_usd", "cost_usd"} <= set(months.columns) and months.height:
        charts["cost_breakdown"] = cost_breakdown_chart(months)
    if hourly.height:
        charts["utilisation_heatmap"] = utilisation_heatmap(hourly)
    return charts


def risk_charts(
    summary: pl.DataFrame,
    meta: Mapping[str, Any],
    timeline: pl.DataFrame | None = None,
    timeline_events: pl.DataFrame | None = None,
) -> dict[str, Chart]:
    """The risk section's charts by name (also the PNG file stems), in page order: cost
    against the budget, P(p95 TTFT > SLO) per month, and the reclaim timeline if there is one."""
    metrics = set(summary.get_column("metric").unique().to_list())
    charts: dict[str, Chart] = {}
    if "cost_usd" in metrics:
        charts["cost_vs_budget"] = cost_budget_chart(summary, _number(meta, "budget_usd_per_month"))
    if P_ABOVE_SLO in metrics:
        charts["slo_breach"] = breach_chart(summary, _number(meta, "slo_ttft_s"))
    if timeline is not None and timeline.height:
        events = timeline_events if timeline_events is not None else timeline.clear()
        charts["reclaim_timeline"] = timeline_chart(timeline, events)
    return charts


# --------------------------------------------------------------------------- header


def _wall_time(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "—"
    minutes, secs = divmod(float(seconds), 60.0)
    return f"{secs:.1f} s" if minutes < 1 else f"{int(minutes)} min {secs:.0f} s"


def _replications(meta: Mapping[str, Any]) -> str:
    done = meta.get("replications", meta.get("replications_done"))
    requested = meta.get("replications_requested")
    if isinstance(done, list | tuple):  # the runner's manifest lists the finished ids
        done = len(done)
    if done is None:
        return "—"
    return f"{done} of {requested} requested" if requested not in (None, done) else str(done)


def _plan_names(summary: pl.DataFrame, meta: Mapping[str, Any]) -> list[str]:
    """The manifest's plans (config order, the first being the baseline), else the frame's."""
    plans = meta.get("plans")
    if isinstance(plans, list | tuple) and plans:
        return [str(p) for p in plans]
    return _plans(summary)


def _uncalibrated(meta: Mapping[str, Any]) -> list[str]:
    steps = meta.get("step_times")
    if not isinstance(steps, Mapping):
        return []
    return [str(gpu) for gpu, kind in steps.items() if kind == "uncalibrated"]


def _header(
    summary: pl.DataFrame, meta: Mapping[str, Any], answer: str = "", *, scaling: bool = False
) -> str:
    name = str(meta.get("experiment", meta.get("name", "experiment")))
    slo_text = " · ".join(
        f"{what} ≤ {value:g} s"
        for what, value in (
            ("p95 TTFT", _number(meta, "slo_ttft_s")),
            ("p95 TPOT", _number(meta, "slo_tpot_s")),
        )
        if value is not None
    )
    plans = _plan_names(summary, meta)
    plans_text = ", ".join(plans)
    if len(plans) > 1:
        plans_text += f" (paired differences against {plans[0]})"
    budget = _number(meta, "budget_usd_per_month")
    facts: list[tuple[str, object]] = [
        ("Seed", meta.get("seed", "—")),
        ("Replications", _replications(meta)),
        ("Plans", plans_text),
        ("Months", summary.get_column("month").n_unique()),
        ("SLO", slo_text or "—"),
        ("Budget", "—" if budget is None else f"${budget:,.0f} / month"),
    ]
    steps = meta.get("step_times")
    if isinstance(steps, Mapping) and steps:
        facts.append(("Step times", ", ".join(f"{g}: {k}" for g, k in steps.items())))
    facts += [
        ("Version", meta.get("version", "—")),
        ("Wall time", _wall_time(meta.get("wall_s", meta.get("wall_time_s")))),
    ]
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts)
    banner = ""
    if gpus := _uncalibrated(meta):
        banner = (
            '<p class="uncalibrated"><strong>UNCALIBRATED</strong> step times for '
            + html.escape(", ".join(gpus))
            + ": roofline estimates from the GPU's specifications, not a fit to measured "
            "profiles. Latencies, SLO risk and the capacity they imply are rough; calibrate "
            "(<code>sim calibrate</code>) before relying on them.</p>"
        )
    errors = meta.get("errors") or ()
    warnings = [f"{len(errors)} replication(s) failed; see manifest.json."] if errors else []
    if meta.get("interrupted"):
        warnings.append("The run was interrupted: results cover the replications that finished.")
    error_html = "".join(f'<p class="errors">{html.escape(w)}</p>' for w in warnings)
    moving = '<a href="#scaling">Fleets that move</a> · ' if scaling else ""
    return (
        f"<h1>{html.escape(name)}</h1>\n{banner}\n{answer}\n"
        "<p>Monte Carlo capacity report: each figure is a distribution across replications.</p>\n"
        f'<dl class="meta">{dl}</dl>\n{error_html}\n'
        '<p class="note">Sections: <a href="#slo-risk">SLO risk by month</a> · '
        f'<a href="#charts">Charts</a> · {moving}<a href="#risk">Risk</a> · '
        '<a href="#config">Resolved configuration</a></p>'
    )


# --------------------------------------------------------------------------- risk section


def _no_timeline_sentence(months: pl.DataFrame) -> str:
    def total(column: str) -> float | None:
        if column not in months.columns or not months.height:
            return None
        return float(months.get_column(column).fill_nan(0.0).sum())

    spot_cost, reclaims = total("gpu_cost_spot_usd"), total("spot_preemptions")
    if spot_cost == 0.0:
        text = "No plan has spot pools, so there is no reclaim to replay."
    elif reclaims == 0.0:
        text = "No replication had a spot reclaim, so there is no reclaim to replay."
    else:
        text = "No reclaim timeline: no plan has spot pools, or no replication had a reclaim."
    return f'<p class="note">{text}</p>'


def risk_section_html(
    months: pl.DataFrame,
    summary: pl.DataFrame,
    meta: Mapping[str, Any],
    charts: Mapping[str, Chart],
    paired: pl.DataFrame | None = None,
    timeline: pl.DataFrame | None = None,
    timeline_events: pl.DataFrame | None = None,
) -> str:
    """The risk section (``charts`` from ``risk_charts``): cost against the budget, the SLO-
    breach probability, cost split and spot/API activity, paired differences, the timeline."""
    plans = _plan_names(summary, meta)
    budget = _number(meta, "budget_usd_per_month")

    def chart(key: str) -> str:
        return chart_blocks({key: charts[key]}) if key in charts else ""

    parts = ['<h2 id="risk">Risk</h2>']
    parts.append("<h3>Cost against the budget</h3>")
    if budget is None:
        parts.append(
            '<p class="note">No budget given (<code>[cost] budget_usd_per_month</code>).</p>'
        )
    parts.append(chart("cost_vs_budget"))
    parts.append("<h3>Probability of missing the TTFT SLO</h3>")
    parts.append(chart("slo_breach"))

    costs = cost_table(months, budget)
    if costs is not None:
        parts.append("<h3>Where the money goes</h3>")
        parts.append(
            '<p class="note">Medians across replications (the parts need not add up to the '
            "median total); the saving is against an all-API bill for the same tokens "
            "(positive: the plan is cheaper).</p>"
        )
        parts.append(cost_table_html(costs))
    activity = activity_table(months)
    if activity is not None:
        parts.append("<h3>Spot reclaims and API traffic per month</h3>")
        numbers = activity.drop("plan", "month")
        if float(numbers.fill_nan(0.0).sum().sum_horizontal().item()) > 0:
            parts.append(
                '<p class="note">Median and 95th percentile across replications of the '
                "month's counts.</p>"
            )
            parts.append(activity_table_html(activity))
        else:
            parts.append(
                '<p class="note">No spot reclaim, re-queued request or API request in any '
                "replication.</p>"
            )

    parts.append(f"<h3>Paired differences against {html.escape(plans[0])}</h3>")
    table = paired_table(paired) if paired is not None else None
    if table is None:
        parts.append('<p class="note">One plan only: no paired differences.</p>')
    else:
        baseline = str(paired["baseline"][0]) if paired is not None else plans[0]
        parts.append(
            f'<p class="note">Each plan minus <b>{html.escape(baseline)}</b>, replication by '
            "replication (the same traffic, reclaims and API latencies: common random "
            "numbers), then the mean and the 5th–95th percentile across replications. "
            "P(better): share of replications in which the plan beats the baseline (cheaper, "
            "faster, higher attainment, no breach where the baseline breaches); green ≥ 90 %, "
            "red ≤ 10 %.</p>"
        )
        parts.append(paired_table_html(table, baseline))

    parts.append("<h3>One spot reclaim, replayed</h3>")
    if "reclaim_timeline" in charts and timeline is not None:
        events = timeline_events if timeline_events is not None else timeline.clear()
        parts.append(
            '<p class="note">The first reclaim of a sampled replication, replayed on every plan '
            "with the same traffic: watch the healthy replicas drop at the reclaim, the queue "
            "that builds, and the API spills that absorb it.</p>"
        )
        parts.append(chart("reclaim_timeline"))
        parts.append(timeline_table_html(timeline_table(timeline, events)))
    else:
        parts.append(_no_timeline_sentence(months))
    return "\n".join(p for p in parts if p)


# --------------------------------------------------------------------------- fleets that move


def _slo(meta: Mapping[str, Any]) -> SloSpec | None:
    ttft, tpot = _number(meta, "slo_ttft_s"), _number(meta, "slo_tpot_s")
    return None if ttft is None or tpot is None else SloSpec(ttft_s=ttft, tpot_s=tpot)


def _tp(meta: Mapping[str, Any]) -> int | None:
    """GPUs per replica (``config.engine.tp``), if the manifest has it."""
    config = meta.get("config")
    engine = config.get("engine") if isinstance(config, Mapping) else None
    tp = engine.get("tp") if isinstance(engine, Mapping) else None
    return tp if isinstance(tp, int) and not isinstance(tp, bool) and tp > 0 else None


def _movers(
    months: pl.DataFrame,
    meta: Mapping[str, Any],
    fleet_week: pl.DataFrame | None,
    scale_events: pl.DataFrame | None,
) -> list[str]:
    config = meta.get("config")
    plans = meta.get("plans")
    return moving_plans(
        months,
        config if isinstance(config, Mapping) else {},
        fleet_week,
        scale_events,
        [str(p) for p in plans] if isinstance(plans, list | tuple) else None,
    )


def scaling_html(
    months: pl.DataFrame,
    summary: pl.DataFrame,
    meta: Mapping[str, Any],
    *,
    paired: pl.DataFrame | None = None,
    fleet_week: pl.DataFrame | None = None,
    scale_events: pl.DataFrame | None = None,
) -> str:
    """The "Fleets that move" section (``sim.report.scaling``), or "" when no plan moves."""
    movers = _movers(months, meta, fleet_week, scale_events)
    if not shows_scaling(movers, months):
        return ""
    plans = _plan_names(summary, meta)
    charts = scaling_charts(fleet_week, plans)
    return scaling_section_html(
        months,
        plans,
        movers,
        chart_blocks(charts),
        slo=_slo(meta),
        tp=_tp(meta),
        paired=paired,
        fleet_week=fleet_week,
        scale_events=scale_events,
    )


# --------------------------------------------------------------------------- page


def answer_lines(months: pl.DataFrame, meta: Mapping[str, Any]) -> list[str]:
    """The run's answer in plain words, per plan: how likely a month misses the SLO (worst
    month, k of n replications, its 95 % interval), what it costs, how full the fleet is."""
    ttft, tpot = _number(meta, "slo_ttft_s"), _number(meta, "slo_tpot_s")
    needed = {"finished", "in_flight_at_end", "ttft_p95_s", "tpot_p95_s", "cost_usd"}
    if ttft is None or tpot is None or not months.height or not needed <= set(months.columns):
        return []
    risk = risk_table(months, SloSpec(ttft_s=ttft, tpot_s=tpot))
    lines = []
    named = _plan_names(months, meta)  # config order (months is sorted by plan name)
    order = [p for p in named if p in _plans(months)]
    for plan in order + [p for p in _plans(months) if p not in order]:
        r = risk.filter(pl.col("plan") == plan).sort("p_miss", "month", descending=[True, False])
        row = r.row(0, named=True)
        k, n, month = int(row["k_miss"]), int(row["n"]), int(row["month"])
        p, lo, hi = float(row["p_miss"]), float(row["p_miss_lo"]), float(row["p_miss_hi"])
        m = months.filter(pl.col("plan") == plan)
        cost = m.group_by("month").agg(pl.col("cost_usd").median())["cost_usd"].to_numpy()
        full = ""
        if "token_utilisation" in m.columns and m["token_utilisation"].is_not_null().any():
            util = (
                m.group_by("month")
                .agg(pl.col("token_utilisation").median())["token_utilisation"]
                .to_numpy()
            )
            full = (
                f"; the fleet serves {float(util.min()):.0%}–{float(util.max()):.0%} of what it "
                "could at the SLO"
            )
        who = f"Plan {plan}: " if len(_plans(months)) > 1 else ""
        if k == 0:
            miss = (
                f"no month missed the SLO in any of {n} replications (P(miss) below {hi:.0%} "
                "per month, 95 % interval)"
            )
        else:
            miss = (
                f"the SLO is missed in month {month} in {k} of {n} replications (P(miss) "
                f"{p:.0%}, 95 % interval {lo:.0%}–{hi:.0%})"
            )
        lines.append(
            f"{who}{miss}; median cost ${float(cost.min()):,.0f}–${float(cost.max()):,.0f} "
            f"a month{full}."
        )
    return lines


def render_report_html(
    months: pl.DataFrame,
    summary: pl.DataFrame,
    hourly: pl.DataFrame,
    meta: Mapping[str, Any],
    *,
    paired: pl.DataFrame | None = None,
    timeline: pl.DataFrame | None = None,
    timeline_events: pl.DataFrame | None = None,
    fleet_week: pl.DataFrame | None = None,
    scale_events: pl.DataFrame | None = None,
) -> str:
    """One self-contained HTML page: header, SLO-risk table, charts, the fleets that move
    (when some plan does), risk section, config.

    ``paired``, ``timeline`` and ``timeline_events`` are optional (runs before hybrid plans
    have none): the risk section then says what it cannot show. ``fleet_week`` and
    ``scale_events`` (runs before schedules and autoscalers have none) add the sampled week.
    """
    charts = report_charts(months, summary, hourly, meta)
    risk = risk_charts(summary, meta, timeline, timeline_events)
    name = str(meta.get("experiment", meta.get("name", "experiment")))
    config = html.escape(json.dumps(meta.get("config", {}), indent=2, default=str))
    scaling = scaling_html(
        months, summary, meta, paired=paired, fleet_week=fleet_week, scale_events=scale_events
    )
    said = answer_lines(months, meta)
    if scaling:
        said += scaling_answer_lines(
            months,
            _plan_names(summary, meta),
            _movers(months, meta, fleet_week, scale_events),
            slo=_slo(meta),
            paired=paired,
        )
    lines = "".join(f"<p>{html.escape(line)}</p>" for line in said)
    answer = f'<section id="answer">{lines}</section>' if lines else ""
    body = f"""{_header(summary, meta, answer, scaling=bool(scaling))}
<h2 id="slo-risk">SLO risk by month</h2>
{summary_table_html(summary, _number(meta, "slo_ttft_s"))}
<h2 id="charts">Charts</h2>
{chart_blocks(charts)}
{scaling}
{risk_section_html(months, summary, meta, risk, paired, timeline, timeline_events)}
<h2 id="config">Resolved configuration</h2>
<details><summary>Show</summary><pre class="config">{config}</pre></details>"""
    return html_page(f"{name} — capacity report", body)


def write_report(
    out_dir: Path,
    months: pl.DataFrame,
    summary: pl.DataFrame,
    hourly: pl.DataFrame,
    meta: Mapping[str, Any],
    *,
    paired: pl.DataFrame | None = None,
    timeline: pl.DataFrame | None = None,
    timeline_events: pl.DataFrame | None = None,
    fleet_week: pl.DataFrame | None = None,
    scale_events: pl.DataFrame | None = None,
    pngs: bool = True,
) -> Path:
    """Write ``out_dir/report.html`` (and, with ``pngs``, one ``<chart>.png`` per chart,
    the risk section's included).

    The page is rendered fully in memory first and then replaces any previous report
    atomically: a failure leaves the old report untouched and no temp file behind.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = render_report_html(
        months,
        summary,
        hourly,
        meta,
        paired=paired,
        timeline=timeline,
        timeline_events=timeline_events,
        fleet_week=fleet_week,
        scale_events=scale_events,
    )
    target = out_dir / "report.html"
    _atomic_write(target, page.encode("utf-8"))
    if pngs:
        charts = (
            report_charts(months, summary, hourly, meta)
            | scaling_charts(fleet_week, _plan_names(summary, meta))
            | risk_charts(summary, meta, timeline, timeline_events)
        )
        for key, chart in charts.items():
            write_png(chart, out_dir / f"{key}.png")
    return target

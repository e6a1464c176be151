"""`plan.html` and `plan.toml`: what `sim plan` found, written for a person and for `sim run`."""

from __future__ import annotations

import html
from pathlib import Path

import polars as pl

from sim.planning.search import Plan, all_api_usd
from sim.planning.write import plan_document
from sim.report.plan.charts import cost_chart, replicas_chart, tornado_chart
from sim.report.plan.tables import (
    AUTOSCALE_NEVER_PAYS,
    FORMATS,
    _table_html,
    autoscale_never_tried,
    autoscale_table,
    frontier_table,
    line_html,
    plan_months_table,
    schedule_table,
    tp_table,
)
from sim.report.plan.words import api_prices, recommendation_lines
from sim.report.shell import Chart, _atomic_write, chart_blocks, html_page


def write_plan_report(plan: Plan, out_dir: Path, sensitivity: pl.DataFrame | None = None) -> Path:
    """Write `plan.html` and (when every month has a plan) `plan.toml` into `out_dir`;
    `sensitivity` (`sim.planning.sensitivity.sensitivity_table`) adds its tornado."""
    out_dir.mkdir(parents=True, exist_ok=True)
    spec = plan.exp.spec
    lines = recommendation_lines(plan)
    table = plan_months_table(plan)
    charts: dict[str, Chart] = {}
    if not table.is_empty():
        _, p_in, p_out = api_prices(plan)
        ref = plan.verification
        api = [
            all_api_usd(ref, m, p_in, p_out) if ref is not None else float("nan")
            for m in table["month"].to_list()
        ]
        charts = {"cost": cost_chart(table, api), "replicas": replicas_chart(table)}
    s = plan.settings
    notes = [
        f"Prices: the {html.escape(plan.price_list)} list of sim/data/gpus.toml"
        + (f"; overrides: {html.escape('; '.join(plan.overrides))}" if plan.overrides else ""),
        f"Search: {plan.evaluations} candidate fleets, {plan.replications} replications "
        f"({plan.months_simulated} simulated months: a fleet is decided month by month), "
        f"{plan.wall_s:.0f} s. A candidate is accepted when the one-sided "
        f"{s.confidence:.0%} Clopper–Pearson bound on P(miss) is ≤ {s.risk:.0%}.",
    ]
    notes += [html.escape(u) for u in plan.uncalibrated]
    notes += [html.escape(f"{g}: {why}") for g, why in sorted(plan.skipped_gpus.items())]
    frontier = frontier_table(plan)
    schedules = schedule_table(plan)
    autoscaled = autoscale_table(plan)
    by_tp = tp_table(plan)
    tornado = ""
    if sensitivity is not None and not sensitivity.is_empty():
        tornado = (
            "<h2>What moves the answer</h2>"
            + chart_blocks({"tornado": tornado_chart(sensitivity)})
            + _table_html(sensitivity, FORMATS)
        )
    body = (
        f"<h1>Plan for {html.escape(spec.name)}</h1>"
        f'<p class="sub">{spec.months} months, {html.escape(spec.engine.model)}, SLO p95 TTFT '
        f"≤ {spec.slo.ttft_s:g} s and p95 TPOT ≤ {spec.slo.tpot_s:g} s, risk target "
        f"{s.risk:.0%}</p>"
        '<section id="recommendation"><h2>Recommendation</h2>'
        + "".join(line_html(line) for line in lines)
        + "</section><h2>Month by month</h2>"
        + (_table_html(table, FORMATS) if not table.is_empty() else "<p>No plan.</p>")
        + chart_blocks(charts)
        + (
            "<h2>Does scheduling pay?</h2>" + _table_html(schedules, FORMATS)
            if not schedules.is_empty()
            else ""
        )
        + (
            f"<h2>Does autoscaling pay?</h2><p>{html.escape(AUTOSCALE_NEVER_PAYS)}</p>"
            if autoscale_never_tried(autoscaled)
            else "<h2>Does autoscaling pay?</h2>"
            "<p>Per month, the cheapest static and the cheapest autoscaled fleet meeting the "
            "risk target on the same replications (mean cost; launches and cold starts: means "
            "across replications).</p>" + _table_html(autoscaled, FORMATS)
            if not autoscaled.is_empty()
            else ""
        )
        + (
            "<h2>By tensor parallelism</h2>"
            "<p>The best whole plan found at each tensor-parallel degree searched, on the same "
            "replications (one degree for the whole plan: <code>[engine] tp</code> is one value "
            "per experiment).</p>" + _table_html(by_tp, FORMATS)
            if not by_tp.is_empty()
            else ""
        )
        + tornado
        + "<h2>How the search ran</h2><ul>"
        + "".join(f"<li>{n}</li>" for n in notes)
        + "</ul><h3>Candidates tried (cost–risk frontier marked)</h3>"
        + (_table_html(frontier, FORMATS) if not frontier.is_empty() else "")
    )
    page = out_dir / "plan.html"
    _atomic_write(page, html_page(f"Plan for {spec.name}", body).encode("utf-8"))
    if plan.choices and not plan.infeasible_months:
        prices = {g: p.on_demand_usd_per_hour for g, p in plan.prices.items()}
        text = plan_document(
            spec.file,
            plan.recommended,
            f"{spec.name}-plan",
            out_dir,
            prices,
            plan.tp,
            spec.engine.calibration,
        )
        _atomic_write(out_dir / "plan.toml", text.encode("utf-8"))
    return page

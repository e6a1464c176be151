"""What `sim plan` found, for a person: the decision in words first, then the evidence.

`recommendation_lines(plan)` is the plain-words answer (also the page's first screen and the
terminal's first lines); `plan_months_table` the month-by-month table; `write_plan_report`
writes `plan.html` (recommendation, month table, monthly cost vs the all-API bill, replicas per
month, the cost–risk frontier of the candidates tried, how the search ran) and `plan.toml`.
Charts are pure functions of tables (`cost_chart`, `replicas_chart`).
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import altair as alt
import polars as pl

from sim.planning.decide import Candidate
from sim.planning.prices import comparison_api
from sim.planning.search import Plan, all_api_usd, months_text
from sim.planning.write import plan_document
from sim.report.shell import Chart, _atomic_write, _inline, chart_blocks, html_page


def candidate_words(c: Candidate) -> str:
    """A fleet in words: "2 × a100-80gb, on-demand"; a scheduled one by its busy hours."""
    if c.scheduled:
        lo, busy = min(c.hourly), sum(1 for x in c.hourly if x == c.count)
        if set(c.hourly) == {lo, c.count}:
            words = (
                f"{c.count} × {c.gpu} at the profile's busy hours ({busy} h a week), {lo} otherwise"
            )
        else:
            words = (
                f"{c.count} × {c.gpu} at the profile's busiest hours ({busy} h a week), down "
                f"to {lo} at the quietest ({sum(c.hourly) / len(c.hourly):.1f} on average)"
            )
    else:
        words = f"{c.count} × {c.gpu}" + (f" ({c.spot} on spot)" if c.spot else ", on-demand")
    return words + (", spilling to the API at peaks" if c.api else "")


def _fleet_words(plan: Plan) -> list[tuple[list[int], str]]:
    """Runs of months with the same fleet: ([1, 2, 3], "one l40s, on-demand")."""
    runs: list[tuple[list[int], str]] = []
    for ch in plan.choices:
        words = candidate_words(ch.candidate)
        if runs and runs[-1][1] == words:
            runs[-1][0].append(ch.month)
        else:
            runs.append(([ch.month], words))
    return runs


def _static_words(c: Candidate) -> str:
    base = f"{c.count} × {c.gpu}" + (f" ({c.spot} on spot)" if c.spot else "")
    return base + " around the clock" + (" with API spill" if c.api else "")


def schedule_runs(plan: Plan) -> list[tuple[list[int], str, str]]:
    """Per run of months whose choice is scheduled (the same fleet and static alternative):
    (months, the fleet in words, what it saves against the cheapest static fleet meeting the
    same risk target, with both P(miss) bounds)."""
    runs: list[tuple[list[int], tuple[str, str], list[float]]] = []
    by_month = {ch.month: ch for ch in plan.choices}
    for month, other in sorted(plan.static_choices.items()):
        key = (candidate_words(by_month[month].candidate), _static_words(other.candidate))
        saving = other.cost_usd - by_month[month].cost_usd
        if runs and runs[-1][1] == key and runs[-1][0][-1] == month - 1:
            runs[-1][0].append(month)
            runs[-1][2].append(saving)
        else:
            runs.append(([month], key, [saving]))
    out = []
    for months, (ours, theirs), savings in runs:
        worst = max((by_month[m].misses for m in months), key=lambda p: p.bound)
        static = max((plan.static_choices[m].misses for m in months), key=lambda p: p.bound)
        out.append(
            (
                months,
                ours,
                f"${sum(savings) / len(savings):,.0f} a month less than {theirs} at the same "
                f"risk target (P(miss) ≤ {worst.bound:.1%}, {worst.k} of {worst.n} "
                f"replications, against ≤ {static.bound:.1%}, {static.k} of {static.n}, around "
                "the clock)",
            )
        )
    return out


def schedule_lines(plan: Plan, fleet_runs: list[list[int]] | None = None) -> list[str]:
    """The "does scheduling pay?" sentences for the runs of `schedule_runs` not already told
    with a run of `fleet_runs`, and the months a schedule met the risk and no static fleet did."""
    lines = [
        f"{months_text(months).capitalize()}: {ours} — {clause}."
        for months, ours, clause in schedule_runs(plan)
        if months not in (fleet_runs or [])
    ]
    unmatched = [ch.month for ch in plan.choices if ch.candidate.scheduled]
    unmatched = [m for m in unmatched if m not in plan.static_choices]
    if unmatched:
        lines.append(
            f"In {months_text(unmatched)} no static fleet of at most "
            f"{plan.settings.max_replicas} replicas met the risk target: only the schedule did."
        )
    return lines


def order_lines(plan: Plan) -> list[str]:
    """One "order by" sentence per fleet increase of a GPU type with a lead time."""
    start = plan.settings.start_date
    return [f"Order ahead, {o.words(start)}." for o in plan.orders]


def schedule_table(plan: Plan) -> pl.DataFrame:
    """Per month with a scheduled choice: it and the cheapest static fleet meeting the risk,
    their costs, the saving and both P(miss) (k/n and the one-sided bound)."""
    rows = []
    by_month = {ch.month: ch for ch in plan.choices}
    for month, static in sorted(plan.static_choices.items()):
        ch = by_month[month]
        rows.append(
            {
                "month": month,
                "fleet": ch.candidate.label(),
                "cost_usd": ch.cost_usd,
                "misses": f"{ch.misses.k}/{ch.misses.n}",
                "p_miss_bound": ch.misses.bound,
                "static_fleet": static.candidate.label(),
                "static_cost_usd": static.cost_usd,
                "static_misses": f"{static.misses.k}/{static.misses.n}",
                "static_p_miss_bound": static.misses.bound,
                "saving_usd": static.cost_usd - ch.cost_usd,
            }
        )
    return pl.DataFrame(rows)


def api_prices(plan: Plan) -> tuple[str, float, float]:
    """The API priced for the all-API comparison (`sim.planning.prices.comparison_api`)."""
    return comparison_api(plan.exp.spec.api, plan.settings.compare_api)


def _money_range(lo: float, mid: float, hi: float) -> str:
    if round(lo) == round(hi):
        return f"${mid:,.0f} a month"
    return f"${mid:,.0f} a month (p5–p95 ${lo:,.0f}–${hi:,.0f})"


def recommendation_lines(plan: Plan) -> list[str]:
    """The decision in plain words: fleet per run of months, cost, risk, the comparisons."""
    s = plan.settings
    slo = plan.exp.spec.slo
    if not plan.choices or plan.infeasible_months:
        bad = months_text(plan.infeasible_months)
        return [
            f"No candidate meets the risk target (P(miss SLO) ≤ {s.risk:.0%}) in {bad} with at "
            f"most {s.max_replicas} replicas of "
            f"{', '.join(sorted({t.candidate.gpu for t in plan.tried}))}: raise "
            "[plan] max_replicas, add GPU types, allow the API, or relax the SLO."
            + (
                " GPU types with a lead time are limited to [plan] current_fleet until their "
                "orders can arrive."
                if s.current_fleet is not None and s.lead_time_days
                else ""
            )
        ]
    lines = []
    saves = {tuple(months): clause for months, _, clause in schedule_runs(plan)}
    fleet_runs = _fleet_words(plan)
    for months, words in fleet_runs:
        costs = [ch for ch in plan.choices if ch.month in months]
        lo = min(c.cost_p5_usd for c in costs)
        hi = max(c.cost_p95_usd for c in costs)
        mid = sum(c.cost_usd for c in costs) / len(costs)
        what = "" if s.objective == "mean" else "p95 "
        clause = saves.get(tuple(months))
        lines.append(
            f"{months_text(months).capitalize()}: {words}, {what}{_money_range(lo, mid, hi)}"
            + (f" — {clause}." if clause else ".")
        )
    lines += schedule_lines(plan, [m for m, _ in fleet_runs])
    lines += order_lines(plan)
    worst = max(plan.choices, key=lambda c: c.misses.bound)
    k, n = worst.misses.k, worst.misses.n
    seen = (
        f"no month missed it in {n} simulated replications"
        if k == 0
        else (f"the worst month, {worst.month}, missed it in {k} of {n} replications")
    )
    lines.append(
        f"Chance that a month misses the SLO (p95 TTFT ≤ {slo.ttft_s:g} s and p95 TPOT ≤ "
        f"{slo.tpot_s:g} s): at most {worst.misses.bound:.1%} with {s.confidence:.0%} "
        f"confidence ({seen})."
    )
    v = plan.verification
    if v is not None:
        any_miss = v.any_month_misses()
        lines.append(
            f"Checked on {v.replications} fresh replications of the whole plan: "
            f"{any_miss.k} of {any_miss.n} missed the SLO in any month (so P(any month misses) "
            f"≤ {any_miss.bound:.1%} with {s.confidence:.0%} confidence)."
        )
    provider, p_in, p_out = api_prices(plan)
    if v is not None:
        months = sorted(ch.month for ch in plan.choices)
        api = sum(all_api_usd(v, m, p_in, p_out) for m in months) / len(months)
        own = sum(ch.cost_usd for ch in plan.choices) / len(plan.choices)
        if api < own:
            lines.append(
                f"At this volume the API is cheaper: the same tokens on {provider} "
                f"(${p_in:g}/${p_out:g} per M tokens) would cost ${api:,.0f} a month, "
                f"${own - api:,.0f} less than self-hosting (`sim breakeven` finds the volume "
                "where that turns)."
            )
        else:
            lines.append(
                f"Self-hosting saves ${api - own:,.0f} a month against the same tokens on "
                f"{provider} (${api:,.0f} a month at ${p_in:g}/${p_out:g} per M tokens)."
            )
    ip = plan.input_plan
    if ip is not None:
        extra = {ch.month: ip.cost(ch.month) - ch.cost_usd for ch in plan.choices}
        differ = [m for m, x in extra.items() if abs(x) >= 0.5]
        theirs = [ip.median(ch.month, "ttft_p95_s") for ch in plan.choices]
        ours = [ch.ttft_p95_s for ch in plan.choices]
        gap = max(abs(a - b) for a, b in zip(theirs, ours, strict=True))
        if not differ:
            lines.append("The plan in the input file costs the same.")
        else:
            mean_extra = sum(extra[m] for m in differ) / len(differ)
            more = "more" if mean_extra >= 0 else "less"
            lines.append(
                f"The plan in the input file costs ${abs(mean_extra):,.0f} a month {more} in "
                f"{months_text(differ)}; its median p95 TTFT differs from this plan's by at "
                f"most {gap:.2f} s ({min(theirs):.2f}–{max(theirs):.2f} s against "
                f"{min(ours):.2f}–{max(ours):.2f} s)."
            )
    sheet = plan.spreadsheet
    if sheet is not None:
        counts = [m.replicas for m in sheet.plan.fleet]
        gpu = sheet.plan.fleet[0].pools[0].gpu
        sheet_month = max(range(1, len(counts) + 1), key=lambda m: sheet.misses(m).bound)
        sheet_p = sheet.misses(sheet_month)
        sheet_cost = sum(sheet.cost(m) for m in range(1, len(counts) + 1)) / len(counts)
        lines.append(
            f"A spreadsheet sizing — average load ÷ one {gpu}'s {plan.spreadsheet_rate:.2g} "
            f"requests/s at the SLO: {', '.join(map(str, counts))} replicas by month — costs "
            f"${sheet_cost:,.0f} a month and misses the SLO in month {sheet_month} in "
            f"{sheet_p.k} of {sheet_p.n} replications (P(miss) ≤ {sheet_p.bound:.0%}, "
            f"{s.confidence:.0%} bound)."
        )
    for note in plan.uncalibrated:
        lines.append(f"Caution: {note} — calibrate it (`sim calibrate`) before buying.")
    return lines


def plan_months_table(plan: Plan) -> pl.DataFrame:
    """One row per month: fleet, cost and its spread, P(miss) with its bound and k/n."""
    rows = []
    for ch in plan.choices:
        rows.append(
            {
                "month": ch.month,
                "fleet": ch.candidate.label(),
                "api": "on" if ch.candidate.api else "off",
                "cost_usd": ch.cost_usd,
                "cost_p5_usd": ch.cost_p5_usd,
                "cost_p95_usd": ch.cost_p95_usd,
                "p_miss": ch.misses.estimate,
                "p_miss_bound": ch.misses.bound,
                "misses": f"{ch.misses.k}/{ch.misses.n}",
                "ttft_p95_s": ch.ttft_p95_s,
                "tpot_p95_s": ch.tpot_p95_s,
                "token_utilisation": ch.token_utilisation,
            }
        )
    return pl.DataFrame(rows)


def frontier_table(plan: Plan) -> pl.DataFrame:
    """Candidates tried, per month: cost and P(miss) bound, with the Pareto front marked."""
    rows = [
        {
            "month": t.month,
            "candidate": t.candidate.label(),
            "cost_usd": t.cost_usd,
            "p_miss_bound": t.misses.bound,
            "accepted": t.accepted,
        }
        for t in plan.tried
    ]
    frame = pl.DataFrame(rows) if rows else pl.DataFrame()
    if frame.is_empty():
        return frame
    frame = frame.sort("month", "cost_usd")
    best = frame.group_by("month", maintain_order=True).agg(
        pl.col("p_miss_bound").cum_min().alias("front")
    )
    front = best.explode("front")["front"]
    return frame.with_columns((pl.col("p_miss_bound") <= pl.Series(front)).alias("on_frontier"))


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


def _table_html(frame: pl.DataFrame, formats: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(HEADINGS.get(c, c))}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows(named=True):
        cells = []
        for c in frame.columns:
            v = row[c]
            text = formats[c].format(v) if c in formats and v is not None else str(v)
            cells.append(f"<td>{html.escape(text)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        f'<table class="summary"><thead><tr>{head}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def line_html(line: str) -> str:
    """One sentence of the recommendation as HTML: escaped, `code` spans set as <code>, a
    caution set apart."""
    text = re.sub(r"`([^`]+)`", r"<code>\1</code>", html.escape(line))
    cls = ' class="uncalibrated"' if line.startswith("Caution:") else ""
    return f"<p{cls}>{text}</p>"


HEADINGS = {
    "month": "Month",
    "fleet": "Fleet",
    "api": "API spill",
    "cost_usd": "Cost / month",
    "cost_p5_usd": "p5",
    "cost_p95_usd": "p95",
    "p_miss": "P(miss SLO)",
    "p_miss_bound": "95 % bound",
    "misses": "Misses / replications",
    "ttft_p95_s": "p95 TTFT (s, median)",
    "tpot_p95_s": "p95 TPOT (s, median)",
    "token_utilisation": "Token utilisation (median)",
    "candidate": "Candidate",
    "accepted": "Accepted",
    "on_frontier": "On the cost–risk frontier",
    "factor": "Factor",
    "end": "End",
    "setting": "Setting",
    "d_p_miss": "Δ P(miss)",
    "d_cost_usd": "Δ cost / month",
    "static_fleet": "Cheapest static fleet meeting the risk",
    "static_cost_usd": "Its cost / month",
    "static_misses": "Its misses / replications",
    "static_p_miss_bound": "Its 95 % bound",
    "saving_usd": "Scheduling saves / month",
}

FORMATS = {
    "d_p_miss": "{:+.1%}",
    "d_cost_usd": "${:+,.0f}",
    "cost_usd": "${:,.0f}",
    "static_cost_usd": "${:,.0f}",
    "saving_usd": "${:,.0f}",
    "static_p_miss_bound": "{:.1%}",
    "cost_p5_usd": "${:,.0f}",
    "cost_p95_usd": "${:,.0f}",
    "p_miss": "{:.1%}",
    "p_miss_bound": "{:.1%}",
    "ttft_p95_s": "{:.3f}",
    "tpot_p95_s": "{:.4f}",
    "token_utilisation": "{:.0%}",
}


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
        f"Search: {plan.evaluations} candidate fleets, {plan.replications} replications, "
        f"{plan.wall_s:.0f} s. A candidate is accepted when the one-sided "
        f"{s.confidence:.0%} Clopper–Pearson bound on P(miss) is ≤ {s.risk:.0%}.",
    ]
    notes += [html.escape(u) for u in plan.uncalibrated]
    notes += [html.escape(f"{g}: {why}") for g, why in sorted(plan.skipped_gpus.items())]
    frontier = frontier_table(plan)
    schedules = schedule_table(plan)
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
        text = plan_document(spec.file, plan.recommended, f"{spec.name}-plan", out_dir, prices)
        _atomic_write(out_dir / "plan.toml", text.encode("utf-8"))
    return page

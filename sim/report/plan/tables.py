"""`sim plan`'s tables (polars frames, one row per month or candidate) and their HTML.

`plan_months_table` (the recommendation by month), `schedule_table` ("does scheduling pay?"),
`autoscale_table` ("does autoscaling pay?"), `tp_table` ("By tensor parallelism"),
`frontier_table` (the candidates tried);
`HEADINGS` and `FORMATS` name and format their columns on the page.
"""

from __future__ import annotations

import html
import re

import polars as pl

from sim.planning.search import Plan, months_text


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


def schedule_table(plan: Plan) -> pl.DataFrame:
    """Per month with a scheduled choice: it and the cheapest static fleet meeting the risk,
    their costs, the saving and both P(miss) (k/n and the one-sided bound)."""
    rows = []
    by_month = {ch.month: ch for ch in plan.choices}
    for month, static in sorted(plan.static_choices.items()):
        ch = by_month[month]
        if not ch.candidate.scheduled:
            continue  # an autoscaled choice: `autoscale_table`
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


def autoscale_table(plan: Plan) -> pl.DataFrame:
    """Per month where an autoscaled candidate was searched: the cheapest static and the
    cheapest autoscaled fleet meeting the risk — mean cost, P(miss) k/n and its one-sided
    bound, the autoscaler's launches per day and share of requests arriving during a cold
    start — what autoscaling saves (negative: it costs more) and which kind the plan chose.
    An empty cell: no fleet of that kind of at most `max_replicas` met the risk, or (autoscaled,
    `why_none`) none was tried, its floor alone costing as much as the static fleet, or those
    simulated were dropped, their replications so far costing more than the static fleet could
    (`sim.planning.decide.cost_cannot_beat`), or more than it beyond chance
    (`sim.planning.decide.dearer_than`)."""
    if not plan.settings.autoscale:
        return pl.DataFrame()
    by_month = {ch.month: ch for ch in plan.choices}
    tried = {t.month for t in plan.tried if t.candidate.autoscaled}
    dropped = {t.month for t in plan.dropped if t.candidate.autoscaled}
    rows = []
    for month in sorted(set(plan.static_best) | set(plan.autoscaled_best)):
        static, auto = plan.static_best.get(month), plan.autoscaled_best.get(month)
        chosen = by_month.get(month)
        # no autoscaled fleet: none tried met the risk, none could beat the static fleet's
        # cost (dropped by the cost cut), or none was tried because its floor alone
        # (min_replicas all month) costs as much as the static fleet (`monthly`)
        why = (
            None
            if auto
            else DROPPED
            if month in dropped
            else "none met the risk"
            if month in tried
            else NOT_TRIED
        )
        rows.append(
            {
                "month": month,
                "static_fleet": static.candidate.label() if static else None,
                "static_cost_usd": static.cost_usd if static else None,
                "static_misses": f"{static.misses.k}/{static.misses.n}" if static else None,
                "static_p_miss_bound": static.misses.bound if static else None,
                "autoscaled_fleet": auto.candidate.label() if auto else None,
                "why_none": why,
                "autoscaled_cost_usd": auto.cost_usd if auto else None,
                "autoscaled_misses": f"{auto.misses.k}/{auto.misses.n}" if auto else None,
                "autoscaled_p_miss_bound": auto.misses.bound if auto else None,
                "launches_per_day": auto.launches_per_day if auto else None,
                "cold_start_share": auto.cold_start_share if auto else None,
                "autoscaling_saves_usd": (
                    static.cost_usd - auto.cost_usd if static and auto else None
                ),
                "chosen": chosen.candidate.kind.split()[0] if chosen else None,
            }
        )
    return pl.DataFrame(rows)


NOT_TRIED = "cannot pay: not tried"
DROPPED = "cannot pay: its cost so far was above the static fleet's"
AUTOSCALE_NEVER_PAYS = (
    "Not at this volume: in every month the cheapest static fleet meeting the risk costs no "
    "more than an autoscaler's floor (its fewest replicas all month), so none was simulated."
)


def autoscale_never_tried(table: pl.DataFrame) -> bool:
    """Whether `autoscale_table` says, for every month, that no autoscaler could pay."""
    return not table.is_empty() and all(w == NOT_TRIED for w in table["why_none"].to_list())


def tp_table(plan: Plan) -> pl.DataFrame:
    """Where `[plan] tp` was given, one row per degree searched: the GPU types that hold the
    model at it, its best plan's fleets by run of months, the months meeting the risk, the
    mean monthly cost (None: some month has no fleet meeting the risk) and whether the plan
    chose it."""
    if not plan.settings.tp:
        return pl.DataFrame()
    rows = []
    for o in plan.by_tp:
        runs: list[tuple[list[int], str]] = []
        for month, label in enumerate(o.fleets, start=1):
            if not label:
                continue
            if runs and runs[-1][1] == label and runs[-1][0][-1] == month - 1:
                runs[-1][0].append(month)
            else:
                runs.append(([month], label))
        fleets = "; ".join(f"{label} ({months_text(m)})" for m, label in runs)
        rows.append(
            {
                "tp": o.tp,
                "gpus_searched": ", ".join(o.gpus) if o.gpus else "none",
                "tp_plan": fleets or (o.why_skipped or "none met the risk"),
                "months_met": f"{o.months_met} of {o.months}",
                "mean_cost_usd": o.mean_usd if o.months_met == o.months and o.gpus else None,
                "tp_chosen": "yes" if o.chosen else "",
            }
        )
    return pl.DataFrame(rows, schema_overrides={"mean_cost_usd": pl.Float64})


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


def _table_html(frame: pl.DataFrame, formats: dict[str, str]) -> str:
    head = "".join(f"<th>{html.escape(HEADINGS.get(c, c))}</th>" for c in frame.columns)
    body = []
    for row in frame.iter_rows(named=True):
        cells = []
        for c in frame.columns:
            v = row[c]
            text = "—" if v is None else formats[c].format(v) if c in formats else str(v)
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
    "autoscaled_fleet": "Cheapest autoscaled fleet meeting the risk",
    "why_none": "No autoscaled fleet because",
    "autoscaled_cost_usd": "Its mean cost / month",
    "autoscaled_misses": "Its misses / replications",
    "autoscaled_p_miss_bound": "Its 95 % bound",
    "launches_per_day": "Launches / day",
    "cold_start_share": "Requests arriving in a cold start",
    "autoscaling_saves_usd": "Autoscaling saves / month",
    "chosen": "The plan chose",
    "tp": "Tensor parallelism",
    "gpus_searched": "GPU types that hold the model",
    "tp_plan": "Best plan (fleet, months)",
    "months_met": "Months meeting the risk",
    "mean_cost_usd": "Mean cost / month",
    "tp_chosen": "Chosen",
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
    "autoscaled_cost_usd": "${:,.0f}",
    "autoscaled_p_miss_bound": "{:.1%}",
    "launches_per_day": "{:.0f}",
    "cold_start_share": "{:.1%}",
    "autoscaling_saves_usd": "${:+,.0f}",
    "mean_cost_usd": "${:,.0f}",
}

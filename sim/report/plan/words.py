"""`sim plan`'s answer in plain words: the recommendation's sentences.

`recommendation_lines(plan)` is the decision first (fleet per run of months, cost, risk), then
what it saves against the cheapest static fleet where the fleet moves (a schedule or an
autoscaler), order dates, the verification, the API and the spreadsheet comparisons.
"""

from __future__ import annotations

from sim.planning.decide import Candidate
from sim.planning.prices import comparison_api
from sim.planning.search import Plan, all_api_usd, months_text


def gpu_words(c: Candidate) -> str:
    """The GPU type of a candidate's replicas, with their tensor-parallel degree above 1:
    "a100-40gb (tp 2, 2 GPUs a replica)"."""
    return c.gpu if c.tp == 1 else f"{c.gpu} (tp {c.tp}, {c.tp} GPUs a replica)"


def candidate_words(c: Candidate) -> str:
    """A fleet in words: "2 × a100-80gb, on-demand"; a scheduled one by its busy hours; an
    autoscaled one by its bounds and target; the TP when above 1 (`gpu_words`)."""
    gpu = gpu_words(c)
    if c.scaler is not None:
        a = c.scaler
        words = (
            f"{a.min_replicas}–{a.max_replicas} × {gpu}, on-demand, moved by an autoscaler on "
            f"sequences {a.signal} per replica (target {a.target:g}, {c.utilisation:.0%} of what "
            "one replica runs at its capacity at the SLO)"
        )
    elif c.scheduled:
        lo, busy = min(c.hourly), sum(1 for x in c.hourly if x == c.count)
        if set(c.hourly) == {lo, c.count}:
            words = (
                f"{c.count} × {gpu} at the profile's busy hours ({busy} h a week), {lo} otherwise"
            )
        else:
            words = (
                f"{c.count} × {gpu} at the profile's busiest hours ({busy} h a week), down "
                f"to {lo} at the quietest ({sum(c.hourly) / len(c.hourly):.1f} on average)"
            )
    else:
        words = f"{c.count} × {gpu}" + (f" ({c.spot} on spot)" if c.spot else ", on-demand")
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
    base = f"{c.count} × {gpu_words(c)}" + (f" ({c.spot} on spot)" if c.spot else "")
    return base + " around the clock" + (" with API spill" if c.api else "")


def schedule_runs(plan: Plan) -> list[tuple[list[int], str, str]]:
    """Per run of months whose choice moves — scheduled or autoscaled — (the same fleet and
    static alternative): (months, the fleet in words, what it saves against the cheapest
    static fleet meeting the same risk target, with both P(miss) bounds)."""
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
    for kind, what in (("scheduled", "the schedule"), ("autoscaled", "the autoscaler")):
        unmatched = [
            ch.month
            for ch in plan.choices
            if getattr(ch.candidate, kind) and ch.month not in plan.static_choices
        ]
        if unmatched:
            lines.append(
                f"In {months_text(unmatched)} no static fleet of at most "
                f"{plan.settings.max_replicas} replicas met the risk target: only {what} did."
            )
    return lines


def autoscale_lines(plan: Plan) -> list[str]:
    """Per run of months whose choice is autoscaled (the same fleet): how often it starts a
    replica and the share of requests that arrive while one is still starting."""
    runs: list[tuple[list[int], str, list[float], list[float]]] = []
    for ch in plan.choices:
        if not ch.candidate.autoscaled:
            continue
        label = ch.candidate.label()
        if runs and runs[-1][1] == label and runs[-1][0][-1] == ch.month - 1:
            runs[-1][0].append(ch.month)
            runs[-1][2].append(ch.launches_per_day)
            runs[-1][3].append(ch.cold_start_share)
        else:
            runs.append(([ch.month], label, [ch.launches_per_day], [ch.cold_start_share]))
    return [
        f"{months_text(months).capitalize()}: the autoscaler starts about "
        f"{sum(launches) / len(launches):.0f} replicas a day, and "
        f"{max(shares):.1%} of requests arrive while one is still starting (they wait for, or "
        "are served by, the replicas already up; the risk above counts them)."
        for months, _, launches, shares in runs
    ]


def tp_lines(plan: Plan) -> list[str]:
    """Where `[plan] tp` was given: the degrees searched, the one chosen and its cost against
    the best plan at each other degree, and the degrees skipped or short of the risk."""
    if not plan.settings.tp:
        return []
    out = plan.by_tp
    searched = ", ".join(str(o.tp) for o in out)
    lines = [
        f"Tensor parallelism: searched tp {searched}, one degree for the whole plan "
        "(`[engine] tp` is one value per experiment, so plan.toml runs as written)."
    ]
    chosen = next((o for o in out if o.chosen), None)
    others = [o for o in out if not o.chosen and o.months_met == o.months and o.gpus]
    if chosen is not None:
        against = "; ".join(f"${o.mean_usd:,.0f} at tp {o.tp}" for o in others)
        lines.append(
            f"The cheapest plan meeting the risk is at tp {chosen.tp}: ${chosen.mean_usd:,.0f} "
            f"a month"
            + (f" (against {against})." if against else " (the only degree that has one).")
        )
    for o in out:
        if not o.gpus:
            lines.append(f"At tp {o.tp}: skipped, {o.why_skipped}.")
        elif o.months_met < o.months:
            lines.append(
                f"At tp {o.tp}: no fleet of at most {plan.settings.max_replicas} replicas meets "
                f"the risk in {o.months - o.months_met} of {o.months} months."
            )
    return lines


def order_lines(plan: Plan) -> list[str]:
    """One "order by" sentence per fleet increase of a GPU type with a lead time."""
    start = plan.settings.start_date
    return [f"Order ahead, {o.words(start)}." for o in plan.orders]


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
            ),
            *tp_lines(plan),
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
    lines += autoscale_lines(plan)
    lines += tp_lines(plan)
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

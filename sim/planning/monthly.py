"""The month-by-month search at one tensor-parallel degree: `search_at_tp`.

`sim.planning.search.plan_experiment` runs it once per degree of `[plan] tp` and keeps the
cheapest whole plan; here every candidate is a fleet of `tp`-way replicas (`Candidate.tp`: a
replica costs `tp` GPU-hours an hour) on an experiment whose engine is resolved at `tp`.

Candidates. For each candidate GPU type (the `[plan] gpus` list, or every GPU on the price list
that holds one `max_model_len` request), replica counts 1..`max_replicas`, spot shares and API
spill on/off; with `[plan] schedules` (default on), each on-demand count N ≥ 2 also as a
scheduled fleet following the weekly profile, N at its busiest hour (`sim.planning.schedules`);
with `[plan] autoscale` (default on), each on-demand N ≥ 2 also as a fleet a reactive
autoscaler moves between the month's quietest-hour need and N, one candidate per target
(`sim.planning.autoscale`).
A candidate is one fleet kept the same in every month, decided month by month: deciding it
for month m simulates month m only (`sim.planning.evaluate`; a sampled month's rows are the
same bits whichever months run beside it). A month that starts before a GPU
type's lead time has run out has at most `[plan] current_fleet` of it (`sim.planning.orders`).

Decision per month. Candidates are visited in order of their cost at list prices (spot slots
at the spot list price all month, API spill last at equal cost); one whose cost lower bound
(on-demand GPU-hours + operations; spot and API at $0, since reclaims can leave spot unbilled)
reaches the month's best so far is skipped unsimulated. Each other one is given replications
stage by stage (`REPLICATION_STAGES`) until the one-sided Clopper–Pearson bound on P(miss)
decides it: accepted when the upper bound ≤ risk, rejected when the lower bound > risk or when
the last stage leaves it undecided (not proven safe) — or as soon as it has missed more often
than the last stage can accept, which it would be there (futility: misses only accumulate;
looked at after every replication, in replication order). The month's choice
is the accepted candidate of least objective cost. A candidate still undecided is dropped
when its replications so far already cost too much: were it accepted later, its mean cost
would be at least (Σ costs so far + its cost lower bound × the replications still to come) ÷
the last stage, and when that reaches the month's best it cannot be chosen
(`cost_cannot_beat`; an API-spill candidate visited at its GPUs' price is usually dropped
after its first stage). That cut is exact but weak where a candidate's floor is far below its
cost (an autoscaler's floor is its minimum replicas): with `[plan] cost_cut = "statistical"`
(the default) a candidate is also dropped once, from its 4th replication on, the one-sided
99.9 % t lower bound on its mean cost is above the month's best (`dearer_than`). Not a bound:
it drops a candidate whose expected cost is above the best's, where the exact cut would run it
on until its bound rejects or accepts it at a cost above the best's (or, by chance, below).
Under common random numbers a month's misses do not
increase with the replica count, so a count that fails marks every smaller count of its family
failed too (and, a scheduled N serving at most N in every hour, the scheduled ones up to it).
From month 2 on, the fixed fleets (static or scheduled, any spot share and API option) that
failed the month before are failed from the start, with the moving fleets a static on-demand
failure implies, where the traffic is generated and grows (`carry_failures`,
`failures_carry`): a heuristic resting on a month's misses growing with its load, not a
bound (each month draws its windows afresh).
Where a scheduled candidate is chosen, the cheapest accepted static one is found as well (a
static candidate is skipped only when it cannot beat the best static one) and reported
beside it: what scheduling saves at the same risk.

Autoscaled candidates. Their bill is known only after simulation: they are visited and pruned
by their lower bound (min_replicas on demand all month + operations) against the month's best
autoscaled one, so the cheapest autoscaled fleet meeting the risk is found too and reported
beside the cheapest static one ("does moving the fleet pay?"). An autoscaled N serves at most
N in any hour, so a static N that fails marks it failed (it is tried only while static N meets
the risk or is undecided); once an autoscaled N meets the risk, or is dropped because its cost
cannot beat the month's best, larger N of its target are not tried (a higher ceiling only adds
cost the bound cannot see). That rule is a heuristic, not a bound: with API spill a higher
ceiling can cost less (less spilled), so an autoscaled fleet spilling to the API may be missed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial

from sim.capacity import capacities
from sim.config import MonthPlan, PlanSpec
from sim.config.plan import PlanSearchSpec
from sim.cost import cost_before_api_usd
from sim.engine import resolve_engine
from sim.experiment import Experiment
from sim.planning.autoscale import (
    autoscale_spec,
    autoscale_target,
    concurrency_at_capacity,
    min_replicas_for,
)
from sim.planning.constraints import practical_plan
from sim.planning.decide import (
    COST_CUT_ALPHA,
    Candidate,
    MonthChoice,
    Tried,
    _decide,
    cost_cannot_beat,
    cost_gap,
    dearer_than,
    month_choice,
    most_misses_accepted,
)
from sim.planning.evaluate import Evaluation, Evaluator, constant_plan, search_evaluator
from sim.planning.orders import fleet_cap
from sim.planning.prices import GpuPrice
from sim.planning.schedules import profile_counts, scheduled_bill_usd
from sim.planning.spreadsheet import mean_rate_per_s
from sim.replication import plan_run
from sim.rng import Streams
from sim.runner import Backend
from sim.workload.month import WorkloadModel

Progress = Callable[[str], None]


@dataclass
class TpSearch:
    """What the month-by-month search found at tensor-parallel degree `tp`: each month's
    choice (`infeasible`: months where no candidate met the risk), every decision, the
    evaluations of the choices, the static / autoscaled bests ("does moving pay?"), and the
    `evaluator` (its replications, reused by the comparisons at this degree)."""

    tp: int
    base: Experiment  # the experiment at `tp`, priced from the list, without `[[plans]]`
    evaluator: Evaluator
    gpus: list[str]
    choices: list[MonthChoice] = field(default_factory=list)
    tried: list[Tried] = field(default_factory=list)
    chosen: dict[int, Evaluation] = field(default_factory=dict)
    static_choices: dict[int, MonthChoice] = field(default_factory=dict)
    static_best: dict[int, MonthChoice] = field(default_factory=dict)
    autoscaled_best: dict[int, MonthChoice] = field(default_factory=dict)
    infeasible: list[int] = field(default_factory=list)
    # candidates dropped undecided by the cost cut (`cost_cannot_beat`): not in `tried`, whose
    # entries are decided (a dropped one is neither accepted nor shown to fail)
    dropped: list[Tried] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        """Whether every month has a fleet meeting the risk."""
        return bool(self.choices) and not self.infeasible

    @property
    def total_usd(self) -> float:
        """The whole plan's cost: Σ over months of the choices' objective cost (USD; inf when
        a month has no fleet meeting the risk)."""
        return sum(ch.cost_usd for ch in self.choices) if self.feasible else math.inf

    def recommended(self) -> PlanSpec:
        """The months' choices as one plan (a month without a choice has no pools)."""
        return PlanSpec(
            "recommended",
            tuple(
                MonthPlan(next((ch.candidate.pools() for ch in self.choices if ch.month == m), ()))
                for m in range(1, self.base.spec.months + 1)
            ),
            any(ch.candidate.api for ch in self.choices),
        )


def costs_before_api(exp: Experiment, plan: PlanSpec, replication: int) -> tuple[float, ...]:
    """Replication `replication`'s cost of each month of `plan` without the API bill
    (`sim.cost.cost_before_api_usd`), from its reclaims alone — no window is simulated, so
    it costs ~20 ms. A lower bound on each month row's `cost_usd`, exact for plans without
    an autoscaled pool (whose GPU-hours only simulation tells: refused)."""
    if any(p.autoscale is not None for m in plan.fleet for p in m.pools):
        raise ValueError(f"plan {plan.name}: an autoscaled pool's bill needs simulation")
    run = plan_run(exp, plan, Streams(exp.spec.seed, replication))
    return tuple(cost_before_api_usd(c, b) for c, b in zip(run.costs, run.spot, strict=True))


def search_at_tp(
    base: Experiment,
    s: PlanSearchSpec,
    gpu_names: list[str],
    prices: dict[str, GpuPrice],
    *,
    jobs: int = 1,
    backend: Backend = "local",
    address: str | None = None,
    say: Progress = lambda _: None,
    min_counts: Mapping[tuple[str, int], int] | None = None,
) -> TpSearch:
    """The cheapest fleet per month of `tp`-way replicas (tp = `base.spec.engine.tp`) of
    `gpu_names` meeting the risk (module docstring); `base` is priced from `prices` and has
    no `[[plans]]`. `min_counts`: (GPU type, tp) → the fewest replicas worth trying."""
    tp = base.spec.engine.tp
    spec = base.spec
    ev = search_evaluator(base, s, jobs, backend, address)
    profile = tuple(float(x) for x in base.profile.array)
    cands = []
    for gpu in gpu_names:
        for share in s.spot_shares:
            if share > 0 and prices[gpu].spot_usd_per_hour is None:
                continue
            for api in s.api_options:
                for count in range((min_counts or {}).get((gpu, tp), 1), s.max_replicas + 1):
                    spot = round(share * count)
                    cands.append(Candidate(gpu, count, spot, api, tp=tp))
                    if s.schedules and share == 0 and count >= 2:
                        hourly = profile_counts(count, profile)
                        if min(hourly) < count:  # a flat profile leaves nothing to schedule
                            cands.append(Candidate(gpu, count, 0, api, hourly, tp=tp))
    ops = spec.cost.ops_usd_per_month
    bills: dict[Candidate, tuple[float, ...]] = {}

    def bound(c: Candidate, month: int) -> float:
        """A lower bound on `c`'s cost in `month` (USD): a static candidate's on-demand
        GPU-hours + operations (`Candidate.lower_cost`); a scheduled one's bill, as a
        replication bills it (`scheduled_bill_usd`), + operations."""
        if not c.scheduled:
            return c.lower_cost(prices[c.gpu], tp, ops)
        if c not in bills:
            plan = constant_plan(c.label(), spec.months, c.pools(), c.api)
            bills[c] = scheduled_bill_usd(plan, spec.engine, spec.spot, spec.cost)
        return bills[c][month - 1] + ops

    before_api: dict[Candidate, list[tuple[float, ...]]] = {}

    def spot_cannot_beat(c: Candidate, plan: PlanSpec, month: int, bar: float) -> bool:
        """Whether spot candidate `c` cannot beat `bar` in `month` at any stage it could be
        accepted at, from its bill alone: each replication's cost without the API bill (GPUs
        on demand and spot, as that replication's reclaims bill them, + operations:
        `costs_before_api`, no simulation) is a lower bound on its cost, so
        when the mean of those bounds over the first n replications reaches `bar` for every
        stage n, its mean cost at acceptance would too (exact, like `cost_cannot_beat`).
        Computed lazily: it stops at the first stage whose mean stays below."""
        if bar == math.inf:
            return False
        exp = base.with_spec(dataclasses.replace(spec, plans=(plan,), fleet=plan.fleet))
        have = before_api.setdefault(c, [])
        for n in s.stages:
            while len(have) < n:
                have.append(costs_before_api(exp, plan, len(have)))
            if math.fsum(r[month - 1] for r in have[:n]) / n < bar - 0.01:
                return False
        return True

    def visit_order(
        c: Candidate, month: int
    ) -> tuple[bool, float, bool, int, str, int, bool, float, str]:
        # NOTE: fleets whose bill is known before simulation (on-demand, static or scheduled,
        # without API) are visited first, cheapest first: the first one accepted sets a month's
        # best that the others — API spill, spot, autoscalers, whose bill only simulation
        # tells — must beat, and most of those are then dropped after their first stage
        # (`cost_cannot_beat`) or skipped by their bound. Visited first at their GPUs' price,
        # a borderline API candidate took all 150 replications (hybrid_burst). An autoscaled
        # N comes after the static N of its ceiling, not at its own (lower) bound: it never
        # has more replicas up, so when the static N fails it is skipped unsimulated
        # (`failed_at`). The order changes no choice: every candidate is still pruned by its
        # own bound and cut by its own costs (the `met_at` heuristic for autoscalers and the
        # statistical cut's error aside, module docstring). Between the targets of one
        # autoscaled ceiling the higher goes first: it runs fewer replicas, so it usually
        # costs less, and once accepted it is the bar that drops a dearer lower target after
        # a few replications (`dearer_than`).
        if c.autoscaled:
            ceiling = dataclasses.replace(c, scaler=None, utilisation=0.0)
            listed = ceiling.list_cost(prices[c.gpu], tp, ops)
        else:
            listed = bound(c, month) if c.scheduled else c.list_cost(prices[c.gpu], tp, ops)
        billed_later = c.api or c.spot > 0 or c.autoscaled
        return (
            billed_later,
            listed,
            c.api,
            c.count,
            c.gpu,
            c.spot,
            c.autoscaled,
            -c.utilisation,
            c.kind,
        )

    floors: dict[tuple[str, int], int] = {}

    def capacity_per_s(gpu: str) -> float:
        engine = resolve_engine(spec.engine, [gpu])
        return capacities(engine, [gpu], base.lengths, spec.slo)[gpu].requests_per_s

    running: dict[str, float] = {}

    def autoscaled(month: int) -> list[Candidate]:
        """The month's autoscaled candidates (`sim.planning.autoscale`): per GPU type, API
        option, target utilisation and N ≥ 2 above the month's minimum."""
        out = []
        for gpu in gpu_names if s.autoscale else []:
            if gpu not in running:
                engine = resolve_engine(spec.engine, [gpu])
                running[gpu] = concurrency_at_capacity(engine, gpu, base.lengths, spec.slo).running
            least = min_replicas_for(mean_rate_per_s(base, month), profile, capacity_per_s(gpu))
            for u in s.autoscale_utilisation:
                target = autoscale_target(running[gpu], u)
                for api in s.api_options:
                    lowest = max(2, least + 1, (min_counts or {}).get((gpu, tp), 1))
                    for n in range(lowest, s.max_replicas + 1):
                        scaler = autoscale_spec(least, n, target)
                        out.append(Candidate(gpu, n, 0, api, scaler=scaler, utilisation=u, tp=tp))
        return out

    def floor(gpu: str, month: int) -> int:
        """The fewest replicas of `gpu` whose capacity at the SLO (`sim.capacity`) covers the
        month's mean arrival rate at nominal growth. Below it the fleet is overloaded on
        average in about half the replications or more, so P(miss) > risk whenever risk < 0.5:
        such counts are skipped without simulation (it prunes high-volume searches)."""
        if (gpu, month) not in floors:
            cap = capacity_per_s(gpu)
            rate = mean_rate_per_s(base, month)
            floors[(gpu, month)] = math.ceil(rate / cap) if cap > 0 else s.max_replicas + 1
        return floors[(gpu, month)]

    cands = sorted(set(cands), key=lambda c: visit_order(c, 1))
    tried: list[Tried] = []
    dropped: list[Tried] = []
    failed_at: dict[tuple[int, tuple[str, float, bool, str]], int] = {}
    met_at: dict[tuple[int, tuple[str, float, bool, str]], int] = {}  # autoscaled families
    most_accepted = most_misses_accepted(s.stages[-1], s.risk, s.confidence)
    choices: list[MonthChoice] = []
    static_choices: dict[int, MonthChoice] = {}
    static_best: dict[int, MonthChoice] = {}
    autoscaled_best: dict[int, MonthChoice] = {}
    moving_kinds = ["scheduled", *(f"autoscaled {u:g}" for u in s.autoscale_utilisation)]
    chosen: dict[int, Evaluation] = {}
    infeasible: list[int] = []
    carries = failures_carry(base)
    for month in range(1, spec.months + 1):
        if carries and month > 1:
            carry_failures(failed_at, month, moving_kinds)
        carried = {fam: n for (m, fam), n in failed_at.items() if m == month}
        not_retried = 0
        best: MonthChoice | None = None
        best_static: MonthChoice | None = None  # for "does scheduling pay?"
        best_auto: MonthChoice | None = None  # for "does moving the fleet pay?"
        for c in sorted(cands + autoscaled(month), key=lambda c: visit_order(c, month)):
            cap = fleet_cap(s, c.gpu, month)
            if cap is not None and c.count > cap:
                continue  # more than can serve by then (`sim.planning.orders`)
            # A static candidate must beat the best static one (the comparison a scheduled
            # or autoscaled choice is reported against), an autoscaled one the best
            # autoscaled one and the best static one (an autoscaler that cannot be cheaper
            # than a fixed fleet meeting the risk does not pay: its floor alone costs as
            # much), a scheduled one the best of all.
            bars = (
                [best]
                if c.scheduled
                else [best_auto, best_static]
                if c.autoscaled
                else [best_static]
            )
            # (a cent of slack: the bound and the bill add the same dollars in another order)
            if any(b is not None and bound(c, month) >= b.cost_usd - 0.01 for b in bars):
                continue  # cannot beat the month's best (visited in list-price order)
            if met_at.get((month, c.family), c.count + 1) <= c.count:
                continue  # a smaller ceiling of this autoscaler met the risk
            if not c.api and s.risk < 0.5 and c.count < floor(c.gpu, month):
                continue  # mean load above what c replicas serve at the SLO: see `floor`
            if failed_at.get((month, c.family), 0) >= c.count:
                # (after the skips above, so that the fleets counted as not tried for last
                # month's failures are ones that would have been simulated)
                not_retried += carried.get(c.family, 0) >= c.count
                continue
            plan = constant_plan(c.label(), spec.months, c.pools(), c.api)
            rival = min((b for b in bars if b is not None), key=_cost, default=None)
            bar = rival.cost_usd if rival is not None else math.inf
            if c.spot and s.objective == "mean" and spot_cannot_beat(c, plan, month, bar):
                continue  # its GPUs' bill alone reaches the month's best
            exact = partial(cost_cannot_beat, month=month, floor_usd=bound(c, month), best_usd=bar)
            beaten = (
                None
                if s.objective != "mean"
                else exact
                if s.cost_cut == "exact"
                else _either(exact, partial(dearer_than, month=month, best_usd=bar))
            )
            accepted, result = _decide(ev, plan, month, s, beaten)
            p = result.misses(month)
            objective = result.cost(month, "p95" if s.objective == "p95" else "mean")
            if accepted is None:
                dropped.append(Tried(month, c, objective, p, False))
                if c.autoscaled:  # as if met: a higher ceiling is not tried (module docstring)
                    met_at[(month, c.family)] = min(met_at.get((month, c.family), c.count), c.count)
                why = _why_dropped(result, rival, month, bar, exact(result, s.stages[-1]))
                say(
                    f"month {month}: {c.label():<28} P(miss) {p.words():<34} "
                    f"dropped: costs ${objective:,.0f} in {p.n} replications, {why}"
                )
                continue
            tried.append(Tried(month, c, objective, p, accepted))
            futile = not accepted and p.n < s.stages[-1] and p.k > most_accepted
            say(
                f"month {month}: {c.label():<28} P(miss) {p.words():<34} "
                f"{'accept' if accepted else 'reject'}  ${objective:,.0f}/month"
                + (
                    f" ({s.stages[-1]} replications accept at most {most_accepted} misses)"
                    if futile
                    else ""
                )
            )
            if not accepted:
                mark_failed(failed_at, month, c.family, c.count, moving_kinds)
                continue
            if c.autoscaled:
                met_at[(month, c.family)] = min(met_at.get((month, c.family), c.count), c.count)
                if best_auto is None or objective < best_auto.cost_usd:
                    best_auto = month_choice(result, c, month, objective)
            if best is None or objective < best.cost_usd:
                chosen[month] = result
                best = month_choice(result, c, month, objective)
            if not c.moves and (best_static is None or objective < best_static.cost_usd):
                best_static = month_choice(result, c, month, objective)
        if not_retried:
            say(
                f"month {month}: {not_retried} fleets not tried: the same or a larger fleet "
                f"of their kind failed month {month - 1}, and the load grows"
            )
        if best_static is not None:
            static_best[month] = best_static
        if best_auto is not None:
            autoscaled_best[month] = best_auto
        if best is None:
            infeasible.append(month)
        else:
            choices.append(best)
            if best.candidate.moves and best_static is not None:
                static_choices[month] = best_static
    if (s.max_change_per_month is not None or s.min_months_per_gpu_type > 1) and not infeasible:
        say("applying max_change_per_month / min_months_per_gpu_type")
        choices, chosen = practical_plan(ev, s, spec.months, choices, prices, tp, ops, say)
        static_choices = {}  # the constrained plan is static
    return TpSearch(
        tp,
        base,
        ev,
        gpu_names,
        choices,
        tried,
        chosen,
        static_choices,
        static_best,
        autoscaled_best,
        infeasible,
        dropped,
    )


def failures_carry(exp: Experiment) -> bool:
    """Whether a fleet that failed a month fails the next one too (`carry_failures`): the
    traffic is generated (`WorkloadModel`: every month the same weekly shape, bursts and
    lengths, at the volume of its growth path) and each month's growth factor is more likely
    a rise than a fall (its median, exp(log(1 + mean_monthly) − sd_log² / 2), at least 1).
    A replayed trace's months differ in shape, so nothing carries there."""
    growth = exp.spec.workload.growth
    rises = math.log1p(growth.mean_monthly) - growth.sd_log**2 / 2.0 >= 0.0
    return rises and isinstance(exp.traffic(), WorkloadModel)


def carry_failures(
    failed_at: dict[tuple[int, tuple[str, float, bool, str]], int],
    month: int,
    moving_kinds: list[str],
) -> None:
    """Month `month` starts with the previous month's failures of fixed fleets (static and
    scheduled, with their spot share and API option): a fleet that could not meet the risk
    under month − 1's load meets more load now (`failures_carry`), and a month's misses grow
    with its load. A static on-demand N that failed marks the moving fleets up to N failed,
    as inside a month. Autoscaled families do not carry: their minimum rises with the
    month's load (`min_replicas_for`), so the same ceiling is another, larger fleet.

    A heuristic, like the autoscalers' `met_at`: under common random numbers a month's
    windows are drawn afresh, so a fleet rejected last month by a few misses could by chance
    pass this month; on hybrid_burst it changes no decision and leaves out 94 of 317
    decisions, 9 % of the search's replications (README, "sim plan")."""
    for (m, fam), n in list(failed_at.items()):
        if m == month - 1 and not fam[3].startswith("autoscaled"):
            mark_failed(failed_at, month, fam, n, moving_kinds)


def mark_failed(
    failed_at: dict[tuple[int, tuple[str, float, bool, str]], int],
    month: int,
    family: tuple[str, float, bool, str],
    count: int,
    moving_kinds: list[str],
) -> None:
    """`count` replicas of `family` (`Candidate.family`) fail `month`, and so every smaller
    count of it; a static on-demand family's scheduled and autoscaled variants (`moving_kinds`)
    serve no more replicas in any hour, so they fail up to `count` too."""
    gpu, share, api, kind = family
    fams = [family] + (
        [(gpu, 0.0, api, k) for k in moving_kinds] if kind == "static" and share == 0.0 else []
    )
    for fam in fams:
        failed_at[(month, fam)] = max(failed_at.get((month, fam), 0), count)


def _cost(choice: MonthChoice) -> float:
    return choice.cost_usd


def _either(
    a: Callable[[Evaluation, int], bool], b: Callable[[Evaluation, int], bool]
) -> Callable[[Evaluation, int], bool]:
    """`_decide`'s `beaten`: the exact cut `a`, else the statistical cut `b`."""
    return lambda result, n_last: a(result, n_last) or b(result, n_last)


def _why_dropped(
    result: Evaluation, rival: MonthChoice | None, month: int, bar: float, exact: bool
) -> str:
    """The progress line's reason for a dropped candidate: the exact cut's, else its cost gap
    to the month's best (`sim.planning.decide.cost_gap`)."""
    gap = cost_gap(result, month, bar)
    if exact or rival is None or gap is None:
        return f"cannot beat ${bar:,.0f} at any later stage"
    return (
        f"${gap.mean_usd:+,.0f}/month over {rival.candidate.label()} "
        f"({1 - COST_CUT_ALPHA:.1%} lower bound ${gap.lower_usd:+,.0f})"
    )

"""`plan_experiment`: the cheapest month-by-month fleet whose P(miss SLO) meets a risk target.

The search (`sim.planning.monthly.search_at_tp`) visits, per month, GPU types × replica counts
× spot shares × API spill on/off, scheduled fleets following the weekly profile and
autoscaled fleets, decides each by staged replications and a Clopper–Pearson bound, and keeps
the month's cheapest fleet meeting the risk (the rules are in its docstring). A candidate is one
fleet kept the same in every month; a month that starts before a GPU type's lead time has run
out has at most `[plan] current_fleet` of it (`sim.planning.orders`).

Tensor parallelism. A replica is `[engine] tp` GPUs; that degree changes what fits (weights
and KV cache are sharded over the GPUs) and how fast a step is (`sim.engine.resolve`). With
`[plan] tp` (default: the experiment's own degree only), the month-by-month search runs once
per degree, on the experiment with its engine resolved at that degree: every GPU type that
holds one `max_model_len` request at it is a candidate (a model too big for one GPU becomes a
candidate at 2), and a degree where none does is skipped with the reason. The recommendation
is the cheapest whole plan (Σ of the months' objective costs) among the degrees where every
month meets the risk: ONE degree for the whole plan, because `[engine] tp` is one value per
experiment — the plan.toml written must be runnable by `sim run` — and because a change of
degree between months would redeploy every replica. The best plan at each degree is kept for
the report ("By tensor parallelism"). Nothing is shared between degrees but the traffic: each
has its own `Evaluator` (whose cache is keyed by the engine as well), so replication k of
every degree sees the same requests (common random numbers) and the comparison is paired.

Carry-over. A candidate is evaluated as a constant fleet, so month boundaries never move work
between fleets during the search; on the sampled horizon every window starts from an empty,
warmed-up fleet anyway. The recommended plan — whose fleet changes at month boundaries, with
the old replicas draining — is then run as one plan on replications the search never saw
(`sim.rng.verification_seed`), and that verification is reported beside the search's figures.
The input file's own plan and a spreadsheet sizing are evaluated at the file's own degree.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from sim.config import CostSpec, PlanSpec
from sim.config.plan import PlanSearchSpec
from sim.data import gpus as gpu_catalog
from sim.engine import ModelDoesNotFit, resolve_engine
from sim.experiment import Experiment
from sim.planning.decide import MonthChoice, Tried
from sim.planning.evaluate import Evaluation, search_evaluator
from sim.planning.monthly import TpSearch, search_at_tp
from sim.planning.orders import Order, orders
from sim.planning.prices import (
    GpuPrice,
    calibration_prices,
    default_price_list,
    price_lists,
    priced,
)
from sim.planning.spreadsheet import spreadsheet_plan
from sim.rng import verification_seed
from sim.runner import Backend, shared_workers

Progress = Callable[[str], None]


@dataclass(frozen=True)
class TpOutcome:
    """The best whole plan found at one tensor-parallel degree (the page's "By tensor
    parallelism"): the GPU types searched (none: `why_skipped` says why), the months with a
    fleet meeting the risk, the plan's cost summed over months (USD, objective statistic;
    NaN when a month has none) and the fleets by month (labels)."""

    tp: int
    gpus: tuple[str, ...]
    months: int
    months_met: int = 0
    total_usd: float = float("nan")
    fleets: tuple[str, ...] = ()
    chosen: bool = False
    why_skipped: str = ""

    @property
    def mean_usd(self) -> float:
        """Mean cost a month of the whole plan (USD; NaN when a month has no fleet)."""
        return self.total_usd / self.months if self.months else float("nan")


@dataclass
class Plan:
    """What `plan_experiment` found: the recommendation and everything that supports it.

    `exp` is the experiment at the chosen tensor-parallel degree (`tp`); `choices`, `tried`
    and the bests are the chosen degree's; `by_tp` summarises every degree searched."""

    exp: Experiment
    settings: PlanSearchSpec
    price_list: str
    prices: dict[str, GpuPrice]
    overrides: list[str]
    choices: list[MonthChoice]
    recommended: PlanSpec
    verification: Evaluation | None
    tried: list[Tried]
    input_plan: Evaluation | None
    skipped_gpus: dict[str, str]
    evaluations: int
    replications: int  # replications simulated, of one month (a month's decision) or more
    wall_s: float
    uncalibrated: list[str] = field(default_factory=list)
    infeasible_months: list[int] = field(default_factory=list)
    chosen: dict[int, Evaluation] = field(default_factory=dict)  # month → its choice's runs
    spreadsheet: Evaluation | None = None  # `sim.planning.spreadsheet`, same replications
    spreadsheet_rate: float = float("nan")  # the requests/s per replica it assumed
    # month → the cheapest static candidate meeting the risk, where a scheduled one was chosen
    static_choices: dict[int, MonthChoice] = field(default_factory=dict)
    # month → the cheapest static / autoscaled candidate meeting the risk ("does moving pay?")
    static_best: dict[int, MonthChoice] = field(default_factory=dict)
    autoscaled_best: dict[int, MonthChoice] = field(default_factory=dict)
    tp: int = 1
    orders: list[Order] = field(default_factory=list)  # fleet increases with a lead time
    by_tp: list[TpOutcome] = field(default_factory=list)  # one per degree searched
    dropped: list[Tried] = field(default_factory=list)  # undecided, cut by their cost so far
    months_simulated: int = 0  # (replication, month) pairs: the search's work


def candidate_gpus(
    exp: Experiment, settings: PlanSearchSpec, prices: dict[str, GpuPrice]
) -> tuple[list[str], dict[str, str]]:
    """The GPU types to search at `exp`'s `[engine] tp` and, for the others asked for or
    listed, why not (not priced, or the model does not fit at that degree)."""
    catalog = gpu_catalog()
    # the packaged GPU types on the price list, in catalog order, then a calibration file's
    asked = settings.gpus or (
        *(g for g in catalog if g in prices),
        *(g for g in prices if g not in catalog),
    )
    ok: list[str] = []
    why: dict[str, str] = {}
    for gpu in asked:
        if gpu not in prices:
            why[gpu] = "not on the price list"
            continue
        try:
            resolve_engine(exp.spec.engine, [gpu])
        except ModelDoesNotFit as err:
            why[gpu] = err.messages[0]
            continue
        ok.append(gpu)
    return ok, why


def experiment_at(exp: Experiment, tp: int, cost: CostSpec | None = None) -> Experiment:
    """`exp` at tensor-parallel degree `tp` (priced by `cost` when given), without
    `[[plans]]`. At the file's own degree its engine is resolved as `Experiment.with_spec`
    does; at another, on the input fleet's GPU types that hold the model there (the input
    fleet may not fit at another degree: nothing runs it there — the planner's `Evaluator`
    resolves each candidate's own GPU types)."""
    spec = exp.spec
    spec = dataclasses.replace(
        spec,
        engine=dataclasses.replace(spec.engine, tp=tp),
        cost=cost if cost is not None else spec.cost,
        plans=(),
    )
    if tp == exp.spec.engine.tp:
        return exp.with_spec(spec)
    fits = []
    for gpu in spec.gpus_used():
        try:
            resolve_engine(spec.engine, [gpu])
        except ModelDoesNotFit:
            continue
        fits.append(gpu)
    return dataclasses.replace(exp, spec=spec, engine=resolve_engine(spec.engine, fits))


def _outcome(found: TpSearch, months: int) -> TpOutcome:
    by_month = {ch.month: ch.candidate.label() for ch in found.choices}
    return TpOutcome(
        found.tp,
        tuple(found.gpus),
        months,
        months - len(found.infeasible) if found.choices else 0,
        found.total_usd if found.feasible else float("nan"),
        tuple(by_month.get(m, "") for m in range(1, months + 1)),
    )


def plan_experiment(
    exp: Experiment,
    settings: PlanSearchSpec | None = None,
    *,
    jobs: int = 1,
    backend: Backend = "local",
    address: str | None = None,
    verify: bool = True,
    compare_input: bool = True,
    progress: Progress | None = None,
    min_counts: Mapping[tuple[str, int], int] | None = None,
) -> Plan:
    """Search the cheapest plan meeting the risk target, at each tensor-parallel degree of
    `[plan] tp` (module docstring).

    `verify`: run the recommendation on fresh replications; `compare_input`: evaluate the input
    file's own plan on the search's replications. `min_counts` ((GPU type, tp) → replicas)
    skips smaller counts, known to fail (e.g. from a lower volume of a break-even sweep: more
    traffic never needs fewer replicas). Local workers are started once for the whole search
    (`sim.runner.shared_workers`)."""
    with shared_workers(jobs, backend):
        return _plan_experiment(
            exp,
            settings,
            jobs=jobs,
            backend=backend,
            address=address,
            verify=verify,
            compare_input=compare_input,
            progress=progress,
            min_counts=min_counts,
        )


def _plan_experiment(
    exp: Experiment,
    settings: PlanSearchSpec | None,
    *,
    jobs: int,
    backend: Backend,
    address: str | None,
    verify: bool,
    compare_input: bool,
    progress: Progress | None,
    min_counts: Mapping[tuple[str, int], int] | None,
) -> Plan:
    t0 = time.perf_counter()
    s = settings or exp.spec.search
    spec = exp.spec
    say = progress or (lambda _: None)
    prov = s.price_list or default_price_list(spec.gpus_used())
    if prov not in price_lists():
        raise ValueError(f"unknown price list {prov!r}: one of {', '.join(sorted(price_lists()))}")
    prices = priced(prov, spec.cost) | calibration_prices(spec.cost, spec.engine.calibration)
    overrides = [p.override for p in prices.values() if p.override]
    cost = dataclasses.replace(
        spec.cost,
        gpu_usd_per_hour=tuple(sorted((g, p.on_demand_usd_per_hour) for g, p in prices.items())),
        spot_usd_per_hour=tuple(
            sorted(
                (g, p.spot_usd_per_hour)
                for g, p in prices.items()
                if p.spot_usd_per_hour is not None
            )
        ),
    )
    own_tp = spec.engine.tp
    degrees = s.tp or (own_tp,)
    several = len(degrees) > 1
    searches: list[TpSearch] = []
    outcomes: dict[int, TpOutcome] = {}
    skipped: dict[str, str] = {}
    for tp in degrees:
        base = experiment_at(exp, tp, cost)
        gpu_names, why = candidate_gpus(base, s, prices)
        skipped.update({(f"{g} (tp {tp})" if several else g): w for g, w in why.items()})
        if not gpu_names:
            reason = f"no candidate GPU type holds {spec.engine.model} at tp {tp}"
            say(f"tp {tp}: skipped, {reason}")
            outcomes[tp] = TpOutcome(tp, (), spec.months, why_skipped=reason)
            continue
        if several:
            say(f"tp {tp}: searching {', '.join(gpu_names)}")
        found = search_at_tp(
            base,
            s,
            gpu_names,
            prices,
            jobs=jobs,
            backend=backend,
            address=address,
            say=say,
            min_counts=min_counts,
        )
        searches.append(found)
        outcomes[tp] = _outcome(found, spec.months)
    if not searches:  # no degree has a GPU type: an empty search at the file's own degree
        base = experiment_at(exp, degrees[0], cost)
        ev = search_evaluator(base, s, jobs, backend, address)
        searches.append(
            TpSearch(degrees[0], base, ev, [], infeasible=list(range(1, spec.months + 1)))
        )
    # the cheapest whole plan; where no degree meets the risk every month, the one meeting it
    # in most months (the first degree on ties), so the report says where it fails
    pick = min(searches, key=lambda f: (len(f.infeasible), f.total_usd))
    if pick.tp in outcomes:
        outcomes[pick.tp] = dataclasses.replace(outcomes[pick.tp], chosen=pick.feasible)
    if several and pick.feasible:
        say(f"tp {pick.tp}: the cheapest plan, ${pick.total_usd / spec.months:,.0f} a month")
    choices, infeasible, base, ev = pick.choices, pick.infeasible, pick.base, pick.evaluator
    recommended = pick.recommended()
    feasible = bool(choices) and not infeasible
    plan_orders = orders(s, recommended.fleet) if feasible else []
    verification = input_eval = None
    evaluators = [f.evaluator for f in searches]
    if verify and feasible:
        say(f"verifying the recommended plan on {s.verify_replications} fresh replications")
        seeded = dataclasses.replace(base.spec, seed=verification_seed(spec.seed))
        fresh = search_evaluator(dataclasses.replace(base, spec=seeded), s, jobs, backend, address)
        verification = fresh.evaluate(recommended, s.verify_replications)
    # the input file's plan and the spreadsheet run at the file's own degree, on the
    # search's replications there (a new evaluator, same seed, when it was not searched)
    own = next((f.evaluator for f in searches if f.tp == own_tp), None)
    if compare_input and own is None:
        own = search_evaluator(experiment_at(exp, own_tp, cost), s, jobs, backend, address)
        evaluators.append(own)
    priced_input = all(p.gpu in prices for m in spec.fleet for p in m.pools)
    if compare_input and own is not None and spec.plans == () and priced_input:
        say("evaluating the plan in the input file on the search's replications")
        input_eval = own.evaluate(
            PlanSpec("input file", spec.fleet, True), max(s.stages[0], min(s.stages[1:2] or (0,)))
        )
    sheet = sheet_rate = None
    input_gpu = next((p.gpu for p in spec.fleet[0].pools if p.gpu in prices), None)
    sheet_gpu = input_gpu or (choices[0].candidate.gpu if choices else None)
    sheet_ev = own if input_gpu is not None else ev
    if compare_input and sheet_gpu is not None and sheet_ev is not None:
        say(f"evaluating a spreadsheet plan (average load ÷ one {sheet_gpu}'s throughput)")
        sheet_plan, sheet_rate = spreadsheet_plan(sheet_ev.exp, sheet_gpu)
        sheet = sheet_ev.evaluate(sheet_plan, s.stages[min(1, len(s.stages) - 1)])
    engine = base.spec.engine
    uncal = [
        f"{engine.model} on {g} (tp {engine.tp}): step times from the roofline, uncalibrated"
        for g in sorted({ch.candidate.gpu for ch in choices})
        if not resolve_engine(engine, [g]).step_time(g).calibrated
    ]
    return Plan(
        exp=exp if pick.tp == own_tp else experiment_at(exp, pick.tp),
        settings=s,
        price_list=prov,
        prices=prices,
        overrides=overrides,
        choices=choices,
        recommended=recommended,
        verification=verification,
        tried=pick.tried,
        dropped=pick.dropped,
        input_plan=input_eval,
        skipped_gpus=skipped,
        evaluations=sum(len(e.cache) for e in evaluators) + (verification is not None),
        replications=sum(e.replications_run for e in evaluators)
        + (verification.replications if verification else 0),
        months_simulated=sum(e.months_run for e in evaluators)
        + (verification.months.height if verification else 0),
        wall_s=time.perf_counter() - t0,
        uncalibrated=uncal,
        infeasible_months=infeasible,
        chosen=pick.chosen,
        spreadsheet=sheet,
        spreadsheet_rate=float("nan") if sheet_rate is None else sheet_rate,
        static_choices=pick.static_choices,
        static_best=pick.static_best,
        autoscaled_best=pick.autoscaled_best,
        tp=pick.tp,
        orders=plan_orders,
        by_tp=[outcomes[tp] for tp in degrees],
    )


def all_api_usd(evaluation: Evaluation, month: int, input_usd: float, output_usd: float) -> float:
    """Mean monthly bill of the same tokens on an API priced per million tokens."""
    rows = evaluation.month(month)
    tokens_in = float(rows["input_tokens"].cast(float).to_numpy().mean())
    tokens_out = float(rows["output_tokens"].cast(float).to_numpy().mean())
    return (tokens_in * input_usd + tokens_out * output_usd) / 1e6


def months_text(months: list[int]) -> str:
    """[1, 2, 3, 5] → "months 1–3, 5"."""
    if not months:
        return ""
    runs: list[list[int]] = [[months[0]]]
    for m in months[1:]:
        if m == runs[-1][-1] + 1:
            runs[-1].append(m)
        else:
            runs.append([m])
    parts = [f"{r[0]}–{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs]
    return ("months " if len(months) > 1 else "month ") + ", ".join(parts)


def is_finite(x: float) -> bool:
    return not (math.isnan(x) or math.isinf(x))

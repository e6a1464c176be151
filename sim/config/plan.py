"""The optional `[plan]` table: what `sim plan` searches over and the risk it must meet."""

from __future__ import annotations

import datetime
from collections.abc import Collection
from dataclasses import dataclass

from sim.config.reader import MISSING, Context, Table, hint, join, positive
from sim.data import api_providers, gpus

OBJECTIVES = ("mean", "p95")
COST_CUTS = ("statistical", "exact")
"""How `sim plan` drops an undecided candidate on its cost (`sim.planning.decide`): "exact"
only when its mean cost at any later stage must reach the month's best; "statistical" also
when its mean cost so far is above the best's beyond chance (a one-sided t-test at 0.1 %)."""
TP_VALUES = (1, 2, 4, 8)
"""Tensor-parallel degrees `[plan] tp` accepts: those of `[engine] tp` (`sim.config.sections`)."""
REPLICATION_STAGES = (20, 60, 150)
"""Replications a candidate gets, stage by stage, until its Clopper–Pearson bound decides it:
20 screens out clear failures (a lower bound above the risk); 60 is the least that can accept
a 5 % risk with no miss at 95 % confidence (1 − 0.05^(1/59) = 4.9 %); 150 settles
candidates with a few misses. A candidate is rejected as soon as its misses exceed what 150
can accept (2 at 5 %): after every replication, in replication order (`sim.planning.decide`)."""
AUTOSCALE_UTILISATION = (0.25, 0.5)
"""Fractions of the sequences one replica runs at its capacity at the SLO that an autoscaled
candidate's HPA target is set to (`sim.planning.autoscale`), each tried as its own candidate.
0.25: the setting measured to pay on experiments/autoscale_peaks.toml (target 20 sequences
running on an A100 with Llama-3-8B saved 3–24 % a month at the same risk, README "Fleets that
move"), 0.26 of the 77 that replica runs at its capacity
(`sim.planning.autoscale.concurrency_at_capacity`). 0.5: the target of the Kubernetes HPA
walkthrough (kubernetes.io, "HorizontalPodAutoscaler Walkthrough": `--cpu-percent=50`), room
for the load to double during a scale-up's cold start."""


@dataclass(frozen=True)
class PlanSearchSpec:
    """`[plan]`: the search space and the constraint of `sim plan`.

    gpus: candidate GPU types (empty: every GPU on the price list the model fits).
    price_list: the provider whose list prices every candidate (None: the one listing most
        candidates); `[cost]` overrides still apply and are listed.
    risk: the largest acceptable P(a month misses its SLO), judged by the one-sided
        Clopper–Pearson upper bound at `confidence`.
    attainment_target: also a miss when the month's SLO attainment falls below this (None: off).
    objective: "mean" or "p95" monthly cost across replications.
    max_replicas: the most replicas of one GPU type a month may have.
    spot_shares: fractions of a month's replicas bought on the spot market (needs `[spot]`).
    api_options: whether the plan may spill to the API (needs `[api]` for True).
    max_change_per_month: the most replicas added or removed at a month boundary (None: any).
    min_months_per_gpu_type: once a GPU type is chosen, keep it at least this many months.
    verify_replications: replications of the independent check of the recommended plan.
    compare_api: the API priced for the all-API comparison when the experiment has no `[api]`.
    schedules: also search scheduled on-demand fleets that follow the weekly profile
        (`sim.planning.schedules`).
    autoscale: also search on-demand fleets moved by a reactive autoscaler on sequences
        running per replica (`sim.planning.autoscale`), one per `autoscale_utilisation`.
    autoscale_utilisation: the fractions of the concurrency at capacity tried as HPA targets
        (not a file key: the package's choice, `AUTOSCALE_UTILISATION`).
    lead_time_days: (GPU type, days from order to serving) pairs; a GPU type absent has none.
        No package default: lead times are the user's (their provider's, their quota's).
    current_fleet: (GPU type, replicas) pairs the user has now, or None (no constraint). With
        it, a month that starts before a GPU type's lead time has run out has at most the
        current replicas of that type (`sim.planning.orders`).
    start_date: the calendar day the plan starts (None: order dates as day offsets only).
    tp: tensor-parallel degrees to search, ascending (empty: the experiment's `[engine] tp`
        only). The plan keeps one degree in every month (`sim.planning.search`).
    cost_cut: "statistical" or "exact" (`COST_CUTS`): with the mean objective, an undecided
        candidate is dropped when it cannot beat the month's best — "exact": its mean cost at
        any later stage must reach the best's; "statistical" (default): that, or its mean
        cost so far is above the best's beyond chance (`sim.planning.decide.dearer_than`).
    """

    gpus: tuple[str, ...] = ()
    price_list: str | None = None
    risk: float = 0.05
    confidence: float = 0.95
    attainment_target: float | None = None
    objective: str = "mean"
    max_replicas: int = 16
    spot_shares: tuple[float, ...] = (0.0,)
    api_options: tuple[bool, ...] = (False,)
    max_change_per_month: int | None = None
    min_months_per_gpu_type: int = 1
    stages: tuple[int, ...] = REPLICATION_STAGES
    verify_replications: int = 100
    compare_api: str = "gpt-4o-mini"
    schedules: bool = True
    autoscale: bool = True
    autoscale_utilisation: tuple[float, ...] = AUTOSCALE_UTILISATION
    lead_time_days: tuple[tuple[str, float], ...] = ()
    current_fleet: tuple[tuple[str, int], ...] | None = None
    start_date: datetime.date | None = None
    tp: tuple[int, ...] = ()
    cost_cut: str = "statistical"

    def lead_time(self, gpu: str) -> float:
        """Days from ordering `gpu` to its serving (0 when not given)."""
        return dict(self.lead_time_days).get(gpu, 0.0)


def plan_section(
    ctx: Context,
    t: Table,
    *,
    has_spot: bool,
    has_api: bool,
    known_gpus: Collection[str] | None = None,
) -> PlanSearchSpec:
    """Read `[plan]` (every key optional; defaults in `PlanSearchSpec`). `known_gpus`: the GPU
    types it may name (default: the packaged table; an experiment's also has its calibration
    file's, `sim.config.sections.gpu_table`)."""
    known = tuple(gpus()) if known_gpus is None else tuple(sorted(known_gpus))  # (hints: stable)
    raw_gpus = t.raw("gpus")
    names: tuple[str, ...] = ()
    if raw_gpus is not None and raw_gpus is not t.data.get("\0"):
        if isinstance(raw_gpus, list) and all(isinstance(g, str) for g in raw_gpus):
            names = tuple(raw_gpus)
            for i, g in enumerate(names):
                if g not in known:
                    ctx.add(join(t.path, f"gpus[{i}]"), f"unknown GPU{hint(g, tuple(known))}", g)
        elif "gpus" in t.data:
            ctx.add(join(t.path, "gpus"), "must be a list of GPU names", raw_gpus)
    price_list = t.string("price_list", None)
    risk = t.number("risk", 0.05, check=lambda x: 0.0 < x < 1.0, rule="in (0, 1): 0.05 is 5 %")
    confidence = t.number("confidence", 0.95, check=lambda x: 0.5 <= x < 1.0, rule="in [0.5, 1)")
    target = t.number("attainment_target", None, check=lambda x: 0.0 < x <= 1.0, rule="in (0, 1]")
    objective = t.string("objective", "mean", choices=OBJECTIVES)
    cost_cut = t.string("cost_cut", "statistical", choices=COST_CUTS)
    max_replicas = t.integer("max_replicas", 16, check=lambda x: 1 <= x <= 256, rule="in 1..256")
    shares = _fractions(ctx, t, "spot_shares", (0.0, 0.5) if has_spot else (0.0,))
    if any(s > 0 for s in shares) and not has_spot:
        ctx.add(join(t.path, "spot_shares"), "needs a [spot] section to buy spot from", shares)
    api = t.boolean("api", has_api)
    if api and not has_api:
        ctx.add(join(t.path, "api"), "needs an [api] section to spill to", api)
    change = t.integer("max_change_per_month", None, check=lambda x: x >= 0, rule=">= 0")
    min_months = t.integer("min_months_per_gpu_type", 1, check=positive, rule=">= 1")
    for key, value, default in (
        ("max_change_per_month", change, None),
        ("min_months_per_gpu_type", min_months, 1),
    ):
        if value is not None and value != default:
            ctx.add(join(t.path, key), "is not applied by the search yet: leave it out", value)
    verify = t.integer("verify_replications", 100, check=lambda x: x >= 10, rule=">= 10")
    compare = t.string("compare_api", "gpt-4o-mini", choices=tuple(sorted(api_providers())))
    schedules = t.boolean("schedules", True)
    autoscale = t.boolean("autoscale", True)
    lead = _per_gpu(ctx, t, "lead_time_days", tuple(known), integer=False)
    current = _per_gpu(ctx, t, "current_fleet", tuple(known), integer=True)
    start = _date(ctx, t, "start_date")
    tp = _tp_values(ctx, t, "tp")
    t.close()
    return PlanSearchSpec(
        gpus=names,
        price_list=price_list,
        risk=risk,
        confidence=confidence,
        attainment_target=target,
        objective=objective,
        max_replicas=max_replicas,
        spot_shares=shares,
        api_options=(False, True) if api else (False,),
        max_change_per_month=change,
        min_months_per_gpu_type=min_months,
        verify_replications=verify,
        compare_api=compare,
        schedules=schedules,
        autoscale=autoscale,
        lead_time_days=tuple((g, float(v)) for g, v in (lead or {}).items() if v > 0),
        current_fleet=None if current is None else tuple((g, int(v)) for g, v in current.items()),
        start_date=start,
        tp=tp,
        cost_cut=cost_cut,
    )


def _tp_values(ctx: Context, t: Table, key: str) -> tuple[int, ...]:
    """A non-empty list of tensor-parallel degrees, each one of `TP_VALUES`, sorted without
    repeats (a single integer is read as a list of one); () when absent."""
    raw = t.raw(key)
    if raw is MISSING:
        return ()
    where = join(t.path, key)
    values = [raw] if isinstance(raw, int) and not isinstance(raw, bool) else raw
    if not isinstance(values, list) or not values:
        ctx.add(where, "must be a non-empty list of tensor-parallel degrees, e.g. [1, 2]", raw)
        return ()
    out: set[int] = set()
    rule = ", ".join(str(v) for v in TP_VALUES[:-1]) + f" or {TP_VALUES[-1]}"
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, int) or v not in TP_VALUES:
            ctx.add(f"{where}[{i}]" if isinstance(raw, list) else where, f"must be {rule}", v)
            continue
        out.add(v)
    return tuple(sorted(out))


def _per_gpu(
    ctx: Context, t: Table, key: str, names: tuple[str, ...], *, integer: bool
) -> dict[str, float] | None:
    """A `{ gpu = value }` table of numbers ≥ 0 (integers when `integer`), sorted by GPU;
    None when absent."""
    raw = t.raw(key)
    if raw is MISSING:
        return None
    where = join(t.path, key)
    kind = "an integer" if integer else "a number"
    if not isinstance(raw, dict):
        ctx.add(where, f'must be a table of GPU = {kind} >= 0, e.g. {{ "a100-80gb" = 1 }}', raw)
        return None
    out: dict[str, float] = {}
    for gpu, value in sorted(raw.items()):
        if gpu not in names:
            ctx.add(join(where, gpu), f"unknown GPU{hint(gpu, names)}", gpu)
            continue
        ok = isinstance(value, int | float) and not isinstance(value, bool) and value >= 0
        if ok and integer and not isinstance(value, int):
            ok = False
        if not ok:
            ctx.add(join(where, gpu), f"must be {kind} >= 0", value)
            continue
        out[gpu] = value
    return out


def _date(ctx: Context, t: Table, key: str) -> datetime.date | None:
    """A TOML date (`2027-01-01`) or an ISO date string (`"2027-01-01"`); None when absent."""
    raw = t.raw(key)
    if raw is MISSING:
        return None
    if isinstance(raw, datetime.date) and not isinstance(raw, datetime.datetime):
        return raw
    if isinstance(raw, str):
        try:
            return datetime.date.fromisoformat(raw)
        except ValueError:
            pass
    ctx.add(join(t.path, key), 'must be a date: 2027-01-01 or "2027-01-01"', raw)
    return None


def _fractions(ctx: Context, t: Table, key: str, default: tuple[float, ...]) -> tuple[float, ...]:
    raw = t.raw(key)
    if key not in t.data:
        return default
    ok = (
        isinstance(raw, list)
        and raw
        and all(
            isinstance(v, int | float) and not isinstance(v, bool) and 0.0 <= v <= 1.0 for v in raw
        )
    )
    if not ok:
        ctx.add(join(t.path, key), "must be a non-empty list of fractions in [0, 1]", raw)
        return default
    return tuple(sorted({float(v) for v in raw}))

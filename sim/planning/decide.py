"""A candidate fleet and the decision about it: the planner's unit.

`Candidate` is one fleet kept the same every month; `decide` gives it replications stage by
stage (`sim.config.plan.REPLICATION_STAGES`) until the one-sided Clopper–Pearson bound on the
month's P(miss SLO) decides it (accepted: upper bound ≤ risk; rejected: lower bound > risk, or
still undecided at the last stage, or already more misses than the last stage can accept);
`month_choice` records a decided candidate's evidence. Two cost cuts drop a candidate still
undecided that cannot be the month's choice: `cost_cannot_beat` (exact: its mean cost at any
later stage must reach the best's) and `dearer_than` (statistical: its mean cost so far exceeds
the best's by more than chance allows, `COST_CUT_ALPHA`).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.special import stdtrit

from sim.config import AutoscaleSpec, PlanSpec, PoolSpec
from sim.config.plan import PlanSearchSpec
from sim.planning.evaluate import Evaluation, Evaluator, constant_plan
from sim.planning.prices import GpuPrice
from sim.planning.schedules import scheduled_pool
from sim.stats.risk import Proportion, lower_bound, upper_bound
from sim.units import HOURS_PER_DAY, HOURS_PER_MONTH

DAYS_PER_MONTH = HOURS_PER_MONTH / HOURS_PER_DAY  # 730 h ÷ 24 h: the months table's month


@dataclass(frozen=True)
class Candidate:
    """`count` replicas of `gpu`, `spot` of them on the spot market, spilling to the API or not.

    `hourly` (168 counts, hour 0 = Monday 00:00; empty = static): a scheduled on-demand fleet
    serving `hourly[h]` replicas in hour h of the week, `count` = the most
    (`sim.planning.schedules`). `scaler`: an on-demand fleet moved by a reactive autoscaler
    between `scaler.min_replicas` and `count` = `scaler.max_replicas`, its target
    `utilisation` × the sequences a replica runs at capacity (`sim.planning.autoscale`).
    `tp`: the tensor-parallel degree of every replica (`[engine] tp`), so a replica is `tp`
    GPUs of type `gpu` (its cost) and `count` counts replicas, not GPUs.
    A family is the candidates that differ only in `count`: under common random numbers a
    family's misses do not increase with it (a search runs at one `tp`, so `tp` is not in it)."""

    gpu: str
    count: int
    spot: int = 0
    api: bool = False
    hourly: tuple[int, ...] = ()
    scaler: AutoscaleSpec | None = None
    utilisation: float = 0.0
    tp: int = 1

    @property
    def family(self) -> tuple[str, float, bool, str]:
        share = self.spot / self.count if self.count else 0.0
        return (self.gpu, share, self.api, self.kind)

    @property
    def kind(self) -> str:
        """ "static", "scheduled", or "autoscaled u" (u: the target's utilisation)."""
        if self.scaler is not None:
            return f"autoscaled {self.utilisation:g}"
        return "scheduled" if self.hourly else "static"

    @property
    def scheduled(self) -> bool:
        return bool(self.hourly)

    @property
    def autoscaled(self) -> bool:
        return self.scaler is not None

    @property
    def moves(self) -> bool:
        """Whether its size changes within the month (a schedule or an autoscaler)."""
        return self.scheduled or self.autoscaled

    @property
    def floor_replicas(self) -> int:
        """Replicas on demand all month, whatever the load: its cost lower bound's."""
        if self.scaler is not None:
            return self.scaler.min_replicas
        return self.count - self.spot

    def label(self) -> str:
        """E.g. "2× h100-80gb (tp 2) (1 spot)": the TP is shown when above 1 (one GPU each)."""
        s = f"{self.count}× {self.gpu}" + (f" (tp {self.tp})" if self.tp > 1 else "")
        if self.scheduled:
            s += f" ({min(self.hourly)}–{self.count} by hour)"
        if self.scaler is not None:
            a = self.scaler
            s += (
                f" (autoscaled {a.min_replicas}–{a.max_replicas}, {a.signal} {a.target:g}"
                f" = {self.utilisation:.0%} of capacity)"
            )
        if self.spot:
            s += f" ({self.spot} spot)"
        return s + (" + API" if self.api else "")

    def pools(self) -> tuple[PoolSpec, ...]:
        if self.scheduled:
            return (scheduled_pool("on-demand", self.gpu, self.hourly),)
        if self.scaler is not None:
            start = self.scaler.min_replicas
            return (PoolSpec("on-demand", self.gpu, start, "on_demand", autoscale=self.scaler),)
        out = []
        if self.count - self.spot:
            out.append(PoolSpec("on-demand", self.gpu, self.count - self.spot, "on_demand"))
        if self.spot:
            out.append(PoolSpec("spot", self.gpu, self.spot, "spot"))
        return tuple(out)

    def lower_cost(self, price: GpuPrice, tp: int, ops_usd: float) -> float:
        """A lower bound on a static or autoscaled candidate's monthly cost: on-demand
        GPU-hours of `floor_replicas` + operations (USD); spot slots and the API at $0, since
        reclaims can leave a spot slot unbilled; an autoscaler's launches above its minimum at
        $0, since only simulation knows them. (A scheduled one's is its bill,
        `sim.planning.schedules.scheduled_bill_usd`.)"""
        hours = self.floor_replicas * tp * HOURS_PER_MONTH
        return hours * price.on_demand_usd_per_hour + ops_usd

    def list_cost(self, price: GpuPrice, tp: int, ops_usd: float) -> float:
        """Its monthly cost at list prices, spot slots running all month at the spot list
        price, the API at $0 (USD): the order in which the search visits candidates."""
        spot = price.spot_usd_per_hour or 0.0
        return self.lower_cost(price, tp, ops_usd) + self.spot * tp * HOURS_PER_MONTH * spot


@dataclass(frozen=True)
class MonthChoice:
    """The recommendation for one month, with the evidence the search has for it."""

    month: int
    candidate: Candidate
    cost_usd: float  # the objective: mean or p95 across replications
    cost_p5_usd: float
    cost_p95_usd: float
    misses: Proportion
    ttft_p95_s: float  # median across replications
    tpot_p95_s: float
    token_utilisation: float = float("nan")  # median: tokens served ÷ capacity at the SLO
    launches_per_day: float = 0.0  # mean: replicas an autoscaler launched ÷ days of the month
    cold_start_share: float = 0.0  # mean: requests arriving during a cold start ÷ requests


@dataclass(frozen=True)
class Tried:
    """One (candidate, month) the search decided, for the frontier."""

    month: int
    candidate: Candidate
    cost_usd: float
    misses: Proportion
    accepted: bool


def month_choice(result: Evaluation, c: Candidate, month: int, objective: float) -> MonthChoice:
    """The record of candidate `c` chosen for `month` from its evaluation (launches and cold
    starts for an autoscaled one: a static or scheduled fleet has no scale-up)."""
    moved = c.autoscaled
    return MonthChoice(
        month,
        c,
        objective,
        result.cost(month, "p5"),
        result.cost(month, "p95"),
        result.misses(month),
        result.median(month, "ttft_p95_s"),
        result.median(month, "tpot_p95_s"),
        result.median(month, "token_utilisation"),
        result.mean(month, "scale_ups") / DAYS_PER_MONTH if moved else 0.0,
        result.mean_ratio(month, "cold_start_delayed", "requests") if moved else 0.0,
    )


def decide(
    ev: Evaluator, c: Candidate, months: int, month: int, s: PlanSearchSpec
) -> tuple[bool, Evaluation]:
    """Whether candidate `c` meets the risk in `month` (its constant plan, staged replications)."""
    accepted, result = _decide(ev, constant_plan(c.label(), months, c.pools(), c.api), month, s)
    return bool(accepted), result


def _decide(
    ev: Evaluator,
    plan: PlanSpec,
    month: int,
    s: PlanSearchSpec,
    beaten: Callable[[Evaluation, int], bool] | None = None,
) -> tuple[bool | None, Evaluation]:
    """Add replications of `month` stage by stage until the bound decides `plan` for it:
    True (accepted), False (rejected). With `beaten`, a plan still undecided is dropped —
    None — when `beaten(result, n_last)` says that even if accepted at any later stage (at
    most `n_last` replications) it could not cost less than what the caller has already
    found (`cost_cannot_beat`).

    Futility: misses only accumulate, and a stage of n replications accepts at most
    `most_misses_accepted(n)` of them, so a plan that has already missed more often than the
    largest later stage accepts is rejected at once — the decision it would reach at its
    last stage, without the replications in between. This is checked after every
    replication, in replication order (`Evaluator.evaluate`'s `most_misses`): a fleet missing
    every month is rejected after 3 replications (at 5 % risk) instead of 20, and one whose
    third miss comes at replication 70 after 70, not at the next look (104). The cost cut
    and the bounds are looked at only at the looks (`futility_looks`)."""
    last = s.stages[-1]
    most = {n: most_misses_accepted(n, s.risk, s.confidence) for n in s.stages}
    for n in futility_looks(s.stages):
        result = ev.evaluate(plan, n, month, most_misses=most[last])
        p = result.misses(month)
        if p.n < n:
            return False, result  # stopped at its (most[last] + 1)-th miss: futile
        if n in most and p.bound <= s.risk:
            return True, result
        if n in most and lower_bound(p.k, p.n, p.confidence) > s.risk:
            return False, result
        if n == last or p.k > max(most[m] for m in s.stages if m > n):
            return False, result  # not proven safe at the last stage, or no later stage can be
        if beaten is not None and beaten(result, last):
            return None, result
    return False, result  # (unreached: the last look is the last stage)


def futility_looks(stages: tuple[int, ...]) -> list[int]:
    """The replication counts at which `_decide` looks: the stages, and between them where
    only the cost cut (futility is seen after every replication) can stop a plan: 4 and 10
    below the first stage, and the midpoint of each two stages (rounded down to an even
    count, so that two workers share every batch). For (20, 60, 150): 4, 10, 20, 40, 60,
    104, 150."""
    looks = {n for n in (4, 10) if n < stages[0]} | set(stages)
    for a, b in itertools.pairwise(stages):
        mid = (a + b) // 2 // 2 * 2
        if a < mid < b:
            looks.add(mid)
    return sorted(looks)


def most_misses_accepted(n: int, risk: float, confidence: float) -> int:
    """The most misses in n replications that still accept (one-sided upper bound ≤ risk);
    −1 when none does (n too small for the risk)."""
    k = -1
    while k + 1 <= n and upper_bound(k + 1, n, confidence) <= risk:
        k += 1
    return k


def cost_cannot_beat(
    result: Evaluation, n_last: int, *, month: int, floor_usd: float, best_usd: float
) -> bool:
    """Whether `result`'s mean monthly cost, were it accepted with up to `n_last`
    replications, must be at least `best_usd`: the k replications run so far cost Σ c_i, and
    each later one costs at least `floor_usd` (the candidate's cost lower bound: on-demand
    GPU-hours + operations), so the mean of n ≥ k replications is at least
    (Σ c_i + (n − k) · floor_usd) ÷ n, smallest at n = `n_last` when the runs so far average
    above the floor. Exact up to a cent (the slack of the search's other cost cuts): no
    candidate dropped by it could have been the month's choice by more than $0.01.
    (`sim.planning.monthly` also stops the larger ceilings of a dropped autoscaler: that is its
    `met_at` heuristic, not this bound.)"""
    costs = result.month(month)["cost_usd"].to_numpy()
    k = len(costs)
    if k == 0 or n_last < k:
        return False
    least = min((float(costs.sum()) + (n - k) * floor_usd) / n for n in (k, n_last))
    return least >= best_usd - 0.01


COST_CUT_ALPHA = 0.001
"""One-sided significance of `dearer_than` at each look: were a candidate's monthly costs
normal, the chance that one whose expected cost equals the month's best is dropped at that
look. It is looked at ≤ 7 times from `COST_CUT_MIN_REPLICATIONS` on (4, 10, 20, 40, 60, 104
and 150 with the default stages): ≤ 0.7 % over its looks (Bonferroni). Right-skewed costs
(traffic growth, API bills) make the test conservative; a cost with rare deep dips below its
usual value would make it err more often (`tests/test_planning.py` measures both), and a dip
cannot go below the candidate's cost floor (on-demand GPU-hours + operations)."""

COST_CUT_MIN_REPLICATIONS = 4
"""The fewest replications `dearer_than` judges a candidate on: the first look of `_decide`
(`futility_looks`). At 4 the 99.9 % t quantile is 10.2 standard errors, so only a candidate
costing several times the best (an API-spill fleet visited at its GPUs' price) is dropped
there; closer ones wait for later looks."""


@dataclass(frozen=True)
class CostGap:
    """A candidate's mean monthly cost over its `replications` so far minus the month's best
    cost (`best_usd`, the objective the search compares), and the one-sided lower confidence
    bound of that difference at 1 − `COST_CUT_ALPHA` (Student's t on the candidate's costs;
    USD a month)."""

    replications: int
    mean_usd: float
    lower_usd: float

    @property
    def dearer(self) -> bool:
        """Whether the candidate's expected cost is above the best's beyond chance."""
        return self.lower_usd > 0.0


def cost_gap(
    result: Evaluation, month: int, best_usd: float, alpha: float = COST_CUT_ALPHA
) -> CostGap | None:
    """`CostGap` of `result`'s costs in `month` against `best_usd` (t with n − 1 degrees of
    freedom); None below `COST_CUT_MIN_REPLICATIONS` replications or without a best."""
    return gap_of_costs(result.month(month)["cost_usd"].to_numpy(), best_usd, alpha)


def gap_of_costs(
    costs_usd: np.ndarray, best_usd: float, alpha: float = COST_CUT_ALPHA
) -> CostGap | None:
    """`cost_gap` of one candidate's monthly costs (USD, one per replication so far)."""
    n = len(costs_usd)
    if n < COST_CUT_MIN_REPLICATIONS or not math.isfinite(best_usd):
        return None
    mean = float(costs_usd.mean()) - best_usd
    spread = float(costs_usd.std(ddof=1)) / math.sqrt(n)
    lower = mean - float(stdtrit(n - 1, 1.0 - alpha)) * spread if spread > 0 else mean
    return CostGap(n, mean, lower)


def dearer_than(result: Evaluation, n_last: int, *, month: int, best_usd: float) -> bool:
    """`_decide`'s statistical cost cut: whether `result`'s expected cost in `month` is above
    the month's best, `best_usd`, beyond chance (`cost_gap`). Unlike `cost_cannot_beat` it is
    not a bound: a candidate it drops would, were it run on, most likely be accepted at a
    cost above the best or rejected (module docstring of `sim.planning.monthly`). It compares
    with the best's reported cost — every replication the best ran, rare expensive ones
    included — not replication by replication, so a rare bill of the best's that the
    candidate's first replications did not pair with cannot make it look dearer. (`n_last`:
    `_decide`'s argument, unused.)"""
    del n_last
    gap = cost_gap(result, month, best_usd)
    return gap is not None and gap.dearer

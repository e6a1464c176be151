"""A candidate fleet and the decision about it: the planner's unit.

`Candidate` is one fleet kept the same every month; `decide` gives it replications stage by
stage (`sim.config.plan.REPLICATION_STAGES`) until the one-sided Clopper–Pearson bound on the
month's P(miss SLO) decides it (accepted: upper bound ≤ risk; rejected: lower bound > risk, or
still undecided at the last stage); `month_choice` records a decided candidate's evidence.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.config import PlanSpec, PoolSpec
from sim.config.plan import PlanSearchSpec
from sim.planning.evaluate import Evaluation, Evaluator, constant_plan
from sim.planning.prices import GpuPrice
from sim.planning.schedules import scheduled_pool
from sim.stats.risk import Proportion, lower_bound
from sim.units import HOURS_PER_MONTH


@dataclass(frozen=True)
class Candidate:
    """`count` replicas of `gpu`, `spot` of them on the spot market, spilling to the API or not.

    `hourly` (168 counts, hour 0 = Monday 00:00; empty = static): a scheduled on-demand fleet
    serving `hourly[h]` replicas in hour h of the week, `count` = the most
    (`sim.planning.schedules`). A family is the candidates that differ only in `count`:
    under common random numbers a family's misses do not increase with it."""

    gpu: str
    count: int
    spot: int = 0
    api: bool = False
    hourly: tuple[int, ...] = ()

    @property
    def family(self) -> tuple[str, float, bool, bool]:
        share = self.spot / self.count if self.count else 0.0
        return (self.gpu, share, self.api, self.scheduled)

    @property
    def scheduled(self) -> bool:
        return bool(self.hourly)

    def label(self) -> str:
        s = f"{self.count}× {self.gpu}"
        if self.scheduled:
            s += f" ({min(self.hourly)}–{self.count} by hour)"
        if self.spot:
            s += f" ({self.spot} spot)"
        return s + (" + API" if self.api else "")

    def pools(self) -> tuple[PoolSpec, ...]:
        if self.scheduled:
            return (scheduled_pool("on-demand", self.gpu, self.hourly),)
        out = []
        if self.count - self.spot:
            out.append(PoolSpec("on-demand", self.gpu, self.count - self.spot, "on_demand"))
        if self.spot:
            out.append(PoolSpec("spot", self.gpu, self.spot, "spot"))
        return tuple(out)

    def lower_cost(self, price: GpuPrice, tp: int, ops_usd: float) -> float:
        """A lower bound on a static candidate's monthly cost: on-demand GPU-hours +
        operations (USD); spot slots and the API at $0, since reclaims can leave a spot slot
        unbilled. (A scheduled one's is its bill, `sim.planning.schedules.scheduled_bill_usd`.)"""
        return (self.count - self.spot) * tp * HOURS_PER_MONTH * price.on_demand_usd_per_hour + (
            ops_usd
        )

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


@dataclass(frozen=True)
class Tried:
    """One (candidate, month) the search decided, for the frontier."""

    month: int
    candidate: Candidate
    cost_usd: float
    misses: Proportion
    accepted: bool


def month_choice(result: Evaluation, c: Candidate, month: int, objective: float) -> MonthChoice:
    """The record of candidate `c` chosen for `month` from its evaluation."""
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
    )


def decide(
    ev: Evaluator, c: Candidate, months: int, month: int, s: PlanSearchSpec
) -> tuple[bool, Evaluation]:
    """Whether candidate `c` meets the risk in `month` (its constant plan, staged replications)."""
    return _decide(ev, constant_plan(c.label(), months, c.pools(), c.api), month, s)


def _decide(
    ev: Evaluator, plan: PlanSpec, month: int, s: PlanSearchSpec
) -> tuple[bool, Evaluation]:
    """Add replications stage by stage until the bound decides `plan` for `month`."""
    result = ev.evaluate(plan, s.stages[0])
    for n in s.stages:
        result = ev.evaluate(plan, n)
        p = result.misses(month)
        if p.bound <= s.risk:
            return True, result
        if lower_bound(p.k, p.n, p.confidence) > s.risk:
            return False, result
    return False, result

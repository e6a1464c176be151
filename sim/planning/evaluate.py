"""Evaluating one fleet plan over replications, incrementally: the planner's unit of work.

An `Evaluator` owns the experiment and the seed; `evaluate(plan, n, month)` makes sure
replications 0..n−1 of `plan` have been simulated for `month` (or every month), running only
the missing ones, on the process pool or Ray like `sim run`, and returns its `Evaluation`.
Replication k of every plan sees the same traffic and reclaims (common random numbers,
`sim.rng`), so comparisons between candidates are paired and P(miss) falls with the replica
count in each replication, not only on average.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import polars as pl

from sim.capacity import capacities, with_token_utilisation
from sim.config import EngineSpec, MonthPlan, PlanSearchSpec, PlanSpec, PoolSpec, SloSpec
from sim.errors import SimError
from sim.experiment import Experiment
from sim.replication import ReplicationOutput, Scope
from sim.runner import Backend, replicate
from sim.stats import months_frame
from sim.stats.risk import Proportion, missed_slo


@dataclass
class Evaluation:
    """The `months` rows of one plan: month m over replications 0..n_m−1 (sorted by
    replication, then month). A search deciding month m simulates only that month, so months
    can have different replication counts (`replications_of`)."""

    plan: PlanSpec
    months: pl.DataFrame
    slo: SloSpec
    attainment_target: float | None
    confidence: float

    @property
    def replications(self) -> int:
        """The replications every month has (0 when a month has none)."""
        if self.months.is_empty():
            return 0
        months = range(1, len(self.plan.fleet) + 1)
        return min(self.replications_of(m) for m in months)

    def replications_of(self, month: int) -> int:
        """The replications month `month` has (0..n−1, a prefix: they are added in order)."""
        return self.month(month).height

    def month(self, month: int) -> pl.DataFrame:
        return self.months.filter(pl.col("month") == month)

    def misses(self, month: int) -> Proportion:
        rows = self.month(month).with_columns(missed_slo(self.slo, self.attainment_target))
        return Proportion(int(rows["missed_slo"].sum()), rows.height, self.confidence)

    def any_month_misses(self) -> Proportion:
        """Replications in which at least one month missed its SLO."""
        per_rep = (
            self.months.with_columns(missed_slo(self.slo, self.attainment_target))
            .group_by("replication")
            .agg(pl.col("missed_slo").any())
        )
        return Proportion(int(per_rep["missed_slo"].sum()), per_rep.height, self.confidence)

    def cost(self, month: int, statistic: str = "mean") -> float:
        """The month's cost across replications: "mean", "p5", "p50" or "p95" (USD)."""
        values = self.month(month)["cost_usd"].to_numpy()
        if statistic == "mean":
            return float(values.mean())
        return float(np.percentile(values, {"p5": 5, "p50": 50, "p95": 95}[statistic]))

    def median(self, month: int, column: str) -> float:
        return float(np.nanmedian(self.month(month)[column].to_numpy()))

    def mean(self, month: int, column: str) -> float:
        """The month's mean of `column` across replications (0 when the table lacks it)."""
        rows = self.month(month)
        if column not in rows.columns or rows.is_empty():
            return 0.0
        return float(np.mean(rows[column].cast(pl.Float64).to_numpy()))

    def mean_ratio(self, month: int, numerator: str, denominator: str) -> float:
        """Σ `numerator` ÷ Σ `denominator` over the month's replications (0 when either
        column is missing or the denominator sums to 0): a share pooled over replications."""
        rows = self.month(month)
        if not {numerator, denominator} <= set(rows.columns):
            return 0.0
        den = float(rows[denominator].cast(pl.Float64).sum())
        return float(rows[numerator].cast(pl.Float64).sum()) / den if den > 0 else 0.0


@dataclass
class Evaluator:
    """Runs and caches plan evaluations of one experiment (see the module docstring)."""

    exp: Experiment
    slo: SloSpec
    attainment_target: float | None = None
    confidence: float = 0.95
    jobs: int = 1
    backend: Backend = "local"
    address: str | None = None
    # keyed by the engine too: the same fleet at another `[engine] tp` (or model, precision)
    # is another evaluation, even when a caller swaps `exp`
    cache: dict[tuple[EngineSpec, PlanSpec], Evaluation] = field(default_factory=dict)
    replications_run: int = 0  # replications simulated (of one month or more)
    months_run: int = 0  # (replication, month) pairs simulated: the search's unit of work

    def evaluate(
        self,
        plan: PlanSpec,
        n: int,
        month: int | None = None,
        *,
        most_misses: int | None = None,
    ) -> Evaluation:
        """`plan` over replications 0..n−1 of `month` (None: of every month), simulating only
        the (replication, month) pairs not yet run. A month's rows do not depend on which
        other months ran with it (`sim.replication.run_replication`), so deciding a candidate
        month by month costs one month per replication, not the horizon (on a sampled horizon;
        a full one simulates, and keeps, every month).

        `most_misses` (with `month`): stop at the first replication after which more than
        `most_misses` of the month's replications have missed its SLO. The evaluation then
        holds replications 0..k for that k ≤ n − 1 (the same k whatever the workers' timing:
        `sim.runner.replicate`'s `stop`); a search that can accept no more misses than that
        needs no further replication to reject."""
        if most_misses is not None and month is None:
            raise ValueError("most_misses needs one month")
        key = (self.exp.spec.engine, plan)
        have = self.cache.get(key)
        # a full horizon simulates every month of a replication at once (queues carry over
        # month boundaries): all its months are kept, whichever month was asked for
        whole = month is None or self.exp.horizon()[0] == "full"
        wanted: Sequence[int] = (
            range(1, len(plan.fleet) + 1) if month is None or whole else (month,)
        )
        done = {m: have.replications_of(m) if have is not None else 0 for m in wanted}
        need = [m for m in wanted if done[m] < n]
        if not need:  # (n = 0 before anything ran: an empty evaluation)
            if have is None:
                empty = months_frame([])
                return Evaluation(plan, empty, self.slo, self.attainment_target, self.confidence)
            return have
        spec = dataclasses.replace(self.exp.spec, plans=(plan,), fleet=plan.fleet)
        exp = self.exp.with_spec(spec)
        first = min(done[m] for m in need)
        stop = None
        if most_misses is not None and month is not None:
            before = have.misses(month).k if have is not None else 0
            if have is not None and before > most_misses:
                return have  # stopped there before
            stop = _misses_over(most_misses - before, month, self.slo, self.attainment_target)
        outputs = replicate(
            exp,
            range(first, n),
            jobs=self.jobs,
            backend=self.backend,
            address=self.address,
            scope=Scope(None if whole else frozenset(need), standard_errors=False),
            stop=stop,
        )
        failed = [o for o in outputs if o.error is not None]
        if failed:
            raise SimError(
                f"plan {plan.name}: replication {failed[0].replication} failed: {failed[0].error}"
            )
        rows = months_frame([r for o in outputs for r in o.months])
        # keep each month's new replications only (a full horizon returns every month, and a
        # month may have had more replications than another): each month stays a prefix
        rows = rows.filter(
            pl.any_horizontal(
                (pl.col("month") == m) & (pl.col("replication") >= done[m]) for m in need
            )
        )
        self.replications_run += len(outputs)
        self.months_run += rows.height
        caps = capacities(exp.engine, exp.spec.gpus_used(), exp.lengths, self.slo)
        rows = with_token_utilisation(rows, [plan], caps)
        months = rows if have is None else pl.concat([have.months, rows])
        ev = Evaluation(
            plan,
            months.sort("replication", "month"),
            self.slo,
            self.attainment_target,
            self.confidence,
        )
        self.cache[key] = ev
        return ev


def _misses_over(
    most: int, month: int, slo: SloSpec, attainment_target: float | None
) -> Callable[[ReplicationOutput], bool]:
    """`replicate`'s `stop`: true at the first output (in replication order) after which more
    than `most` outputs have missed the SLO in `month` (`missed_slo`, the one definition)."""
    seen = [0]

    def stop(out: ReplicationOutput) -> bool:
        if out.error is not None:
            return True  # `evaluate` raises on it: nothing after it is needed
        rows = months_frame([r for r in out.months if r["month"] == month])
        seen[0] += int(rows.select(missed_slo(slo, attainment_target).sum()).item() or 0)
        return seen[0] > most

    return stop


def search_evaluator(
    exp: Experiment,
    s: PlanSearchSpec,
    jobs: int = 1,
    backend: Backend = "local",
    address: str | None = None,
) -> Evaluator:
    """An `Evaluator` of `exp` judged as the search `s` judges: its SLO, attainment target and
    confidence; replications on `jobs` workers of `backend`."""
    return Evaluator(exp, exp.spec.slo, s.attainment_target, s.confidence, jobs, backend, address)


def constant_plan(name: str, months: int, pools: Sequence[PoolSpec], api: bool) -> PlanSpec:
    """A plan with the same pools every month."""
    return PlanSpec(name, tuple(MonthPlan(tuple(pools)) for _ in range(months)), api)

"""The fleet package: a plan's replicas and phases, the step-time draw, routing and spill
policies as plain functions, the monthly bill."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pytest

from sim.config import MonthPlan, PlanSpec, PoolSpec, SpillSpec
from sim.cost import plan_month_costs
from sim.experiment import Experiment
from sim.fleet import build_fleet, least_outstanding_tokens, must_spill, step_time_factors
from sim.fleet.spill import over_wait, queue_over
from sim.rng import Streams
from sim.units import HOURS_PER_MONTH, SECONDS_PER_MONTH

Tiny = Callable[..., Experiment]  # the `tiny` fixture (conftest.py)


def _plan(*months: tuple[PoolSpec, ...]) -> PlanSpec:
    return PlanSpec("p", tuple(MonthPlan(pools) for pools in months))


def test_replicas_keep_their_identity_across_months(tiny: Tiny) -> None:
    exp = tiny()
    a, s = PoolSpec("a", "a100-80gb", 2), PoolSpec("s", "a100-80gb", 1, "spot")
    plan = _plan((a,), (a, s), (PoolSpec("a", "a100-80gb", 1), s))
    fleet = build_fleet(plan, exp.engine)
    assert [(sl.pool, sl.k, sl.market) for sl in fleet.slots] == [
        ("a", 0, "on_demand"),
        ("a", 1, "on_demand"),
        ("s", 0, "spot"),
    ]
    assert [p.replicas for p in fleet.phases] == [(0, 1), (0, 1, 2), (0, 2)]
    assert [p.start_s for p in fleet.phases] == [0.0, SECONDS_PER_MONTH, 2 * SECONDS_PER_MONTH]
    assert [sl.index for sl in fleet.spot_slots()] == [2]
    limits = exp.engine.limits("a100-80gb")
    assert all(r.limits == limits for r in fleet.replicas)


def test_step_time_factors_follow_the_fit_spread(tiny: Tiny) -> None:
    exp = tiny()
    nominal = step_time_factors(exp.engine, None)
    assert nominal == {"a100-80gb": 1.0}
    assert step_time_factors(exp.engine, Streams(1, 0), enabled=False) == nominal
    sd = exp.engine.step_time("a100-80gb").residual_sd_log
    logs = [np.log(step_time_factors(exp.engine, Streams(1, k))["a100-80gb"]) for k in range(400)]
    assert np.mean(logs) == pytest.approx(0.0, abs=4 * sd / 20)
    assert np.std(logs) == pytest.approx(sd, rel=0.15)
    scaled = build_fleet(_plan((PoolSpec("a", "a100-80gb", 1),)), exp.engine, {"a100-80gb": 2.0})
    base = exp.engine.step_time("a100-80gb").step
    assert scaled.replicas[0].step_time.flat_s == 2.0 * base.flat_s
    assert scaled.replicas[0].step_time.knee_tokens == base.knee_tokens  # tokens, not time


def test_on_demand_bill_counts_gpus_of_on_demand_pools_only(tiny: Tiny) -> None:
    exp = tiny()
    a, s = PoolSpec("a", "a100-80gb", 2), PoolSpec("s", "a100-80gb", 3, "spot")
    (month,) = plan_month_costs(_plan((a, s)), 2, exp.spec.cost)
    price = exp.spec.cost.price("a100-80gb")
    assert month.replicas == 5
    assert month.gpu_hours == 2 * 2 * HOURS_PER_MONTH
    assert month.gpu_cost_usd == pytest.approx(2 * 2 * HOURS_PER_MONTH * price)
    assert month.ops_cost_usd == exp.spec.cost.ops_usd_per_month


@dataclass
class Rep:
    """A stand-in replica: a load and a waiting queue."""

    load: int
    waiting: list[int] = field(default_factory=list)
    queued: int = 0

    def load_at(self, t: float) -> int:
        return self.load

    def queued_prompt_tokens(self) -> int:
        return self.queued


def test_least_outstanding_tokens_takes_the_first_of_the_least_loaded() -> None:
    pool = [Rep(5), Rep(3), Rep(3), Rep(9)]
    best, load = least_outstanding_tokens(pool, 0.0)
    assert best is pool[1] and load == 3
    assert least_outstanding_tokens([Rep(0)], 0.0)[1] == 0


def test_spill_rules() -> None:
    long_q, short_q = Rep(10, [1, 2, 3]), Rep(10, [1])
    assert queue_over([long_q, long_q], 2)
    assert not queue_over([long_q, short_q], 2)  # every queue must be long
    busy = Rep(100, queued=900)
    # 900 queued + 100 of its own at 1,000 tokens/s: 1.0 s of predicted wait
    assert over_wait(busy, 100, 100, 1000.0, 0.5)
    assert not over_wait(busy, 100, 100, 1000.0, 1.0)
    assert not over_wait(busy, 0, 100, 1000.0, 0.0)  # an idle replica never spills
    assert not must_spill(SpillSpec(), [busy], busy, 100, 100, 1000.0)
    assert must_spill(SpillSpec(max_wait_s=0.5), [busy], busy, 100, 100, 1000.0)
    assert must_spill(SpillSpec(queue_over=2), [long_q], long_q, 10, 1, 1.0)

"""Fleets that move within a month: schedules by hour of the week (parsing, serving runs,
routing phases, the requests they route), reserved capacity and billing granularity."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from sim import load_experiment
from sim.config import AutoscaleSpec, MonthPlan, PlanSpec, PoolSpec, ScheduleRule
from sim.config.pools import parse_days
from sim.cost import plan_month_costs, rounded_runs
from sim.engine import RequestLog
from sim.errors import ConfigError
from sim.experiment import Experiment
from sim.fleet import build_fleet
from sim.fleet.schedule import routing_changes, serving_hours
from sim.model import simulate
from sim.replication import run_replication
from sim.units import HOURS_PER_MONTH, SECONDS_PER_HOUR, SECONDS_PER_MONTH

Tiny = Callable[..., Experiment]
H = float(SECONDS_PER_HOUR)
ROOT = Path(__file__).resolve().parents[1]


def _plan(*months: tuple[PoolSpec, ...]) -> PlanSpec:
    return PlanSpec("p", tuple(MonthPlan(pools) for pools in months))


@pytest.mark.parametrize(
    ("text", "days"),
    [
        ("mon-fri", (0, 1, 2, 3, 4)),
        ("sat,sun", (5, 6)),
        ("fri-mon", (0, 4, 5, 6)),
        ("mon,wed-thu", (0, 2, 3)),
        ("weekend", (5, 6)),
        ("all", tuple(range(7))),
        ("Tuesday", (1,)),
    ],
)
def test_day_names(text: str, days: tuple[int, ...]) -> None:
    assert parse_days(text) == days


def test_bad_day_names_are_refused() -> None:
    assert parse_days("mon-fry") is None
    assert parse_days("mon-tue-wed") is None


def test_schedule_rules_give_hourly_counts_later_rules_win() -> None:
    pool = PoolSpec(
        "p",
        "a100-80gb",
        1,
        schedule=(ScheduleRule((0, 1, 2, 3, 4), 8, 20, 3), ScheduleRule((4,), 12, 14, 0)),
    )
    counts = pool.hourly_counts()
    assert counts[0] == 1 and counts[8] == 3 and counts[19] == 3 and counts[20] == 1
    assert counts[4 * 24 + 12] == 0 and counts[4 * 24 + 14] == 3  # Friday's gap
    assert counts[5 * 24 + 10] == 1  # Saturday
    assert pool.slots == 3 and pool.moves
    assert sum(counts) == 168 + 5 * 12 * 2 - 2 * 3  # baseline + extra two, minus the gap


def test_serving_runs_and_routing_phases_by_hand() -> None:
    counts = [1] * 168
    for h in range(8, 20):
        counts[h] = 2  # Monday 08-20
    month = float(SECONDS_PER_MONTH)
    assert serving_hours(counts, 0, 0.0, month) == [(0.0, month)]
    runs = serving_hours(counts, 1, 0.0, 10 * 24 * H)  # ten days: Mondays 0 and 7
    assert runs == [(8 * H, 20 * H), (176 * H, 188 * H)]
    assert serving_hours(counts, 2, 0.0, month) == []
    phases = routing_changes([[(0.0, 10 * 24 * H)], runs], [0.0, 10 * 24 * H])
    assert phases == [
        (0.0, (0,)),
        (8 * H, (0, 1)),
        (20 * H, (0,)),
        (176 * H, (0, 1)),
        (188 * H, (0,)),
    ]


def test_a_scheduled_replica_gets_requests_only_in_its_hours(tiny: Tiny) -> None:
    exp = tiny()
    rule = ScheduleRule((0,), 2, 4, 2)  # a second replica Monday 02:00-04:00
    plan = _plan((PoolSpec("a", "a100-80gb", 1, schedule=(rule,)),))
    fleet = build_fleet(plan, exp.engine)
    assert fleet.serving[1] == tuple(
        (float(d * 168 + 2) * H, float(d * 168 + 4) * H) for d in range(5) if d * 168 + 4 < 730
    )
    # A heavy Poisson stream over Monday 00:00-06:00: both replicas busy while both serve.
    rng = np.random.default_rng(7)
    arrivals = np.sort(rng.uniform(0.0, 6 * H, 6000))
    log = RequestLog(arrivals.tolist(), [600] * 6000, [200] * 6000)
    phases = fleet.routing_between(0.0, 6 * H)
    res = simulate(log, fleet.replicas, phases, "fast")
    replica = np.asarray(res.log.replica)
    inside = (arrivals >= 2 * H) & (arrivals < 4 * H)
    assert np.all(replica[~inside] == 0)
    assert np.any(replica[inside] == 1)
    # the second replica finishes what it holds after 04:00, then is idle
    assert max(e for _, e in res.busy_periods[1]) < 4 * H + 600


def test_scheduled_billing_is_serving_time_plus_cold_starts_rounded(tiny: Tiny) -> None:
    exp = tiny()
    cost = exp.spec.cost
    rule = ScheduleRule((0, 1, 2, 3, 4), 9, 17, 2)  # weekdays 09-17: a second replica
    plan = _plan((PoolSpec("a", "a100-80gb", 1, schedule=(rule,)),))
    fleet = build_fleet(plan, exp.engine)
    cold = 100.0
    (month,) = plan_month_costs(plan, 1, cost, fleet, cold)
    runs = fleet.serving[1]
    # Month 1 = 730 h from Monday 00:00: 4 whole weeks (20 weekdays), Monday and Tuesday of
    # week 5 (2 more runs), and Wednesday 00-10 h: one run of 09-10 h cut by the month's end.
    assert len(runs) == 23 and runs[-1] == (SECONDS_PER_MONTH - H, float(SECONDS_PER_MONTH))
    expected_hours = HOURS_PER_MONTH + 22 * (8 + cold / H) + (1 + cold / H)
    assert month.gpu_hours == pytest.approx(expected_hours, rel=1e-12)
    assert month.gpu_cost_usd == pytest.approx(expected_hours * cost.price("a100-80gb"))
    assert month.replicas == 2
    # hour granularity: each 8 h + 100 s run is billed 9 h; the last (1 h + 100 s, rounded to
    # 2 h) is cut at the horizon's end
    hourly = type(cost)(**{**cost.__dict__, "billing_granularity_s": (("on_demand", H),)})
    (month,) = plan_month_costs(plan, 1, hourly, fleet, cold)
    assert month.gpu_hours == pytest.approx(HOURS_PER_MONTH + 22 * 9 + 1 + cold / H)


def test_billed_runs_round_up_each_run() -> None:
    assert rounded_runs([(0.0, 10.0), (100.0, 160.0)], 60.0) == [(0.0, 60.0), (100.0, 160.0)]
    assert rounded_runs([(5.0, 5.0)], 60.0) == []
    end = float(SECONDS_PER_MONTH)
    assert rounded_runs([(end - 10.0, end)], 3600.0, months=1) == [(end - 10.0, end)]


def test_reserved_is_paid_for_every_hour(tiny: Tiny) -> None:
    exp = tiny()
    cost = type(exp.spec.cost)(
        **{**exp.spec.cost.__dict__, "reserved_usd_per_hour": (("a100-80gb", 1.0),)}
    )
    plan = _plan((PoolSpec("r", "a100-80gb", 2, "reserved"), PoolSpec("o", "a100-80gb", 1)))
    (month,) = plan_month_costs(plan, 2, cost, build_fleet(plan, exp.engine))
    assert month.reserved_gpu_hours == 2 * 2 * HOURS_PER_MONTH
    assert month.reserved_usd == 2 * 2 * HOURS_PER_MONTH * 1.0
    on_demand = 2 * HOURS_PER_MONTH * cost.price("a100-80gb")
    assert month.gpu_cost_usd == pytest.approx(month.reserved_usd + on_demand)


def _growth_with(tmp_path: Path, fleet: str, extra: str = "") -> Path:
    text = (ROOT / "experiments" / "growth20pct.toml").read_text(encoding="utf-8")
    head, rest = text.split("# One replica per month until month 4", 1)
    tail = rest[rest.index("[cost]") :]
    path = tmp_path / "x.toml"
    body = head.replace('"../traces/', f'"{ROOT}/traces/')
    path.write_text(f"{body}\n[fleet]\n{fleet}\n\n{tail}{extra}", encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("fleet", "line"),
    [
        (
            'pools = [{ gpu = "a100-80gb", count = 1, market = "spot",'
            ' schedule = [{ days = "mon", hours = [1, 2], count = 2 }] }]',
            "fleet.pools[0].market: schedule and autoscale apply to on_demand pools",
        ),
        (
            'pools = [{ gpu = "a100-80gb", count = 1,'
            ' schedule = [{ days = "mon-fry", hours = [1, 2], count = 2 }] }]',
            "fleet.pools[0].schedule[0].days: must name days",
        ),
        (
            'pools = [{ gpu = "a100-80gb", count = 1,'
            ' schedule = [{ days = "mon", hours = [9, 9], count = 2 }] }]',
            "fleet.pools[0].schedule[0].hours: must be [start, end]",
        ),
        (
            'pools = [{ gpu = "a100-80gb", count = 1,'
            ' schedule = [{ days = "sun", hours = [0, 24], count = 0 }] }]',
            "fleet.pools: must hold at least one replica at every hour of the week, got 0",
        ),
        (
            'pools = [{ gpu = "a100-80gb", count = 1, market = "reserved" }]',
            "cost.reserved_usd_per_hour: needs a reserved price for a100-80gb",
        ),
        (
            'pools = [{ gpu = "a100-80gb", count = 5,'
            " autoscale = { min_replicas = 1, max_replicas = 3, target = 4 } }]",
            "fleet.pools[0].count: must be within autoscale's [1, 3]",
        ),
    ],
)
def test_bad_scaling_input_is_located(tmp_path: Path, fleet: str, line: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_experiment(str(_growth_with(tmp_path, fleet)))
    assert any(line in text for text in str(info.value).splitlines()), str(info.value)


def test_granularity_and_reserved_prices_read(tmp_path: Path) -> None:
    extra = (
        '\n[cost.reserved_usd_per_hour]\n"a100-80gb" = 1.1\n'
        "\n[cost.billing_granularity_s]\non_demand = 3600\n"
    )
    fleet = 'pools = [{ gpu = "a100-80gb", count = 1, market = "reserved" }]'
    exp = load_experiment(str(_growth_with(tmp_path, fleet, extra)))
    assert exp.spec.cost.reserved_price("a100-80gb") == 1.1
    assert exp.spec.cost.granularity_s("on_demand") == 3600.0
    assert exp.spec.cost.granularity_s("spot") == 1.0
    assert not math.isnan(exp.spec.cost.price("a100-80gb"))


# ------------------------------------------------------------------ autoscaled plans, billed


def _autoscaled(exp: Experiment, mode: str, **autoscale: float) -> Experiment:
    """`exp` (one month) with its pool autoscaled between 1 and 3 replicas."""
    spec = exp.spec
    a = AutoscaleSpec(
        min_replicas=1, max_replicas=3, **{"target": 2.0, "interval_s": 60.0, **autoscale}
    )
    plan = MonthPlan((PoolSpec("base", "a100-80gb", 1, autoscale=a),))
    horizon = dataclasses.replace(spec.horizon, mode=mode)
    spec = dataclasses.replace(spec, fleet=(plan,) * spec.months, horizon=horizon)
    return dataclasses.replace(exp, spec=spec)


def _rows(exp: Experiment, replications: int = 1) -> list[dict[str, object]]:
    rows = []
    for k in range(replications):
        out = run_replication(exp, k)
        assert out.error is None, out.error
        rows.extend(r for r in out.months if r["plan"] == "main")
    return rows


def test_an_autoscaler_that_never_scales_costs_its_minimum(tiny: Tiny) -> None:
    exp = _autoscaled(tiny(requests_per_day=2000.0), "full", target=1e6)
    (row,) = _rows(exp)
    price = exp.spec.cost.price("a100-80gb")
    assert row["scale_ups"] == 0 and row["cold_start_delayed"] == 0
    assert row["gpu_hours"] == pytest.approx(HOURS_PER_MONTH)
    assert row["gpu_cost_usd"] == pytest.approx(HOURS_PER_MONTH * price)
    assert row["replicas"] == 3  # the most it can have up


def test_a_loaded_autoscaler_scales_up_and_pays_for_what_it_runs(tiny: Tiny) -> None:
    # ten times slower steps: the single replica queues at the daily peaks
    exp = _autoscaled(tiny(requests_per_day=20_000.0, slow=10.0), "full")
    (row,) = _rows(exp)
    assert int(row["scale_ups"]) > 0  # type: ignore[call-overload]
    hours = float(row["gpu_hours"])  # type: ignore[arg-type]
    assert HOURS_PER_MONTH < hours < 3 * HOURS_PER_MONTH
    assert int(row["cold_start_delayed"]) > 0  # type: ignore[call-overload]
    assert row["gpu_cost_usd"] == pytest.approx(hours * exp.spec.cost.price("a100-80gb"))


@pytest.mark.slow
def test_sampled_autoscaled_bill_estimates_the_full_one(tiny: Tiny) -> None:
    base = tiny(requests_per_day=20_000.0, slow=10.0)
    full = _rows(_autoscaled(base, "full"), 3)
    sampled = _rows(_autoscaled(base, "sampled"), 3)
    f = np.mean([float(r["gpu_hours"]) for r in full])  # type: ignore[arg-type]
    s = np.mean([float(r["gpu_hours"]) for r in sampled])  # type: ignore[arg-type]
    assert s == pytest.approx(f, rel=0.15)


def test_each_month_of_an_autoscaled_pool_is_billed_on_its_own(tiny: Tiny) -> None:
    # month 1 scales up under load; month 2 starts over from its count (1) and never scales:
    # the replicas month 1 left up are not billed into month 2
    exp = tiny(requests_per_day=20_000.0, slow=10.0, months=2)
    loaded = AutoscaleSpec(min_replicas=1, max_replicas=3, target=2.0, interval_s=60.0)
    idle = dataclasses.replace(loaded, target=1e6)
    months = (
        MonthPlan((PoolSpec("base", "a100-80gb", 1, autoscale=loaded),)),
        MonthPlan((PoolSpec("base", "a100-80gb", 1, autoscale=idle),)),
    )
    horizon = dataclasses.replace(exp.spec.horizon, mode="full")
    exp = dataclasses.replace(
        exp, spec=dataclasses.replace(exp.spec, fleet=months, horizon=horizon)
    )
    first, second = _rows(exp)
    assert int(first["scale_ups"]) > 0  # type: ignore[call-overload]
    assert float(first["gpu_hours"]) > HOURS_PER_MONTH  # type: ignore[arg-type]
    assert second["scale_ups"] == 0
    assert second["gpu_hours"] == pytest.approx(HOURS_PER_MONTH)
    assert float(second["gpu_utilisation"]) <= 1.0  # type: ignore[arg-type]

"""`sim plan` with scheduled candidates and lead times (issue #16 items 3 and 5): schedule
rules round-trip, a day/night profile makes the scheduled fleet cheaper and chosen, order
dates, and the month-1 current-fleet cap."""

from __future__ import annotations

import dataclasses
import datetime
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from sim.cli import main
from sim.config import MonthPlan, PlanSpec, PoolSpec
from sim.config.plan import PlanSearchSpec
from sim.experiment import Experiment, load_experiment
from sim.fleet import replica_cold_start_s
from sim.planning import plan_experiment
from sim.planning.decide import Candidate
from sim.planning.orders import fleet_cap, month_start_day, orders
from sim.planning.schedules import (
    days_text,
    profile_counts,
    rule_table,
    schedule_rules,
    scheduled_bill_usd,
    scheduled_pool,
)
from sim.units import HOURS_PER_MONTH

ROOT = Path(__file__).resolve().parents[1]
DAY_NIGHT = [4.0 if 8 <= h % 24 < 20 else 1.0 for h in range(168)]  # busy 08-20 every day


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.integers(0, 4), min_size=168, max_size=168)
    | st.lists(st.sampled_from([1, 3]), min_size=168, max_size=168)
)
def test_schedule_rules_round_trip(counts: list[int]) -> None:
    base, rules = schedule_rules(counts)
    pool = PoolSpec("p", "a100-80gb", base, "on_demand", rules)
    assert pool.hourly_counts() == tuple(counts)
    assert pool.slots == max(counts)
    assert all(r.count != base for r in rules)


def test_schedule_rules_are_compact_and_readable_back() -> None:
    from sim.config.pools import parse_days

    counts = profile_counts(2, DAY_NIGHT)
    base, rules = schedule_rules(counts)
    # 84 busy hours of 2, 84 quiet of 1 (a tie: the smaller count is the base): one rule
    # for every day, not seven
    assert base == 1
    assert [(r.days, r.start_hour, r.end_hour, r.count) for r in rules] == [
        (tuple(range(7)), 8, 20, 2)
    ]
    for days in [(0, 1, 2, 3, 4), (5, 6), (0, 2, 3, 4, 6), (3,), tuple(range(7))]:
        assert parse_days(days_text(days)) == days
    assert rule_table(rules[0])["hours"] == [rules[0].start_hour, rules[0].end_hour]


def test_profile_counts_keep_the_peak_load_per_replica() -> None:
    profile = np.array(DAY_NIGHT) / np.mean(DAY_NIGHT)
    for n in (2, 3, 5, 8):
        counts = np.array(profile_counts(n, profile.tolist()))
        assert counts.max() == n and counts.min() >= 1
        # load per serving replica never above the static fleet's at the peak hour
        assert np.all(profile / counts <= profile.max() / n + 1e-12)
    assert profile_counts(3, [1.0] * 168) == (3,) * 168  # flat: nothing to schedule


def test_scheduled_bill_is_below_around_the_clock(growth_experiment: Experiment) -> None:
    spec = growth_experiment.spec
    counts = profile_counts(2, DAY_NIGHT)
    sched = (MonthPlan((scheduled_pool("p", "a100-80gb", counts),)),)
    static = (MonthPlan((PoolSpec("p", "a100-80gb", 2),)),)
    price = spec.cost.price("a100-80gb")
    bill = scheduled_bill_usd(PlanSpec("s", sched), spec.engine, spec.spot, spec.cost)[0]
    full = scheduled_bill_usd(PlanSpec("f", static), spec.engine, spec.spot, spec.cost)[0]
    assert full == pytest.approx(2 * HOURS_PER_MONTH * price)
    # one replica all month + the second over its busy hours (362 of the month's 730: 30 days
    # and 10 hours from Monday 00:00), each of its 31 runs from one cold start before it,
    # rounded up to the whole second (`[cost]` billing granularity, 1 s by default)
    busy = sum(1 for h in range(HOURS_PER_MONTH) if counts[h % 168] == 2)
    assert busy == 30 * 12 + 2
    assert spec.cost.granularity_s("on_demand") == 1.0
    cold_h = math.ceil(replica_cold_start_s(spec.spot, spec.engine)) / 3600
    assert bill == pytest.approx((HOURS_PER_MONTH + busy + 31 * cold_h) * price)
    assert bill < full


def _lead(**changes: object) -> PlanSearchSpec:
    return dataclasses.replace(PlanSearchSpec(), **changes)  # type: ignore[arg-type]


def test_order_dates_from_lead_times() -> None:
    s = _lead(
        lead_time_days=(("a100-80gb", 14.0),),
        start_date=datetime.date(2027, 1, 1),
    )
    fleet = [MonthPlan((PoolSpec("p", "a100-80gb", n),)) for n in (1, 1, 2, 2, 1, 3)] + [
        MonthPlan((PoolSpec("p", "l4", 1),))
    ]
    got = orders(s, fleet)
    assert [(o.month, o.before, o.after) for o in got] == [(1, 0, 1), (3, 1, 2), (6, 1, 3)]
    first, third = got[0], got[1]
    assert first.late and first.arrive_day == 14
    assert first.words(s.start_date) == (
        "month 1, 0 → 1 × a100-80gb: order now: arrives on day 14 (2027-01-15); 14-day lead time"
    )
    assert third.order_day == pytest.approx(month_start_day(3) - 14) and not third.late
    assert "order by day 46 (2027-02-16)" in third.words(s.start_date)
    assert "(" not in third.words().split(";")[0]  # no date without a start date
    # the l4 in month 7 has no lead time: no order line; a current fleet is no increase
    current = _lead(lead_time_days=(("a100-80gb", 14.0),), current_fleet=(("a100-80gb", 1),))
    assert next((o.month, o.before) for o in orders(current, fleet)) == (3, 1)


def test_fleet_cap_applies_before_the_lead_time_runs_out() -> None:
    s = _lead(lead_time_days=(("a100-80gb", 40.0),), current_fleet=(("a100-80gb", 1),))
    assert fleet_cap(s, "a100-80gb", 1) == 1
    assert fleet_cap(s, "a100-80gb", 2) == 1  # day 30.4 < 40
    assert fleet_cap(s, "a100-80gb", 3) is None
    assert fleet_cap(s, "l4", 1) is None  # no lead time
    assert fleet_cap(_lead(lead_time_days=(("a100-80gb", 40.0),)), "a100-80gb", 1) is None


def test_plan_keys_are_read_and_checked(tmp_path: Path) -> None:
    text = (
        (ROOT / "experiments" / "growth20pct.toml")
        .read_text()
        .replace('"../traces/', f'"{ROOT.as_posix()}/traces/')
    )
    good = tmp_path / "good.toml"
    good.write_text(
        text + "\n[plan]\nschedules = false\nstart_date = 2027-01-01\n"
        'lead_time_days = { "a100-80gb" = 14 }\ncurrent_fleet = { "a100-80gb" = 1 }\n'
    )
    s = load_experiment(good).spec.search
    assert s.schedules is False and s.start_date == datetime.date(2027, 1, 1)
    assert s.lead_time("a100-80gb") == 14 and s.lead_time("l4") == 0
    assert s.current_fleet == (("a100-80gb", 1),)
    bad = tmp_path / "bad.toml"
    bad.write_text(
        text + '\n[plan]\nstart_date = "soon"\nlead_time_days = { "a100-80gx" = 14 }\n'
        'current_fleet = { "a100-80gb" = 1.5 }\n'
    )
    r = CliRunner().invoke(main, ["check", str(bad)])
    assert r.exit_code == 2
    assert "plan.start_date: must be a date" in r.output
    assert "plan.lead_time_days.a100-80gx: unknown GPU" in r.output
    assert "plan.current_fleet.a100-80gb: must be an integer >= 0" in r.output


# ------------------------------------------------------------------ the search, small runs
def _small(exp: Experiment, **changes: object) -> PlanSearchSpec:
    s = dataclasses.replace(
        exp.spec.search,
        gpus=("l4",),
        max_replicas=3,
        risk=0.3,
        stages=(5, 10),
        verify_replications=10,
        autoscale=False,  # autoscaled candidates: tests/test_plan_autoscale.py
    )
    return dataclasses.replace(s, **changes)  # type: ignore[arg-type]


def test_scheduled_fleet_is_cheaper_and_chosen(day_night: Experiment) -> None:
    from sim.report.plan import recommendation_lines, schedule_table

    assert day_night.profile.array.max() / day_night.profile.array.min() == pytest.approx(4.0)
    result = plan_experiment(day_night, _small(day_night), verify=False, compare_input=False)
    (choice,) = result.choices
    assert choice.candidate.scheduled and choice.candidate.count == 2
    static = result.static_choices[1]
    assert static.candidate == Candidate("l4", 2)
    assert choice.cost_usd < static.cost_usd
    assert choice.misses.bound <= 0.3 and static.misses.bound <= 0.3
    # one static L4 was simulated and failed; the scheduled 2 was tried before static 2
    tried = [t.candidate for t in result.tried]
    assert Candidate("l4", 1) in tried
    assert tried.index(choice.candidate) < tried.index(Candidate("l4", 2))
    # the simulated bill is the search's bound (a scheduled bill is deterministic)
    pools = choice.candidate.pools()
    assert pools[0].hourly_counts() == profile_counts(2, list(day_night.profile.array))
    table = schedule_table(result)
    assert table.height == 1 and table["saving_usd"][0] == pytest.approx(
        static.cost_usd - choice.cost_usd
    )
    text = " ".join(recommendation_lines(result))
    assert "at the profile's busy hours (84 h a week), 1 otherwise" in text
    assert "a month less than 2 × l4 around the clock at the same risk target" in text
    # with schedules off, the static 2 is the answer
    off = plan_experiment(
        day_night, _small(day_night, schedules=False), verify=False, compare_input=False
    )
    assert off.choices[0].candidate == Candidate("l4", 2) and not off.static_choices
    assert off.choices[0].cost_usd == pytest.approx(static.cost_usd)


def test_current_fleet_caps_month_one(day_night: Experiment) -> None:
    from sim.report.plan import recommendation_lines

    capped = _small(
        day_night, lead_time_days=(("l4", 14.0),), current_fleet=(("l4", 1),), schedules=False
    )
    result = plan_experiment(day_night, capped, verify=False, compare_input=False)
    assert result.infeasible_months == [1]  # one L4 fails, two cannot arrive in time
    assert all(t.candidate.count <= 1 for t in result.tried)
    assert "limited to [plan] current_fleet" in recommendation_lines(result)[0]
    # without a current fleet, the two are ordered now and arrive on day 14
    free = plan_experiment(
        day_night,
        _small(day_night, lead_time_days=(("l4", 14.0),), schedules=False),
        verify=False,
        compare_input=False,
    )
    assert free.choices[0].candidate == Candidate("l4", 2)
    assert [o.words() for o in free.orders] == [
        "month 1, 0 → 2 × l4: order now: arrives on day 14; 14-day lead time"
    ]
    assert any("Order ahead, month 1" in line for line in recommendation_lines(free))


@pytest.mark.slow
def test_cli_plan_writes_a_runnable_scheduled_plan(day_night: Experiment, tmp_path: Path) -> None:
    f = Path(day_night.spec.file)
    f.write_text(
        f.read_text()
        + '\n[plan]\ngpus = ["l4"]\nmax_replicas = 2\nrisk = 0.3\nverify_replications = 10\n'
        'lead_time_days = { "l4" = 7 }\nstart_date = 2027-01-01\n'
    )
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["plan", str(f), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "does scheduling pay?" in r.output
    assert "order now: arrives on day 7 (2027-01-08)" in r.output
    page = (out / "plan.html").read_text()
    assert "Does scheduling pay?" in page and "Scheduling saves / month" in page
    doc = tomllib.loads((out / "plan.toml").read_text())
    pool = doc["fleet"]["months"][0]["pools"][0]
    assert pool["schedule"] and pool["gpu"] == "l4"
    plan = load_experiment(out / "plan.toml")
    assert plan.spec.fleet[0].pools[0].hourly_counts() == profile_counts(
        2, list(day_night.profile.array)
    )
    run = CliRunner().invoke(main, ["check", str(out / "plan.toml")])
    assert run.exit_code == 0, run.output


def test_dynamic_programme_respects_the_current_fleet(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two GPU types, each needing 2 replicas: "a" (cheaper, a 14-day lead time, 1 owned) is
    capped at 1 in month 1, so the programme (`sim.planning.constraints`) starts on "b"."""
    from sim.planning import constraints
    from sim.planning.decide import MonthChoice
    from sim.planning.prices import GpuPrice
    from sim.stats.risk import Proportion

    class Stub:
        def __init__(self, cost: float) -> None:
            self._cost = cost

        def cost(self, month: int, statistic: str = "mean") -> float:
            return self._cost

        def misses(self, month: int) -> Proportion:
            return Proportion(0, 60)

        def median(self, month: int, column: str) -> float:
            return 0.1

    def decide(ev, c, months, month, s):  # type: ignore[no-untyped-def]
        return c.count >= 2, Stub(100.0 * c.count)

    monkeypatch.setattr(constraints, "decide", decide)
    prices = {"a": GpuPrice("a", 1.0, None, "t"), "b": GpuPrice("b", 2.0, None, "t")}
    greedy = [
        MonthChoice(1, Candidate(g, 2), 0.0, 0.0, 0.0, Proportion(0, 60), 0.1, 0.01)
        for g in ("a", "b")
    ]

    def run(**changes: object) -> list[tuple[str, int]]:
        s = _lead(max_replicas=3, max_change_per_month=4, **changes)
        out, _ = constraints.practical_plan(None, s, 3, greedy, prices, 1, 0.0, lambda _: None)  # type: ignore[arg-type]
        return [(ch.candidate.gpu, ch.candidate.count) for ch in out]

    assert run() == [("a", 2)] * 3
    capped = run(lead_time_days=(("a", 14.0),), current_fleet=(("a", 1),))
    assert capped == [("b", 2), ("a", 2), ("a", 2)]

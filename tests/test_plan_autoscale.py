"""`sim plan` with autoscaled candidates (issue #16 item 5): the HPA target from Little's law at
the capacity at the SLO, the family's bounds and visiting order, the simulated bill, the risk
rule, "does autoscaling pay?", plan.toml with an autoscale table, and `[plan] autoscale`."""

from __future__ import annotations

import dataclasses
import math
import tomllib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sim.capacity import CAPACITY_REQUESTS, capacities
from sim.cli import main
from sim.config import AutoscaleSpec
from sim.config.plan import AUTOSCALE_UTILISATION, PlanSearchSpec
from sim.engine import resolve_engine
from sim.experiment import Experiment, load_experiment
from sim.planning import Plan, plan_experiment
from sim.planning.autoscale import (
    autoscale_spec,
    autoscale_target,
    concurrency_at_capacity,
    min_replicas_for,
)
from sim.planning.decide import Candidate
from sim.planning.evaluate import Evaluator, constant_plan
from sim.planning.prices import GpuPrice
from sim.planning.spreadsheet import mean_rate_per_s
from sim.planning.write import plan_document
from sim.rng import capacity_rng
from sim.units import HOURS_PER_MONTH

ROOT = Path(__file__).resolve().parents[1]
DAY_NIGHT = [4.0 if 8 <= h % 24 < 20 else 1.0 for h in range(168)]  # busy 08-20 every day


# ------------------------------------------------------------------ the target, the bounds
def test_target_is_a_fraction_of_littles_law_at_capacity(growth_experiment: Experiment) -> None:
    exp = growth_experiment
    engine = resolve_engine(exp.spec.engine, ["l4"])
    c = concurrency_at_capacity(engine, "l4", exp.lengths, exp.spec.slo)
    cap = capacities(engine, ["l4"], exp.lengths, exp.spec.slo)["l4"]
    assert c.requests_per_s == cap.requests_per_s  # measured where the capacity is
    assert c.running == pytest.approx(c.requests_per_s * c.admitted_s)  # L = λ W
    # a sequence stays admitted at least its decode steps, each at least the step's fixed
    # part (CPU overhead + the weight read): the probe's own requests
    step = engine.step_time("l4").step
    _, out = exp.lengths.sample(capacity_rng(0), CAPACITY_REQUESTS)
    assert c.admitted_s > float(np.mean(out - 1)) * (step.overhead_s + step.flat_s)
    assert 1.0 < c.running < exp.spec.engine.max_num_seqs
    assert autoscale_target(c.running, 0.5) == pytest.approx(round(0.5 * c.running, 1))
    assert autoscale_target(77.21, 0.25) == pytest.approx(19.3)  # the A100 figure, README
    assert autoscale_target(1.5, 0.25) == 1.0  # never below one sequence


def test_min_replicas_cover_the_quietest_hour() -> None:
    # the quietest hour carries 1/2.5 of the mean rate under DAY_NIGHT (mean 2.5)
    assert min_replicas_for(1.0, DAY_NIGHT, 0.3) == math.ceil(0.4 / 0.3)
    assert min_replicas_for(1.0, DAY_NIGHT, 0.5) == 1
    assert min_replicas_for(0.0, DAY_NIGHT, 0.5) == 1  # at least one
    assert min_replicas_for(3.0, [1.0] * 168, 1.0) == 3  # flat: the mean load itself
    assert min_replicas_for(1.0, DAY_NIGHT, 0.0) == 1


def test_autoscaled_candidate_bound_pools_and_label() -> None:
    scaler = autoscale_spec(2, 5, 19.3)
    c = Candidate("a100-80gb", 5, scaler=scaler, utilisation=0.25)
    assert c.autoscaled and c.moves and not c.scheduled
    assert c.kind == "autoscaled 0.25" and c.family == ("a100-80gb", 0.0, False, "autoscaled 0.25")
    price = GpuPrice("a100-80gb", 1.64, None, "test")
    # the cost bound: the minimum on demand all month + operations
    assert c.lower_cost(price, 1, 500.0) == pytest.approx(2 * HOURS_PER_MONTH * 1.64 + 500.0)
    assert c.list_cost(price, 1, 500.0) == c.lower_cost(price, 1, 500.0)
    (pool,) = c.pools()
    assert pool.count == 2 and pool.slots == 5 and pool.market == "on_demand"
    assert pool.autoscale == AutoscaleSpec(2, 5, 19.3, signal="running")
    assert "autoscaled 2–5, running 19.3 = 25% of capacity" in c.label()
    assert c.label().startswith("5× ")  # the replicas chart reads the most replicas first


# ------------------------------------------------------------------ plan.toml, [plan] key
def test_plan_toml_writes_the_autoscale_table(
    growth_experiment: Experiment, tmp_path: Path
) -> None:
    scaler = dataclasses.replace(autoscale_spec(1, 3, 2.6), provisioning_s=30.0)
    c = Candidate("a100-80gb", 3, scaler=scaler, utilisation=0.5)
    plan = constant_plan("recommended", growth_experiment.spec.months, c.pools(), False)
    text = plan_document(growth_experiment.spec.file, plan, "x-plan", tmp_path)
    table = tomllib.loads(text)["fleet"]["months"][0]["pools"][0]["autoscale"]
    # the bounds, target and signal, and only the settings that differ from the defaults
    assert table == {
        "min_replicas": 1,
        "max_replicas": 3,
        "signal": "running",
        "target": 2.6,
        "provisioning_s": 30.0,
    }
    (tmp_path / "plan.toml").write_text(text)
    back = load_experiment(tmp_path / "plan.toml")
    assert all(m.pools == c.pools() for m in back.spec.fleet)


def test_plan_autoscale_key_is_read(tmp_path: Path) -> None:
    text = (
        (ROOT / "experiments" / "growth20pct.toml")
        .read_text()
        .replace('"../traces/', f'"{ROOT.as_posix()}/traces/')
    )
    assert PlanSearchSpec().autoscale is True
    f = tmp_path / "off.toml"
    f.write_text(text + "\n[plan]\nautoscale = false\n")
    assert load_experiment(f).spec.search.autoscale is False
    f.write_text(text + '\n[plan]\nautoscale = "no"\n')
    r = CliRunner().invoke(main, ["check", str(f)])
    assert r.exit_code == 2 and "plan.autoscale" in r.output


# ------------------------------------------------------------------ the search, small runs
def _small(exp: Experiment, **changes: object) -> PlanSearchSpec:
    s = dataclasses.replace(
        exp.spec.search,
        gpus=("l4",),
        max_replicas=3,
        risk=0.3,
        stages=(5, 10),
        verify_replications=10,
        schedules=False,  # static against autoscaled only
    )
    return dataclasses.replace(s, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def searched(day_night: Experiment) -> Plan:
    return plan_experiment(day_night, _small(day_night), verify=False, compare_input=False)


def test_family_is_tried_in_bound_order(day_night: Experiment, searched: Plan) -> None:
    exp = day_night
    tried = [t.candidate for t in searched.tried]
    # (a lower target, dearer than the higher one of its ceiling, may be dropped undecided)
    auto = [c for c in tried + [t.candidate for t in searched.dropped] if c.autoscaled]
    assert {c.utilisation for c in auto} == set(AUTOSCALE_UTILISATION)
    engine = resolve_engine(exp.spec.engine, ["l4"])
    running = concurrency_at_capacity(engine, "l4", exp.lengths, exp.spec.slo).running
    cap = capacities(engine, ["l4"], exp.lengths, exp.spec.slo)["l4"].requests_per_s
    least = min_replicas_for(mean_rate_per_s(exp, 1), list(exp.profile.array), cap)
    assert least == 1
    for c in auto:
        assert c.scaler is not None and c.scaler.signal == "running"
        assert c.scaler.min_replicas == least and c.scaler.max_replicas == c.count >= 2
        assert c.scaler.target == autoscale_target(running, c.utilisation)
    # cheapest bound first, an autoscaler right after the static fleet of its ceiling (if that
    # fails, the autoscaler — never more replicas up — is skipped unsimulated)
    assert tried[0] == Candidate("l4", 1)
    assert all(tried.index(Candidate("l4", c.count)) < tried.index(c) for c in auto if c in tried)
    # the higher target of a ceiling before the lower (`visit_order`)
    for c in auto:
        for d in auto:
            if c in tried and d in tried and (c.count, c.api) == (d.count, d.api):
                assert (tried.index(c) < tried.index(d)) == (c.utilisation > d.utilisation)
    # once an autoscaled N met the risk, no larger N of its target was tried
    met = [t.candidate for t in searched.tried if t.candidate.autoscaled and t.accepted]
    assert met
    for c in auto:
        assert all(c.count <= m.count for m in met if m.family == c.family)


def test_autoscaled_cost_is_the_simulated_bill(day_night: Experiment, searched: Plan) -> None:
    best = searched.autoscaled_best[1]
    c = best.candidate
    assert c.autoscaled
    ev = Evaluator(
        dataclasses.replace(day_night, spec=day_night.spec),
        day_night.spec.slo,
        confidence=searched.settings.confidence,
    )
    result = ev.evaluate(constant_plan(c.label(), 1, c.pools(), c.api), best.misses.n)
    rows = result.month(1)
    assert best.cost_usd == pytest.approx(float(rows["cost_usd"].mean()))
    price = searched.prices["l4"]
    ops = day_night.spec.cost.ops_usd_per_month
    bound = c.lower_cost(price, 1, ops)
    # billed from its instance runs: above the minimum's month, below N all month
    assert bound < best.cost_usd < c.count * HOURS_PER_MONTH * price.on_demand_usd_per_hour + ops
    assert best.launches_per_day == pytest.approx(float(rows["scale_ups"].mean()) * 24 / 730)
    assert best.launches_per_day > 0
    share = float(rows["cold_start_delayed"].sum()) / float(rows["requests"].sum())
    assert best.cold_start_share == pytest.approx(share)


def test_choice_follows_the_risk_rule(searched: Plan) -> None:
    risk = searched.settings.risk
    (choice,) = searched.choices
    accepted = [t for t in searched.tried if t.accepted]
    assert all(t.misses.bound <= risk for t in accepted)
    assert all(t.misses.bound > risk or t.misses.n == 10 for t in searched.tried if not t.accepted)
    assert choice.misses.bound <= risk
    assert choice.cost_usd == pytest.approx(min(t.cost_usd for t in accepted))
    auto = [t for t in accepted if t.candidate.autoscaled]
    assert searched.autoscaled_best[1].cost_usd == pytest.approx(min(t.cost_usd for t in auto))
    static = [t for t in accepted if not t.candidate.moves]
    assert searched.static_best[1].cost_usd == pytest.approx(min(t.cost_usd for t in static))


def test_autoscaling_pays_is_reported(searched: Plan, tmp_path: Path) -> None:
    from sim.report.plan import autoscale_table, recommendation_lines, write_plan_report

    table = autoscale_table(searched)
    assert table.height == 1
    row = table.row(0, named=True)
    static, auto = searched.static_best[1], searched.autoscaled_best[1]
    assert row["autoscaling_saves_usd"] == pytest.approx(static.cost_usd - auto.cost_usd)
    assert row["autoscaled_misses"] == f"{auto.misses.k}/{auto.misses.n}"
    assert row["launches_per_day"] == pytest.approx(auto.launches_per_day)
    chosen = searched.choices[0].candidate
    assert row["chosen"] == ("autoscaled" if chosen.autoscaled else "static")
    text = " ".join(recommendation_lines(searched))
    assert chosen.autoscaled  # the day/night swing, static fleets only: $26 a month less
    if chosen.autoscaled:
        assert "moved by an autoscaler on sequences running per replica" in text
        assert "a month less than 2 × l4 around the clock at the same risk target" in text
        assert "the autoscaler starts about" in text
        assert searched.static_choices[1] == static
    page = write_plan_report(searched, tmp_path).read_text()
    assert "Does autoscaling pay?" in page and "Launches / day" in page
    doc = tomllib.loads((tmp_path / "plan.toml").read_text())
    pool = doc["fleet"]["months"][0]["pools"][0]
    assert ("autoscale" in pool) == chosen.autoscaled


def test_autoscale_off_removes_the_family(day_night: Experiment, searched: Plan) -> None:
    from sim.report.plan import autoscale_table

    off = plan_experiment(
        day_night, _small(day_night, autoscale=False), verify=False, compare_input=False
    )
    assert not any(t.candidate.autoscaled for t in off.tried)
    assert off.autoscaled_best == {} and autoscale_table(off).is_empty()
    assert any(t.candidate.autoscaled for t in searched.tried)  # on by default
    assert off.choices[0].candidate == Candidate("l4", 2)


@pytest.mark.slow
def test_cli_plan_writes_a_runnable_autoscaled_plan(day_night: Experiment, tmp_path: Path) -> None:
    f = tmp_path / "plan_in.toml"
    f.write_text(
        Path(day_night.spec.file).read_text()
        + '\n[plan]\ngpus = ["l4"]\nmax_replicas = 2\nrisk = 0.3\nverify_replications = 10\n'
        "schedules = false\n"
    )
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["plan", str(f), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "does autoscaling pay?" in r.output
    plan = load_experiment(out / "plan.toml")
    (pool,) = plan.spec.fleet[0].pools
    assert pool.autoscale is not None and pool.autoscale.signal == "running"
    assert pool.count == pool.autoscale.min_replicas and pool.autoscale.max_replicas == 2
    run = CliRunner().invoke(main, ["check", str(out / "plan.toml")])
    assert run.exit_code == 0, run.output


def test_an_autoscaler_that_cannot_pay_is_not_tried(day_night: Experiment) -> None:
    """At a volume one L4 carries day and night, the static 1 meets the risk; an autoscaler
    from 1 costs at least one L4 all month, as much: it is not simulated, and the table says
    why rather than "none met the risk"."""
    from sim.report.plan import autoscale_never_tried, autoscale_table

    spec = day_night.spec
    quiet = dataclasses.replace(
        spec, workload=dataclasses.replace(spec.workload, base_requests_per_day=2000.0)
    )
    exp = dataclasses.replace(day_night, spec=quiet)
    plan = plan_experiment(exp, _small(exp), verify=False, compare_input=False)
    assert plan.choices[0].candidate == Candidate("l4", 1)
    assert not any(t.candidate.autoscaled for t in plan.tried)
    table = autoscale_table(plan)
    (row,) = table.iter_rows(named=True)
    assert row["autoscaled_fleet"] is None and row["why_none"] == "cannot pay: not tried"
    assert autoscale_never_tried(table)


def test_an_autoscaler_is_not_tried_when_its_ceiling_fails(day_night: Experiment) -> None:
    """With a risk no 10-replication candidate can meet (its bound is at least 26 %), every
    static fleet fails; an autoscaler never has more replicas up than its ceiling, so none is
    simulated (each is visited after the static fleet of its ceiling)."""
    plan = plan_experiment(
        day_night, _small(day_night, risk=0.01), verify=False, compare_input=False
    )
    assert plan.choices == []
    assert any(t.candidate == Candidate("l4", 3) for t in plan.tried)
    assert not any(t.candidate.autoscaled for t in plan.tried)

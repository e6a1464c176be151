"""`sim plan` (issue #11): the Clopper–Pearson bound, the search against exhaustive
enumeration, its acceptance rule, the plan file and the CLI."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner
from polars.testing import assert_frame_equal
from scipy.stats import binom
from scipy.stats import t as student_t

from sim.cli import main
from sim.config import ApiSpec, PoolSpec, SloSpec, SpillSpec, SpotSpec
from sim.config.plan import PlanSearchSpec
from sim.experiment import Experiment, load_experiment
from sim.planning import plan_experiment
from sim.planning.decide import (
    COST_CUT_ALPHA,
    Candidate,
    Tried,
    _decide,
    cost_cannot_beat,
    cost_gap,
    dearer_than,
    futility_looks,
    gap_of_costs,
    most_misses_accepted,
)
from sim.planning.evaluate import Evaluation, Evaluator, constant_plan
from sim.planning.prices import default_price_list, price_lists, priced
from sim.planning.search import Plan
from sim.planning.write import plan_document
from sim.replication import Scope
from sim.report.plan.tables import DROPPED, autoscale_table
from sim.runner import replicate
from sim.stats import months_frame
from sim.stats.risk import Proportion, lower_bound, upper_bound

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("n", [10, 20, 59, 60, 150])
def test_upper_bound_covers_at_least_its_confidence_for_every_p(n: int) -> None:
    """Exact coverage: P_p(p <= U(K)) >= 95 % for K ~ Binomial(n, p), on a fine grid of p."""
    bounds = np.array([upper_bound(k, n) for k in range(n + 1)])
    for p in np.linspace(0.001, 0.999, 400):
        coverage = binom.pmf(np.arange(n + 1), n, p)[bounds >= p].sum()
        assert coverage >= 0.95 - 1e-9, (n, p, coverage)


def test_bounds_known_values() -> None:
    # 0 misses: 1 - 0.05^(1/n); 59 replications are the least that prove <= 5 %.
    assert upper_bound(0, 59) == pytest.approx(1 - 0.05 ** (1 / 59))
    assert upper_bound(0, 59) <= 0.05 < upper_bound(0, 58)
    assert lower_bound(0, 20) == 0.0 and upper_bound(20, 20) == 1.0
    assert lower_bound(5, 20) < 5 / 20 < upper_bound(5, 20)
    p = Proportion(3, 60)
    assert p.lo < p.estimate < p.hi and p.bound < p.hi  # one-sided bound is tighter
    assert "3 of 60" in p.words()
    with pytest.raises(ValueError):
        upper_bound(3, 2)


@pytest.fixture
def small(tiny: Callable[..., Experiment]) -> Experiment:
    """One month at 300 requests/day with a TPOT SLO an L4 cannot meet but an A100 can."""
    exp = tiny(requests_per_day=300.0)
    spec = dataclasses.replace(exp.spec, slo=SloSpec(ttft_s=1.5, tpot_s=0.03))
    return exp.with_spec(spec)


def _settings(exp: Experiment, **changes: object):  # type: ignore[no-untyped-def]
    base = dataclasses.replace(
        exp.spec.search,
        gpus=("l4", "a100-80gb"),
        max_replicas=2,
        risk=0.3,
        stages=(5, 10),
        verify_replications=10,
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.slow
def test_search_returns_the_optimum_of_exhaustive_enumeration(small: Experiment) -> None:
    s = _settings(small)
    result = plan_experiment(small, s, verify=False)
    # Brute force: every candidate decided by the same staged rule, cheapest accepted wins.
    prices = priced(result.price_list, small.spec.cost)
    ev = Evaluator(result.exp.with_spec(result.exp.spec), small.spec.slo, None, 0.95)
    best = None
    for gpu in s.gpus:
        for count in range(1, s.max_replicas + 1):
            c = Candidate(gpu, count)
            plan = constant_plan(c.label(), 1, c.pools(), False)
            spec = dataclasses.replace(
                small.spec,
                cost=dataclasses.replace(
                    small.spec.cost,
                    gpu_usd_per_hour=tuple(
                        sorted((g, p.on_demand_usd_per_hour) for g, p in prices.items())
                    ),
                ),
            )
            ev.exp = small.with_spec(spec)
            ok, r = _decide(ev, plan, 1, s)
            if ok and (best is None or r.cost(1) < best[1]):
                best = (c, r.cost(1))
    assert best is not None
    assert result.choices[0].candidate == best[0]
    assert result.choices[0].candidate.gpu == "a100-80gb"  # the cheaper L4 misses TPOT


@pytest.mark.slow
def test_search_never_accepts_above_the_risk_bound(small: Experiment) -> None:
    # risk >= 0.5 turns the capacity floor off, so the L4 is simulated and rejected.
    s = _settings(small, risk=0.6)
    result = plan_experiment(small, s, verify=True)
    assert result.tried and any(not t.accepted for t in result.tried)
    for t in result.tried:
        assert t.accepted == (t.misses.bound <= s.risk)
    for ch in result.choices:
        assert ch.misses.bound <= s.risk
    assert result.verification is not None and result.verification.replications == 10
    # With a risk below 0.5, a GPU whose capacity at the SLO is below the mean load (the L4
    # cannot meet a 30 ms TPOT at any rate) is skipped without a single replication.
    pruned = plan_experiment(small, _settings(small, risk=0.26), verify=False)
    assert {t.candidate.gpu for t in pruned.tried} == {"a100-80gb"}


def test_a_month_decided_alone_has_the_bits_of_the_whole_horizon(
    tiny: Callable[..., Experiment], api_spec: Callable[..., ApiSpec]
) -> None:
    """The search decides a candidate month by month, simulating that month only: its rows
    must be those a whole replication gives it (growth, reclaims, windows, API latencies),
    whatever order months and replication counts are asked in."""
    exp = tiny(requests_per_day=20000.0, months=3)
    spec = dataclasses.replace(
        exp.spec,
        horizon=dataclasses.replace(exp.spec.horizon, mode="sampled"),
        api=api_spec(spill=SpillSpec(max_wait_s=0.01)),
        spot=SpotSpec("aws-advisor-gt20pct", preemptions_per_instance_hour=0.5),
    )
    exp = exp.with_spec(spec)
    pools = (
        PoolSpec("base", "a100-80gb", 1),
        PoolSpec("spot", "a100-80gb", 1, "spot"),
    )
    plan = constant_plan("od+spot+api", 3, pools, True)
    whole = Evaluator(exp, spec.slo).evaluate(plan, 3)
    ev = Evaluator(exp, spec.slo)
    assert ev.evaluate(plan, 2, month=3).replications_of(3) == 2
    ev.evaluate(plan, 3, month=1)
    part = ev.evaluate(plan, 3, month=3)
    assert (part.replications_of(1), part.replications_of(2), part.replications) == (3, 0, 0)
    both = ev.evaluate(plan, 3)  # month 2 only is missing
    assert ev.months_run == 9 and ev.replications_run == 2 + 3 + 1 + 3
    assert whole.months["api_requests"].sum() > 0 and whole.months["spot_preemptions"].sum() > 0
    assert_frame_equal(both.months, whole.months, check_exact=True)
    assert ev.evaluate(plan, 3) is both  # nothing left to run
    # the search skips the standard errors' bootstrap: NaN there, every other column as in a run
    one = dataclasses.replace(spec, plans=(plan,), fleet=plan.fleet)
    full = months_frame([r for o in replicate(exp.with_spec(one), range(3)) for r in o.months])
    se = [c for c in full.columns if c.endswith("_se") or c.endswith("_se_s")]
    assert se and full[se].null_count().sum_horizontal().item() == 0
    assert all(both.months[c].is_nan().all() for c in se)
    same = [c for c in full.columns if c not in se and c != "token_utilisation"]  # (added later)
    assert_frame_equal(both.months.select(same), full.select(same), check_exact=True)


def test_a_full_horizon_is_simulated_once_for_every_month(
    tiny: Callable[..., Experiment],
) -> None:
    """A full horizon carries queues over month boundaries: deciding month 1 simulates (and
    keeps) every month, so deciding month 2 next runs nothing."""
    exp = tiny(requests_per_day=2000.0, months=2)
    spec = dataclasses.replace(exp.spec, horizon=dataclasses.replace(exp.spec.horizon, mode="full"))
    exp = exp.with_spec(spec)
    assert exp.horizon()[0] == "full"
    plan = constant_plan("one", 2, (PoolSpec("base", "a100-80gb", 1),), False)
    ev = Evaluator(exp, spec.slo)
    first = ev.evaluate(plan, 2, month=1)
    assert (first.replications_of(1), first.replications_of(2)) == (2, 2)
    assert ev.evaluate(plan, 2, month=2) is first
    assert (ev.replications_run, ev.months_run) == (2, 4)


def test_month_subsets_on_the_process_pool_equal_one_process(
    tiny: Callable[..., Experiment],
) -> None:
    """`replicate(scope=...)` sends the scope to the workers: two workers give the rows one
    process gives."""
    exp = tiny(requests_per_day=20000.0, months=3)
    spec = dataclasses.replace(
        exp.spec, horizon=dataclasses.replace(exp.spec.horizon, mode="sampled")
    )
    exp = exp.with_spec(spec)
    scope = Scope(frozenset({2}), standard_errors=False)
    one, two = (
        months_frame([r for o in replicate(exp, range(2), jobs=j, scope=scope) for r in o.months])
        for j in (1, 2)
    )
    assert one["month"].unique().to_list() == [2]
    assert_frame_equal(one, two, check_exact=True)


def test_evaluation_stops_at_the_miss_no_stage_can_accept(
    tiny: Callable[..., Experiment],
) -> None:
    """`evaluate(..., most_misses=m)` ends at the replication of the (m + 1)-th miss, in
    replication order: the prefix a full evaluation shows, on one worker or two; a later call
    that needs more replications simulates the rest, the same bits."""
    exp = tiny(requests_per_day=20000.0, months=1)
    spec = dataclasses.replace(
        exp.spec, horizon=dataclasses.replace(exp.spec.horizon, mode="sampled")
    )
    plan = constant_plan("one", 1, (PoolSpec("base", "a100-80gb", 1),), False)
    n = 10
    probe = Evaluator(exp.with_spec(spec), spec.slo).evaluate(plan, n, month=1).month(1)
    # an SLO half the replications miss
    ttft_s = float(np.median(probe["ttft_p95_s"].to_numpy()))
    slo = dataclasses.replace(spec.slo, ttft_s=ttft_s)
    exp = exp.with_spec(dataclasses.replace(spec, slo=slo))
    full = Evaluator(exp, slo).evaluate(plan, n, month=1).month(1)
    missed = (full["ttft_p95_s"] > ttft_s).to_list()
    third = [i for i, m in enumerate(missed) if m][2]
    assert 2 <= third < n - 1
    for jobs in (1, 2):
        ev = Evaluator(exp, slo, jobs=jobs)
        stopped = ev.evaluate(plan, n, month=1, most_misses=2)
        assert stopped.replications_of(1) == third + 1
        assert stopped.misses(1).k == 3
        assert ev.replications_run == third + 1
        assert_frame_equal(stopped.month(1), full.head(third + 1), check_exact=True)
        # asked again with the same limit: nothing more runs
        assert ev.evaluate(plan, n, month=1, most_misses=2) is stopped
        rest = ev.evaluate(plan, n, month=1)
        assert_frame_equal(rest.month(1), full, check_exact=True)


def test_price_lists_name_one_provider_and_list_overrides(growth_experiment: Experiment) -> None:
    lists = price_lists()
    assert {"aws", "runpod"} <= set(lists)
    assert default_price_list(("a100-80gb",)) in lists
    # growth20pct sets the A100 at RunPod's $1.64: an override on the AWS list only
    assert not [
        p.override for p in priced("runpod", growth_experiment.spec.cost).values() if p.override
    ]
    aws = priced("aws", growth_experiment.spec.cost)
    assert aws["a100-80gb"].on_demand_usd_per_hour == 1.64 and aws["a100-80gb"].override


@pytest.mark.slow
def test_cli_plan_writes_a_runnable_plan(tmp_path: Path) -> None:
    exp_file = tmp_path / "small.toml"
    text = (ROOT / "experiments" / "growth20pct.toml").read_text()
    text = text.replace("base_requests_per_day = 5000", "base_requests_per_day = 300")
    text = text.replace("months = 6", "months = 2")
    text = text.replace('"../traces/', f'"{ROOT.as_posix()}/traces/')
    head, _, rest = text.partition("[[fleet.months]]")
    fleet = '[[fleet.months]]\npools = [{ name = "base", gpu = "a100-80gb", count = 1 }]\n' * 2
    text = head + fleet + rest[rest.index("[cost]") :]
    text += '\n[plan]\ngpus = ["a100-80gb"]\nmax_replicas = 2\nverify_replications = 10\n'
    exp_file.write_text(text)
    out = tmp_path / "out"
    r = CliRunner().invoke(main, ["plan", str(exp_file), "--out", str(out), "--quiet"])
    assert r.exit_code == 0, r.output
    assert "Months 1–2: 1 × a100-80gb, on-demand" in r.output
    assert (out / "plan.html").read_text().count("Recommendation") >= 1
    check = CliRunner().invoke(main, ["check", str(out / "plan.toml")])
    assert check.exit_code == 0, check.output
    plan = load_experiment(out / "plan.toml")
    assert [m.replicas for m in plan.spec.fleet] == [1, 1]


def test_plan_table_errors_are_located(tmp_path: Path) -> None:
    f = tmp_path / "x.toml"
    text = (
        (ROOT / "experiments" / "growth20pct.toml")
        .read_text()
        .replace('"../traces/', f'"{ROOT.as_posix()}/traces/')
    )
    f.write_text(
        text + '\n[plan]\ngpus = ["a100-80gx"]\nrisk = 5\nspot_shares = [0.5]\ncost_cut = "t"\n'
    )
    r = CliRunner().invoke(main, ["check", str(f)])
    assert r.exit_code == 2
    assert "plan.gpus[0]: unknown GPU" in r.output
    assert "plan.risk: must be in (0, 1)" in r.output
    assert "plan.spot_shares: needs a [spot] section" in r.output
    assert "plan.cost_cut" in r.output and "statistical" in r.output


@pytest.mark.slow
def test_sensitivity_moves_risk_the_right_way(tiny: Callable[..., Experiment]) -> None:
    """Slower step times and more growth can only add misses under common random numbers;
    a factor's rows share the baseline's replications."""
    from sim.planning.sensitivity import sensitivity, sensitivity_table

    exp = tiny(requests_per_day=3000.0, months=2, slow=1.0)
    spec = dataclasses.replace(exp.spec, slo=SloSpec(ttft_s=0.5, tpot_s=0.05))
    exp = exp.with_spec(spec)
    plan = exp.spec.all_plans()[0]
    baseline, rows = sensitivity(exp, plan, replications=10)
    by = {(r.factor, r.end): r for r in rows}
    assert {"growth", "output-length tail", "step-time calibration"} <= {r.factor for r in rows}
    assert by[("step-time calibration", "high")].p_miss.k >= baseline.p_miss.k
    assert by[("step-time calibration", "low")].p_miss.k <= baseline.p_miss.k
    assert by[("growth", "high")].cost_usd == pytest.approx(baseline.cost_usd)  # same fleet
    table = sensitivity_table(baseline, rows)
    assert table.height == len(rows) and set(table["end"]) == {"low", "high"}


class _Stub:
    """Stands in for an Evaluation in the constraint tests (cost from the candidate)."""

    def __init__(self, cost: float) -> None:
        self._cost = cost

    def cost(self, month: int, statistic: str = "mean") -> float:
        return self._cost

    def misses(self, month: int) -> Proportion:
        return Proportion(0, 60)

    def median(self, month: int, column: str) -> float:
        return 0.1


def _fake_decide(needed: dict[tuple[int, str], int]):  # type: ignore[no-untyped-def]
    def decide(ev, c, months, month, s):  # type: ignore[no-untyped-def]
        need = needed.get((month, c.gpu))
        return need is not None and c.count >= need, _Stub(100.0 * c.count)

    return decide


def _practical(monkeypatch: pytest.MonkeyPatch, needed, **settings):  # type: ignore[no-untyped-def]
    from sim.planning import constraints
    from sim.planning.prices import GpuPrice

    monkeypatch.setattr(constraints, "decide", _fake_decide(needed))
    s = dataclasses.replace(_plan_spec(), max_replicas=5, **settings)
    prices = {"a": GpuPrice("a", 1.0, None, "t"), "b": GpuPrice("b", 2.0, None, "t")}
    greedy = []  # the GPU types the search chose
    for gpu in sorted({g for _, g in needed}):
        greedy.append(month_choice_stub(gpu))
    out, _ = constraints.practical_plan(None, s, 3, greedy, prices, 1, 0.0, lambda _: None)  # type: ignore[arg-type]
    return [(ch.candidate.gpu, ch.candidate.count) for ch in out]


def _plan_spec():  # type: ignore[no-untyped-def]
    from sim.config.plan import PlanSearchSpec

    return PlanSearchSpec()


def month_choice_stub(gpu: str):  # type: ignore[no-untyped-def]
    from sim.planning.decide import MonthChoice

    return MonthChoice(1, Candidate(gpu, 1), 0.0, 0.0, 0.0, Proportion(0, 60), 0.1, 0.01)


def test_max_change_per_month_smooths_the_counts(monkeypatch: pytest.MonkeyPatch) -> None:
    needed = {(1, "a"): 1, (2, "a"): 3, (3, "a"): 1}
    assert _practical(monkeypatch, needed) == [("a", 1), ("a", 3), ("a", 1)]
    assert _practical(monkeypatch, needed, max_change_per_month=1) == [
        ("a", 2),
        ("a", 3),
        ("a", 2),
    ]


def test_min_months_per_gpu_type_keeps_a_type(monkeypatch: pytest.MonkeyPatch) -> None:
    # "a" is cheaper but cannot serve month 2: alone, the plan switches a → b → a.
    needed = {(1, "a"): 1, (3, "a"): 1, (1, "b"): 1, (2, "b"): 1, (3, "b"): 1}
    assert _practical(monkeypatch, needed) == [("a", 1), ("b", 1), ("a", 1)]
    assert _practical(monkeypatch, needed, min_months_per_gpu_type=2) == [
        ("b", 1),
        ("b", 1),
        ("b", 1),
    ]


def test_spreadsheet_plan_sizes_by_average_load(growth_experiment: Experiment) -> None:
    """⌈mean rate ÷ capacity⌉ per month: growth20pct's ~0.06–0.15 requests/s fit one A100."""
    from sim.planning.spreadsheet import spreadsheet_plan

    plan, rate = spreadsheet_plan(growth_experiment, "a100-80gb")
    assert rate > 1.0 and not plan.api
    assert [m.replicas for m in plan.fleet] == [1] * growth_experiment.spec.months
    heavy = growth_experiment.with_spec(
        dataclasses.replace(
            growth_experiment.spec,
            workload=dataclasses.replace(
                growth_experiment.spec.workload, base_requests_per_day=2_000_000.0
            ),
        )
    )
    counts = [m.replicas for m in spreadsheet_plan(heavy, "a100-80gb")[0].fleet]
    assert counts == sorted(counts) and counts[0] >= 2  # 23 req/s, growing 20 % a month


def test_futility_looks_and_the_misses_a_stage_accepts() -> None:
    assert futility_looks((20, 60, 150)) == [4, 10, 20, 40, 60, 104, 150]
    assert futility_looks((5, 10)) == [4, 5, 6, 10]
    assert [most_misses_accepted(n, 0.05, 0.95) for n in (20, 58, 59, 150)] == [-1, -1, 0, 2]
    for n in (5, 20, 60, 150, 400):
        for risk in (0.01, 0.05, 0.3):
            k = most_misses_accepted(n, risk, 0.95)
            assert k < 0 or upper_bound(k, n) <= risk
            assert k == n or upper_bound(k + 1, n) > risk


def _same_choices(
    cut: Plan, full: Plan
) -> tuple[dict[tuple[int, Candidate], Tried], set[tuple[int, Candidate]]]:
    """Assert that a search with a cut makes `full`'s choices at its costs and decides what
    it decides the same way; `full`'s decisions and those the cut left out."""
    assert [c.candidate for c in cut.choices] == [c.candidate for c in full.choices]
    assert [c.cost_usd for c in cut.choices] == [c.cost_usd for c in full.choices]
    decided = {(t.month, t.candidate): t for t in full.tried}
    assert all(decided[(t.month, t.candidate)].accepted == t.accepted for t in cut.tried)
    return decided, set(decided) - {(t.month, t.candidate) for t in cut.tried}


def _l4_search(exp: Experiment, **changes: object) -> PlanSearchSpec:
    """The day-night searches' settings: L4s only, 30 % risk, stages 5/10/20, no API."""
    base = dataclasses.replace(
        exp.spec.search, gpus=("l4",), risk=0.3, stages=(5, 10, 20), api_options=(False,)
    )
    return dataclasses.replace(base, **changes)


@pytest.mark.slow
def test_futility_changes_no_decision(
    day_night: Experiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A candidate rejected as soon as it has more misses than the last stage accepts is the
    one the staged rule rejects later: the same decisions and choices, fewer replications
    (here one L4 through the day's peak is rejected before the second stage)."""
    import sim.planning.decide as decide

    s = _l4_search(day_night, max_replicas=4, schedules=False, autoscale_utilisation=(0.5,))
    early = plan_experiment(day_night, s, verify=False, compare_input=False)
    monkeypatch.setattr(decide, "most_misses_accepted", lambda n, *_: n)  # never futile
    late = plan_experiment(day_night, s, verify=False, compare_input=False)
    assert [c.candidate for c in early.choices] == [c.candidate for c in late.choices]
    assert [c.cost_usd for c in early.choices] == [c.cost_usd for c in late.choices]
    decided = {(t.month, t.candidate): t for t in late.tried}
    assert {(t.month, t.candidate) for t in early.tried} == set(decided)
    shorter = 0
    for t in early.tried:
        other = decided[(t.month, t.candidate)]
        assert t.accepted == other.accepted
        assert t.misses.n <= other.misses.n
        shorter += t.misses.n < other.misses.n
    assert shorter > 0


@pytest.mark.slow
def test_spot_bill_cut_changes_no_choice(
    day_night: Experiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A spot fleet whose bill without the API (its reclaims' spot hours + on-demand +
    operations, no simulation) already reaches the month's best in every stage's mean is
    skipped unsimulated; with the bills read as $0 the same choice is made, and whatever was
    skipped is a spot fleet the staged rule did not choose."""
    import sim.planning.monthly as monthly

    exp = day_night.with_spec(
        dataclasses.replace(
            day_night.spec,
            spot=SpotSpec("aws-advisor-gt20pct", preemptions_per_instance_hour=0.5),
        )
    )
    s = dataclasses.replace(
        exp.spec.search,
        price_list="aws",
        gpus=("a10g",),
        max_replicas=8,
        risk=0.3,
        stages=(5, 10, 20),
        api_options=(False,),
        spot_shares=(0.0, 1.0),
        schedules=False,
        autoscale=False,
    )
    cut = plan_experiment(exp, s, verify=False, compare_input=False)
    monkeypatch.setattr(monthly, "costs_before_api", lambda e, p, k: (0.0,) * e.spec.months)
    full = plan_experiment(exp, s, verify=False, compare_input=False)
    decided, skipped = _same_choices(cut, full)
    assert skipped and all(c.spot == c.count for _, c in skipped)
    best = {ch.month: ch.cost_usd for ch in full.choices}
    for key in skipped:
        t = decided[key]
        assert not t.accepted or t.cost_usd >= best[t.month]


def test_cost_cut_is_the_mean_bound() -> None:
    """k = 20 replications at $3,000 and a floor of $800: accepted at 150 the mean is at least
    (20 · 3000 + 130 · 800) / 150 = $1,093.33."""
    rows = pl.DataFrame({"month": [1] * 20, "replication": list(range(20)), "cost_usd": 3000.0})
    result = Evaluation(constant_plan("x", 1, (), True), rows, SloSpec(1.0, 0.1), None, 0.95)

    def cut(n_last: int, best_usd: float, month: int = 1) -> bool:
        return cost_cannot_beat(result, n_last, month=month, floor_usd=800.0, best_usd=best_usd)

    assert cut(150, 1093.0) and not cut(150, 1094.0)
    assert cut(60, 1094.0)  # (60000 + 40 · 800) / 60 = 1533
    assert not cut(150, 0.0, month=2)  # nothing run for month 2


def test_statistical_cost_cut_is_a_t_lower_bound() -> None:
    """The gap of 12 replications' costs to a best of $1,000: their mean minus $1,000, and that
    minus the 99.9 % one-sided t quantile (11 degrees of freedom) × the standard error; none
    below 4 replications or without a best; a constant cost is its own bound."""
    costs = np.array([1100.0, 1180, 1050, 1240, 1130, 1090, 1210, 1160, 1070, 1120, 1190, 1150])
    rows = pl.DataFrame({"month": 1, "replication": list(range(12)), "cost_usd": costs})
    result = Evaluation(constant_plan("x", 1, (), True), rows, SloSpec(1.0, 0.1), None, 0.95)
    gap = cost_gap(result, 1, 1000.0)
    assert gap is not None and gap.replications == 12
    se = costs.std(ddof=1) / np.sqrt(12)
    assert gap.mean_usd == pytest.approx(costs.mean() - 1000.0, abs=1e-9)
    lower = costs.mean() - 1000.0 - student_t.ppf(1 - COST_CUT_ALPHA, 11) * se
    assert gap.lower_usd == pytest.approx(lower, rel=1e-9)
    assert gap.dearer and dearer_than(result, 150, month=1, best_usd=1000.0)
    high = costs.mean() - student_t.ppf(1 - COST_CUT_ALPHA, 11) * se  # just above the bound
    assert not dearer_than(result, 150, month=1, best_usd=high + 0.01)
    assert cost_gap(result, 2, 1000.0) is None  # nothing run for month 2
    assert gap_of_costs(costs[:3], 0.0) is None and gap_of_costs(costs[:4], 0.0) is not None
    assert gap_of_costs(costs, float("inf")) is None
    flat = gap_of_costs(np.full(4, 1200.0), 1100.0)
    assert flat is not None and flat.lower_usd == flat.mean_usd == 100.0


def test_statistical_cost_cut_error_rates() -> None:
    """How often the cut drops a candidate whose expected cost equals the best's, looked at
    as the search looks (4, 10, 20, 40, 60, 104, 150 replications): normal costs at most the
    Bonferroni 7 × 0.1 % (with Monte Carlo slack), right-skewed costs (lognormal: traffic
    growth, API bills) less, and costs with rare deep dips (5 % of replications 20 × below the
    usual, the failure `COST_CUT_ALPHA` names) far more: the cut's assumption, measured."""
    rng = np.random.default_rng(7)
    looks = futility_looks((20, 60, 150))
    assert looks == [4, 10, 20, 40, 60, 104, 150]

    def rate(draw: Callable[[int], np.ndarray], trials: int = 10_000) -> float:
        drops = 0
        for _ in range(trials):
            costs = draw(150)
            drops += any(g.dearer for n in looks if (g := gap_of_costs(costs[:n], 0.0)))
        return drops / trials

    normal = rate(lambda n: 150.0 * rng.standard_normal(n))
    skewed = rate(lambda n: rng.lognormal(0.0, 0.5, n) - np.exp(0.125))
    dips = rate(lambda n: np.where(rng.random(n) < 0.05, -19.0, 1.0), 2_000)
    assert 0.0 < normal <= len(looks) * COST_CUT_ALPHA + 0.002
    assert skewed < normal
    assert dips > 0.3


def _spilling_l4s(
    day_night: Experiment, api_spec: Callable[..., ApiSpec], times_price: float
) -> tuple[Experiment, PlanSearchSpec]:
    """`day_night` spilling to the test API at `times_price` × its prices (spill when the
    queued prefill would take > 0.5 s), searched over 1–4 L4s, API on/off, autoscaled at 0.5."""
    api = api_spec(
        input_usd_per_million=1.0 * times_price,
        output_usd_per_million=5.0 * times_price,
        spill=SpillSpec(max_wait_s=0.5),
    )
    exp = day_night.with_spec(dataclasses.replace(day_night.spec, api=api))
    s = dataclasses.replace(
        exp.spec.search,
        gpus=("l4",),
        max_replicas=4,
        risk=0.3,
        stages=(5, 10, 20),
        api_options=(False, True),
        schedules=False,
        autoscale_utilisation=(0.5,),
    )
    return exp, s


@pytest.mark.slow
def test_cost_cut_changes_no_choice(
    day_night: Experiment, api_spec: Callable[..., ApiSpec], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Candidates dropped because their cost so far cannot beat the month's best (API spill
    at 100x the test API's prices) leave the search's choice as it was without the cut (the
    exact cut, `cost_cut = "exact"`)."""
    import sim.planning.monthly as monthly

    exp, s = _spilling_l4s(day_night, api_spec, 100.0)
    s = dataclasses.replace(s, cost_cut="exact")
    said: list[str] = []
    cut = plan_experiment(exp, s, verify=False, compare_input=False, progress=said.append)
    dropped = [line for line in said if "cannot beat" in line]
    assert dropped and all("+ API" in line for line in dropped)
    assert len(cut.dropped) == len(dropped)
    assert all(any(t.candidate.label() + " " in line for line in dropped) for t in cut.dropped)
    # a month whose autoscalers were all dropped says so (not "not tried")
    only_dropped = dataclasses.replace(
        cut,
        autoscaled_best={},
        tried=[t for t in cut.tried if not t.candidate.autoscaled],
    )
    assert autoscale_table(only_dropped)["why_none"].to_list() == [DROPPED]
    # the cut is a bound on the mean: with the p95 objective it is off
    p95 = plan_experiment(
        exp,
        dataclasses.replace(s, objective="p95"),
        verify=False,
        compare_input=False,
        progress=said.append,
    )
    assert not p95.dropped
    monkeypatch.setattr(monthly, "cost_cannot_beat", lambda *_, **__: False)
    full = plan_experiment(exp, s, verify=False, compare_input=False)
    assert not full.dropped
    assert [c.candidate for c in cut.choices] == [c.candidate for c in full.choices]
    assert [c.cost_usd for c in cut.choices] == [c.cost_usd for c in full.choices]
    # what was dropped was never recorded as decided
    assert not {t.candidate for t in cut.dropped} & {t.candidate for t in cut.tried}


@pytest.mark.slow
def test_statistical_cost_cut_keeps_the_choice_on_fewer_replications(
    day_night: Experiment, api_spec: Callable[..., ApiSpec]
) -> None:
    """With API spill at 5x the test API's prices, the statistical cut (the default) drops
    the API candidates and the autoscaler spilling to the API, each clearly dearer than the
    month's best, at least as early as the exact cut and some earlier (today 5 and 4
    replications against 6 and 5; with the L4's roofline steps before the layer floor was
    refitted, 16.6 -> 11.6 us, the exact cut accepted the autoscaler at $1,893 after 10): the
    same choice at the same cost, on fewer replications."""
    exp, s = _spilling_l4s(day_night, api_spec, 5.0)
    assert s.cost_cut == "statistical"
    said: list[str] = []
    cut = plan_experiment(exp, s, verify=False, compare_input=False, progress=said.append)
    exact = plan_experiment(
        exp, dataclasses.replace(s, cost_cut="exact"), verify=False, compare_input=False
    )
    assert [c.candidate for c in cut.choices] == [c.candidate for c in exact.choices]
    assert [c.cost_usd for c in cut.choices] == [c.cost_usd for c in exact.choices]
    assert cut.replications < exact.replications
    reasons = [line for line in said if "lower bound" in line]  # the statistical cut's lines
    assert reasons and len(reasons) == len(cut.dropped)
    assert {t.candidate for t in cut.dropped} >= {t.candidate for t in exact.dropped}
    after = {t.candidate: t.misses.n for t in exact.dropped}
    seen = [(t.misses.n, after[t.candidate]) for t in cut.dropped if t.candidate in after]
    assert all(n <= m for n, m in seen) and any(n < m for n, m in seen)
    assert not {t.candidate for t in cut.dropped} & {t.candidate for t in cut.tried}
    best = cut.choices[0].cost_usd
    assert all(t.cost_usd > best for t in cut.dropped)  # each looked dearer than the best


def test_plan_searches_a_calibration_files_gpu(tmp_path: Path) -> None:
    """A GPU type defined in the calibration file (`[[gpu]]`) is a candidate at its own price,
    said to be on no provider's list, and the written plan names the file so it runs."""
    cal = tmp_path / "cal" / "mine.toml"
    cal.parent.mkdir()
    cal.write_text(
        '[[gpu]]\nname = "my-l40s-like"\nmemory_gb = 48.0\nmemory_bandwidth_gb_per_s = 864.0\n'
        'fp16_dense_tflops = 362.05\nprice_usd_per_hour = 0.3\nsource = "test: an L40S at $0.3"\n'
    )
    exp = load_experiment(ROOT / "experiments" / "growth20pct.toml", cal)
    exp = exp.with_spec(dataclasses.replace(exp.spec, months=1, fleet=exp.spec.fleet[:1]))
    s = _settings(exp, gpus=(), max_replicas=1, stages=(5, 10), risk=0.3)
    result = plan_experiment(exp, s, verify=False, compare_input=False)
    assert "my-l40s-like" in {t.candidate.gpu for t in result.tried}
    assert result.prices["my-l40s-like"].on_demand_usd_per_hour == 0.3
    assert any("my-l40s-like: $0.3/h" in o and "calibration file" in o for o in result.overrides)
    assert result.choices[0].candidate.gpu == "my-l40s-like"  # the cheapest GPU that fits
    out = tmp_path / "report"
    out.mkdir()
    six = constant_plan("x", 6, result.recommended.fleet[0].pools, False)  # the file's months
    text = plan_document(exp.spec.file, six, "x", out, None, 1, str(cal))
    assert 'calibration = "../cal/mine.toml"' in text
    written = out / "plan.toml"
    written.write_text(text.replace('"../traces/', f'"{ROOT.as_posix()}/traces/'))
    assert load_experiment(written).spec.fleet[0].pools[0].gpu == "my-l40s-like"


def test_failures_carry_to_the_next_month_for_fixed_fleets_only() -> None:
    """Month 1's failures start month 2: a static on-demand N marks its scheduled and
    autoscaled variants up to N (as inside a month); a spot family carries alone; an
    autoscaled family does not carry (its minimum rises with the load); other months and
    larger counts already failed are left as they are."""
    from sim.planning.monthly import carry_failures

    kinds = ["scheduled", "autoscaled 0.5"]
    failed = {
        (1, ("l4", 0.0, False, "static")): 3,
        (1, ("l4", 0.5, True, "static")): 4,
        (1, ("a10g", 0.0, False, "autoscaled 0.5")): 5,
        (1, ("a10g", 0.0, False, "scheduled")): 2,
        (2, ("l4", 0.0, False, "scheduled")): 6,
        (3, ("h100-80gb", 0.0, False, "static")): 1,
    }
    carry_failures(failed, 2, kinds)
    assert failed == {
        (1, ("l4", 0.0, False, "static")): 3,
        (1, ("l4", 0.5, True, "static")): 4,
        (1, ("a10g", 0.0, False, "autoscaled 0.5")): 5,
        (1, ("a10g", 0.0, False, "scheduled")): 2,
        (2, ("l4", 0.0, False, "static")): 3,
        (2, ("l4", 0.0, False, "scheduled")): 6,  # a larger failure of month 2 stays
        (2, ("l4", 0.0, False, "autoscaled 0.5")): 3,
        (2, ("l4", 0.5, True, "static")): 4,
        (2, ("a10g", 0.0, False, "scheduled")): 2,
        (3, ("h100-80gb", 0.0, False, "static")): 1,
    }


def test_failures_carry_only_where_the_load_rises(growth_experiment: Experiment) -> None:
    """+20 %/month with sd_log 0.1 (median factor 1.19): carried; no growth with any spread
    (median below 1), or a decline: not; a replayed trace (months of other shapes): not."""
    from sim.planning.monthly import failures_carry

    def with_growth(mean: float, sd: float) -> Experiment:
        w = growth_experiment.spec.workload
        g = dataclasses.replace(w.growth, mean_monthly=mean, sd_log=sd)
        spec = dataclasses.replace(
            growth_experiment.spec, workload=dataclasses.replace(w, growth=g)
        )
        return growth_experiment.with_spec(spec)

    assert failures_carry(with_growth(0.2, 0.1))
    assert failures_carry(with_growth(0.0, 0.0))
    assert not failures_carry(with_growth(0.0, 0.1))
    assert not failures_carry(with_growth(-0.1, 0.0))
    assert not failures_carry(load_experiment(ROOT / "experiments" / "azure_conv_replay.toml"))


@pytest.mark.slow
def test_carried_failures_change_no_choice(
    day_night: Experiment, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three months of growing traffic: the search that starts each month from the last
    month's failures makes the same choices at the same costs as one that decides every
    candidate afresh, on fewer decisions; whatever it skipped, the full search rejected."""
    import sim.planning.monthly as monthly

    spec = day_night.spec
    exp = day_night.with_spec(dataclasses.replace(spec, months=3, fleet=spec.fleet * 3, plans=()))
    s = _l4_search(exp, max_replicas=5, autoscale=False)
    said: list[str] = []
    carried = plan_experiment(exp, s, verify=False, compare_input=False, progress=said.append)
    monkeypatch.setattr(monthly, "failures_carry", lambda _: False)
    fresh = plan_experiment(exp, s, verify=False, compare_input=False)
    decided, skipped = _same_choices(carried, fresh)
    assert skipped
    assert all(month > 1 and not decided[(month, c)].accepted for month, c in skipped)
    told = [line for line in said if "fleets not tried" in line]
    assert sum(int(line.split(": ")[1].split()[0]) for line in told) >= len(skipped)

"""`sim plan` over tensor parallelism (issue #11): `[plan] tp` read and checked, every degree
searched on an engine resolved at it, a tp-way replica billed as tp GPUs, the cheapest whole
plan chosen across degrees, a model too big for one GPU offered at tp 2 only, a degree where
no GPU type fits skipped with a line, plan.toml's `[engine] tp`, and the evaluator's cache
keyed by the engine."""

from __future__ import annotations

import dataclasses
import tomllib
from collections.abc import Callable
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from sim.cli import main
from sim.cli.plan import _gpus_option, _tp_option
from sim.config import load_experiment_spec
from sim.config.plan import PlanSearchSpec
from sim.experiment import Experiment, load_experiment
from sim.planning import Plan, plan_experiment
from sim.planning.decide import Candidate
from sim.planning.evaluate import Evaluator, constant_plan
from sim.planning.prices import GpuPrice
from sim.planning.search import experiment_at
from sim.report.plan import recommendation_lines, tp_table, write_plan_report
from sim.units import HOURS_PER_MONTH

ROOT = Path(__file__).resolve().parents[1]
# runpod's list (sim/data/gpus.toml): the one priced for the tiny experiment's A100
L40S_USD_PER_HOUR = 0.86


def _file(tmp_path: Path, plan_table: str, model: str = "llama-3-8b") -> Path:
    """growth20pct cut to one month at 300 requests/day on `model`, with a `[plan]` table."""
    text = (ROOT / "experiments" / "growth20pct.toml").read_text()
    text = text.replace("base_requests_per_day = 5000", "base_requests_per_day = 300")
    text = text.replace("months = 6", "months = 1")
    text = text.replace('model = "llama-3-8b"', f'model = "{model}"')
    text = text.replace('"../traces/', f'"{ROOT.as_posix()}/traces/')
    head, _, rest = text.partition("[[fleet.months]]")
    fleet = '[[fleet.months]]\npools = [{ name = "base", gpu = "a100-80gb", count = 1 }]\n'
    f = tmp_path / "small.toml"
    f.write_text(head + fleet + rest[rest.index("[cost]") :] + "\n[plan]\n" + plan_table)
    return f


def _settings(exp: Experiment, **changes: object) -> PlanSearchSpec:
    """A small search: two replicas at most, two short stages, static fleets only."""
    base = dataclasses.replace(
        exp.spec.search,
        max_replicas=2,
        risk=0.3,
        stages=(5, 10),
        verify_replications=10,
        schedules=False,
        autoscale=False,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


# ------------------------------------------------------------------ the key and the option
def test_plan_tp_is_read_sorted_and_defaults_to_the_experiments_own(tmp_path: Path) -> None:
    assert load_experiment_spec(_file(tmp_path, "tp = [4, 1, 2, 1]\n")).search.tp == (1, 2, 4)
    assert load_experiment_spec(_file(tmp_path, "tp = 2\n")).search.tp == (2,)
    assert load_experiment_spec(_file(tmp_path, "")).search.tp == ()  # [engine] tp only


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("[1, 3]", "plan.tp[1]: must be 1, 2, 4 or 8, got 3"),
        ("[0]", "plan.tp[0]: must be 1, 2, 4 or 8, got 0"),
        ("[]", "plan.tp: must be a non-empty list of tensor-parallel degrees"),
        ('"2"', "plan.tp: must be a non-empty list"),
    ],
)
def test_plan_tp_errors_are_located(tmp_path: Path, value: str, message: str) -> None:
    r = CliRunner().invoke(main, ["check", str(_file(tmp_path, f"tp = {value}\n"))])
    assert r.exit_code == 2
    assert message in r.output


def test_tp_option_parses_and_rejects() -> None:
    assert _tp_option("2, 1,2") == (1, 2)
    for bad in ("3", "1,x", ""):
        with pytest.raises(click.BadParameter, match="is not one of"):
            _tp_option(bad)


def test_cli_rejects_a_bad_tp_before_searching(tmp_path: Path) -> None:
    r = CliRunner().invoke(main, ["plan", str(_file(tmp_path, "")), "--tp", "1,3", "--quiet"])
    assert r.exit_code == 2 and "--tp" in r.output and "'3' is not one of" in r.output


def test_gpus_option_reads_usual_names_and_rejects_unknown_ones(tmp_path: Path) -> None:
    """`--gpus` takes catalog names and the usual names of catalog GPUs; an unknown one is a
    usage error before any search (it was searched as no GPU at all, exit 0)."""
    assert _gpus_option("H100, l4,, h100-80gb", None) == ("h100-80gb", "l4")
    with pytest.raises(click.BadParameter, match="'tpu-v9' is not a GPU type"):
        _gpus_option("l4,tpu-v9", None)
    r = CliRunner().invoke(main, ["plan", str(_file(tmp_path, "")), "--gpus", "foo", "--quiet"])
    assert r.exit_code == 2 and "--gpus" in r.output and "'foo' is not a GPU type" in r.output


# ------------------------------------------------------------------ candidates and the cache
def test_a_tp_way_candidate_is_labelled_and_billed_as_tp_gpus() -> None:
    c = Candidate("h100-80gb", 2, tp=2)
    assert c.label() == "2× h100-80gb (tp 2)"
    assert Candidate("h100-80gb", 2).label() == "2× h100-80gb"  # tp 1: as before
    price = GpuPrice("h100-80gb", 3.0, None, "test")
    assert c.lower_cost(price, c.tp, 100.0) == pytest.approx(2 * 2 * HOURS_PER_MONTH * 3.0 + 100)


def test_the_evaluator_keeps_one_evaluation_per_engine(tiny: Callable[..., Experiment]) -> None:
    """The same fleet at tp 1 and tp 2 is two evaluations (a cache keyed by the plan alone
    would hand tp 2 the tp-1 rows and bill one GPU a replica)."""
    exp = tiny(requests_per_day=300.0)
    ev = Evaluator(exp, exp.spec.slo)
    plan = constant_plan("one", 1, Candidate("a100-80gb", 1).pools(), False)
    one = ev.evaluate(plan, 2).cost(1)
    ev.exp = experiment_at(exp, 2)
    two = ev.evaluate(plan, 2).cost(1)
    ops = exp.spec.cost.ops_usd_per_month
    assert len(ev.cache) == 2 and ev.replications_run == 4
    assert two - ops == pytest.approx(2 * (one - ops))


# ------------------------------------------------------------------ the search across degrees
@pytest.fixture
def llama_both(tmp_path: Path) -> Plan:
    exp = load_experiment(_file(tmp_path, 'gpus = ["l40s", "a100-80gb"]\n'))
    return plan_experiment(exp, _settings(exp, tp=(1, 2)), verify=False)


def test_every_degree_is_searched_and_the_cheaper_whole_plan_chosen(llama_both: Plan) -> None:
    result = llama_both
    ops = result.exp.spec.cost.ops_usd_per_month
    by_tp = {o.tp: o for o in result.by_tp}
    assert set(by_tp) == {1, 2}
    assert by_tp[1].gpus == by_tp[2].gpus == ("l40s", "a100-80gb")
    # one replica of the L40S meets the risk at either degree; at tp 2 it is two GPUs
    assert by_tp[1].fleets == ("1× l40s",) and by_tp[2].fleets == ("1× l40s (tp 2)",)
    assert by_tp[1].total_usd == pytest.approx(L40S_USD_PER_HOUR * HOURS_PER_MONTH + ops)
    assert by_tp[2].total_usd == pytest.approx(2 * L40S_USD_PER_HOUR * HOURS_PER_MONTH + ops)
    assert result.tp == 1 and by_tp[1].chosen and not by_tp[2].chosen
    assert result.exp.spec.engine.tp == 1
    assert result.choices[0].cost_usd == pytest.approx(by_tp[1].total_usd)
    lines = recommendation_lines(result)
    assert any("searched tp 1, 2" in line for line in lines)
    assert any("is at tp 1: $1,128 a month (against $1,756 at tp 2)" in line for line in lines)
    table = tp_table(result)
    assert table["tp"].to_list() == [1, 2] and table["tp_chosen"].to_list() == ["yes", ""]


def test_the_default_searches_the_experiments_own_tp_only(tmp_path: Path) -> None:
    exp = load_experiment(_file(tmp_path, 'gpus = ["l40s"]\n'))
    result = plan_experiment(exp, _settings(exp), verify=False, compare_input=False)
    assert [o.tp for o in result.by_tp] == [1] and result.tp == 1
    assert tp_table(result).is_empty()  # nothing asked: no table, no sentence
    assert not any("tensor parallelism" in line.lower() for line in recommendation_lines(result))


@pytest.fixture
def codellama(tmp_path: Path) -> Experiment:
    """A 34B model: its fp16 weights (68 GB) fill an A100-80GB but not a 48 GB L40S, whose
    two GPUs at tp 2 hold it."""
    return load_experiment(_file(tmp_path, "", model="codellama-34b"))


def test_a_model_that_fits_only_at_tp_2_is_offered_there(
    codellama: Experiment, tmp_path: Path
) -> None:
    s = _settings(codellama, gpus=("l40s", "a100-80gb"), tp=(1, 2))
    result = plan_experiment(codellama, s, verify=False)
    by_tp = {o.tp: o for o in result.by_tp}
    assert by_tp[1].gpus == ("a100-80gb",) and by_tp[2].gpus == ("l40s", "a100-80gb")
    assert "KV cache holds 0 tokens" in result.skipped_gpus["l40s (tp 1)"]
    assert result.tp == 2 and result.choices[0].candidate == Candidate("l40s", 1, tp=2)
    assert result.exp.spec.engine.tp == 2
    # the input file's own plan (one A100 at the file's tp 1) is still compared, at tp 1
    assert result.input_plan is not None
    assert result.input_plan.plan.fleet[0].pools[0].gpu == "a100-80gb"
    out = tmp_path / "out"
    write_plan_report(result, out)
    doc = tomllib.loads((out / "plan.toml").read_text())
    assert doc["engine"]["tp"] == 2
    assert doc["fleet"]["months"][0]["pools"][0]["gpu"] == "l40s"
    again = load_experiment(out / "plan.toml")  # runnable: the L40S fits at tp 2
    assert again.spec.engine.tp == 2 and again.spec.fleet[0].replicas == 1
    assert "By tensor parallelism" in (out / "plan.html").read_text()


def test_a_degree_vllm_refuses_is_skipped_with_its_reason(tmp_path: Path) -> None:
    """Phi-4's 10 KV heads split over 2 GPUs but neither split nor replicate evenly over 4:
    vLLM refuses tp 4, so the search skips it with vLLM's reason and plans at tp 2."""
    phi = load_experiment(_file(tmp_path, "", model="phi-4"))
    result = plan_experiment(phi, _settings(phi, gpus=("a100-80gb",), tp=(2, 4)), verify=False)
    assert "10 KV heads" in result.skipped_gpus["a100-80gb (tp 4)"]
    assert result.tp == 2 and result.choices


def test_a_degree_where_no_gpu_fits_is_skipped_with_a_line(codellama: Experiment) -> None:
    said: list[str] = []
    s = _settings(codellama, gpus=("l40s",), tp=(1, 2))
    result = plan_experiment(codellama, s, verify=False, compare_input=False, progress=said.append)
    assert "tp 1: skipped, no candidate GPU type holds codellama-34b at tp 1" in said
    skipped = next(o for o in result.by_tp if o.tp == 1)
    assert skipped.gpus == () and skipped.months_met == 0 and not skipped.chosen
    assert result.tp == 2 and not result.infeasible_months
    assert any(line.startswith("At tp 1: skipped") for line in recommendation_lines(result))

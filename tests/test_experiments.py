"""Every shipped experiment file is valid and runs, small, through the library (STYLE §11).

The files are found by glob, so a new `experiments/*.toml` is covered without editing this test.
Each is shrunk to one month at ~200 requests/day, one replication, first month's fleet only.
"""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from sim.cli import main
from sim.experiment import Experiment, load_experiment
from sim.records import HOURLY_SCHEMA, MONTH_SCHEMA, RISK_SCHEMA, SUMMARY_SCHEMA
from sim.runner import run_experiment
from sim.stats.summary import PROBABILITIES
from sim.units import HOURS_PER_MONTH, SECONDS_PER_MONTH
from sim.workload import expected_arrivals

REPO = Path(__file__).resolve().parents[1]
EXPERIMENTS = sorted((REPO / "experiments").glob("*.toml"))
SMALL_REQUESTS_PER_DAY = 200.0


def test_there_are_experiments() -> None:
    assert EXPERIMENTS, "no experiments/*.toml found: the tests below would check nothing"


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_passes_sim_check(path: Path) -> None:
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith(f"{path}: ok (")
    assert result.stderr == ""


def shrink(exp: Experiment) -> Experiment:
    spec = exp.spec
    small = dataclasses.replace(
        spec,
        months=1,
        replications=1,
        fleet=spec.fleet[:1],
        # the first plan only, one month (plans are compared in tests/test_hybrid_runner.py)
        plans=tuple(dataclasses.replace(p, fleet=p.fleet[:1]) for p in spec.plans[:1]),
        workload=dataclasses.replace(spec.workload, base_requests_per_day=SMALL_REQUESTS_PER_DAY),
    )
    return dataclasses.replace(exp, spec=small)


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_experiment_runs_small(path: Path) -> None:
    exp = shrink(load_experiment(path))
    spec = exp.spec
    results = run_experiment(exp)
    assert results.errors == {}
    assert results.replications_done == [0]
    assert not results.interrupted
    months = results.months
    assert months.schema == dict(MONTH_SCHEMA)
    assert results.hourly.schema == dict(HOURLY_SCHEMA)
    assert results.hourly.height == 168
    assert months.height == 1
    row = months.row(0, named=True)
    assert (row["replication"], row["month"]) == (0, 1)

    # Month 1 has growth factor 1, so its volume is the configured rate over 730 hours
    # (within 15%: well outside Poisson + burst noise, far inside a per-hour/per-day slip).
    expected = expected_arrivals(
        0.0, float(SECONDS_PER_MONTH), SMALL_REQUESTS_PER_DAY / 86_400.0, exp.profile, exp.burst
    )
    assert row["growth_factor"] == 1.0
    assert row["requests"] > 0
    assert abs(row["requests"] - expected) < 0.15 * expected
    assert results.requests == row["requests"]

    # Conservation: every request of the month is finished, rejected or still in flight.
    assert row["requests"] == row["finished"] + row["rejected"] + row["in_flight_at_end"]
    assert min(row["finished"], row["rejected"], row["in_flight_at_end"]) >= 0
    assert row["input_tokens"] > 0
    assert row["output_tokens"] > 0

    assert 0.0 <= row["gpu_utilisation"] <= 1.0
    assert 0.0 <= row["slo_attainment"] <= 1.0
    hourly = results.hourly["utilisation"]
    assert ((hourly >= 0.0) & (hourly <= 1.0)).all()
    for q in ("ttft", "e2e"):
        assert 0.0 < row[f"{q}_p50_s"] <= row[f"{q}_p95_s"] <= row[f"{q}_p99_s"]
    assert 0.0 < row["tpot_p50_s"] <= row["tpot_p95_s"]
    assert row["ttft_p50_s"] <= row["e2e_p50_s"]

    # Cost is the plan's, by formula: replicas × tp × 730 h × price + ops.
    plan = spec.fleet[0]
    plan_moves = any(p.moves for p in plan.pools)
    gpu_hours = sum(p.count for p in plan.pools) * spec.engine.tp * HOURS_PER_MONTH
    gpu_usd = sum(
        p.count * spec.engine.tp * HOURS_PER_MONTH * spec.cost.price(p.gpu) for p in plan.pools
    )
    assert row["replicas"] == plan.replicas
    assert row["gpu_hours"] == pytest.approx(gpu_hours)
    assert row["gpu_cost_usd"] == pytest.approx(gpu_usd)
    assert row["ops_cost_usd"] == spec.cost.ops_usd_per_month
    assert row["cost_usd"] == pytest.approx(gpu_usd + spec.cost.ops_usd_per_month)
    assert row["cost_usd"] >= 0.0
    tokens = row["input_tokens"] + row["output_tokens"]
    assert row["usd_per_million_tokens"] == pytest.approx(row["cost_usd"] / tokens * 1e6)
    # the *_se columns are the sampled horizon's errors: NaN by definition on a full run
    assert all(
        math.isfinite(v)
        for k, v in row.items()
        if isinstance(v, float)
        and not k.endswith("_se")
        and not k.endswith("_se_s")
        # a fixed fleet serves count × 730 h: NaN, the moving fleets' column
        and not (k == "serving_replica_hours" and not plan_moves)
        # no [api] section: no price to compare with an all-API bill
        and not (spec.api is None and k in ("all_api_cost_usd", "savings_vs_all_api_usd"))
    )


def test_glossary_defines_every_output() -> None:
    """docs/glossary.md has a row for every column and summary metric a run writes."""
    text = (REPO / "docs" / "glossary.md").read_text(encoding="utf-8")
    first_cells = re.findall(r"^\| ([^|]+) \|", text, flags=re.MULTILINE)
    defined = {name for cell in first_cells for name in re.findall(r"`([a-z0-9_]+)`", cell)}
    outputs = (
        set(MONTH_SCHEMA)
        | set(HOURLY_SCHEMA)
        | set(SUMMARY_SCHEMA)
        | set(RISK_SCHEMA)
        | set(PROBABILITIES)
    )
    assert outputs - defined == set()

"""`sim breakeven` (issue #11): the practitioners' sums, the naive crossover and the simulated
sweep against the all-API bill."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sim.cli import main
from sim.config import SloSpec
from sim.cost import api_usd_per_request
from sim.experiment import load_experiment
from sim.planning.breakeven import breakeven, naive_breakeven, reference_cases, volume_grid

ROOT = Path(__file__).resolve().parents[1]
TEXTBOOK = ROOT / "experiments" / "breakeven_textbook.toml"
# The two published sums that do not add up (DESIGN §10; tests/test_cost.py shows the arithmetic).
INCONSISTENT = {"break-even volume": 5_560_000 / 5_266_666 - 1, "compute budget": 3909.5 / 3895 - 1}


def test_reference_cases_reproduce_the_published_figures() -> None:
    for case in reference_cases():
        expected = INCONSISTENT.get(case.name, 0.0)
        # published figures are rounded to their last digit: 3 significant digits at worst
        assert case.error == pytest.approx(expected, abs=2e-3), (case.name, case.inputs)
        if case.name in INCONSISTENT:
            assert case.note, "an inconsistent published sum must say why"


def test_naive_crossover_is_the_textbook_break_even() -> None:
    exp = load_experiment(TEXTBOOK)
    result = naive_breakeven(exp, volume_grid(1e4, 1e8, 2))
    assert result.naive_crossover == pytest.approx(
        1668.0 / api_usd_per_request(800, 300, 0.15, 0.6)
    )
    assert result.naive_crossover == pytest.approx(5_560_000)
    table = result.table()
    assert table["self_hosted_usd"].unique().to_list() == [pytest.approx(1668.0)]
    assert table["all_api_usd"][0] == pytest.approx(1e4 * 0.0003)


def test_volume_grid_is_log_spaced() -> None:
    grid = volume_grid(1e4, 1e8, 2)
    assert len(grid) == 9 and grid[0] == pytest.approx(1e4) and grid[-1] == pytest.approx(1e8)
    assert np.allclose(np.diff(np.log10(grid)), 0.5)


@pytest.mark.slow
def test_simulated_crossover_is_exact_when_one_replica_suffices() -> None:
    """A $0.10/h L40S with no operations cost: one replica carries both grid points, so the
    self-hosted bill is the fixed $73 and the crossover is where each replication's API bill
    (its own realised traffic, bursts included) reaches it: near $73 ÷ $0.0003 per request."""
    exp = load_experiment(TEXTBOOK)
    spec = exp.spec
    cost = dataclasses.replace(
        spec.cost,
        ops_usd_per_month=0.0,
        gpu_usd_per_hour=tuple(
            (g, 0.10 if g == "l40s" else p) for g, p in spec.cost.gpu_usd_per_hour
        ),
    )
    search = dataclasses.replace(spec.search, stages=(5, 10), risk=0.3, price_list=None)
    exp = exp.with_spec(dataclasses.replace(spec, cost=cost, search=search, slo=SloSpec(5.0, 0.5)))
    result = breakeven(exp, [3e4, 3e5], hybrid=False)
    fixed = 0.10 * 730
    want = fixed / api_usd_per_request(800, 300, 0.15, 0.6)
    assert ((result.crossover > 3e4) & (result.crossover < 3e5)).all()
    p5, p50, p95 = result.quantiles()
    assert p50 == pytest.approx(want, rel=0.05) and p5 < p50 < p95
    own = result.table()["self_hosted_usd"].to_list()
    assert len(own) >= 3  # the grid, then volumes bisecting the crossover's bracket
    assert own == [pytest.approx(fixed)] * len(own)


def test_cli_naive_prints_the_reference_table(tmp_path: Path) -> None:
    r = CliRunner().invoke(
        main, ["breakeven", str(TEXTBOOK), "--naive", "--out", str(tmp_path), "--high", "1e6"]
    )
    assert r.exit_code == 0, r.output
    assert "5,560,000" in r.output and "5.266" in r.output.replace(",", "")
    assert (tmp_path / "breakeven.html").exists()

"""Golden runs: small versions of growth20pct (full and sampled horizon) and hybrid_burst give
exactly the tables recorded in tests/golden/ (made by tests/golden/make.py before the reshape
of issue #10). A change that moves any number here must say why in its commit and regenerate.
Regenerated once since, for added outputs only (issue #11: the `token_utilisation` column, the
`p_tpot_p95_above_slo` / `p_miss_slo` summary rows, the `risk` table) and again for issue
#16's (GPU-hours and cost by market, `scale_ups`, `cold_start_delayed` and their summary rows);
each time every number recorded before was checked bit-identical first. Regenerated for
`sim.records.exact_dot` (weighted month sums exactly rounded, no longer BLAS's, whose order
depends on the CPU): the sampled and hybrid runs' utilisation, its standard error, spot and
total costs and their summaries moved by at most 3.4e-15 relative, nothing else.
"""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from sim import load_experiment, run_experiment

GOLDEN = Path(__file__).parent / "golden"
TABLES = ("months", "summary", "hourly", "paired", "timeline", "timeline_events", "risk")


@pytest.mark.parametrize(
    "name", ["growth_full", "growth_sampled", pytest.param("hybrid", marks=pytest.mark.slow)]
)
def test_golden_tables_are_identical(name: str) -> None:
    results = run_experiment(load_experiment(GOLDEN / f"{name}.toml"), jobs=1)
    assert not results.errors
    for table in TABLES:
        expected = pl.read_parquet(GOLDEN / f"{name}.{table}.parquet")
        assert_frame_equal(getattr(results, table), expected, check_exact=True)

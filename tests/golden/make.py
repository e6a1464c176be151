"""Regenerate the golden tables of tests/test_golden.py (run only for a documented change).

    python tests/golden/make.py

Each experiment of this folder is run with the public API; its tables are written beside it
as `<name>.<table>.parquet`. The test re-runs the same experiments and demands identical tables.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sim import load_experiment, run_experiment

HERE = Path(__file__).resolve().parent
TABLES = ("months", "summary", "hourly", "paired", "timeline", "timeline_events", "risk")


def main() -> None:
    names = sys.argv[1:] or [p.stem for p in sorted(HERE.glob("*.toml"))]
    for name in names:
        results = run_experiment(load_experiment(HERE / f"{name}.toml"), jobs=1)
        for table in TABLES:
            getattr(results, table).write_parquet(HERE / f"{name}.{table}.parquet")
        print(name, results.months.height, "month rows", f"{results.wall_s:.1f} s")


if __name__ == "__main__":
    main()

"""Signed replay error of every published vLLM run (issue #12), one line per replayed row.

Replays `sim/data/validation/public_runs.csv` (the packaged copy of
shared/data/vllm-public-runs) through `sim bench` (`sim.calibration.public_runs.replay_all`,
versioned, client timing) and prints, per row, its source, model, GPU, TP, precision, workload,
vLLM version and load, then the median signed error (simulated / measured − 1) of each metric
family; then the rows not replayed with their reason, and the median |error| per family on all
rows and at <= 85 % load (docs/validation.md). `sim validate` judges the same replay against
issue #12's targets. Run from the repository root (about 6 s):

    python scripts/public_runs_table.py [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from sim.calibration.public_runs import family_medians, replay_all

RUNS = Path(__file__).resolve().parent.parent / "sim/data/validation/public_runs.csv"
FAMILIES = ("ttft", "tpot", "e2e", "throughput")


def signed_table(replayed: pl.DataFrame, runs: pl.DataFrame) -> pl.DataFrame:
    """One row per replayed run: its description and the median signed error per family."""
    ok = replayed.filter(pl.col("metric") != "").with_columns(
        pl.col("metric").str.extract(r"^([a-z0-9]+)").alias("family")
    )
    wide = (
        ok.group_by("row", "load", "version", "family")
        .agg(pl.col("error").median())
        .pivot(on="family", index=["row", "load", "version"], values="error")
    )
    meta = runs.select(
        pl.col("row_id").alias("row"),
        pl.col("source_id").alias("source"),
        pl.col("model").str.split(" ").list.first().str.split("/").list.last().alias("model"),
        pl.col("gpu_type").str.split(" ").list.first().alias("gpu"),
        pl.col("tensor_parallel").alias("tp"),
        pl.col("precision").str.split(" ").list.first().alias("precision"),
        pl.col("workload_type").alias("workload"),
    )
    cols = [f for f in FAMILIES if f in wide.columns]
    return (
        wide.join(meta, on="row")
        .select(
            "row", "source", "model", "gpu", "tp", "precision", "workload", "version", "load", *cols
        )
        .sort("row")
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--csv", type=Path, help="also write the per-row table to this CSV")
    args = ap.parse_args(argv)
    runs = pl.read_csv(RUNS, infer_schema_length=0).fill_null("")
    replayed = replay_all(RUNS)
    table = signed_table(replayed, runs)
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, fmt_str_lengths=28):
        print(table.with_columns(pl.selectors.float().round(3)))
    skipped = replayed.filter(pl.col("metric") == "").group_by("note").len()
    with pl.Config(tbl_rows=-1, tbl_width_chars=250, fmt_str_lengths=120):
        print(skipped.sort("len", descending=True))
    for label, max_load in (("all rows", math.inf), ("<= 85 % load", 0.85)):
        med = family_medians(replayed, max_load)
        n = table.filter(pl.col("load") <= max_load).height
        print(f"{label:14} ({n:3} rows): " + "  ".join(f"{f} {med[f]:6.1%}" for f in FAMILIES))
    if args.csv is not None:
        table.write_csv(args.csv)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

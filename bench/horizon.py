"""Sampled vs full horizon on growth20pct: wall time, speed-up, errors, scaling.

Usage: python bench/horizon.py [--replications 200] [--full-replications 10] [--jobs 2]

Prints, measured in one run on this machine:
  1. wall time of `sim run`'s library path for N replications, sampled horizon, --jobs J;
  2. wall time of the full horizon on a subset of replications, extrapolated to N (labelled);
  3. per-month median across the subset's replications, sampled vs full with the same seeds:
     p95 TTFT (relative), SLO attainment (percentage points), utilisation (relative), cost;
  4. the same comparison on a busier variant (10x the volume, first two months);
  5. scaling: wall time vs replications (50/100/200) and vs volume (x1, x10).
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

import polars as pl

from sim.config import HorizonSpec
from sim.experiment import Experiment, load_experiment
from sim.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
COLS = ["ttft_p95_s", "slo_attainment", "gpu_utilisation", "cost_usd"]


def variant(
    exp: Experiment, mode: str, volume: float = 1.0, months: int | None = None
) -> Experiment:
    spec = exp.spec
    months = months or spec.months
    spec = dataclasses.replace(
        spec,
        months=months,
        fleet=spec.fleet[:months],
        horizon=HorizonSpec(mode=mode),
        workload=dataclasses.replace(
            spec.workload, base_requests_per_day=spec.workload.base_requests_per_day * volume
        ),
    )
    return dataclasses.replace(exp, spec=spec)


def timed(exp: Experiment, n: int, jobs: int) -> tuple[float, pl.DataFrame, int]:
    t0 = time.perf_counter()
    res = run_experiment(exp, replications=n, jobs=jobs)
    assert not res.errors, res.errors
    return time.perf_counter() - t0, res.months, res.requests


def compare(full: pl.DataFrame, sampled: pl.DataFrame, label: str) -> None:
    reps = full["replication"].unique()
    sampled = sampled.filter(pl.col("replication").is_in(reps.implode()))
    f = full.group_by("month").agg(pl.col(COLS).median()).sort("month")
    s = sampled.group_by("month").agg(pl.col(COLS).median()).sort("month")
    print(f"\n{label}: per-month median over replications {sorted(reps.to_list())}")
    print("month  p95 TTFT full/sampled (err)   SLO attain. (err pp)   util. (err)   cost err")
    for a, b in zip(f.iter_rows(named=True), s.iter_rows(named=True), strict=True):
        print(
            f"{a['month']:>5}  {a['ttft_p95_s']:.3f}/{b['ttft_p95_s']:.3f} s "
            f"({100 * (b['ttft_p95_s'] / a['ttft_p95_s'] - 1):+.2f}%)   "
            f"{100 * a['slo_attainment']:.2f}/{100 * b['slo_attainment']:.2f}% "
            f"({100 * (b['slo_attainment'] - a['slo_attainment']):+.2f} pp)   "
            f"{100 * a['gpu_utilisation']:.1f}/{100 * b['gpu_utilisation']:.1f}% "
            f"({100 * (b['gpu_utilisation'] / a['gpu_utilisation'] - 1):+.2f}%)   "
            f"{100 * (b['cost_usd'] / a['cost_usd'] - 1):+.3f}%"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=200)
    parser.add_argument("--full-replications", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    exp = load_experiment(ROOT / "experiments" / "growth20pct.toml")
    n, nf, jobs = args.replications, args.full_replications, args.jobs

    ts, sampled, req_s = timed(variant(exp, "sampled"), n, jobs)
    tf, full, req_f = timed(variant(exp, "full"), nf, jobs)
    print(f"growth20pct, --jobs {jobs}")
    print(
        f"  sampled horizon: {n} replications in {ts:.1f} s wall "
        f"({req_s / n:,.0f} simulated requests each)"
    )
    print(
        f"  full horizon:    {nf} replications in {tf:.1f} s wall "
        f"({req_f / nf:,.0f} requests each); "
        f"EXTRAPOLATED to {n}: {tf * n / nf:.0f} s"
    )
    print(f"  speed-up: {tf * n / nf / ts:.1f}x")
    compare(full, sampled, "growth20pct sampled vs full")

    busy_months = 2
    tbf, busy_full, _ = timed(variant(exp, "full", 10.0, busy_months), 6, jobs)
    tbs, busy_sampled, _ = timed(variant(exp, "sampled", 10.0, busy_months), 6, jobs)
    print(
        f"\nbusier variant (10x volume, {busy_months} months): "
        f"full 6 reps {tbf:.1f} s, sampled {tbs:.1f} s"
    )
    compare(busy_full, busy_sampled, "busier variant sampled vs full")

    print(f"\nscaling (sampled horizon, growth20pct, --jobs {jobs})")
    print("replications  volume  wall s   s per replication")
    rows = [(n, 1.0, ts)]
    for reps in (50, 100):
        rows.append((reps, 1.0, timed(variant(exp, "sampled"), reps, jobs)[0]))
    rows.append((50, 10.0, timed(variant(exp, "sampled", 10.0), 50, jobs)[0]))
    for reps, vol, wall in sorted(rows, key=lambda r: (r[1], r[0])):
        print(f"{reps:>12}  {vol:>5.0f}x  {wall:>6.1f}   {wall / reps:.3f}")


if __name__ == "__main__":
    main()

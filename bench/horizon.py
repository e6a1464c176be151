"""The horizon's cost and accuracy: issue #14's whole-run acceptance figures, side by side in
one run, and the sampled-vs-full validation of docs/horizon.md.

Usage: python bench/horizon.py [--replications 1000] [--jobs 2] [--hybrid-replications 10]
                               [--volume 100] [--slice-replications 4] [--validate-sampled]

Prints, measured in one run on this machine (with the load average, since cores are shared):
  1. growth20pct: wall time of `run_experiment` for N replications, sampled horizon, --jobs J
     (issue #14 target: 1,000 replications in < 60 s);
  2. hybrid_burst: wall time of M replications x its 3 plans, --jobs J (target: 10 in < 60 s);
  3. growth20pct at V x its volume on V x its fleet (the same load per replica: right-sized):
     CPU seconds per replication in this process, with the exchangeable slice
     (`sim.horizon.fleet_slice`) and with the whole fleet (target: <= 5 CPU-s with the slice);
  4. the slice against the whole fleet on the same seeds, two months, per-month medians across
     replications: p95 TTFT, SLO attainment, utilisation, cost (docs/horizon.md's tolerances:
     5%, 1 pp, 3%, exact), at that load and at 3.33x the load per replica (utilisation 55-68%);
  with --validate-sampled, also the sampled-vs-full comparison (issue #6) of docs/horizon.md.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import polars as pl

import sim.horizon
from sim.config import HorizonSpec, MonthPlan
from sim.experiment import Experiment, load_experiment
from sim.replication import run_replication
from sim.runner import run_experiment
from sim.stats import months_frame

ROOT = Path(__file__).resolve().parents[1]
COLS = ["ttft_p95_s", "slo_attainment", "gpu_utilisation", "cost_usd"]


def variant(
    exp: Experiment, mode: str, volume: float = 1.0, months: int | None = None, fleet: float = 1.0
) -> Experiment:
    """`exp` on horizon `mode`, `volume` x its traffic, `fleet` x every pool's count."""
    spec = exp.spec
    months = months or spec.months
    plans = tuple(
        MonthPlan(tuple(dataclasses.replace(p, count=round(p.count * fleet)) for p in m.pools))
        for m in spec.fleet[:months]
    )
    spec = dataclasses.replace(
        spec,
        months=months,
        fleet=plans,
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


@contextmanager
def whole_fleet() -> Iterator[None]:
    """Windows simulate every replica (the slice off), in this process."""
    saved = sim.horizon.SLICE_MIN_REPLICAS
    sim.horizon.SLICE_MIN_REPLICAS = 2**62
    try:
        yield
    finally:
        sim.horizon.SLICE_MIN_REPLICAS = saved


def in_process(exp: Experiment, reps: int) -> tuple[float, pl.DataFrame, int]:
    """CPU seconds per replication (this process, after one warm-up replication), months, and
    simulated requests per replication."""
    run_replication(exp, reps)  # numba's cache, the traffic model's tables
    rows: list[dict[str, object]] = []
    requests = 0
    t0 = time.process_time()
    for k in range(reps):
        out = run_replication(exp, k)
        rows.extend(out.months)
        requests += out.requests
    return (time.process_time() - t0) / reps, months_frame(rows), requests // reps


def load() -> str:
    return "load average " + " ".join(f"{x:.1f}" for x in os.getloadavg())


def acceptance(args: argparse.Namespace) -> None:
    exp = load_experiment(ROOT / "experiments" / "growth20pct.toml")
    n, jobs = args.replications, args.jobs
    print(f"issue #14 acceptance, --jobs {jobs}, {os.cpu_count()} cores ({load()})")
    ts, _, req = timed(variant(exp, "sampled"), n, jobs)
    print(
        f"  growth20pct: {n} replications in {ts:.1f} s wall ({n / ts:.1f} replications/s, "
        f"{req / n:,.0f} simulated requests each; target < 60 s for 1,000)  [{load()}]"
    )
    hybrid = load_experiment(ROOT / "experiments" / "hybrid_burst.toml")
    nh = args.hybrid_replications
    th, _, req = timed(hybrid, nh, jobs)
    print(
        f"  hybrid_burst: {nh} replications x {len(hybrid.spec.all_plans())} plans in "
        f"{th:.1f} s wall ({req / nh:,.0f} simulated requests per replication; "
        f"target < 60 s for 10)  [{load()}]"
    )
    v, ns = args.volume, args.slice_replications
    big = variant(exp, "sampled", volume=v, fleet=v)
    cpu, _, req = in_process(big, ns)
    print(
        f"  growth20pct x{v:g} volume on x{v:g} replicas ({big.spec.fleet[0].pools[0].count}.."
        f"{big.spec.fleet[-1].pools[0].count}), 6 months, sliced: {cpu:.2f} CPU-s per "
        f"replication ({req:,} simulated requests; target <= 5)  [{load()}]"
    )
    two = variant(exp, "sampled", volume=v, months=2, fleet=v)
    cpu_s, sliced, req_s = in_process(two, ns)
    with whole_fleet():
        cpu_w, whole, req_w = in_process(two, ns)
    print(
        f"  the same, first 2 months: sliced {cpu_s:.2f} CPU-s ({req_s:,} requests), whole "
        f"fleet {cpu_w:.2f} CPU-s ({req_w:,}) per replication: {cpu_w / cpu_s:.1f}x"
    )
    compare(whole, sliced, f"x{v:g} volume on x{v:g} replicas: sliced vs whole fleet")
    busy = variant(exp, "sampled", volume=3.33 * v, months=2, fleet=v)
    _, sliced, _ = in_process(busy, ns)
    with whole_fleet():
        _, whole, _ = in_process(busy, ns)
    compare(whole, sliced, f"x{3.33 * v:g} volume on x{v:g} replicas: sliced vs whole fleet")


def validate_sampled(args: argparse.Namespace) -> None:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--replications", type=int, default=1000)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--hybrid-replications", type=int, default=10)
    parser.add_argument("--volume", type=float, default=100.0)
    parser.add_argument("--slice-replications", type=int, default=4)
    parser.add_argument("--validate-sampled", action="store_true")
    parser.add_argument("--full-replications", type=int, default=10)
    parser.add_argument("--skip-acceptance", action="store_true")
    args = parser.parse_args()
    if not args.skip_acceptance:
        acceptance(args)
    if args.validate_sampled:
        validate_sampled(args)


if __name__ == "__main__":
    main()

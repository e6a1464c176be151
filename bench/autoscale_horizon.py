"""The sampled horizon's estimate of an autoscaled month against simulating every request.

Usage: python bench/autoscale_horizon.py [--replications 2] [--experiment FILE] [--month 1]

Runs one month of each plan of the experiment (default experiments/autoscale_peaks.toml: a
static fleet and a reactive autoscaler at 250,000 requests a day) on the full horizon and on
the sampled one, same seeds, replication by replication, and prints per plan and replication
the month's GPU-hours, autoscaler launches, requests arriving during a cold start, p95 TTFT and
SLO attainment, with the wall time of each replication (figures in README, "Fleets that move").
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from pathlib import Path

from sim import load_experiment
from sim.replication import run_replication

ROOT = Path(__file__).resolve().parents[1]
COLUMNS = ("gpu_hours", "scale_ups", "cold_start_delayed", "ttft_p95_s", "slo_attainment")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--experiment", default=str(ROOT / "experiments" / "autoscale_peaks.toml"))
    ap.add_argument("--replications", type=int, default=2)
    ap.add_argument("--month", type=int, default=1)
    args = ap.parse_args()
    exp = load_experiment(args.experiment)
    m = args.month
    plans = exp.spec.plans or (exp.spec.all_plans())
    spec = dataclasses.replace(
        exp.spec,
        months=m,
        plans=tuple(dataclasses.replace(p, fleet=p.fleet[:m]) for p in plans),
        fleet=exp.spec.fleet[:m],
    )
    print(f"{'horizon':8} {'rep':>3} {'plan':12} " + " ".join(f"{c:>18}" for c in COLUMNS))
    for mode in ("sampled", "full"):
        horizon = dataclasses.replace(spec.horizon, mode=mode)
        e = dataclasses.replace(exp, spec=dataclasses.replace(spec, horizon=horizon))
        for k in range(args.replications):
            t0 = time.perf_counter()
            out = run_replication(e, k)
            if out.error is not None:
                raise SystemExit(out.error)
            for row in out.months:
                if row["month"] != m:
                    continue
                cells = " ".join(f"{float(row[c]):>18.4g}" for c in COLUMNS)  # type: ignore[arg-type]
                print(f"{mode:8} {k:>3} {row['plan']!s:12} {cells}")
            print(f"{mode:8} {k:>3} {'wall':12} {time.perf_counter() - t0:>18.1f} s", flush=True)


if __name__ == "__main__":
    main()

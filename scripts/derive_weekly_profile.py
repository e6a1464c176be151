"""Derive traces/servegen_weekly_profile.csv from ServeGen's 14-day per-client rates.

Source: ServeGen (alibaba/ServeGen @ f891d1189eb32b3868dfc443800c4150548c282a, Apache-2.0),
`data/language/m-large/chunk-<client>-trace.csv`, copied unmodified to
/work/shared/data/servegen-alibaba/trace/language/m-large/. Each headerless row is one 600-s
window of one client: `t_seconds, rate (req/s), cv, pattern, arg1, arg2`.

Derivation:
1. total rate of the model per window = sum of `rate` over all 162 clients (an idle client has
   rate 0); 2,016 windows = 14 days, t = 0 is midnight of day 0;
2. mean over the six 10-min windows of each hour -> 336 hourly rates;
3. hour of week = hour mod 168, taking day 0 as Monday (an assumption: the weekday of day 0 is
   not published) -> mean of the two weeks for each of the 168 hours;
4. divide by the mean of the 168 values (WeeklyProfile.from_values) and write 6 decimals.

Run from the repository root: `python scripts/derive_weekly_profile.py [SOURCE_DIR] [OUT_CSV]`.
It prints the statistics quoted in traces/SOURCE.md.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import polars as pl

from sim.traces import read_weekly_profile
from sim.units import HOURS_PER_WEEK
from sim.workload import WeeklyProfile

SOURCE_DIR = Path("/work/shared/data/servegen-alibaba/trace/language/m-large")
OUT_CSV = Path("traces/servegen_weekly_profile.csv")
WINDOW_S = 600
DAYS = 14
CLIENT_SCHEMA = {
    "t_seconds": pl.Int64,
    "rate": pl.Float64,
    "cv": pl.Float64,
    "pattern": pl.String,
    "arg1": pl.Float64,
    "arg2": pl.Float64,
}
DAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def total_rate_per_window(source_dir: Path) -> tuple[np.ndarray, int]:
    """Sum over clients of the per-window rate (req/s), and the number of client files."""
    files = sorted(source_dir.glob("chunk-*-trace.csv"))
    frames = [
        pl.read_csv(f, has_header=False, schema=CLIENT_SCHEMA).select("t_seconds", "rate")
        for f in files
    ]
    total = pl.concat(frames).group_by("t_seconds").agg(pl.col("rate").sum()).sort("t_seconds")
    t = total["t_seconds"].to_numpy()
    expected = np.arange(DAYS * 86_400 // WINDOW_S) * WINDOW_S
    if not np.array_equal(t, expected):
        raise SystemExit(f"expected {expected.size} contiguous 600-s windows, got {t.size}")
    return total["rate"].to_numpy(), len(files)


def main(source_dir: Path = SOURCE_DIR, out_csv: Path = OUT_CSV) -> None:
    window_rate, n_clients = total_rate_per_window(source_dir)
    hourly = window_rate.reshape(-1, 3600 // WINDOW_S).mean(axis=1)  # 336 hours
    weeks = hourly.reshape(-1, HOURS_PER_WEEK)  # (2, 168)
    profile = WeeklyProfile.from_values(weeks.mean(axis=0))
    pl.DataFrame(
        {"hour_of_week": np.arange(HOURS_PER_WEEK), "multiplier": profile.array.round(6)}
    ).write_csv(out_csv)
    reread = read_weekly_profile(out_csv)

    m = reread.array
    by_day = m.reshape(7, 24)
    hour_of_day = by_day.mean(axis=0)
    print(f"clients aggregated: {n_clients}; windows: {window_rate.size} ({DAYS} days)")
    print(
        f"total rate req/s min/median/max: {window_rate.min():.1f} / "
        f"{np.median(window_rate):.1f} / {window_rate.max():.1f}; mean {window_rate.mean():.1f}"
    )
    print(f"daily mean req/s: {np.round(hourly.reshape(DAYS, 24).mean(axis=1), 1).tolist()}")
    print(f"week1 vs week2 hourly correlation: {np.corrcoef(weeks[0], weeks[1])[0, 1]:.3f}")
    print(f"week2/week1 volume: {weeks[1].mean() / weeks[0].mean():.3f}")
    print(
        f"profile mean {reread.mean():.6f}; peak {m.max():.3f} at hour {int(m.argmax())} "
        f"({DAY_NAMES[int(m.argmax()) // 24]} {int(m.argmax()) % 24:02d}:00); "
        f"trough {m.min():.3f} at hour {int(m.argmin())} "
        f"({DAY_NAMES[int(m.argmin()) // 24]} {int(m.argmin()) % 24:02d}:00); "
        f"peak/trough {reread.peak_to_trough():.2f}"
    )
    print(
        "day-of-week means: "
        + ", ".join(f"{d} {v:.3f}" for d, v in zip(DAY_NAMES, by_day.mean(axis=1), strict=True))
    )
    print(
        f"hour-of-day mean profile peak/trough: {hour_of_day.max() / hour_of_day.min():.2f} "
        f"(peak {int(hour_of_day.argmax()):02d}:00, trough {int(hour_of_day.argmin()):02d}:00)"
    )
    print(
        f"p95 of multipliers: {np.quantile(m, 0.95):.3f}; share of hours above 1.2: "
        f"{(m > 1.2).mean():.3f}"
    )
    print(f"wrote {out_csv}")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:3]))

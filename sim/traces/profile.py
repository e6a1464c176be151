"""Weekly profile files: `hour_of_week,multiplier`, 168 rows for hours 0..167."""

from __future__ import annotations

import math
from pathlib import Path

import polars as pl

from sim.errors import TraceError
from sim.traces._io import fail_first, read_csv_strings
from sim.units import HOURS_PER_WEEK
from sim.workload import WeeklyProfile

PROFILE_COLUMNS = ("hour_of_week", "multiplier")


def read_weekly_profile(path: str | Path) -> WeeklyProfile:
    """A weekly profile CSV (`hour_of_week,multiplier`, rows for hours 0..167 in order).

    Multipliers must be finite and ≥ 0, not all zero; they are normalised to mean 1 on reading
    (`WeeklyProfile.from_values`), so a file rounded to a few decimals is accepted.
    """
    file = str(path)
    raw = read_csv_strings(path, PROFILE_COLUMNS)
    hours = raw["hour_of_week"].cast(pl.Int64, strict=False)
    fail_first(file, raw["hour_of_week"], hours.is_null(), "not an integer")
    out_of_order = hours != pl.Series(range(raw.height), dtype=pl.Int64)
    if out_of_order.any():
        row = int(out_of_order.arg_true()[0])
        raise TraceError(
            file,
            row + 1,
            "hour_of_week",
            raw["hour_of_week"][row],
            f"hours must be 0, 1, …, {HOURS_PER_WEEK - 1} in order: expected {row}",
        )
    if raw.height != HOURS_PER_WEEK:
        raise TraceError(
            file, None, None, raw.height, f"a weekly profile needs {HOURS_PER_WEEK} rows"
        )
    multipliers = raw["multiplier"].cast(pl.Float64, strict=False)
    fail_first(file, raw["multiplier"], multipliers.is_null(), "not a number")
    values = multipliers.to_list()
    fail_first(
        file,
        raw["multiplier"],
        pl.Series([not (math.isfinite(v) and v >= 0.0) for v in values]),
        "must be a finite number >= 0",
    )
    if not any(v > 0.0 for v in values):
        raise TraceError(file, None, "multiplier", 0.0, "multipliers are all zero")
    return WeeklyProfile.from_values(values)


def write_weekly_profile(profile: WeeklyProfile, path: str | Path) -> None:
    """Write `profile` as a weekly profile CSV (6 decimals; `read_weekly_profile` renormalises)."""
    pl.DataFrame(
        {
            "hour_of_week": pl.Series(range(HOURS_PER_WEEK), dtype=pl.Int64),
            "multiplier": profile.array.round(6),
        }
    ).write_csv(path)

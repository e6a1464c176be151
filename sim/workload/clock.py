"""The plan's clock: seconds since the start of the plan, hours of the week, billing months.

Time `t` is float seconds since the start of the plan. `t = 0` is Monday 00:00 in the
timezone of the weekly profile, so `hour_of_week(t) = floor(t / 3600) mod 168` (0 = Monday
00:00–01:00, 167 = Sunday 23:00–24:00). A month is the cloud-billing month of 8760 / 12 = 730
hours; month `m` (1-based) covers `[(m − 1), m) × SECONDS_PER_MONTH`. 730 hours is not a whole
number of weeks, so month 2 starts on Wednesday 10:00 (hour 730 mod 168 = 58): the hour of the
week always follows the plan's absolute time, never the month's.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from sim.units import HOURS_PER_WEEK, SECONDS_PER_HOUR, SECONDS_PER_MONTH

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def hour_of_week(t_s: npt.ArrayLike) -> IntArray:
    """Hour of the week (0 = Monday 00:00) of plan times `t_s` (seconds; negative times wrap)."""
    hours = np.floor(np.asarray(t_s, dtype=np.float64) / SECONDS_PER_HOUR).astype(np.int64)
    return np.mod(hours, HOURS_PER_WEEK)


def month_window_s(month: int) -> tuple[float, float]:
    """`(start_s, end_s)` of 1-based plan month `month`, in plan seconds."""
    if month < 1:
        raise ValueError(f"month is 1-based, got {month}")
    return float((month - 1) * SECONDS_PER_MONTH), float(month * SECONDS_PER_MONTH)


def hour_edges(start_s: float, end_s: float) -> FloatArray:
    """`start_s`, every whole hour strictly inside `(start_s, end_s)`, then `end_s`."""
    first = math.floor(start_s / SECONDS_PER_HOUR) + 1
    last = math.ceil(end_s / SECONDS_PER_HOUR)
    inner = np.arange(first, last, dtype=np.float64) * SECONDS_PER_HOUR
    inner = inner[(inner > start_s) & (inner < end_s)]
    return np.concatenate(([start_s], inner, [end_s])).astype(np.float64)


def seconds_by_hour(periods: Sequence[tuple[float, float]], hours: int) -> FloatArray:
    """Seconds covered by `periods` in each hour [h·3600, (h+1)·3600) for h < `hours`.

    `periods` are disjoint intervals (plan seconds) in time order, e.g. a replica's busy
    periods or the running time of an instance. Uses the cumulative covered time
    F(x) = Σ_i clip(x − s_i, 0, e_i − s_i) evaluated at the hour edges.
    """
    edges = np.arange(hours + 1, dtype=np.float64) * float(SECONDS_PER_HOUR)
    if not periods:
        return np.zeros(hours)
    arr = np.asarray(periods, dtype=np.float64)
    starts, ends = arr[:, 0], arr[:, 1]
    cum = np.concatenate(([0.0], np.cumsum(ends - starts)))
    done = np.searchsorted(ends, edges, side="right")  # periods fully before each edge
    partial = np.zeros_like(edges)
    inside = done < len(starts)
    idx = done[inside]
    partial[inside] = np.clip(edges[inside] - starts[idx], 0.0, None)
    covered_to_edge = cum[done] + partial
    return np.diff(covered_to_edge)

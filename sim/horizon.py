"""Sampled horizon: month-level KPIs from a stratified sample of short windows (DESIGN §7).

Why: a full 6-month replication of growth20pct is ~1.5M requests; planners want hundreds of
replications. Latency, SLO attainment and utilisation are averages over the month's hours, so
a well-chosen sample of hours estimates them, with an error we can compute.

The design, per month and replication:

* **Strata over the 168 hours of the week** by expected load (the weekly profile; growth is
  constant within a month). Stratum 0 holds the `peak_hours` busiest hour-of-week slots; the
  other slots are split, in order of load, into `strata` groups of equal size.
* **Sample**: every peak slot is simulated once, in one representative week drawn at random;
  from each other stratum, `windows_per_stratum` hours of the month are drawn uniformly without
  replacement. Inside each drawn hour one window of `window_s` seconds (a divisor of an hour) is
  drawn uniformly. Window `i` stands for `w_i` windows of the month: (3600 / window_s) × the
  number of times its slot occurs in the month (peak), or × N_k / n_k (stratum k: N_k hours of
  the month, n_k drawn). The weights × window_s sum to the month's 730 hours.
* **Window**: it is simulated on an empty fleet started `warmup_s` earlier with the real rate
  of that time (the first window of a month gets what warm-up the month allows); only requests
  arriving inside the window are measured, and busy time inside it.
* **Estimators** (`sim.stats.sampled`): every measured request carries its window's weight;
  month percentiles are weighted quantiles, SLO attainment and utilisation weighted shares,
  counts weighted sums; a stratified bootstrap gives the `*_se` standard errors. Cost does not
  depend on the sample: it comes from the plan.

* **Exchangeable slice** (`fleet_slice`): a window of a month whose fleet is at least
  `SLICE_MIN_REPLICAS` identical replicas (same pool type, limits and step-time draw), with no
  spot reclaims and no API, simulates `SLICE_REPLICAS` of them with `SLICE_REPLICAS / R` of the
  traffic (the same rate path, thinned) under the same routing. Per-request latencies of the
  slice estimate the fleet's; counts are scaled by R / k; utilisation is the slice's busy share.
  The window's cost then does not grow with volume once the fleet does: requests per window
  ≈ k × the per-replica load. Validated against the whole fleet in docs/horizon.md.

This module chooses the windows and their weights, decides when to sample at all
(`horizon_mode`) and how much of a large fleet a window simulates (`fleet_slice`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sim.config import HorizonSpec
from sim.units import HOURS_PER_WEEK, SECONDS_PER_HOUR, SECONDS_PER_MONTH
from sim.workload import Traffic

FloatArray = npt.NDArray[np.float64]
HOUR_S = float(SECONDS_PER_HOUR)

SLICE_REPLICAS = 16
"""Replicas a sampled window simulates of a large homogeneous fleet (`fleet_slice`)."""
SLICE_MIN_REPLICAS = 32
"""Fleets smaller than this are simulated whole (every shipped experiment and golden run)."""
SLICE_RULE = (
    f"windows of a month with >= {SLICE_MIN_REPLICAS} identical replicas and no spot or API "
    f"simulate {SLICE_REPLICAS} of them with {SLICE_REPLICAS}/R of the traffic "
    "(exchangeable slice)"
)


@dataclass(frozen=True)
class Window:
    """One sampled hour: where it starts, which slot and stratum, how many hours it stands for."""

    month: int  # 1-based
    start_s: float  # plan seconds
    length_s: float
    hour_of_week: int
    stratum: int  # 0 = peak slots
    weight: float  # windows of the month this one stands for


def strata_of_slots(profile: FloatArray, peak_hours: int, strata: int) -> npt.NDArray[np.int64]:
    """Stratum of each of the 168 hour-of-week slots (0 = the `peak_hours` busiest)."""
    order = np.argsort(-profile, kind="stable")  # busiest first; ties by slot index
    out = np.empty(HOURS_PER_WEEK, dtype=np.int64)
    out[order[:peak_hours]] = 0
    rest = order[peak_hours:][::-1]  # quietest first
    for k, group in enumerate(np.array_split(rest, strata), start=1):
        out[group] = k
    return out


def choose_windows(
    rng: np.random.Generator,
    month: int,
    hours_per_month: int,
    slot_stratum: npt.NDArray[np.int64],
    windows_per_stratum: int,
    window_s: float,
) -> list[Window]:
    """The sampled windows of 1-based `month` (see the module docstring)."""
    per_hour = round(HOUR_S / window_s)
    if per_hour < 1 or per_hour * window_s != HOUR_S:
        raise ValueError(f"window_s must divide an hour, got {window_s}")
    first = (month - 1) * hours_per_month
    hours = np.arange(first, first + hours_per_month)
    slots = hours % HOURS_PER_WEEK
    stratum = slot_stratum[slots]
    windows: list[Window] = []
    # Peak slots: one representative week; each slot weighted by its occurrences in the month.
    full_weeks = hours_per_month // HOURS_PER_WEEK
    week = int(rng.integers(0, full_weeks)) if full_weeks > 0 else 0
    week_start = first + week * HOURS_PER_WEEK
    for slot in np.flatnonzero(slot_stratum == 0):
        occurrences = np.flatnonzero(slots == slot)
        in_week = [h for h in hours[occurrences] if week_start <= h < week_start + HOURS_PER_WEEK]
        hour = in_week[0] if in_week else int(hours[occurrences[0]])
        start = float(hour) * HOUR_S + int(rng.integers(0, per_hour)) * window_s
        weight = float(occurrences.size * per_hour)
        windows.append(Window(month, start, window_s, int(slot), 0, weight))
    for k in range(1, int(slot_stratum.max()) + 1):
        members = hours[stratum == k]
        if members.size == 0:
            continue
        n = min(windows_per_stratum, members.size)
        picked = np.sort(rng.choice(members, size=n, replace=False))
        offsets = rng.integers(0, per_hour, size=n)
        weight = members.size / n * per_hour
        for hour, offset in zip(picked.tolist(), offsets.tolist(), strict=True):
            start = float(hour) * HOUR_S + offset * window_s
            windows.append(Window(month, start, window_s, int(hour % HOURS_PER_WEEK), k, weight))
    return windows


def horizon_mode(
    horizon: HorizonSpec, traffic: Traffic, months: int, mean_monthly_growth: float
) -> tuple[str, str]:
    """("full" | "sampled", the reason in words) for a horizon setting.

    The volume is the traffic model's own expectation (generated or replayed), at the mean
    growth of every month.
    """
    g = mean_monthly_growth
    expected = sum(
        traffic.expected_arrivals(
            float(m * SECONDS_PER_MONTH), float((m + 1) * SECONDS_PER_MONTH), (1.0 + g) ** m
        )
        for m in range(months)
    )
    if horizon.mode != "auto":
        rule = f"; {SLICE_RULE}" if horizon.mode == "sampled" else ""
        return horizon.mode, f"{horizon.mode} (set in the experiment{rule})"
    if expected > horizon.auto_max_requests:
        return "sampled", (
            f"sampled (auto: {expected:,.0f} expected requests per replication > "
            f'{horizon.auto_max_requests:,}; set horizon.mode = "full" to simulate every request'
            f"; {SLICE_RULE})"
        )
    return "full", f"full (auto: {expected:,.0f} expected requests per replication)"


def fleet_slice(specs: Sequence[object], active: Sequence[int], *, plain: bool) -> int:
    """How many of the `active` replicas (indices into `specs`) a sampled window simulates:
    `SLICE_REPLICAS` when they are at least `SLICE_MIN_REPLICAS` identical replicas and the
    plan has no spot reclaims or API (`plain`), else all of them (module docstring)."""
    n = len(active)
    if not plain or n < SLICE_MIN_REPLICAS:
        return n
    first = specs[active[0]]
    if any(specs[r] != first for r in active):
        return n
    return SLICE_REPLICAS

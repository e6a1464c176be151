"""Exact sampling of the non-homogeneous Poisson arrival process.

    rate(t) = base_rate_per_s × profile(hour_of_week(t)) × burst(t)      [req/s]

(the caller folds the month's growth factor into `base_rate_per_s`). Given a burst path, the
rate is piecewise constant on the pieces cut by whole hours and by the burst breakpoints, so the
process is sampled exactly, piece by piece: the count on a piece of length `L` at rate `λ` is
Poisson(λL), and given the count the arrival times are i.i.d. uniform on the piece (the order
statistics of uniforms). There is no thinning bound to choose and no clipping of gaps: Vidur's
generator clips inter-arrival gaps at 3× their mean, which silently adds about 5% arrivals and
removes the long gaps; this one does neither.
"""

from __future__ import annotations

import math

import numpy as np

from sim.workload.burst import BurstProcess
from sim.workload.clock import FloatArray
from sim.workload.profile import WeeklyProfile


def piecewise_rate(
    start_s: float,
    end_s: float,
    base_rate_per_s: float,
    profile: WeeklyProfile,
    burst_breakpoints_s: FloatArray,
    burst_multipliers: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """The rate on `[start_s, end_s)` as `(edges_s, rates_per_s)`, constant on each piece.

    `edges_s` holds the window ends, every whole hour and every burst breakpoint inside the
    window (sorted, unique); `rates_per_s[i]` holds on `[edges_s[i], edges_s[i + 1])`. The burst
    path must cover the window.
    """
    _check_rate(base_rate_per_s)
    bp = np.ascontiguousarray(burst_breakpoints_s, dtype=np.float64)
    mult = np.ascontiguousarray(burst_multipliers, dtype=np.float64)
    if bp.ndim != 1 or mult.shape != (bp.size - 1,) or bp.size < 2:
        raise ValueError("burst path needs n + 1 breakpoints for n multipliers (n >= 1)")
    if bp[0] > start_s or bp[-1] < end_s:
        raise ValueError(f"burst path [{bp[0]}, {bp[-1]}) does not cover [{start_s}, {end_s})")
    from sim.workload._pieces import rate_pieces  # (numba: imported when first sampled)

    # NOTE: one compiled call in place of ~20 numpy calls (union of the hour edges and the
    # breakpoints, the piece lookups, the profile): the same bits (tests/test_arrival_kernels.py)
    edges, rates = rate_pieces(
        float(start_s), float(end_s), float(base_rate_per_s), profile.array, bp, mult
    )
    return edges, rates


def sample_piecewise_poisson(
    rng: np.random.Generator, edges_s: FloatArray, rates_per_s: FloatArray
) -> FloatArray:
    """Sorted arrival times (s) of a Poisson process with piecewise-constant rate (exact)."""
    from sim.workload._pieces import piece_means, place

    edges = np.ascontiguousarray(edges_s, dtype=np.float64)
    lengths, means = piece_means(edges, np.ascontiguousarray(rates_per_s, dtype=np.float64))
    counts = rng.poisson(means)
    # each piece's arrivals at edge + u × length, then one sort (the pieces are disjoint and
    # in order, so it equals sorting each piece)
    times = place(edges, lengths, counts, rng.random(int(counts.sum())))
    times.sort()
    return times


def sample_by_time_change(
    rng: np.random.Generator, edges_s: FloatArray, rates_per_s: FloatArray
) -> FloatArray:
    """Sorted arrival times of the same process as `sample_piecewise_poisson`, by time change.

    The points `E_1 < E_2 < …` of a unit-rate Poisson process (cumulative sums of standard
    exponentials) are mapped through the inverse of the cumulative rate `Λ(t) = ∫ rate`:
    `t_i = Λ⁻¹(E_i)` (exact: the time-change theorem). Unlike per-piece Poisson counts, the
    draws do not depend on the rates, so with a fixed generator the arrivals move continuously
    as the rates change — what a simulation-based fit needs to compare parameters on common
    random numbers.
    """
    lengths = np.diff(edges_s)
    cumulative = np.concatenate(([0.0], np.cumsum(rates_per_s * lengths)))
    total = float(cumulative[-1])
    if total <= 0.0:
        return np.empty(0, dtype=np.float64)
    chunk = int(total + 5.0 * math.sqrt(total) + 10)
    points = np.cumsum(rng.exponential(1.0, chunk))
    while points[-1] < total:  # rare: draw more, continuing the same unit-rate process
        points = np.concatenate((points, points[-1] + np.cumsum(rng.exponential(1.0, chunk))))
    points = points[points < total]
    # Λ is increasing and piecewise linear; flat pieces (rate 0) receive no point.
    piece = np.searchsorted(cumulative, points, side="right") - 1
    piece = np.clip(piece, 0, lengths.size - 1)
    times = edges_s[piece] + (points - cumulative[piece]) / rates_per_s[piece]
    return np.asarray(times, dtype=np.float64)


def sample_arrivals(
    rng: np.random.Generator,
    start_s: float,
    end_s: float,
    base_rate_per_s: float,
    profile: WeeklyProfile,
    burst: BurstProcess,
    *,
    burst_rng: np.random.Generator | None = None,
) -> FloatArray:
    """Sorted arrival times (float64 plan seconds) on `[start_s, end_s)`, sampled exactly.

    The burst path is drawn first, from `burst_rng` if given (keep it a separate stream, e.g.
    `Stream.BURSTS`, so that changing the burst model leaves the arrival stream aligned), else
    from `rng`; then the counts and the uniform positions from `rng`.
    """
    _check_rate(base_rate_per_s)
    breakpoints, multipliers = burst.sample_path(
        rng if burst_rng is None else burst_rng, start_s, end_s
    )
    edges, rates = piecewise_rate(
        start_s, end_s, base_rate_per_s, profile, breakpoints, multipliers
    )
    return sample_piecewise_poisson(rng, edges, rates)


def expected_arrivals(
    start_s: float,
    end_s: float,
    base_rate_per_s: float,
    profile: WeeklyProfile,
    burst: BurstProcess,
) -> float:
    """E[number of arrivals on `[start_s, end_s)`] = base × ∫ profile dt × E[burst] (requests).

    The burst path is independent of the profile and stationary with mean `burst.mean()` (1).
    """
    _check_rate(base_rate_per_s)
    return base_rate_per_s * profile.integral_s(start_s, end_s) * burst.mean()


def _check_rate(base_rate_per_s: float) -> None:
    if not (math.isfinite(base_rate_per_s) and base_rate_per_s >= 0.0):
        raise ValueError(f"base_rate_per_s must be a finite number >= 0, got {base_rate_per_s!r}")

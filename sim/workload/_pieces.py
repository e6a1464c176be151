"""Compiled kernels of the arrival sampler's deterministic steps (`sim.workload.arrivals`).

A sampled window draws ~150 arrivals, so the numpy calls that build its rate pieces (~40 of
them, 1–3 µs each) cost more than the draws. These kernels do the same arithmetic in one call
each, in the same order, so the same bits: every random draw stays with numpy's generator in
the caller. `tests/test_arrival_kernels.py` holds them to the numpy expressions they replace.

Times are plan seconds; rates are requests per second.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from sim.units import HOURS_PER_WEEK, SECONDS_PER_HOUR

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

_HOUR_S = float(SECONDS_PER_HOUR)


@njit(cache=True)  # type: ignore[misc]
def rate_pieces(
    start_s: float,
    end_s: float,
    base_rate_per_s: float,
    profile: FloatArray,
    breakpoints_s: FloatArray,
    multipliers: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """`(edges_s, rates_per_s)` of `arrivals.piecewise_rate`: the sorted, distinct union of
    `clock.hour_edges(start_s, end_s)` and the burst breakpoints strictly inside the window
    (`np.union1d`), and on each piece `base × profile[hour of week] × multiplier` of the burst
    piece in force at its left edge (`np.searchsorted(..., side="right") − 1`)."""
    first = math.floor(start_s / _HOUR_S) + 1
    last = math.ceil(end_s / _HOUR_S)
    hour_edges = np.empty(max(last - first, 0) + 2, dtype=np.float64)
    hour_edges[0] = start_s
    m = 1
    for h in range(first, last):
        a = float(h) * _HOUR_S
        if a > start_s and a < end_s:
            hour_edges[m] = a
            m += 1
    hour_edges[m] = end_s
    m += 1
    nb = breakpoints_s.size
    edges = np.empty(m + nb, dtype=np.float64)
    n = 0
    i = 0
    b = 0
    while i < m or b < nb:  # merge, one copy of equal values (both inputs ascending)
        if b < nb and not (breakpoints_s[b] > start_s and breakpoints_s[b] < end_s):
            b += 1
            continue
        if b < nb and (i >= m or breakpoints_s[b] < hour_edges[i]):
            v = breakpoints_s[b]
            b += 1
        else:
            v = hour_edges[i]
            i += 1
        if n == 0 or v != edges[n - 1]:
            edges[n] = v
            n += 1
    edges = edges[:n]
    rates = np.empty(max(n - 1, 0), dtype=np.float64)
    j = 0
    for i in range(n - 1):
        left = edges[i]
        while j + 1 < nb and breakpoints_s[j + 1] <= left:
            j += 1
        hour = math.floor(left / _HOUR_S) % HOURS_PER_WEEK
        rates[i] = base_rate_per_s * profile[hour] * multipliers[j]
    return edges, rates


@njit(cache=True)  # type: ignore[misc]
def piece_means(edges_s: FloatArray, rates_per_s: FloatArray) -> tuple[FloatArray, FloatArray]:
    """`(lengths_s, expected counts)`: `np.diff(edges_s)` and `rates_per_s × lengths_s`."""
    m = rates_per_s.size
    lengths = np.empty(m, dtype=np.float64)
    means = np.empty(m, dtype=np.float64)
    for i in range(m):
        lengths[i] = edges_s[i + 1] - edges_s[i]
        means[i] = rates_per_s[i] * lengths[i]
    return lengths, means


@njit(cache=True)  # type: ignore[misc]
def place(
    edges_s: FloatArray, lengths_s: FloatArray, counts: IntArray, uniforms: FloatArray
) -> FloatArray:
    """`edge + u × length` of each piece's `counts` arrivals, the uniforms `u` taken in order
    (`np.repeat` of the edges and lengths by `counts`); unsorted: numpy's sort is the faster
    (vectorised) one, numba's a plain quicksort (3–5x slower on 10,000 arrivals)."""
    times = np.empty(uniforms.size, dtype=np.float64)
    k = 0
    for i in range(counts.size):
        for _ in range(counts[i]):
            times[k] = edges_s[i] + uniforms[k] * lengths_s[i]
            k += 1
    return times


@njit(cache=True)  # type: ignore[misc]
def alternating_path(
    start_s: float,
    end_s: float,
    sojourns_s: FloatArray,
    first: int,
    levels: FloatArray,
) -> tuple[FloatArray, FloatArray]:
    """`(breakpoints_s, multipliers)` of a two-state path from `start_s` whose k-th sojourn
    (`sojourns_s[k]`, in state `(first + k) mod 2`) ends at `start_s + Σ_{i≤k} sojourns_s[i]`
    (a running sum, as `np.cumsum`), cut at `end_s`; the pieces' levels `levels[state]`."""
    ends = np.empty(sojourns_s.size, dtype=np.float64)
    acc = 0.0
    n_before = 0  # sojourn ends strictly before end_s (`np.searchsorted(side="left")`)
    for k in range(sojourns_s.size):
        acc += sojourns_s[k]
        ends[k] = start_s + acc
        if ends[k] < end_s:
            n_before += 1
    pieces = n_before + 1
    breakpoints = np.empty(pieces + 1, dtype=np.float64)
    breakpoints[0] = start_s
    breakpoints[1:pieces] = ends[: pieces - 1]
    breakpoints[pieces] = end_s
    multipliers = np.empty(pieces, dtype=np.float64)
    for k in range(pieces):
        multipliers[k] = levels[(first + k) % 2]
    return breakpoints, multipliers

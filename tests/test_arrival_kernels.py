"""The arrival sampler's compiled steps (`sim.workload._pieces`) against the numpy expressions
they replaced, bit for bit, on random windows: hour-aligned edges, breakpoints on whole hours
and on the window's ends, repeated breakpoints, zero-rate pieces, windows across weeks."""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.workload import MarkovBurst, NoBurst, WeeklyProfile
from sim.workload.arrivals import piecewise_rate, sample_arrivals, sample_piecewise_poisson
from sim.workload.clock import hour_edges

HOUR = 3600.0


def numpy_piecewise_rate(
    start: float, end: float, base: float, profile: WeeklyProfile, bp: np.ndarray, mult: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The numpy version the kernel replaced."""
    inner = bp[(bp > start) & (bp < end)]
    edges = np.union1d(hour_edges(start, end), inner)
    left = edges[:-1]
    piece = np.searchsorted(bp, left, side="right") - 1
    return edges, (base * profile.at(left) * mult[piece]).astype(np.float64)


def numpy_poisson(rng: np.random.Generator, edges: np.ndarray, rates: np.ndarray) -> np.ndarray:
    lengths = np.diff(edges)
    counts = rng.poisson(rates * lengths)
    starts = np.repeat(edges[:-1], counts)
    times = starts + rng.random(int(counts.sum())) * np.repeat(lengths, counts)
    times.sort()
    return times


def numpy_markov_path(
    burst: MarkovBurst, rng: np.random.Generator, start: float, end: float
) -> tuple[np.ndarray, np.ndarray]:
    """`MarkovBurst.sample_path` as it was: `exponential` with an array of scales."""
    means = np.array([burst.mean_calm_s, burst.mean_burst_s])
    levels = np.array([burst.calm_level, burst.burst_level])
    first = int(rng.random() < burst.p_burst)
    span = end - start
    per_cycle = burst.mean_calm_s + burst.mean_burst_s
    chunk = 2 * (int(span / per_cycle + 4.0 * math.sqrt(span / per_cycle + 1.0)) + 4)
    durations, total, drawn = [], 0.0, 0
    while total < span:
        part = rng.exponential(means[(first + drawn + np.arange(chunk)) % 2])
        durations.append(part)
        total += float(part.sum())
        drawn += chunk
    ends = start + np.cumsum(np.concatenate(durations))
    n = int(np.searchsorted(ends, end, side="left")) + 1
    breakpoints = np.concatenate(([start], ends[: n - 1], [end]))
    return breakpoints, levels[(first + np.arange(n)) % 2]


def random_window(g: np.random.Generator) -> tuple[float, float]:
    kind = int(g.integers(0, 4))
    if kind == 0:  # on whole hours
        start = HOUR * float(g.integers(0, 5000))
        return start, start + HOUR * float(g.integers(1, 30))
    if kind == 1:  # across a week boundary
        start = 168 * HOUR * float(g.integers(1, 20)) - float(g.uniform(0, 5 * HOUR))
        return start, start + float(g.uniform(1.0, 10 * HOUR))
    start = float(g.uniform(0, 1.6e7))
    return start, start + float(g.choice([1e-3, 1800.0, g.uniform(0, 2e5)]))


def random_path(g: np.random.Generator, start: float, end: float) -> tuple[np.ndarray, np.ndarray]:
    """Breakpoints covering the window: some on whole hours, on its ends, repeated."""
    inner = list(g.uniform(start, end, int(g.integers(0, 12))))
    hours = np.arange(math.ceil(start / HOUR), math.floor(end / HOUR) + 1) * HOUR
    if hours.size:
        inner += list(g.choice(hours, int(g.integers(0, 4))))
    inner += [start, end] if g.random() < 0.3 else []
    inner += inner[:2] if g.random() < 0.3 else []
    lo = start - float(g.uniform(0, 100)) if g.random() < 0.5 else start
    hi = end + float(g.uniform(0, 100)) if g.random() < 0.5 else end
    bp = np.sort(np.array([lo, *inner, hi], dtype=np.float64))
    mult = g.uniform(0.0, 3.0, bp.size - 1)
    mult[g.random(mult.size) < 0.1] = 0.0
    return bp, mult


def test_rate_pieces_and_placement_equal_numpy_bit_for_bit() -> None:
    g = np.random.default_rng(20261207)
    profile = WeeklyProfile.from_values(tuple(float(v) for v in g.uniform(0.1, 3.0, 168)))
    for case in range(3000):
        start, end = random_window(g)
        bp, mult = random_path(g, start, end)
        base = float(g.choice([0.0, g.uniform(0, min(5.0, 2000.0 / (end - start)))]))
        edges, rates = piecewise_rate(start, end, base, profile, bp, mult)
        want_edges, want_rates = numpy_piecewise_rate(start, end, base, profile, bp, mult)
        assert edges.tobytes() == want_edges.tobytes(), case
        assert rates.tobytes() == want_rates.tobytes(), case
        got = sample_piecewise_poisson(np.random.default_rng(case), edges, rates)
        want = numpy_poisson(np.random.default_rng(case), want_edges, want_rates)
        assert got.tobytes() == want.tobytes(), case


@pytest.mark.parametrize("ratio", [1.0, 2.0, 7.5])
def test_markov_path_equals_exponential_with_array_scales(ratio: float) -> None:
    g = np.random.default_rng(int(ratio * 10))
    for case in range(800):
        burst = MarkovBurst(float(g.uniform(1, 3000)), float(g.uniform(1, 3000)), ratio)
        start, end = random_window(g)
        rng, ref = np.random.default_rng(case), np.random.default_rng(case)
        bp, mult = burst.sample_path(rng, start, end)
        want_bp, want_mult = numpy_markov_path(burst, ref, start, end)
        assert bp.tobytes() == want_bp.tobytes(), case
        assert mult.tobytes() == want_mult.tobytes(), case
        assert rng.random() == ref.random()  # the same draws consumed


def test_sampled_arrivals_are_sorted_inside_the_window() -> None:
    profile = WeeklyProfile.flat()
    for burst in (NoBurst(), MarkovBurst(60.0, 30.0, 4.0)):
        t = sample_arrivals(np.random.default_rng(3), 1000.0, 20000.0, 2.0, profile, burst)
        assert t.size > 0 and np.all(np.diff(t) >= 0.0)
        assert t[0] >= 1000.0 and t[-1] < 20000.0

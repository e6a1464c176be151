"""Burst modulation: a stationary random multiplier of the arrival rate with mean exactly 1.

Bursts add variance to the arrival process, not volume: the expected number of arrivals in any
window is the same with or without them. A path is piecewise constant and returned as
`(breakpoints_s, multipliers)` with `len(breakpoints_s) == len(multipliers) + 1`; the multiplier
`multipliers[i]` holds on `[breakpoints_s[i], breakpoints_s[i + 1])`, the first breakpoint is the
window start and the last is the window end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from sim.workload.clock import FloatArray


class BurstProcess(Protocol):
    """A stationary, piecewise-constant rate multiplier with stationary mean 1."""

    def mean(self) -> float:
        """Stationary mean of the multiplier (1)."""
        ...

    def variance(self) -> float:
        """Stationary variance of the multiplier (dimensionless)."""
        ...

    def sample_path(
        self, rng: np.random.Generator, start_s: float, end_s: float
    ) -> tuple[FloatArray, FloatArray]:
        """A path on `[start_s, end_s)` started from the stationary distribution."""
        ...


@dataclass(frozen=True)
class NoBurst:
    """No modulation: the multiplier is 1 at all times (draws nothing from the generator)."""

    def mean(self) -> float:
        """Stationary mean: 1."""
        return 1.0

    def variance(self) -> float:
        """Stationary variance: 0."""
        return 0.0

    def sample_path(
        self, rng: np.random.Generator, start_s: float, end_s: float
    ) -> tuple[FloatArray, FloatArray]:
        """The single piece `[start_s, end_s)` with multiplier 1."""
        _check_window(start_s, end_s)
        return np.array([start_s, end_s], dtype=np.float64), np.ones(1, dtype=np.float64)


@dataclass(frozen=True)
class MarkovBurst:
    """Two-state Markov-modulated multiplier: calm ↔ burst, exponential sojourns.

    The process stays in the calm state for an Exp(mean `mean_calm_s`) time, then in the burst
    state for an Exp(mean `mean_burst_s`) time, and so on. The burst level is `burst_ratio` times
    the calm level. With `p = mean_burst_s / (mean_calm_s + mean_burst_s)` the stationary share of
    time in the burst state, the levels are scaled so that the stationary mean is exactly 1:

        calm_level  = 1 / (1 − p + p · burst_ratio)
        burst_level = burst_ratio · calm_level
        variance    = p (1 − p) (burst_level − calm_level)²

    and the multiplier's autocorrelation at lag τ is `exp(−τ / correlation_time_s)` with
    `correlation_time_s = 1 / (1/mean_calm_s + 1/mean_burst_s)`. Nothing requires the burst state
    to be the rarer one: a long burst state with short, deep calm spells models occasional lulls.

    Times are in seconds, `burst_ratio` is dimensionless and ≥ 1 (1 means no modulation).
    """

    mean_calm_s: float
    mean_burst_s: float
    burst_ratio: float

    def __post_init__(self) -> None:
        for name in ("mean_calm_s", "mean_burst_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a finite number > 0 seconds, got {value!r}")
        if not (math.isfinite(self.burst_ratio) and self.burst_ratio >= 1.0):
            raise ValueError(f"burst_ratio must be a finite number >= 1, got {self.burst_ratio!r}")

    @property
    def p_burst(self) -> float:
        """Stationary probability of the burst state."""
        return self.mean_burst_s / (self.mean_calm_s + self.mean_burst_s)

    @property
    def calm_level(self) -> float:
        """Multiplier in the calm state."""
        p = self.p_burst
        return 1.0 / (1.0 - p + p * self.burst_ratio)

    @property
    def burst_level(self) -> float:
        """Multiplier in the burst state."""
        return self.burst_ratio * self.calm_level

    @property
    def correlation_time_s(self) -> float:
        """e-folding time of the multiplier's autocorrelation, in seconds."""
        return 1.0 / (1.0 / self.mean_calm_s + 1.0 / self.mean_burst_s)

    def mean(self) -> float:
        """Stationary mean of the multiplier: 1 (up to rounding)."""
        p = self.p_burst
        return (1.0 - p) * self.calm_level + p * self.burst_level

    def variance(self) -> float:
        """Stationary variance of the multiplier."""
        p = self.p_burst
        return p * (1.0 - p) * (self.burst_level - self.calm_level) ** 2

    def sample_path(
        self, rng: np.random.Generator, start_s: float, end_s: float
    ) -> tuple[FloatArray, FloatArray]:
        """A path on `[start_s, end_s)`; the initial state is drawn from the stationary law.

        Exponential sojourns are memoryless, so the residual time of the initial state is again
        exponential with the state's mean and the path is stationary from `start_s` on.
        """
        _check_window(start_s, end_s)
        means = np.array([self.mean_calm_s, self.mean_burst_s])
        levels = np.array([self.calm_level, self.burst_level])
        first = int(rng.random() < self.p_burst)  # 0 = calm, 1 = burst
        span = end_s - start_s
        # Draw sojourns in chunks sized for the expected number of switches; loop only in the
        # rare case the chunk falls short. The state alternates, so sojourn k is in state
        # (first + k) mod 2.
        per_cycle = self.mean_calm_s + self.mean_burst_s
        chunk = 2 * (int(span / per_cycle + 4.0 * math.sqrt(span / per_cycle + 1.0)) + 4)
        durations: list[FloatArray] = []
        total = 0.0
        drawn = 0
        while total < span:
            states = (first + drawn + np.arange(chunk)) % 2
            part = rng.exponential(means[states])
            durations.append(part)
            total += float(part.sum())
            drawn += chunk
        sojourn = np.concatenate(durations)
        ends = start_s + np.cumsum(sojourn)
        n_pieces = int(np.searchsorted(ends, end_s, side="left")) + 1
        breakpoints = np.concatenate(([start_s], ends[: n_pieces - 1], [end_s]))
        states = (first + np.arange(n_pieces)) % 2
        return breakpoints.astype(np.float64), levels[states].astype(np.float64)


def _check_window(start_s: float, end_s: float) -> None:
    if not (math.isfinite(start_s) and math.isfinite(end_s) and end_s > start_s):
        raise ValueError(f"need finite start_s < end_s, got {start_s!r}, {end_s!r}")


# Fitted by scripts/fit_burst.py to the Azure LLM inference trace 2023, conversation service
# (traces/SOURCE.md, "Burst parameters for experiments"): levels 0.6 / 1.2, variance 0.08,
# correlation time 320 s. A default for conversation-like services, not a universal constant.
AZURE_CONV_BURST = MarkovBurst(mean_calm_s=480.0, mean_burst_s=960.0, burst_ratio=2.0)

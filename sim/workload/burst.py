"""Burst modulation: a stationary random multiplier of the arrival rate with mean exactly 1.

Bursts add variance to the arrival process, not volume: the expected number of arrivals in any
window is the same with or without them. A path is piecewise constant and returned as
`(breakpoints_s, multipliers)` with `len(breakpoints_s) == len(multipliers) + 1`; the multiplier
`multipliers[i]` holds on `[breakpoints_s[i], breakpoints_s[i + 1])`, the first breakpoint is the
window start and the last is the window end.
"""

from __future__ import annotations

import functools
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


@functools.lru_cache(maxsize=64)
def _alternating(calm: float, burst: float, first: int, n: int) -> FloatArray:
    """`n` values alternating between `calm` and `burst`, starting with the first if `first`
    is 0 (read-only: shared between calls)."""
    out = np.where((first + np.arange(n)) % 2 == 0, calm, burst).astype(np.float64)
    out.flags.writeable = False
    return out


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
        from sim.workload._pieces import alternating_path  # (numba: imported when first used)

        first = int(rng.random() < self.p_burst)  # 0 = calm, 1 = burst
        span = end_s - start_s
        # Draw sojourns in chunks sized for the expected number of switches; loop only in the
        # rare case the chunk falls short. The state alternates, so sojourn k is in state
        # (first + k) mod 2; a chunk has an even length, so every chunk has the same means.
        per_cycle = self.mean_calm_s + self.mean_burst_s
        chunk = 2 * (int(span / per_cycle + 4.0 * math.sqrt(span / per_cycle + 1.0)) + 4)
        means = _alternating(self.mean_calm_s, self.mean_burst_s, first, chunk)
        durations: list[FloatArray] = []
        total = 0.0
        while total < span:
            # NOTE: `exponential(scale)` is `scale × standard_exponential()` draw by draw
            # (numpy's random_exponential), so this is `rng.exponential(means)`'s bits without
            # its per-call broadcasting and sign checks (tests/test_arrival_kernels.py)
            part = rng.standard_exponential(chunk) * means
            durations.append(part)
            total += float(part.sum())
        sojourn = durations[0] if len(durations) == 1 else np.concatenate(durations)
        levels = np.array([self.calm_level, self.burst_level])
        return alternating_path(float(start_s), float(end_s), sojourn, first, levels)  # type: ignore[no-any-return]


@dataclass(frozen=True)
class LogNormalOU:
    """Log-normal multiplier driven by an Ornstein–Uhlenbeck log-rate, held on a time grid.

    `X` is a stationary OU process with mean 0, variance `sigma²` and autocorrelation
    `exp(−|τ| / correlation_time_s)`; the multiplier is `m = exp(X − sigma² / 2)`, so that
    `E[m] = 1` exactly at every instant. `X` is sampled exactly (AR(1) transition
    `X_{k+1} = φ X_k + sigma √(1 − φ²) Z`, `φ = exp(−step_s / correlation_time_s)`) at
    `start_s + k · step_s` and held constant until the next grid point — an explicit
    discretisation (`step_s`), not an approximation hidden in the sampler. Theory on the grid:

        mean     = 1
        variance = exp(sigma²) − 1
        corr(k steps) = (exp(sigma² φ^k) − 1) / (exp(sigma²) − 1)

    Unlike the two-state `MarkovBurst`, the multiplier is continuous-valued, so a smooth ramp of
    traffic (the Azure conversation hour) is representable without a bimodal per-minute rate.
    """

    sigma: float
    correlation_time_s: float
    step_s: float

    def __post_init__(self) -> None:
        if not (math.isfinite(self.sigma) and 0.0 <= self.sigma <= 5.0):
            raise ValueError(f"sigma must be a finite number in [0, 5], got {self.sigma!r}")
        for name in ("correlation_time_s", "step_s"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a finite number > 0 seconds, got {value!r}")

    @property
    def phi(self) -> float:
        """Lag-one (one grid step) autocorrelation of the log-rate `X`."""
        return math.exp(-self.step_s / self.correlation_time_s)

    def mean(self) -> float:
        """Stationary mean of the multiplier: 1."""
        return 1.0

    def variance(self) -> float:
        """Stationary variance of the multiplier: exp(sigma²) − 1."""
        return math.expm1(self.sigma**2)

    def autocorrelation(self, steps: int) -> float:
        """Correlation of the multiplier `steps` grid steps apart (1 for steps = 0)."""
        if steps < 0:
            raise ValueError(f"steps must be >= 0, got {steps}")
        if self.sigma == 0.0:
            return 1.0
        return math.expm1(self.sigma**2 * self.phi**steps) / math.expm1(self.sigma**2)

    def sample_path(
        self, rng: np.random.Generator, start_s: float, end_s: float
    ) -> tuple[FloatArray, FloatArray]:
        """A stationary path on `[start_s, end_s)`: grid `start_s + k · step_s`, the last piece
        cut at `end_s`."""
        _check_window(start_s, end_s)
        n = max(1, math.ceil((end_s - start_s) / self.step_s))
        phi = self.phi
        shocks = rng.standard_normal(n)
        shocks[0] *= self.sigma
        shocks[1:] *= self.sigma * math.sqrt(
            -math.expm1(-2.0 * self.step_s / self.correlation_time_s)
        )
        # NOTE: imported here, not at the top: `scipy.signal` costs 2.4 s of start-up
        # (python -X importtime) that every `sim` command paid for an OU layer few use.
        from scipy.signal import lfilter

        log_rate = lfilter([1.0], [1.0, -phi], shocks)
        breakpoints = start_s + self.step_s * np.arange(n + 1, dtype=np.float64)
        breakpoints[-1] = end_s
        levels = np.exp(log_rate - self.sigma**2 / 2.0)
        return breakpoints, np.asarray(levels, dtype=np.float64)


@dataclass(frozen=True)
class ProductBurst:
    """The product of independent stationary mean-1 multipliers (e.g. a slow and a fast layer).

    Independence makes the product stationary with mean exactly 1 and variance
    `∏ (1 + v_i) − 1`. Layers draw their paths from the generator in order.
    """

    layers: tuple[BurstProcess, ...]

    def __post_init__(self) -> None:
        if len(self.layers) < 1:
            raise ValueError("a product burst needs at least one layer")

    def mean(self) -> float:
        """Stationary mean: the product of the layers' means (1)."""
        return math.prod(layer.mean() for layer in self.layers)

    def variance(self) -> float:
        """Stationary variance: ∏ (1 + v_i) − 1 for independent mean-1 layers."""
        return math.prod(1.0 + layer.variance() for layer in self.layers) - 1.0

    def sample_path(
        self, rng: np.random.Generator, start_s: float, end_s: float
    ) -> tuple[FloatArray, FloatArray]:
        """Every layer's path on the window, multiplied on the union of their breakpoints."""
        _check_window(start_s, end_s)
        paths = [layer.sample_path(rng, start_s, end_s) for layer in self.layers]
        edges = np.unique(np.concatenate([bp for bp, _ in paths]))
        left = edges[:-1]
        levels = np.ones(left.size, dtype=np.float64)
        for bp, mult in paths:
            levels *= mult[np.searchsorted(bp, left, side="right") - 1]
        return edges.astype(np.float64), levels


def _check_window(start_s: float, end_s: float) -> None:
    if not (math.isfinite(start_s) and math.isfinite(end_s) and end_s > start_s):
        raise ValueError(f"need finite start_s < end_s, got {start_s!r}, {end_s!r}")


# Fitted by scripts/fit_burst.py to the Azure LLM inference trace 2023, conversation service
# (traces/SOURCE.md, "Burst parameters for experiments"): levels 0.6 / 1.2, variance 0.08,
# correlation time 320 s. A default for conversation-like services, not a universal constant.
AZURE_CONV_BURST = MarkovBurst(mean_calm_s=480.0, mean_burst_s=960.0, burst_ratio=2.0)

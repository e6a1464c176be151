"""Monthly volume growth, sampled per replication and compounded.

Month 1 has factor 1. Month `m` has factor `F_m = f_1 · f_2 · … · f_{m−1}`, where the per-month
factors `f_k` are i.i.d. log-normal: `log f_k ~ Normal(mu, sd_log²)` with
`mu = log(1 + mean_growth) − sd_log² / 2`, so that `E[f_k] = 1 + mean_growth` exactly (not
`exp(mu) = 1 + mean_growth`, which would bias volume upward by `exp(sd_log² / 2)`). By
independence `E[F_m] = (1 + mean_growth)^(m−1)` and
`Var[F_m] = (1 + mean_growth)^(2(m−1)) · (exp(sd_log² (m−1)) − 1)`.
A replication thus sees one growth trajectory; different replications see different volumes.
"""

from __future__ import annotations

import math

import numpy as np

from sim.workload.clock import FloatArray


def sample_monthly_growth(
    rng: np.random.Generator, months: int, mean_growth: float, sd_log: float
) -> FloatArray:
    """Cumulative volume factors for months 1..`months` (index 0 is month 1 and equals 1.0).

    `mean_growth` is the expected month-over-month growth (0.2 = +20%/month, > −1); `sd_log` is
    the standard deviation of the log of one month's factor (≥ 0; 0 gives deterministic growth).
    """
    _check(months, mean_growth, sd_log)
    mu = math.log1p(mean_growth) - sd_log**2 / 2.0
    if sd_log > 0.0:
        factors = rng.lognormal(mu, sd_log, size=months - 1)
    else:  # deterministic growth; draws nothing
        factors = np.full(months - 1, 1.0 + mean_growth)
    return np.concatenate(([1.0], np.cumprod(factors))).astype(np.float64)


def growth_moments(months: int, mean_growth: float, sd_log: float) -> tuple[FloatArray, FloatArray]:
    """`(mean, variance)` of the cumulative factor of months 1..`months` (see module docstring)."""
    _check(months, mean_growth, sd_log)
    k = np.arange(months, dtype=np.float64)  # months elapsed since month 1
    mean = (1.0 + mean_growth) ** k
    variance = mean**2 * np.expm1(sd_log**2 * k)
    return mean, variance


def _check(months: int, mean_growth: float, sd_log: float) -> None:
    if months < 1:
        raise ValueError(f"months must be >= 1, got {months}")
    if not (math.isfinite(mean_growth) and mean_growth > -1.0):
        raise ValueError(f"mean_growth must be a finite number > -1, got {mean_growth!r}")
    if not (math.isfinite(sd_log) and sd_log >= 0.0):
        raise ValueError(f"sd_log must be a finite number >= 0, got {sd_log!r}")

"""A generated sample shaped like a trace, and the real-vs-generated acceptance checks.

`generate_like(target, model, seed)` draws from a generated `WorkloadModel` what the trace
holds: for a request trace, `windows` independent copies of its span `[0, span)` (each with
its own streams: the statistics of the model, not of one draw; arrivals by time change, exact
and smooth in the parameters, see `time_changed_arrivals`; rates reported at the trace's
volume, see `at_volume`); for a rate trace, the request
counts of each native window over `windows` copies of its span, sampled exactly from the
Cox process (Poisson counts given the burst path) without drawing every arrival time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from sim.rng import MonthRngs, trace_sample_rngs
from sim.traces.stats import TraceStats, describe_arrivals, describe_rates
from sim.workload import WorkloadModel, piecewise_rate, sample_by_time_change

# Tolerances of issue #4's acceptance: generated vs real.
RATE_TOLERANCE = 0.10  # per-minute rate p50 / p95 / p99
CV_TOLERANCE = 0.10  # inter-arrival CV
TOKEN_TOLERANCE = 0.05  # input / output token p50 / p95
PROFILE_MIN_CORRELATION = 0.95  # hour-of-week profile (traces spanning a week)
TARGET_ARRIVALS = 2_000_000  # arrivals drawn for a request-trace comparison (about)


@dataclass(frozen=True)
class Check:
    """One acceptance check: real vs generated, its tolerance and whether it holds."""

    statistic: str
    real: float | None
    generated: float | None
    tolerance: str
    ok: bool | None  # None: not applicable (a statistic the trace does not have)

    @property
    def relative_error(self) -> float | None:
        if self.real is None or self.generated is None or self.real == 0:
            return None
        return self.generated / self.real - 1.0


def default_windows(target: TraceStats) -> int:
    """Copies of the trace's span to generate: about `TARGET_ARRIVALS` arrivals (3..200) for a
    request trace; for a rate trace, enough spans to cover a year (1..52)."""
    if target.kind == "rates":
        return int(min(52, max(1, math.ceil(365 * 86_400 / target.span_s))))
    return int(min(200, max(3, math.ceil(TARGET_ARRIVALS / max(target.requests, 1.0)))))


def generate_like(
    target: TraceStats,
    model: WorkloadModel,
    seed: int,
    windows: int | None = None,
    name: str = "generated",
    *,
    detail: bool = True,
) -> TraceStats:
    """The statistics of `model` sampled the way `target` was observed (see module docstring).

    The per-minute rates are reported at the trace's volume (`at_volume`).
    """
    k_windows = default_windows(target) if windows is None else windows
    if target.kind == "rates":
        n_bins = round(target.span_s / target.bin_s)
        counts = [
            window_counts(model, trace_sample_rngs(seed, k), n_bins, target.bin_s)
            for k in range(k_windows)
        ]
        return at_volume(describe_rates(counts, target.bin_s, name, counts=True), target)
    arrivals: list[np.ndarray] = []
    inputs: list[np.ndarray] = []
    outputs: list[np.ndarray] = []
    for k in range(k_windows):
        rngs = trace_sample_rngs(seed, k)
        t = time_changed_arrivals(model, rngs, target.span_s)
        inp, out = model.lengths.sample(rngs.lengths, t.size)
        arrivals.append(t)
        inputs.append(inp)
        outputs.append(out)
    stats = describe_arrivals(
        arrivals,
        target.span_s,
        name,
        np.concatenate(inputs),
        np.concatenate(outputs),
        quantum_s=target.quantum_s,
        detail=detail,
    )
    return at_volume(stats, target)


def at_volume(sample: TraceStats, target: TraceStats) -> TraceStats:
    """`sample` with its per-minute rates scaled by (trace's mean rate / sample's mean rate).

    A ratio estimator: a fitted model's expected volume over the span is the trace's by
    construction, so the scaling converges to 1 and changes nothing that is estimated; it
    removes the noisiest part of a finite sample — its overall level, which for a model that
    drifts slowly from hour to hour varies by tens of percent between hours — from the rate
    quantiles. `mean_rate_per_s` keeps the sample's own value (compare it to see the level).
    """
    if not (sample.mean_rate_per_s > 0 and target.mean_rate_per_s > 0):
        return sample
    k = target.mean_rate_per_s / sample.mean_rate_per_s
    return replace(
        sample,
        rate_per_min=(
            sample.rate_per_min[0] * k,
            sample.rate_per_min[1] * k,
            sample.rate_per_min[2] * k,
        ),
        rate_min_per_min=sample.rate_min_per_min * k,
        rate_max_per_min=sample.rate_max_per_min * k,
    )


def time_changed_arrivals(model: WorkloadModel, rngs: MonthRngs, span_s: float) -> np.ndarray:
    """Arrivals of `model` on `[0, span_s)`: the burst path from `rngs.bursts`, then the
    arrivals by time change from `rngs.arrivals` (`sample_by_time_change`: the same law as the
    simulator's sampler, but smooth in the parameters under a fixed seed)."""
    breakpoints, multipliers = model.burst.sample_path(rngs.bursts, 0.0, span_s)
    edges, rates = piecewise_rate(
        0.0, span_s, model.base_rate_per_s, model.profile, breakpoints, multipliers
    )
    return sample_by_time_change(rngs.arrivals, edges, rates)


def window_counts(model: WorkloadModel, rngs: MonthRngs, n_bins: int, bin_s: float) -> np.ndarray:
    """Requests in each of `n_bins` bins of `bin_s` from time 0: Poisson(∫ rate) given the
    burst path (exact for the Cox process; no arrival times drawn)."""
    span = n_bins * bin_s
    breakpoints, multipliers = model.burst.sample_path(rngs.bursts, 0.0, span)
    edges, rates = piecewise_rate(
        0.0, span, model.base_rate_per_s, model.profile, breakpoints, multipliers
    )
    cumulative = np.concatenate(([0.0], np.cumsum(rates * np.diff(edges))))
    at_bins = np.interp(np.arange(n_bins + 1) * bin_s, edges, cumulative)
    counts: np.ndarray = rngs.arrivals.poisson(np.diff(at_bins)).astype(np.float64)
    return counts


def acceptance(real: TraceStats, generated: TraceStats) -> list[Check]:
    """The issue-#4 checks that apply to this trace (others are listed as not applicable)."""
    checks: list[Check] = []
    pct = f"±{RATE_TOLERANCE:.0%}"
    for label, r, g in zip(
        ("rate per minute p50", "rate per minute p95", "rate per minute p99"),
        real.rate_per_min,
        generated.rate_per_min,
        strict=True,
    ):
        checks.append(_relative(label, r, g, RATE_TOLERANCE, pct))
    checks.append(
        _relative(
            "inter-arrival CV",
            real.interarrival_cv,
            generated.interarrival_cv,
            CV_TOLERANCE,
            f"±{CV_TOLERANCE:.0%}",
        )
    )
    for label, r_q, g_q in (
        ("input tokens", real.input_tokens, generated.input_tokens),
        ("output tokens", real.output_tokens, generated.output_tokens),
    ):
        for i, p in ((0, 50), (1, 95)):
            checks.append(
                _relative(
                    f"{label} p{p}",
                    None if r_q is None else r_q[i],
                    None if g_q is None else g_q[i],
                    TOKEN_TOLERANCE,
                    f"±{TOKEN_TOLERANCE:.0%}",
                )
            )
    corr = profile_correlation(real, generated)
    checks.append(
        Check(
            "hour-of-week profile correlation",
            None,
            corr,
            f"≥ {PROFILE_MIN_CORRELATION}",
            None if corr is None else corr >= PROFILE_MIN_CORRELATION,
        )
    )
    return checks


def profile_correlation(real: TraceStats, generated: TraceStats) -> float | None:
    """Pearson correlation of the two hour-of-week profiles (None unless both span a week)."""
    if real.hour_of_week is None or generated.hour_of_week is None:
        return None
    return float(np.corrcoef(real.hour_of_week, generated.hour_of_week)[0, 1])


def _relative(
    label: str, real: float | None, generated: float | None, tolerance: float, text: str
) -> Check:
    if real is None or generated is None or not math.isfinite(real) or real == 0:
        return Check(label, real, generated, text, None)
    return Check(label, real, generated, text, abs(generated / real - 1.0) <= tolerance)

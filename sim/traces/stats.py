"""Trace statistics: what `sim trace inspect` prints and `compare` puts side by side.

Definitions (the same for a real trace and a generated sample, so they compare like with like):

- **bins**: full bins of `bin_s` seconds from trace time 0 (`bin_s` = 60 for request traces of
  ≥ 10 minutes, 1 s for shorter ones, the native window for rate traces); a partial last bin is
  dropped. **rate per minute** = requests in a bin × 60 / `bin_s` (for a rate trace: the window's
  rate × 60). Its p50/p95/p99 are `numpy.percentile` (linear) over the bins of one window.
- **rate CV**, **lag-1 autocorrelation** of the per-bin counts (Pearson; it sets the burst time
  scale), **peak / mean** (busiest bin over the mean); **idle share**: bins with no request.
- **inter-arrival CV**: std / mean (population) of the gaps between consecutive arrivals. When
  a real trace logs arrivals in batches (≥ 50% of gaps exactly 0) its `quantum_s` (median gap
  between distinct timestamps) is recorded, and a generated sample compared with it is floored
  to the same grid first (the statistic then measures the logging as well as the traffic).
- **windows**: a generated sample is `windows` independent copies of the trace's span; every
  statistic is computed per window and averaged over them — the same estimator as on the one
  real window (a p99 over one hour's 58 minutes is not the p99 of the process).
- **hour-of-week profile**: mean arrivals per hour-of-week slot (trace time 0 = Monday 00:00)
  over the full hours, normalised to mean 1 — only when the span covers a week; the
  **hour-of-day** profile when it covers a day.
- **tokens**: p50/p95/p99 and mean of input and output tokens; Pearson correlation of the two.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np
import polars as pl

from sim.rng import trace_inspect_rng
from sim.traces.model import RateTrace, RequestTrace
from sim.traces.rates import superposed_interarrival_cv
from sim.units import HOURS_PER_WEEK, SECONDS_PER_HOUR

FloatArray = np.ndarray
QUANTILES = (50, 95, 99)
_GAP_SAMPLE = 5_000  # gaps kept for the distribution chart (evenly spaced order statistics)
_LENGTH_SAMPLE = 3_000  # (input, output) pairs kept for the scatter chart


@dataclass(frozen=True)
class TraceStats:
    """Statistics of a trace or of a generated sample (see the module docstring)."""

    name: str
    kind: str  # "requests" | "rates"
    requests: float  # counted (expected, for a rate trace)
    span_s: float  # per window
    windows: int
    mean_rate_per_s: float
    bin_s: float
    bins: int
    rate_per_min: tuple[float, float, float]  # p50, p95, p99
    rate_shape: tuple[float, float, float]  # p50, p95, p99 over the window's own mean
    rate_min_per_min: float
    rate_max_per_min: float
    rate_cv: float
    rate_ac1: float
    idle_share: float
    peak_to_mean: float
    interarrival_cv: float | None = None
    zero_gap_share: float | None = None
    quantum_s: float | None = None
    max_per_second: int | None = None
    hour_of_week: tuple[float, ...] | None = None
    hour_of_day: tuple[float, ...] | None = None
    input_tokens: tuple[float, float, float] | None = None  # p50, p95, p99
    output_tokens: tuple[float, float, float] | None = None
    mean_input_tokens: float | None = None
    mean_output_tokens: float | None = None
    token_correlation: float | None = None
    superposed_cv: float | None = None
    series: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False, compare=False)
    gaps: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False, compare=False)
    lengths: pl.DataFrame = field(default_factory=pl.DataFrame, repr=False, compare=False)

    def rows(self) -> list[tuple[str, float | None]]:
        """(statistic, value) pairs in display order (None: not available)."""
        q = self.rate_per_min
        rows: list[tuple[str, float | None]] = [
            ("requests", self.requests),
            ("span (h, per window)", self.span_s / 3600.0),
            ("windows", float(self.windows)),
            ("mean rate (req/s)", self.mean_rate_per_s),
            (f"rate per minute p50 (bins of {self.bin_s:g} s)", q[0]),
            ("rate per minute p95", q[1]),
            ("rate per minute p99", q[2]),
            ("rate per minute min", self.rate_min_per_min),
            ("rate per minute max", self.rate_max_per_min),
            ("rate CV (per bin)", self.rate_cv),
            ("rate lag-1 autocorrelation", self.rate_ac1),
            ("idle bins (share)", self.idle_share),
            ("peak / mean rate", self.peak_to_mean),
            ("inter-arrival CV", self.interarrival_cv),
            ("zero inter-arrival gaps (share)", self.zero_gap_share),
            ("timestamp quantum (s)", self.quantum_s),
            ("max requests in one second", _maybe(self.max_per_second)),
            ("superposed client CV (simulated)", self.superposed_cv),
        ]
        for label, values, mean in (
            ("input tokens", self.input_tokens, self.mean_input_tokens),
            ("output tokens", self.output_tokens, self.mean_output_tokens),
        ):
            for p, v in zip(QUANTILES, values or (None, None, None), strict=True):
                rows.append((f"{label} p{p}", v))
            rows.append((f"{label} mean", mean))
        rows.append(("input/output token correlation", self.token_correlation))
        if self.hour_of_week is not None:
            hw = np.array(self.hour_of_week)
            rows.append(("hour-of-week peak / trough", _ratio(hw.max(), hw.min())))
        if self.hour_of_day is not None:
            hd = np.array(self.hour_of_day)
            rows.append(("hour-of-day peak / trough", _ratio(hd.max(), hd.min())))
        return rows


def _maybe(value: int | None) -> float | None:
    return None if value is None else float(value)


def _ratio(a: float, b: float) -> float:
    return math.inf if b == 0 else float(a / b)


def bin_seconds(span_s: float) -> float:
    """60 s bins for a span of at least 10 minutes, else 1 s bins."""
    return 60.0 if span_s >= 600.0 else 1.0


def timestamp_quantum(arrival_s: FloatArray) -> float | None:
    """The batch spacing of batched timestamps (≥ 50% zero gaps), else None."""
    gaps = np.diff(arrival_s)
    if gaps.size < 10 or np.mean(gaps == 0.0) < 0.5:
        return None
    distinct = np.diff(np.unique(arrival_s))
    return float(np.median(distinct)) if distinct.size else None


def describe(trace: RequestTrace | RateTrace, name: str | None = None) -> TraceStats:
    """The statistics of a trace as read."""
    label = name or trace.file
    if isinstance(trace, RateTrace):
        return describe_rates(
            [trace.frame["rate_per_s"].to_numpy()], trace.window_s, label, counts=False
        )
    frame = trace.frame
    inp = frame["input_tokens"].to_numpy()
    out = frame["output_tokens"].to_numpy()
    if not trace.has_arrivals:
        return describe_lengths_only(label, inp, out)
    t = frame["arrival_s"].to_numpy()
    span = float(t[-1]) if t.size else 0.0
    return describe_arrivals([t], span, label, inp, out)


def describe_lengths_only(name: str, inp: FloatArray, out: FloatArray) -> TraceStats:
    """A length-only dataset: token statistics, no rates."""
    nan3 = (math.nan, math.nan, math.nan)
    base = TraceStats(
        name,
        "lengths",
        float(inp.size),
        0.0,
        0,
        math.nan,
        0.0,
        0,
        nan3,
        nan3,
        math.nan,
        math.nan,
        math.nan,
        math.nan,
        math.nan,
        math.nan,
    )
    return _with_tokens(base, inp, out)


def describe_arrivals(
    windows: Sequence[FloatArray],
    span_s: float,
    name: str,
    inp: FloatArray | None = None,
    out: FloatArray | None = None,
    *,
    quantum_s: float | None = None,
    detail: bool = True,
) -> TraceStats:
    """Statistics of arrival times: one array per window, each on `[0, span_s)` (seconds).

    `quantum_s` (a generated sample compared with a batched real trace) floors the times to
    that grid before the gap statistics; without it a batched trace's own quantum is detected.
    `detail=False` skips what the burst fit does not use (profiles, per-second peak, chart
    samples, tokens): it halves the cost of a fitting step.
    """
    bin_s = bin_seconds(span_s)
    n_bins = max(1, int(span_s // bin_s))
    counts = np.stack(
        [np.bincount((t // bin_s).astype(np.int64), minlength=n_bins)[:n_bins] for t in windows]
    ).astype(np.float64)
    stats = _rate_stats(counts, bin_s)
    detected = timestamp_quantum(windows[0]) if quantum_s is None and len(windows) == 1 else None
    gaps_list = []
    cvs = []
    for t in windows:
        times = np.floor(t / quantum_s) * quantum_s if quantum_s else t
        g = np.diff(times)
        gaps_list.append(g)
        if g.size > 1 and g.mean() > 0:
            cvs.append(float(g.std() / g.mean()))
    gaps = np.concatenate(gaps_list) if gaps_list else np.empty(0)
    total = float(sum(t.size for t in windows))
    per_second = (
        max((int(np.bincount(t.astype(np.int64)).max()) for t in windows if t.size), default=0)
        if detail
        else None
    )
    profile_w, profile_d = _profiles(windows, span_s) if detail else (None, None)
    mean_gap = float(gaps.mean()) if gaps.size else math.nan
    result = TraceStats(
        name=name,
        kind="requests",
        requests=total,
        span_s=span_s,
        windows=len(windows),
        mean_rate_per_s=total / (span_s * len(windows)) if span_s > 0 else math.nan,
        bin_s=bin_s,
        bins=counts.size,
        interarrival_cv=float(np.mean(cvs)) if cvs else None,
        zero_gap_share=float(np.mean(gaps == 0.0)) if gaps.size else None,
        quantum_s=quantum_s if quantum_s is not None else detected,
        max_per_second=per_second,
        hour_of_week=profile_w,
        hour_of_day=profile_d,
        series=_series(counts[0], bin_s),
        gaps=_gap_sample(gaps, mean_gap) if detail else pl.DataFrame(),
        **stats._asdict(),
    )
    if detail and inp is not None and out is not None:
        result = _with_tokens(result, inp, out)
    return result


def describe_rates(
    windows: Sequence[FloatArray], window_s: float, name: str, *, counts: bool
) -> TraceStats:
    """Statistics at a rate trace's resolution: per window, the rate (req/s) of each bin, or
    with `counts` the number of requests in each bin (a generated sample)."""
    values = np.stack([np.asarray(w, dtype=np.float64) for w in windows])
    per_bin = values if counts else values * window_s
    stats = _rate_stats(per_bin, window_s)
    span = window_s * values.shape[1]
    total = float(per_bin.sum())
    hourly = _hourly_from_bins(per_bin, window_s)
    profile_w = _fold(hourly, HOURS_PER_WEEK) if hourly is not None else None
    profile_d = _fold(hourly, 24) if hourly is not None else None
    return TraceStats(
        name=name,
        kind="rates",
        requests=total,
        span_s=span,
        windows=len(windows),
        mean_rate_per_s=total / (span * len(windows)),
        bin_s=window_s,
        bins=per_bin.size,
        hour_of_week=profile_w,
        hour_of_day=profile_d,
        series=_series(per_bin[0], window_s),
        **stats._asdict(),
    )


class _RateStats(NamedTuple):
    rate_per_min: tuple[float, float, float]
    rate_shape: tuple[float, float, float]
    rate_min_per_min: float
    rate_max_per_min: float
    rate_cv: float
    rate_ac1: float
    idle_share: float
    peak_to_mean: float


def _rate_stats(counts: np.ndarray, bin_s: float) -> _RateStats:
    """Per-bin rate statistics of counts (windows × bins), each computed per window and then
    averaged over windows: the same estimator as on the one real window."""
    per_min = counts * (60.0 / bin_s)
    per_window = np.percentile(per_min, QUANTILES, axis=1)  # 3 × windows
    q = per_window.mean(axis=1)
    means = per_min.mean(axis=1)
    busy = means > 0
    # Scale-free shape: each window's quantiles over its own mean (+ one request per bin, so
    # idle windows stay finite).
    one = 60.0 / bin_s
    shape = ((per_window + one) / (means + one)).mean(axis=1)
    acs = [
        float(np.corrcoef(row[:-1], row[1:])[0, 1])
        for row in counts
        if row.size > 2 and row[:-1].std() > 0 and row[1:].std() > 0
    ]
    cv = (per_min[busy].std(axis=1) / means[busy]).mean() if busy.any() else math.nan
    peak = (per_min[busy].max(axis=1) / means[busy]).mean() if busy.any() else math.nan
    return _RateStats(
        rate_per_min=(float(q[0]), float(q[1]), float(q[2])),
        rate_shape=(float(shape[0]), float(shape[1]), float(shape[2])),
        rate_min_per_min=float(per_min.min(axis=1).mean()),
        rate_max_per_min=float(per_min.max(axis=1).mean()),
        rate_cv=float(cv),
        rate_ac1=float(np.mean(acs)) if acs else math.nan,
        idle_share=float(np.mean(per_min == 0.0)),
        peak_to_mean=float(peak),
    )


def _profiles(
    windows: Sequence[FloatArray], span_s: float
) -> tuple[tuple[float, ...] | None, tuple[float, ...] | None]:
    hours = int(span_s // SECONDS_PER_HOUR)
    if hours < 24:
        return None, None
    per_hour = np.stack(
        [
            np.bincount((t // SECONDS_PER_HOUR).astype(np.int64), minlength=hours)[:hours]
            for t in windows
        ]
    ).astype(np.float64)
    return _fold(per_hour, HOURS_PER_WEEK), _fold(per_hour, 24)


def _hourly_from_bins(per_bin: np.ndarray, bin_s: float) -> np.ndarray | None:
    """Requests per full hour (windows × hours) when bins tile hours exactly."""
    if bin_s > SECONDS_PER_HOUR or SECONDS_PER_HOUR % bin_s:
        return None
    k = int(SECONDS_PER_HOUR // bin_s)
    hours = per_bin.shape[1] // k
    if hours < 24:
        return None
    hourly: np.ndarray = per_bin[:, : hours * k].reshape(per_bin.shape[0], hours, k).sum(axis=2)
    return hourly


def _fold(per_hour: np.ndarray, period: int) -> tuple[float, ...] | None:
    """Mean per slot (hour mod `period`), over windows and occurrences; None if not all slots
    are covered; normalised to mean 1."""
    hours = per_hour.shape[1]
    if hours < period:
        return None
    slots = np.arange(hours) % period
    totals = np.bincount(slots, weights=per_hour.sum(axis=0), minlength=period)
    occurrences = np.bincount(slots, minlength=period) * per_hour.shape[0]
    means = totals / occurrences
    if means.mean() <= 0:
        return None
    return tuple(float(v) for v in means / means.mean())


def _series(counts: np.ndarray, bin_s: float) -> pl.DataFrame:
    """The first window's rate per bin, for the time-series chart."""
    return pl.DataFrame(
        {
            "t_min": np.arange(counts.size, dtype=np.float64) * bin_s / 60.0,
            "rate_per_min": counts * (60.0 / bin_s),
        }
    )


def _gap_sample(gaps: np.ndarray, mean_gap: float) -> pl.DataFrame:
    """Evenly spaced order statistics of the gaps / mean gap, with their CCDF."""
    if gaps.size == 0 or not mean_gap > 0:
        return pl.DataFrame(
            {"gap_over_mean": [], "ccdf": []},
            schema={"gap_over_mean": pl.Float64, "ccdf": pl.Float64},
        )
    ordered = np.sort(gaps) / mean_gap
    idx = np.unique(np.linspace(0, ordered.size - 1, min(_GAP_SAMPLE, ordered.size)).astype(int))
    ccdf = 1.0 - idx / ordered.size
    return pl.DataFrame({"gap_over_mean": ordered[idx], "ccdf": ccdf})


def _with_tokens(stats: TraceStats, inp: np.ndarray, out: np.ndarray) -> TraceStats:
    from dataclasses import replace

    if inp.size == 0:
        return stats
    qi = np.percentile(inp, QUANTILES)
    qo = np.percentile(out, QUANTILES)
    corr = (
        float(np.corrcoef(inp, out)[0, 1])
        if inp.size > 2 and inp.std() > 0 and out.std() > 0
        else None
    )
    step = max(1, inp.size // _LENGTH_SAMPLE)
    return replace(
        stats,
        input_tokens=(float(qi[0]), float(qi[1]), float(qi[2])),
        output_tokens=(float(qo[0]), float(qo[1]), float(qo[2])),
        mean_input_tokens=float(inp.mean()),
        mean_output_tokens=float(out.mean()),
        token_correlation=corr,
        lengths=pl.DataFrame(
            {
                "input_tokens": inp[::step].astype(np.int64),
                "output_tokens": out[::step].astype(np.int64),
            }
        ),
    )


def inspect_stats(trace: RequestTrace | RateTrace, name: str | None = None) -> TraceStats:
    """`describe`, plus — for a rate trace with per-client fits — the inter-arrival CV of all
    clients together, simulated with `sim trace inspect`'s own random stream."""
    stats = describe(trace, name)
    if isinstance(trace, RateTrace):
        cv = superposed_interarrival_cv(trace, trace_inspect_rng())
        if cv is not None:
            stats = dataclasses.replace(stats, superposed_cv=cv)
    return stats

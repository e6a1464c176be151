"""Trace replay: a real trace's arrivals placed on the plan clock, scaled, looped, grown.

Two kinds of source:

- `RequestReplay`: a request trace (arrival times and token pairs). Replayed *as is*: at scale 1
  a window of the plan holds exactly the trace's arrivals and lengths, shifted by the offset.
- `RateReplay`: a rate trace (ServeGen-style: mean req/s per fixed window, no arrival times).
  Arrivals are a Poisson process whose rate is the trace's rate in each window, sampled exactly
  (`sample_piecewise_poisson`); lengths come from a separate `EmpiricalLengths`.

`ReplayTraffic` places the source on the plan clock and scales it. With `P = period_s ·
time_scale` the loop period in plan seconds, trace time `τ` of loop `k` lands at plan time
`offset_s + k·P + τ·time_scale` (only `k = 0` when `loop` is false). `time_scale > 1` slows the
trace down (same requests over a longer time: rate ÷ time_scale).

**Rate scaling** by `r = rate_scale × growth_factor` (the month's cumulative growth, so month 1
of a plan runs at `rate_scale`), with `n = ⌊r⌋` and `f = r − n`:

- copy 0 is the trace itself, unshifted;
- copies 1 … n − 1 are the trace circularly shifted by independent offsets `U_j ~ Uniform[0, P)`
  (a shifted copy wraps around inside each loop period, so every copy has the trace's volume);
- if `f > 0`, one more copy (shifted by its own `U`, or unshifted when `n = 0`) is *thinned*:
  each of its arrivals in the window is kept independently with probability `f`.

So `r = 1` is the trace exactly (no random draw at all), `r = 0.5` keeps each request with
probability ½ (thinning), `r = 2.5` superposes the trace, one shifted copy and one shifted copy
thinned to ½. Expected volume is exactly `r` times the trace's. For a rate trace, scaling
multiplies the rate (for a Poisson process that is the same law as thinning / superposition).

**Randomness**: the shifts `U_j` are drawn first, then one thinning uniform per arrival of the
thinned copy in the window, all from the `arrivals` generator of `MonthRngs` (per-month streams,
so each month draws its own shifts; copy 0 never moves). Lengths that are not the trace's own
come from the `lengths` generator.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, field

import numpy as np

from sim.rng import MonthRngs
from sim.units import HOURS_PER_WEEK, SECONDS_PER_HOUR
from sim.workload.arrivals import sample_piecewise_poisson
from sim.workload.clock import FloatArray, IntArray
from sim.workload.lengths import EmpiricalLengths
from sim.workload.profile import WeeklyProfile

Requests = tuple[FloatArray, IntArray, IntArray]


@dataclass(frozen=True, eq=False)
class RequestReplay:
    """A request trace ready to replay: sorted arrival times (s from the trace start, ≥ 0),
    token pairs, and the loop period in trace seconds (> the last arrival)."""

    arrival_s: FloatArray = field(repr=False)
    input_tokens: IntArray = field(repr=False)
    output_tokens: IntArray = field(repr=False)
    period_s: float
    name: str = ""

    def __post_init__(self) -> None:
        t = np.array(self.arrival_s, dtype=np.float64)
        inp = np.array(self.input_tokens, dtype=np.int64)
        out = np.array(self.output_tokens, dtype=np.int64)
        if not (t.ndim == 1 and t.size >= 1 and inp.shape == t.shape and out.shape == t.shape):
            raise ValueError("a request replay needs equally long, non-empty 1-D arrays")
        if not np.all(np.isfinite(t)) or t[0] < 0.0 or np.any(np.diff(t) < 0.0):
            raise ValueError("arrival times must be finite, >= 0 and non-decreasing")
        if inp.min() < 1 or out.min() < 1:
            raise ValueError("token counts must be >= 1")
        if not (math.isfinite(self.period_s) and self.period_s > t[-1]):
            raise ValueError(
                f"period_s must be finite and > the last arrival {t[-1]!r}, got {self.period_s!r}"
            )
        for name, array in (("arrival_s", t), ("input_tokens", inp), ("output_tokens", out)):
            array.flags.writeable = False
            object.__setattr__(self, name, array)

    def __reduce__(
        self,
    ) -> tuple[type[RequestReplay], tuple[FloatArray, IntArray, IntArray, float, str]]:
        return (
            type(self),
            (self.arrival_s, self.input_tokens, self.output_tokens, self.period_s, self.name),
        )

    @property
    def size(self) -> int:
        """Number of requests in one pass of the trace."""
        return int(self.arrival_s.size)

    @staticmethod
    def default_period_s(arrival_s: FloatArray) -> float:
        """Last arrival + the mean inter-arrival gap: the looped rate is then (n − 1) / span.

        A single request has no gap to go by: its period is its arrival time + 1 s.
        """
        t = np.asarray(arrival_s, dtype=np.float64)
        if t.size < 2:
            return float(t[-1]) + 1.0
        span = float(t[-1] - t[0])
        gap = span / (t.size - 1) if span > 0.0 else 1.0
        return float(t[-1]) + gap


@dataclass(frozen=True, eq=False)
class RateReplay:
    """A rate trace: `rates_per_s[j]` req/s on `[j·window_s, (j+1)·window_s)` (trace seconds)."""

    window_s: float
    rates_per_s: FloatArray = field(repr=False)
    name: str = ""

    def __post_init__(self) -> None:
        rates = np.array(self.rates_per_s, dtype=np.float64)
        if rates.ndim != 1 or rates.size < 1:
            raise ValueError("a rate replay needs a non-empty 1-D array of rates")
        if not np.all(np.isfinite(rates)) or rates.min() < 0.0 or rates.max() <= 0.0:
            raise ValueError("rates must be finite, >= 0 and not all zero")
        if not (math.isfinite(self.window_s) and self.window_s > 0.0):
            raise ValueError(f"window_s must be a finite number > 0, got {self.window_s!r}")
        rates.flags.writeable = False
        object.__setattr__(self, "rates_per_s", rates)

    def __reduce__(self) -> tuple[type[RateReplay], tuple[float, FloatArray, str]]:
        return (type(self), (self.window_s, self.rates_per_s, self.name))

    @property
    def period_s(self) -> float:
        """Length of the trace in trace seconds (windows × window length)."""
        return self.window_s * self.rates_per_s.size

    @property
    def size(self) -> float:
        """Expected requests in one pass of the trace."""
        return float(self.rates_per_s.sum() * self.window_s)


@dataclass(frozen=True)
class ReplayTraffic:
    """A trace on the plan clock (see the module docstring for the exact semantics).

    `lengths`, when given, replaces the trace's own token pairs by independent draws (required
    for a `RateReplay`, which has none).
    """

    source: RequestReplay | RateReplay
    rate_scale: float = 1.0
    time_scale: float = 1.0
    offset_s: float = 0.0
    loop: bool = True
    lengths: EmpiricalLengths | None = None

    def __post_init__(self) -> None:
        for name in ("rate_scale", "time_scale"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0.0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        if not math.isfinite(self.offset_s):
            raise ValueError(f"offset_s must be finite, got {self.offset_s!r}")
        if isinstance(self.source, RateReplay) and self.lengths is None:
            raise ValueError("a rate trace has no token lengths: give `lengths`")

    @property
    def period_plan_s(self) -> float:
        """The loop period on the plan clock: period_s × time_scale."""
        return self.source.period_s * self.time_scale

    def mean_rate_per_s(self) -> float:
        """Long-run mean arrival rate at scale 1 (req/s on the plan clock, looping)."""
        return self.source.size / self.period_plan_s

    def sample(
        self, rngs: MonthRngs, start_s: float, end_s: float, growth_factor: float
    ) -> Requests:
        """Requests arriving in plan window `[start_s, end_s)` at volume `growth_factor`.

        Draws from `rngs.arrivals` (shifts, thinning, Poisson arrivals of a rate trace) and,
        for lengths that are not the trace's own, `rngs.lengths`; `rngs.bursts` is unused.
        """
        if not (math.isfinite(growth_factor) and growth_factor >= 0.0):
            raise ValueError(f"growth_factor must be a finite number >= 0, got {growth_factor!r}")
        if not end_s > start_s:
            raise ValueError(f"need start_s < end_s, got {start_s!r}, {end_s!r}")
        scale = self.rate_scale * growth_factor
        if isinstance(self.source, RateReplay):
            arrival_s = self._rate_arrivals(rngs.arrivals, start_s, end_s, scale)
            inp, out = self._lengths(rngs.lengths, arrival_s.size)
            return arrival_s, inp, out
        arrival_s, rows = self._request_arrivals(rngs.arrivals, start_s, end_s, scale)
        if self.lengths is not None:
            inp, out = self._lengths(rngs.lengths, arrival_s.size)
            return arrival_s, inp, out
        src = self.source
        return arrival_s, src.input_tokens[rows], src.output_tokens[rows]

    def expected_arrivals(self, start_s: float, end_s: float, growth_factor: float) -> float:
        """E[number of arrivals in `[start_s, end_s)`] at volume `growth_factor` (requests)."""
        r = self.rate_scale * growth_factor
        whole, frac = math.floor(r), r - math.floor(r)
        fixed = self._copy0_expected(start_s, end_s)
        # A uniformly shifted copy spreads the trace's volume evenly over the covered time.
        shifted = self.source.size * self._covered_s(start_s, end_s) / self.period_plan_s
        if whole == 0:
            return frac * fixed
        return fixed + (whole - 1) * shifted + frac * shifted

    def hour_of_week_profile(self, horizon_s: float) -> WeeklyProfile:
        """The hour-of-week shape of the unscaled, unshifted trace on the plan's horizon.

        Mean arrivals per plan hour over `[0, horizon_s)`, averaged per hour-of-week slot over
        the slot's occurrences, normalised to mean 1 (a slot the horizon never reaches counts 0).
        """
        hours = max(1, math.ceil(horizon_s / SECONDS_PER_HOUR))
        edges = np.arange(hours + 1, dtype=np.float64) * SECONDS_PER_HOUR
        per_hour = np.array([self._copy0_expected(a, b) for a, b in itertools.pairwise(edges)])
        slots = np.arange(hours) % HOURS_PER_WEEK
        occurrences = np.bincount(slots, minlength=HOURS_PER_WEEK)
        totals = np.bincount(slots, weights=per_hour, minlength=HOURS_PER_WEEK)
        values = np.divide(totals, occurrences, out=np.zeros(HOURS_PER_WEEK), where=occurrences > 0)
        return WeeklyProfile.from_values(values)

    # ------------------------------------------------------------------------------- internals

    def _loops(self, start_s: float, end_s: float) -> range:
        """Loop indices `k` whose period `[offset + kP, offset + (k+1)P)` meets the window."""
        p = self.period_plan_s
        first = math.floor((start_s - self.offset_s) / p)
        last = math.floor((end_s - self.offset_s) / p)
        if not self.loop:
            first, last = max(first, 0), min(last, 0)
        return range(first, last + 1)

    def _covered_s(self, start_s: float, end_s: float) -> float:
        if self.loop:
            return end_s - start_s
        lo, hi = self.offset_s, self.offset_s + self.period_plan_s
        return max(0.0, min(end_s, hi) - max(start_s, lo))

    def _trace_times(self) -> FloatArray:
        src = self.source
        assert isinstance(src, RequestReplay)
        return src.arrival_s if self.time_scale == 1.0 else src.arrival_s * self.time_scale

    def _copy0_expected(self, start_s: float, end_s: float) -> float:
        if isinstance(self.source, RateReplay):
            edges, rates = self._rate_pieces(start_s, end_s, 1.0)
            return float(np.sum(rates * np.diff(edges)))
        tau = self._trace_times()
        p = self.period_plan_s
        count = 0
        for k in self._loops(start_s, end_s):
            base = self.offset_s + k * p
            lo = int(np.searchsorted(tau, start_s - base, side="left"))
            hi = int(np.searchsorted(tau, end_s - base, side="left"))
            count += max(0, hi - lo)
        return float(count)

    def _request_arrivals(
        self, rng: np.random.Generator, start_s: float, end_s: float, scale: float
    ) -> tuple[FloatArray, IntArray]:
        """Plan times and trace row indices of every copy's arrivals in the window."""
        whole, frac = math.floor(scale), scale - math.floor(scale)
        n_copies = whole + (1 if frac > 0.0 else 0)
        if n_copies == 0:
            return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64)
        p = self.period_plan_s
        shifts = np.concatenate(([0.0], rng.random(n_copies - 1) * p))
        times: list[FloatArray] = []
        rows: list[IntArray] = []
        for j, shift in enumerate(shifts.tolist()):
            t, r = self._one_copy(shift, start_s, end_s)
            if j == whole:  # the thinned copy
                keep = rng.random(t.size) < frac
                t, r = t[keep], r[keep]
            times.append(t)
            rows.append(r)
        if len(times) == 1:
            return times[0], rows[0]
        all_t, all_r = np.concatenate(times), np.concatenate(rows)
        order = np.argsort(all_t, kind="stable")  # ties: copy order, then trace order
        return all_t[order], all_r[order]

    def _one_copy(self, shift: float, start_s: float, end_s: float) -> tuple[FloatArray, IntArray]:
        """One copy circularly shifted by `shift` (plan seconds), looped, cut to the window."""
        tau = self._trace_times()
        p = self.period_plan_s
        index = np.arange(tau.size, dtype=np.int64)
        if shift == 0.0:
            local, order = tau, index
        else:
            cut = int(np.searchsorted(tau, p - shift, side="left"))
            local = np.concatenate((np.maximum(tau[cut:] + shift - p, 0.0), tau[:cut] + shift))
            order = np.concatenate((index[cut:], index[:cut]))
        loops = self._loops(start_s, end_s)
        if len(loops) == 0:
            return np.empty(0, dtype=np.float64), np.empty(0, dtype=np.int64)
        bases = self.offset_s + np.arange(loops.start, loops.stop, dtype=np.float64) * p
        # NOTE: one outer sum for all loops (bases increase by P and `local` lies in [0, P), so
        # the result is already sorted); a month of a one-hour trace is 730 loops.
        t = np.add.outer(bases, local).ravel()
        r = np.tile(order, bases.size)
        inside = (t >= start_s) & (t < end_s)
        return t[inside], r[inside]

    def _rate_pieces(
        self, start_s: float, end_s: float, scale: float
    ) -> tuple[FloatArray, FloatArray]:
        """`(edges, rates)` of the piecewise-constant rate on the window (plan seconds)."""
        src = self.source
        assert isinstance(src, RateReplay)
        w = src.window_s * self.time_scale
        p = self.period_plan_s
        cuts = [np.array([start_s, end_s])]
        for k in self._loops(start_s, end_s):
            cuts.append(self.offset_s + k * p + w * np.arange(src.rates_per_s.size + 1))
        edges = np.unique(np.concatenate(cuts))
        edges = edges[(edges >= start_s) & (edges <= end_s)]
        mid = (edges[:-1] + edges[1:]) / 2.0
        k = np.floor((mid - self.offset_s) / p)
        j = np.floor((mid - self.offset_s - k * p) / w).astype(np.int64)
        j = np.clip(j, 0, src.rates_per_s.size - 1)
        rates = src.rates_per_s[j] * (scale / self.time_scale)
        if not self.loop:
            rates = np.where(k == 0, rates, 0.0)
        return edges, rates

    def _rate_arrivals(
        self, rng: np.random.Generator, start_s: float, end_s: float, scale: float
    ) -> FloatArray:
        edges, rates = self._rate_pieces(start_s, end_s, scale)
        return sample_piecewise_poisson(rng, edges, rates)

    def _lengths(self, rng: np.random.Generator, n: int) -> tuple[IntArray, IntArray]:
        assert self.lengths is not None
        return self.lengths.sample(rng, n)

"""One month of requests: arrivals, then jointly resampled lengths, from per-month streams."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from sim.rng import MonthRngs
from sim.units import SECONDS_PER_MONTH
from sim.workload.arrivals import expected_arrivals, sample_arrivals
from sim.workload.burst import BurstProcess
from sim.workload.clock import FloatArray, IntArray, month_window_s
from sim.workload.lengths import EmpiricalLengths
from sim.workload.profile import WeeklyProfile


class Traffic(Protocol):
    """Anything that can draw the requests of a window of plan time: a generated
    `WorkloadModel` or a `sim.workload.replay.ReplayTraffic`."""

    def sample(
        self, rngs: MonthRngs, start_s: float, end_s: float, growth_factor: float
    ) -> tuple[FloatArray, IntArray, IntArray]:
        """`(arrival_s, input_tokens, output_tokens)` of the requests arriving in the window,
        at volume `growth_factor` (month 1 = 1.0), arrivals sorted in plan seconds."""
        ...

    def expected_arrivals(self, start_s: float, end_s: float, growth_factor: float) -> float:
        """E[number of requests arriving in the window] at volume `growth_factor`."""
        ...


@dataclass(frozen=True)
class WorkloadModel:
    """The workload model of a plan: everything but the (per-replication) growth trajectory.

    `base_rate_per_s` is the mean arrival rate in month 1 (req/s, averaged over a week);
    month `m` runs at `base_rate_per_s × growth[m]` reshaped by `profile` and `burst`.
    """

    base_rate_per_s: float
    profile: WeeklyProfile
    burst: BurstProcess
    lengths: EmpiricalLengths

    def sample(
        self, rngs: MonthRngs, start_s: float, end_s: float, growth_factor: float
    ) -> tuple[FloatArray, IntArray, IntArray]:
        """Arrivals (burst path from `rngs.bursts`, the rest from `rngs.arrivals`), then
        jointly resampled lengths from `rngs.lengths`."""
        arrival_s = sample_arrivals(
            rngs.arrivals,
            start_s,
            end_s,
            self.base_rate_per_s * growth_factor,
            self.profile,
            self.burst,
            burst_rng=rngs.bursts,
        )
        input_tokens, output_tokens = self.lengths.sample(rngs.lengths, arrival_s.size)
        return arrival_s, input_tokens, output_tokens

    def expected_arrivals(self, start_s: float, end_s: float, growth_factor: float) -> float:
        """base × growth × ∫ profile dt × E[burst] over the window (requests)."""
        return expected_arrivals(
            start_s, end_s, self.base_rate_per_s * growth_factor, self.profile, self.burst
        )


@dataclass(frozen=True, eq=False)
class MonthRequests:
    """The requests of one month (or of a window of it), in arrival order.

    `arrival_s` is in plan seconds (sorted float64); tokens are int64, one entry per request.
    """

    month: int
    arrival_s: FloatArray = field(repr=False)
    input_tokens: IntArray = field(repr=False)
    output_tokens: IntArray = field(repr=False)

    def __len__(self) -> int:
        return int(self.arrival_s.size)


def sample_month(
    workload: Traffic,
    month: int,
    growth_factor: float,
    rngs: MonthRngs,
    *,
    offset_s: float = 0.0,
    duration_s: float = SECONDS_PER_MONTH,
) -> MonthRequests:
    """Requests of 1-based `month` at volume `growth_factor` (month 1 = 1.0), in plan seconds.

    By default the whole 730-hour month; `offset_s` and `duration_s` (seconds, relative to the
    month's start) restrict it to a window of the month, e.g. its first week.
    """
    start_s, end_s = month_window_s(month)
    if not (math.isfinite(growth_factor) and growth_factor >= 0.0):
        raise ValueError(f"growth_factor must be a finite number >= 0, got {growth_factor!r}")
    if not (offset_s >= 0.0 and duration_s > 0.0 and offset_s + duration_s <= SECONDS_PER_MONTH):
        raise ValueError(
            f"window offset_s={offset_s!r}, duration_s={duration_s!r} must lie inside the month"
            f" (0 <= offset_s, duration_s > 0, offset_s + duration_s <= {SECONDS_PER_MONTH})"
        )
    window_start_s = start_s + offset_s
    window_end_s = min(window_start_s + duration_s, end_s)
    arrival_s, input_tokens, output_tokens = workload.sample(
        rngs, window_start_s, window_end_s, growth_factor
    )
    return MonthRequests(month, arrival_s, input_tokens, output_tokens)

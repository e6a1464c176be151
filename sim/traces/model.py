"""What a reader returns: a request trace or a rate trace, with what was skipped and why."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import polars as pl

from sim.config.spec import TraceColumns
from sim.errors import TraceError
from sim.workload import EmpiricalLengths, RateReplay, RequestReplay

# The generic request schema every request-trace reader produces (extra columns may follow:
# `tenant` String, `hash_ids` List(Int64)). `arrival_s` is null for length-only datasets.
REQUEST_SCHEMA = {"arrival_s": pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64}
RATE_SCHEMA = {"start_s": pl.Float64, "rate_per_s": pl.Float64}


@dataclass(frozen=True, eq=False)
class RequestTrace:
    """One row per request, in arrival order.

    `frame` has `arrival_s` (float64 seconds from the trace start, non-decreasing, ≥ 0; all null
    when the format records no arrival times: `has_arrivals` is then false), `input_tokens` and
    `output_tokens` (int64, ≥ 1), and any extra columns the format carries (`tenant`,
    `hash_ids`). `skipped` lists `(reason, rows)` the reader left out (never silently);
    `notes` are facts about the file worth showing (e.g. quantised timestamps); `columns` the
    column mapping it was read through (None: the format's own names).
    """

    file: str
    format: str
    frame: pl.DataFrame = field(repr=False)
    has_arrivals: bool = True
    skipped: tuple[tuple[str, int], ...] = ()
    notes: tuple[str, ...] = ()
    columns: TraceColumns | None = None

    @property
    def kind(self) -> str:
        return "requests"

    @property
    def size(self) -> int:
        """Number of requests read."""
        return self.frame.height

    @property
    def skipped_rows(self) -> int:
        return sum(n for _, n in self.skipped)

    def arrival_s(self) -> np.ndarray:
        """Arrival times (float64 s); a located error for a length-only dataset."""
        if not self.has_arrivals:
            raise TraceError(
                self.file, None, None, self.format, "this trace has no arrival times (lengths only)"
            )
        return self.frame["arrival_s"].to_numpy()

    def lengths(self, smoothing_log_sd: float = 0.0) -> EmpiricalLengths:
        """The joint (input, output) token distribution, for resampling."""
        return EmpiricalLengths.from_arrays(
            self.frame["input_tokens"].to_numpy(),
            self.frame["output_tokens"].to_numpy(),
            self.file,
            smoothing_log_sd,
        )

    def replay(self, period_s: float | None = None) -> RequestReplay:
        """The trace as a `RequestReplay` (default period: last arrival + mean gap)."""
        t = self.arrival_s()
        period = RequestReplay.default_period_s(t) if period_s is None else period_s
        if not period > t[-1]:
            raise TraceError(
                self.file,
                None,
                None,
                period,
                f"period_s must be longer than the trace's last arrival ({t[-1]:.6g} s)",
            )
        return RequestReplay(
            t,
            self.frame["input_tokens"].to_numpy(),
            self.frame["output_tokens"].to_numpy(),
            period,
            self.file,
        )


@dataclass(frozen=True, eq=False)
class RateTrace:
    """Mean arrival rate per fixed window: `frame` has `start_s` (0, w, 2w, …) and `rate_per_s`.

    A Prometheus export adds `mean_input_tokens` and `mean_output_tokens` per window (null in a
    window without requests). ServeGen adds `active_clients` and `rate_weighted_cv` per window
    and keeps the per-client windows in `clients` (`client, start_s, rate_per_s, cv, pattern,
    shape, scale`).
    """

    file: str
    format: str
    window_s: float
    frame: pl.DataFrame = field(repr=False)
    clients: pl.DataFrame | None = field(default=None, repr=False)
    skipped: tuple[tuple[str, int], ...] = ()
    notes: tuple[str, ...] = ()

    @property
    def kind(self) -> str:
        return "rates"

    @property
    def size(self) -> int:
        """Number of windows."""
        return self.frame.height

    @property
    def span_s(self) -> float:
        return self.window_s * self.frame.height

    @property
    def has_arrivals(self) -> bool:
        return False

    @property
    def skipped_rows(self) -> int:
        return sum(n for _, n in self.skipped)

    def expected_requests(self) -> float:
        return float(self.frame["rate_per_s"].to_numpy().sum()) * self.window_s

    def replay(self) -> RateReplay:
        return RateReplay(self.window_s, self.frame["rate_per_s"].to_numpy(), self.file)


Trace = RequestTrace | RateTrace

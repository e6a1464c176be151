"""A simulation's per-request outcomes as the arrays of `sim.records.Outcomes`: read from a
`RequestLog` that `simulate` filled (`outcomes_of`), or from the compiled core's arrays
(`core_outcomes`: a window on `simulate_one_phase` or `simulate_arrays`). Both give the same
arrays, dtypes included, for the same run (tests/test_hybrid_model.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

import numpy as np

from sim.engine import RequestLog
from sim.model import ArrayRun, SimulationResult
from sim.records import Outcomes

if TYPE_CHECKING:  # (the compiled core loads numba: imported where it runs)
    from sim.engine.compiled import CompiledFleet

__all__ = ["RequestArrays", "core_outcomes", "outcomes_of", "request_log", "throttled_flags"]


class RequestArrays(Protocol):
    """A request set as arrays (`sim.workload.MonthRequests`, a replication's `Workload`):
    arrival times (s, ascending), input and output tokens."""

    @property
    def arrival_s(self) -> np.ndarray: ...
    @property
    def input_tokens(self) -> np.ndarray: ...
    @property
    def output_tokens(self) -> np.ndarray: ...


def outcomes_of(
    log: RequestLog,
    requests: RequestArrays,
    result: SimulationResult,
    first: int = 0,
) -> Outcomes:
    """A simulated log as per-request outcome arrays (spot and API outcomes included), from
    request `first` on (a window's measured requests: those after its warm-up)."""
    throttled = throttled_flags(result.api_throttled_rids, first, len(log) - first)
    return Outcomes(
        arrival_s=requests.arrival_s[first:],
        first_token_s=np.asarray(log.first_token_s[first:]),
        finish_s=np.asarray(log.finish_s[first:]),
        input_tokens=requests.input_tokens[first:].astype(np.int64),
        output_tokens=requests.output_tokens[first:].astype(np.int64),
        rejected=np.asarray(log.rejected[first:], dtype=bool),
        preemptions=np.asarray(log.preemptions[first:], dtype=np.int64),
        evictions=np.asarray(log.evictions[first:], dtype=np.int64),
        api=np.asarray(log.api[first:], dtype=bool),
        dropped=np.asarray(log.dropped[first:], dtype=bool),
        throttled=throttled,
    )


def core_outcomes(
    requests: RequestArrays, fleet: CompiledFleet, first: int, run: ArrayRun | None = None
) -> Outcomes:
    """`outcomes_of` for a run read from the compiled core's arrays: with `run`
    (`sim.model.simulate_arrays`), its evictions, API spills, drops and throttles; without, a
    run on the core alone (no spot, API or autoscaler: none of them)."""
    first_token_s, finish_s, rejected, preemptions = fleet.outcomes(first)
    n = first_token_s.size
    none = np.zeros(n, dtype=bool)
    return Outcomes(
        arrival_s=requests.arrival_s[first:],
        first_token_s=first_token_s,
        finish_s=finish_s,
        input_tokens=requests.input_tokens[first:].astype(np.int64),
        output_tokens=requests.output_tokens[first:].astype(np.int64),
        rejected=rejected,
        preemptions=preemptions,
        evictions=run.evictions[first:] if run else np.zeros(n, dtype=np.int64),
        api=run.api[first:] if run else none,
        dropped=run.dropped[first:] if run else none,
        throttled=throttled_flags(run.api_throttled_rids, first, n) if run else none,
    )


def throttled_flags(rids: Sequence[int], first: int, n: int) -> np.ndarray:
    """Whether each of the `n` requests from `first` on is among `rids` (throttled ones)."""
    throttled = np.zeros(n, dtype=bool)
    at = np.asarray(rids, dtype=np.int64)
    throttled[at[at >= first] - first] = True
    return throttled


def request_log(requests: RequestArrays) -> RequestLog:
    """A `RequestLog` of the request set's arrays (`simulate`'s input)."""
    return RequestLog(
        requests.arrival_s.tolist(), requests.input_tokens.tolist(), requests.output_tokens.tolist()
    )

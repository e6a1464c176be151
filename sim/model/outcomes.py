"""A simulation's per-request outcomes as the arrays of `sim.records.Outcomes`: read from a
`RequestLog` that `simulate` filled (`outcomes_of`), or from the compiled core's arrays
(`core_outcomes`: a window on `simulate_arrays`). Both give the same
arrays, dtypes included, for the same run (tests/test_hybrid_model.py)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import numpy as np

from sim.engine import RequestLog
from sim.model import ArrayRun, SimulationResult
from sim.records import Outcomes

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


def core_outcomes(requests: RequestArrays, run: ArrayRun, first: int) -> Outcomes:
    """`outcomes_of` for a run read back as arrays (`sim.model.simulate_arrays`): the core's
    times, rejections and preemptions, and the control plane's evictions, API spills, drops
    and throttles."""
    first_token_s, finish_s, rejected, preemptions = run.fleet.outcomes(first)
    return Outcomes(
        arrival_s=requests.arrival_s[first:],
        first_token_s=first_token_s,
        finish_s=finish_s,
        input_tokens=requests.input_tokens[first:].astype(np.int64),
        output_tokens=requests.output_tokens[first:].astype(np.int64),
        rejected=rejected,
        preemptions=preemptions,
        evictions=run.evictions[first:],
        api=run.api[first:],
        dropped=run.dropped[first:],
        throttled=throttled_flags(run.api_throttled_rids, first, first_token_s.size),
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

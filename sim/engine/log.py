"""Per-request timestamps written by the replica engines (plain lists: cheapest to set).

Requests are identified by their index `rid` into the workload arrays. Times are seconds since
the start of the plan; NaN means "has not happened (yet)". `sim.runner` turns a log into numpy
arrays once, at the end.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np


class RequestLog:
    """Inputs (arrival, lengths, prefix-cache hits) and outcomes (timestamps, preemptions,
    replica, API) by request.

    `cached_tokens[rid]` (default 0): the prompt tokens the replica's prefix cache holds when
    it schedules the request, below `input_tokens` (in vLLM a multiple of the KV block size:
    it computes at least the prompt's last token). The engines start the request with that many
    tokens computed: its prefill costs the rest, its attention still spans the whole context,
    and its KV blocks include the cached ones (a block two running requests share is counted
    for each, which overstates KV use when requests with a common prefix run together). A
    request preempted or evicted finds the same prefix again when it is readmitted.
    """

    __slots__ = (
        "api",
        "arrival_s",
        "cached_tokens",
        "dropped",
        "evictions",
        "finish_s",
        "first_scheduled_s",
        "first_token_s",
        "has_cached_tokens",
        "input_tokens",
        "output_tokens",
        "preemptions",
        "rejected",
        "replica",
    )

    def __init__(
        self,
        arrival_s: Sequence[float],
        input_tokens: Sequence[int],
        output_tokens: Sequence[int],
        cached_tokens: Sequence[int] | None = None,
    ) -> None:
        n = len(arrival_s)
        if len(input_tokens) != n or len(output_tokens) != n:
            raise ValueError("arrival_s, input_tokens and output_tokens must have equal lengths")
        # (map: the same values as a comprehension, at about half its cost per request)
        self.arrival_s: list[float] = list(map(float, arrival_s))
        self.input_tokens: list[int] = list(map(int, input_tokens))
        self.output_tokens: list[int] = list(map(int, output_tokens))
        # Prompt tokens found in the replica's prefix cache (class docstring)
        self.cached_tokens: list[int] = [0] * n
        # whether any were given: the compiled core copies them only then (a list of n ints
        # into an array costs ~0.03 µs per request, 7 % of a one-replica run)
        self.has_cached_tokens = cached_tokens is not None
        if cached_tokens is not None:
            self.cached_tokens = list(map(int, cached_tokens))
            if len(self.cached_tokens) != n:
                raise ValueError("cached_tokens must have one value per request")
            pairs = zip(self.cached_tokens, self.input_tokens, strict=True)
            if any(not 0 <= h < p for h, p in pairs):
                raise ValueError("cached_tokens must be >= 0 and below each input_tokens")
        self.first_scheduled_s: list[float] = [math.nan] * n
        self.first_token_s: list[float] = [math.nan] * n
        self.finish_s: list[float] = [math.nan] * n
        self.preemptions: list[int] = [0] * n
        self.replica: list[int] = [-1] * n
        self.rejected: list[bool] = [False] * n
        # Spot and API outcomes (`sim.model`): times a spot reclaim took the request off a
        # replica (it was re-queued), served by the paid API, dropped (API rate limit, no retry).
        self.evictions: list[int] = [0] * n
        self.api: list[bool] = [False] * n
        self.dropped: list[bool] = [False] * n

    def __len__(self) -> int:
        return len(self.arrival_s)


def busy_seconds_inside(periods_s: np.ndarray, start_s: float, end_s: float) -> float:
    """Σ of each (start, end) row of `periods_s`'s overlap with [start_s, end_s), in row
    order, summed left to right (`cumsum`, the order a loop over the periods adds them in)."""
    if periods_s.shape[0] == 0:
        return 0.0
    inside = np.minimum(periods_s[:, 1], end_s) - np.maximum(periods_s[:, 0], start_s)
    return 0.0 + float(np.cumsum(np.maximum(inside, 0.0))[-1])

"""Compiled kernel of the per-request KPIs of a request set (`sim.stats.kpi.request_set_kpis`:
a sampled window, or a fully simulated month).

A window holds ~100–300 requests, so the ~40 numpy calls these KPIs took cost more than their
arithmetic. `window_measures` does it in one pass: per request TTFT = first token − arrival,
E2E = finish − arrival, TPOT = (finish − first token) / (output tokens − 1) for requests of
more than one output token; served = accepted and finished; met = served, TTFT ≤ its SLO and
(one output token or TPOT ≤ its SLO). `tests/test_window_kernel.py` holds it to those
definitions written in numpy, bit for bit.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]

# positions in the counts `window_measures` returns
(
    N_REQUESTS,
    N_REJECTED,
    N_MET,
    N_INPUT,
    N_OUTPUT,
    N_PREEMPTIONS,
    N_REQUEUED,
    N_API,
    N_API_DROPPED,
    N_API_THROTTLED,
    N_API_INPUT,
    N_API_OUTPUT,
) = range(12)


@njit(cache=True)  # type: ignore[misc]
def window_measures(
    arrival_s: FloatArray,
    first_token_s: FloatArray,
    finish_s: FloatArray,
    input_tokens: IntArray,
    output_tokens: IntArray,
    rejected: BoolArray,
    preemptions: IntArray,
    evictions: IntArray,
    api: BoolArray,
    dropped: BoolArray,
    throttled: BoolArray,
    ttft_slo_s: float,
    tpot_slo_s: float,
) -> tuple[FloatArray, FloatArray, FloatArray, IntArray]:
    """(TTFT of the served requests, TPOT of the served multi-token ones, E2E of the served,
    the counts at `N_*`): every request of the arrays is inside the window."""
    n = arrival_s.size
    ttft = np.empty(n, dtype=np.float64)
    tpot = np.empty(n, dtype=np.float64)
    e2e = np.empty(n, dtype=np.float64)
    counts = np.zeros(12, dtype=np.int64)
    counts[N_REQUESTS] = n
    n_served = 0
    n_multi = 0
    for i in range(n):
        if rejected[i]:
            counts[N_REJECTED] += 1
        counts[N_PREEMPTIONS] += preemptions[i]
        counts[N_REQUEUED] += evictions[i]
        if api[i]:
            counts[N_API] += 1
            if dropped[i]:
                counts[N_API_DROPPED] += 1
            else:
                counts[N_API_INPUT] += input_tokens[i]
                counts[N_API_OUTPUT] += output_tokens[i]
            if throttled[i]:
                counts[N_API_THROTTLED] += 1
        if rejected[i] or math.isnan(finish_s[i]):
            continue
        first_s = first_token_s[i] - arrival_s[i]
        ttft[n_served] = first_s
        e2e[n_served] = finish_s[i] - arrival_s[i]
        n_served += 1
        counts[N_INPUT] += input_tokens[i]
        counts[N_OUTPUT] += output_tokens[i]
        ok = first_s <= ttft_slo_s
        if output_tokens[i] > 1:
            per_token_s = (finish_s[i] - first_token_s[i]) / (output_tokens[i] - 1)
            tpot[n_multi] = per_token_s
            n_multi += 1
            ok = ok and per_token_s <= tpot_slo_s
        if ok:
            counts[N_MET] += 1
    return ttft[:n_served].copy(), tpot[:n_multi].copy(), e2e[:n_served].copy(), counts

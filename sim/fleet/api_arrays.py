"""The overflow API's client over arrays: `ApiClient`'s rules, compiled, for many requests a call.

`ArrayApiClient` is `sim.fleet.api.ApiClient` (latency draws per request, the sliding 60-second
rate-limit window, retry or drop on a 429, the counters) with its window kept in arrays and
its rules in one numba kernel, `_send`, that sends a whole run of requests per call: the
compiled engine (`sim.model.compiled`) hands it every request `route` spilled between two
control instants at once. Same arithmetic in the same order, so the same bits as `ApiClient`
(`tests/test_api_arrays.py` replays random call sequences through both).

NOTE: measured on experiments/hybrid_burst.toml's month 6 with one L40S spilling to Claude
Haiku (315,018 requests to the API in 4 replication-months): `ApiClient.call` and its
bookkeeping took 4.0 of 5.6 CPU-s, ~13 µs a request; an API-heavy candidate of a plan search
cost 1.4 CPU-s a replication-month against 0.3 for a fleet that spills nothing.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

from sim.fleet.api import WINDOW_S, ApiClient, ApiCounters

_NO_LIMIT = -1  # a limit that is not set (None in `ApiSpec`)
# scalar state: [last send time]; [window head, window tail, input tokens, output tokens]
_LAST = 0
_HEAD, _TAIL, _IN, _OUT = 0, 1, 2, 3
# counters: [sent, throttled, dropped]
_SENT, _THROTTLED, _DROPPED = 0, 1, 2


@njit(cache=True)
def _fits(
    limits: npt.NDArray[np.int64], requests: int, w_in: int, w_out: int, n_in: int, n_out: int
) -> bool:
    """`ApiClient._fits` with `limits` = [rpm, tpm, input tpm, output tpm] (−1: none)."""
    rpm, tpm, itpm, otpm = limits[0], limits[1], limits[2], limits[3]
    return bool(
        (rpm == _NO_LIMIT or requests + 1 <= rpm)
        and (tpm == _NO_LIMIT or w_in + w_out + n_in + n_out <= tpm)
        and (itpm == _NO_LIMIT or w_in + n_in <= itpm)
        and (otpm == _NO_LIMIT or w_out + n_out <= otpm)
    )


@njit(cache=True)
def _send(
    rids: npt.NDArray[np.int64],
    times: npt.NDArray[np.float64],
    inputs: npt.NDArray[np.int64],
    outputs: npt.NDArray[np.int64],
    ttft: npt.NDArray[np.float64],
    speed: npt.NDArray[np.float64],
    limits: npt.NDArray[np.int64],
    drop_on_limit: bool,
    max_retry_wait_s: float,
    last: npt.NDArray[np.float64],
    window: npt.NDArray[np.int64],
    sent_s: npt.NDArray[np.float64],
    sent_in: npt.NDArray[np.int64],
    sent_out: npt.NDArray[np.int64],
    counters: npt.NDArray[np.int64],
    first_s: npt.NDArray[np.float64],
    finish_s: npt.NDArray[np.float64],
    throttled: npt.NDArray[np.bool_],
) -> None:
    """`ApiClient.call` for each request k of the run, in order: request `rids[k]` sent at
    `times[k]` with `inputs[k]`/`outputs[k]` tokens; its first-token and finish times go to
    `first_s[k]`/`finish_s[k]` (NaN: dropped) and `throttled[k]` says whether it got a 429.
    The window is the requests `sent_*[head:tail]` (each request enters it at most once)."""
    limited = (
        limits[0] != _NO_LIMIT
        or limits[1] != _NO_LIMIT
        or limits[2] != _NO_LIMIT
        or limits[3] != _NO_LIMIT
    )
    for k in range(len(rids)):
        rid, t, n_in, n_out = rids[k], times[k], inputs[k], outputs[k]
        first_s[k] = math.nan
        finish_s[k] = math.nan
        throttled[k] = False
        s = t
        if limited:
            if not _fits(limits, 0, 0, 0, n_in, n_out):  # never fits a minute
                counters[_THROTTLED] += 1
                throttled[k] = True
                counters[_DROPPED] += 1
                continue
            s = max(t, last[_LAST])  # a throttled request is not overtaken
            while True:
                while window[_HEAD] < window[_TAIL] and sent_s[window[_HEAD]] + WINDOW_S <= s:
                    h = window[_HEAD]
                    window[_IN] -= sent_in[h]
                    window[_OUT] -= sent_out[h]
                    window[_HEAD] = h + 1
                requests = window[_TAIL] - window[_HEAD]
                if _fits(limits, requests, window[_IN], window[_OUT], n_in, n_out):
                    break
                s = sent_s[window[_HEAD]] + WINDOW_S  # when the oldest leaves the window
            if s > t:
                counters[_THROTTLED] += 1
                throttled[k] = True
                if drop_on_limit or s - t > max_retry_wait_s:
                    counters[_DROPPED] += 1
                    continue
            tail = window[_TAIL]
            sent_s[tail], sent_in[tail], sent_out[tail] = s, n_in, n_out
            window[_TAIL] = tail + 1
            window[_IN] += n_in
            window[_OUT] += n_out
            last[_LAST] = s
        counters[_SENT] += 1
        first = s + ttft[rid]
        first_s[k] = first
        finish_s[k] = first + (n_out - 1) / speed[rid]


class ArrayApiClient:
    """`ApiClient` over arrays for one simulated request set (module docstring); its window
    holds at most one entry per request call, so `capacity` = the calls it may get."""

    def __init__(self, client: ApiClient, capacity: int) -> None:
        spec = client.spec
        self.spec = spec
        self._ttft = np.ascontiguousarray(client._ttft, dtype=np.float64)
        self._speed = np.ascontiguousarray(client._speed, dtype=np.float64)
        self._limits = np.array(
            [
                _NO_LIMIT if x is None else int(x)
                for x in (spec.rpm, spec.tpm, spec.input_tpm, spec.output_tpm)
            ],
            dtype=np.int64,
        )
        self._drop = spec.on_limit == "drop"
        self._last = np.array([-math.inf])
        self._window = np.zeros(4, dtype=np.int64)
        self._sent_s = np.zeros(capacity)
        self._sent_in = np.zeros(capacity, dtype=np.int64)
        self._sent_out = np.zeros(capacity, dtype=np.int64)
        self._counts = np.zeros(3, dtype=np.int64)
        self._throttled_rids: list[int] = []

    @property
    def counters(self) -> ApiCounters:
        """What the API did so far (`ApiCounters`, as `ApiClient.counters`)."""
        sent, throttled, dropped = (int(x) for x in self._counts)
        return ApiCounters(sent, throttled, dropped, list(self._throttled_rids))

    def call_many(
        self,
        rids: npt.NDArray[np.int64],
        times: npt.NDArray[np.float64],
        inputs: npt.NDArray[np.int64],
        outputs: npt.NDArray[np.int64],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Send requests `rids` at `times` (non-decreasing, after every earlier call), in
        order: their (first-token times, finish times), NaN where dropped."""
        n = len(rids)
        first = np.empty(n)
        finish = np.empty(n)
        throttled = np.empty(n, dtype=np.bool_)
        if self._window[_TAIL] + n > len(self._sent_s):  # (more calls than announced)
            grow = max(2 * len(self._sent_s), int(self._window[_TAIL]) + n)
            self._sent_s = np.resize(self._sent_s, grow)
            self._sent_in = np.resize(self._sent_in, grow)
            self._sent_out = np.resize(self._sent_out, grow)
        _send(
            rids,
            times,
            inputs,
            outputs,
            self._ttft,
            self._speed,
            self._limits,
            self._drop,
            float(self.spec.max_retry_wait_s),
            self._last,
            self._window,
            self._sent_s,
            self._sent_in,
            self._sent_out,
            self._counts,
            first,
            finish,
            throttled,
        )
        if throttled.any():
            self._throttled_rids.extend(rids[throttled].tolist())
        return first, finish

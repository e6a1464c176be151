"""A paid LLM API as an overflow server: latency, rate limits and list-price cost.

The API is modelled from the client's side, as `vllm bench serve` measures a server:

* **Latency.** Each request's time to first token and output speed are independent lognormal
  draws, parameterised by what providers and benchmark sites publish — the median and a tail
  quantile (TTFT p95; output speed p5, the slow tail). A request sent at `s` with `o` output
  tokens has its first token at `s + ttft` and its last at `s + ttft + (o − 1) / speed`.
  The draws are made per request index before the run (`latency_draws`), so two plans that
  spill the same request see the same API latency (common random numbers).
* **Rate limits.** Requests per minute (RPM), tokens per minute (TPM, input + output, OpenAI's
  rule) and separate input/output tokens per minute (ITPM/OTPM, Anthropic's rule) over a
  sliding 60-second window; output tokens count when the request is sent. A request that
  would exceed a limit gets a 429: with ``on_limit = "retry"`` it is sent at the earliest
  instant the window allows (the optimistic reading of a `retry-after` header; requests keep
  their order), unless that is more than `max_retry_wait_s` away, in which case it is
  dropped; with ``"drop"`` it is dropped at once. Every 429 and every drop is counted.
* **Cost** is tokens × the dated list prices per million tokens (`sim.cost`).
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sim.config import ApiSpec

WINDOW_S = 60.0  # RPM/TPM are per-minute limits
Z95 = 1.6448536269514722  # standard normal 95th percentile


def latency_draws(
    spec: ApiSpec, rng: np.random.Generator, n: int
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Per-request (time to first token in s, output tokens per s) for request indices 0..n-1."""
    z = rng.standard_normal((2, n))
    sigma_ttft = math.log(spec.ttft_p95_s / spec.ttft_median_s) / Z95
    sigma_speed = math.log(spec.output_tokens_per_s_median / spec.output_tokens_per_s_p5) / Z95
    ttft = spec.ttft_median_s * np.exp(sigma_ttft * z[0])
    speed = spec.output_tokens_per_s_median * np.exp(sigma_speed * z[1])
    return ttft, speed


@dataclass
class ApiCounters:
    """What the API did in one simulation (requests counted once, however often throttled)."""

    sent: int = 0
    throttled: int = 0  # requests that got at least one 429
    dropped: int = 0
    throttled_rids: list[int] = field(default_factory=list)


class ApiClient:
    """The overflow API of one simulation: call it in non-decreasing time order."""

    def __init__(
        self,
        spec: ApiSpec,
        ttft_s: npt.NDArray[np.float64],
        tokens_per_s: npt.NDArray[np.float64],
    ) -> None:
        self.spec = spec
        self._ttft = ttft_s
        self._speed = tokens_per_s
        # (send time, input tokens, output tokens) of the requests in the window
        self._sent: deque[tuple[float, int, int]] = deque()
        self._in = 0
        self._out = 0
        self._last_send = -math.inf
        self.counters = ApiCounters()

    def _fits(self, n_in: int, n_out: int, window: tuple[int, int, int]) -> bool:
        """Would a request of n_in + n_out tokens fit a window of (requests, in, out)?"""
        spec = self.spec
        requests, w_in, w_out = window
        return (
            (spec.rpm is None or requests + 1 <= spec.rpm)
            and (spec.tpm is None or w_in + w_out + n_in + n_out <= spec.tpm)
            and (spec.input_tpm is None or w_in + n_in <= spec.input_tpm)
            and (spec.output_tpm is None or w_out + n_out <= spec.output_tpm)
        )

    def _send_time(self, t: float, n_in: int, n_out: int) -> float:
        """Earliest instant >= t at which the rate limits admit the request."""
        s = max(t, self._last_send)  # a throttled request is not overtaken
        sent = self._sent
        while True:
            while sent and sent[0][0] + WINDOW_S <= s:  # (not s - 60: rounding)
                _, a, b = sent.popleft()
                self._in -= a
                self._out -= b
            if self._fits(n_in, n_out, (len(sent), self._in, self._out)):
                return s
            s = sent[0][0] + WINDOW_S  # when the oldest request leaves the window

    def call(
        self, rid: int, t: float, input_tokens: int, output_tokens: int
    ) -> tuple[float, float] | None:
        """Send request `rid` at `t`: (first-token time, finish time), or None if dropped."""
        spec = self.spec
        limited = any(x is not None for x in (spec.rpm, spec.tpm, spec.input_tpm, spec.output_tpm))
        s = t
        if limited:
            if not self._fits(input_tokens, output_tokens, (0, 0, 0)):  # never fits a minute
                self.counters.throttled += 1
                self.counters.throttled_rids.append(rid)
                self.counters.dropped += 1
                return None
            s = self._send_time(t, input_tokens, output_tokens)
            if s > t:
                self.counters.throttled += 1
                self.counters.throttled_rids.append(rid)
                if spec.on_limit == "drop" or s - t > spec.max_retry_wait_s:
                    self.counters.dropped += 1
                    return None
            self._sent.append((s, input_tokens, output_tokens))
            self._in += input_tokens
            self._out += output_tokens
            self._last_send = s
        self.counters.sent += 1
        first = s + float(self._ttft[rid])
        return first, first + (output_tokens - 1) / float(self._speed[rid])


def api_client(api: ApiSpec | None, rng: np.random.Generator, n: int) -> ApiClient | None:
    """The overflow API for one simulated request set of `n` requests (None without an API).

    Latency draws come from `rng` (the replication's API stream for that request set), indexed
    by request, so every plan that spills request i sees the same API latency for it.
    """
    if api is None:
        return None
    ttft, speed = latency_draws(api, rng, n)
    return ApiClient(api, ttft, speed)

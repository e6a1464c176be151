"""How benchmark clients send requests: `vllm bench serve`'s arrivals and random lengths.

Following vLLM (`vllm/benchmarks/serve.py` `get_request` and `vllm/benchmarks/datasets.py`,
vLLM main at commit 009e6d4a1cd6ba3fb2a9fc00f4ec06f5297232a1):

* arrivals: request i is sent at the cumulative sum of i + 1 gaps, each Gamma(shape =
  burstiness, scale = 1 / (rate × burstiness)) — mean 1/rate, burstiness 1 is Poisson, inf a
  constant gap; the sums are rescaled so the last request is sent at exactly n / rate. Rate inf
  sends everything at t = 0.
* `random` dataset lengths: uniform integers in [⌊len·(1 − r)⌋, ⌈len·(1 + r)⌉]
  (r = `--random-range-ratio`, default 0: fixed lengths).
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]


def send_times(n: int, rate: float, burstiness: float, rng: np.random.Generator) -> FloatArray:
    """When `vllm bench serve` sends each of `n` requests, seconds (module docstring)."""
    if math.isinf(rate):
        return np.zeros(n)
    if math.isinf(burstiness):
        gaps = np.full(n, 1.0 / rate)
    else:
        gaps = rng.gamma(shape=burstiness, scale=1.0 / (rate * burstiness), size=n)
    t = np.cumsum(gaps)
    return t * ((n / rate) / t[-1]) if t[-1] > 0 else t


def random_lengths(n: int, mean_len: int, range_ratio: float, rng: np.random.Generator) -> IntArray:
    """vLLM's `random` dataset lengths: uniform integers in [⌊l(1−r)⌋, ⌈l(1+r)⌉], at least 1."""
    low = max(1, math.floor(mean_len * (1.0 - range_ratio)))
    high = max(low, math.ceil(mean_len * (1.0 + range_ratio)))
    return rng.integers(low, high + 1, size=n).astype(np.int64)

"""The API client over arrays (`sim.fleet.api_arrays`) against the Python `ApiClient`: the same
first-token and finish times, drops, 429s and counters on random call sequences — ties,
tight limits of every kind, retries past `max_retry_wait_s`, "drop" on a limit, requests too
big for a minute — sent one at a time and in runs."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from sim.config import ApiSpec
from sim.fleet.api import ApiClient
from sim.fleet.api_arrays import ArrayApiClient

_limit = st.one_of(st.none(), st.integers(1, 8))
_tokens = st.one_of(st.none(), st.integers(50, 4_000))


# (`api_spec` is a stateless factory: sharing it between examples is safe)
@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    calls=st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.0, 0.5, 7.0, 30.0, 61.0]),  # gaps, ties included
            st.integers(1, 1_500),
            st.integers(1, 600),
        ),
        min_size=1,
        max_size=60,
    ),
    rpm=_limit,
    tpm=_tokens,
    input_tpm=_tokens,
    output_tpm=_tokens,
    on_limit=st.sampled_from(["retry", "drop"]),
    max_retry_wait_s=st.sampled_from([0.0, 5.0, 60.0, 600.0]),
    runs=st.lists(st.integers(1, 7), min_size=1, max_size=12),
    seed=st.integers(0, 2**16),
)
def test_array_client_equals_the_python_client(
    api_spec: Callable[..., ApiSpec],
    calls: list[tuple[float, int, int]],
    rpm: int | None,
    tpm: int | None,
    input_tpm: int | None,
    output_tpm: int | None,
    on_limit: str,
    max_retry_wait_s: float,
    runs: list[int],
    seed: int,
) -> None:
    spec = api_spec(
        rpm=rpm,
        tpm=tpm,
        input_tpm=input_tpm,
        output_tpm=output_tpm,
        on_limit=on_limit,
        max_retry_wait_s=max_retry_wait_s,
    )
    n = len(calls)
    rng = np.random.default_rng(seed)
    ttft = rng.lognormal(-0.7, 0.5, n)
    speed = rng.lognormal(4.0, 0.3, n)
    times = np.cumsum([gap for gap, _, _ in calls])
    inputs = np.array([i for _, i, _ in calls], dtype=np.int64)
    outputs = np.array([o for _, _, o in calls], dtype=np.int64)
    rids = rng.permutation(n).astype(np.int64)  # requests reach the API in any index order

    python = ApiClient(spec, ttft, speed)
    expected = [
        python.call(int(r), float(t), int(i), int(o))
        for r, t, i, o in zip(rids, times, inputs, outputs, strict=True)
    ]
    arrays = ArrayApiClient(ApiClient(spec, ttft, speed), capacity=max(1, n // 3))  # grows
    got: list[tuple[float, float] | None] = []
    k = 0
    for size in [*runs, n]:  # runs of the given sizes (1: a single request), then the rest
        end = min(n, k + size)
        first, finish = arrays.call_many(rids[k:end], times[k:end], inputs[k:end], outputs[k:end])
        got += [
            None if math.isnan(a) else (float(a), float(b))
            for a, b in zip(first, finish, strict=True)
        ]
        k = end
    assert got == expected  # bit for bit
    assert arrays.counters == python.counters
    c = python.counters
    event("dropped" if c.dropped else "throttled, all sent" if c.throttled else "no 429")

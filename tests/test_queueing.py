"""The simulator against queueing theory.

A degenerate engine — batch size 1, one-token prompts, constant step time `s` — serves a
request in `output_tokens × s` seconds. With output lengths geometric of mean m, service is
the discrete analogue of an exponential (CV² = 1 − 1/m = 0.995 at m = 200), so M/M/1 and
M/M/c (Erlang C) give the mean wait; with c replicas, least-remaining-tokens routing is
least-work-left routing, which waits exactly like one FCFS queue in front of c servers.
Mean wait = first scheduled − arrival, after a warm-up.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.engine import EngineLimits, FastReplica, RequestLog, StepTimeModel
from sim.model import FleetPhase, ReplicaSpec, simulate

STEP_S = 0.001
MEAN_TOKENS = 200


def erlang_c_wait(lam: float, mu: float, c: int) -> float:
    """Mean wait in queue of M/M/c (Erlang C formula)."""
    a = lam / mu
    rho = a / c
    top = a**c / math.factorial(c) / (1 - rho)
    p_wait = top / (sum(a**k / math.factorial(k) for k in range(c)) + top)
    return p_wait / (c * mu - lam)


def simulated_wait(rho: float, c: int, n: int, seed: int) -> tuple[float, float]:
    """(mean wait, its standard error from 20 batch means) of the degenerate engine."""
    rng = np.random.default_rng(seed)
    mean_service_s = MEAN_TOKENS * STEP_S
    lam = rho * c / mean_service_s
    arrivals = np.cumsum(rng.exponential(1 / lam, n))
    outputs = rng.geometric(1 / MEAN_TOKENS, n)
    log = RequestLog(arrivals.tolist(), [1] * n, outputs.tolist())
    limits = EngineLimits(
        max_num_seqs=1,
        max_num_batched_tokens=1,
        kv_blocks=10**6,
        max_model_len=10**6,
        block_size=16,
    )
    step = StepTimeModel(STEP_S, 0.0, 0.0, 0.0, 0.0, 0.0)
    specs = [ReplicaSpec("p", "g", limits, step)] * c
    simulate(log, specs, [FleetPhase(0.0, tuple(range(c)))])
    wait = np.asarray(log.first_scheduled_s) - arrivals
    wait = wait[n // 10 :]
    batches = np.array_split(wait, 20)
    means = np.array([b.mean() for b in batches])
    return float(wait.mean()), float(means.std(ddof=1) / math.sqrt(len(means)))


@pytest.mark.slow
@pytest.mark.parametrize(("rho", "c"), [(0.5, 1), (0.8, 1), (0.5, 3), (0.8, 3)])
def test_mean_wait_matches_erlang_c(rho: float, c: int) -> None:
    mu = 1 / (MEAN_TOKENS * STEP_S)
    # exponential-service value, corrected by (1 + CV²)/2 for the geometric service (exact
    # for c = 1 by Pollaczek–Khinchine, Allen–Cunneen's approximation for c > 1: 0.25% here)
    cv2 = 1 - 1 / MEAN_TOKENS
    expected = erlang_c_wait(rho * c * mu, mu, c) * (1 + cv2) / 2
    n = 300_000 if rho < 0.7 else 1_500_000
    got, se = simulated_wait(rho, c, n, seed=11 + c)
    assert abs(got / expected - 1) < 0.03, (got, expected, se)


def test_littles_law_on_the_real_engine() -> None:
    """L = λW, with L read from the engine's own queues and W from its recorded timestamps.

    Poisson probe times see time averages (PASTA): at each probe the replica is advanced and
    its waiting + running sequences counted. An engine whose internal state disagreed with
    the timestamps it records would fail this.
    """
    rng = np.random.default_rng(3)
    n = 40_000
    arrivals = np.cumsum(rng.exponential(1 / 4.0, n))
    inputs = rng.integers(50, 2000, n)
    outputs = rng.integers(1, 400, n)
    log = RequestLog(arrivals.tolist(), inputs.tolist(), outputs.tolist())
    limits = EngineLimits(64, 2048, 3000, 4096)
    step = StepTimeModel(0.004, 0.008, 64.0, 3e-5, 2e-7, 1e-10)
    rep = FastReplica(0, limits, step, log)
    probes = np.cumsum(rng.exponential(0.5, int(arrivals[-1] / 0.5)))
    counts = []
    j = 0
    for rid, t in enumerate(arrivals.tolist()):
        while j < len(probes) and probes[j] < t:
            rep.advance_to(float(probes[j]))
            counts.append(len(rep.running) + len(rep.waiting))
            j += 1
        rep.advance_to(t)
        rep.submit(rid, t)
    rep.flush()
    sojourn = np.asarray(log.finish_s) - arrivals
    warm = arrivals > arrivals[-1] * 0.1
    lam = n / arrivals[-1]
    big_l = float(np.mean(counts[len(counts) // 10 :]))
    assert sojourn.mean() > 1.0  # real queueing and batching in the case
    assert big_l == pytest.approx(lam * sojourn[warm].mean(), rel=0.03)

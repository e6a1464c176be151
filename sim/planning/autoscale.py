"""Autoscaled candidates: an on-demand fleet moved by a reactive autoscaler, and its HPA target.

A candidate is one pool of `gpu` under a Kubernetes-HPA autoscaler (`sim.config.AutoscaleSpec`,
`sim.fleet.autoscale`) on the signal "running" — sequences admitted per serving replica — which
tracks load on a continuously batching engine (on "queue_depth" vLLM oscillates: its queue is
empty whenever the fleet is big enough, so the autoscaler removes replicas until it queues;
README "Fleets that move").

Target. By Little's law the sequences a replica runs on average equal the rate it admits
times the time a sequence stays admitted: L = λ × W. At the replica's capacity at the SLO
(`sim.capacity`: the largest Poisson rate λ* whose p95 TTFT and TPOT meet it),

    running at capacity  L* = λ* × W*,   W* = mean(finish − first scheduled) at λ*

(`concurrency_at_capacity`: the capacity probe's own requests and arrivals replayed at λ*; W
is measured from admission, not arrival, because the signal counts admitted sequences — the
end-to-end latency adds the queue wait of requests the signal does not count). A replica
running more than L* on average is past the load at which one replica meets the SLO, so the
target is a fraction u of it, `target = u × L*` (`autoscale_target`), leaving headroom for the
load that arrives during a scale-up's cold start; each u of `[plan]`'s
`autoscale_utilisation` (`sim.config.plan.AUTOSCALE_UTILISATION`) is its own candidate.

Bounds. max_replicas = N, the static count it stands in for; min_replicas = the fewest
replicas whose capacity at the SLO covers the month's quietest hour of the weekly profile at
its mean rate (`min_replicas_for`), at least 1: fewer would be overloaded at that hour on
average. The month starts from min_replicas. The other HPA settings keep their defaults
(`AutoscaleSpec`: Kubernetes'), so its behaviour is the documented one.

Cost. The bill is that of the instance runs the autoscaler starts in each replication
(`sim.cost`), known only after simulation; the search orders and prunes such a candidate by
its lower bound, min_replicas on demand all month + operations (`Candidate.lower_cost`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.capacity import CAPACITY_REQUESTS, capacities
from sim.config import AutoscaleSpec, SloSpec
from sim.engine import RequestLog, ResolvedEngine
from sim.fleet import FleetPhase, ReplicaSpec
from sim.model import simulate
from sim.rng import capacity_rng
from sim.workload import EmpiricalLengths

SIGNAL = "running"
"""The autoscaler's signal for every candidate (module docstring: why not queue_depth)."""


@dataclass(frozen=True)
class Concurrency:
    """One replica of `gpu` at its capacity at the SLO: the rate (requests/s), the mean time a
    sequence stays admitted (s), and their product, the sequences it runs on average."""

    gpu: str
    requests_per_s: float
    admitted_s: float

    @property
    def running(self) -> float:
        """Little's law: L = λ × W (sequences)."""
        return self.requests_per_s * self.admitted_s


def concurrency_at_capacity(
    engine: ResolvedEngine, gpu: str, lengths: EmpiricalLengths, slo: SloSpec
) -> Concurrency:
    """`Concurrency` of `gpu` at its capacity (`sim.capacity.capacities`): one replica, the
    capacity probe's `CAPACITY_REQUESTS` requests (lengths from `capacity_rng(0)`, Poisson gaps
    from `capacity_rng(1)` at the capacity rate), W = the mean of finish − first scheduled.
    The probe starts empty; its first requests see a shorter batch, which makes W a little
    low (a lower target: a more cautious autoscaler)."""
    rate = capacities(engine, [gpu], lengths, slo)[gpu].requests_per_s
    if rate <= 0:
        return Concurrency(gpu, 0.0, 0.0)
    replica = ReplicaSpec("capacity", gpu, engine.limits(gpu), engine.step_time(gpu).step)
    inp, out = lengths.sample(capacity_rng(0), CAPACITY_REQUESTS)
    gaps = capacity_rng(1).exponential(1.0 / rate, size=inp.size)
    arrival = np.cumsum(gaps) - gaps[0]
    log = RequestLog(arrival.tolist(), inp.tolist(), out.tolist())
    simulate(log, [replica], [FleetPhase(0.0, (0,))])
    admitted = np.asarray(log.finish_s) - np.asarray(log.first_scheduled_s)
    return Concurrency(gpu, rate, float(np.nanmean(admitted)))


def autoscale_target(running_at_capacity: float, utilisation: float) -> float:
    """The HPA target (sequences running per replica): `utilisation` × the sequences one
    replica runs at its capacity at the SLO (module docstring), rounded to 0.1 sequence so a
    written plan reads cleanly; at least 1 (a target below one sequence scales on any load)."""
    return max(1.0, round(utilisation * running_at_capacity, 1))


def min_replicas_for(
    mean_rate_per_s: float, profile: Sequence[float], capacity_per_s: float
) -> int:
    """The fewest replicas whose capacity at the SLO covers the quietest hour of the week at
    the month's mean rate: ⌈mean rate × min(p) / mean(p) ÷ capacity⌉, at least 1 (p = the
    weekly profile's 168 multipliers)."""
    if capacity_per_s <= 0 or not profile:
        return 1
    quiet = mean_rate_per_s * min(profile) / (sum(profile) / len(profile))
    return max(1, math.ceil(quiet / capacity_per_s - 1e-9))


def autoscale_spec(min_replicas: int, max_replicas: int, target: float) -> AutoscaleSpec:
    """The autoscaler of a candidate: HPA defaults, on `SIGNAL`."""
    return AutoscaleSpec(min_replicas, max_replicas, target, signal=SIGNAL)

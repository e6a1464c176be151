"""One replication in SimPy: arrivals → router → replicas, over a fleet that changes by phase.

This is the only module that imports SimPy. Two engines share the wiring:

* ``"fast"``: replicas are `FastReplica`s, advanced lazily; the only SimPy events are arrival
  instants (one per distinct arrival time), so a request costs at most one event.
* ``"reference"``: replicas are `ReferenceReplica`s, each a SimPy process with one event per
  iteration. Step ends are scheduled URGENT so that, at one instant, step ends are applied
  before arrivals are routed, and a replica decides its next step only after the arrivals of
  that instant (a zero-delay NORMAL timeout) — the tie rule of `sim.engine.fast`.

Routing is join-shortest-queue on remaining tokens (least outstanding work) across the replicas
active in the arrival's fleet phase; ties go to the lowest replica index. Replicas dropped by a
later phase receive nothing new and finish what they hold.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import simpy
from simpy.events import URGENT

from sim.engine import EngineLimits, FastReplica, ReferenceReplica, RequestLog, StepTimeModel

Engine = Literal["fast", "reference"]


@dataclass(frozen=True)
class ReplicaSpec:
    """One model instance: which pool and GPU it belongs to, its limits and step-time model."""

    pool: str
    gpu: str
    limits: EngineLimits
    step_time: StepTimeModel


@dataclass(frozen=True)
class FleetPhase:
    """From `start_s` on (until the next phase), new requests go to `replicas` (indices)."""

    start_s: float
    replicas: tuple[int, ...]


@dataclass
class SimulationResult:
    """What one simulated replication leaves behind (timestamps live in `log`)."""

    log: RequestLog
    busy_periods: list[list[tuple[float, float]]]
    steps: list[int]
    simpy_events: int
    segments: int = 0
    routed: int = 0
    extra: dict[str, Any] = field(default_factory=dict)


def simulate(
    log: RequestLog,
    replicas: Sequence[ReplicaSpec],
    phases: Sequence[FleetPhase],
    engine: Engine = "fast",
) -> SimulationResult:
    """Replay every request of `log` (arrival times ascending) through the fleet."""
    if not phases or phases[0].start_s > (log.arrival_s[0] if len(log) else 0.0):
        raise ValueError("the first fleet phase must start at or before the first arrival")
    for phase in phases:
        if not phase.replicas:
            raise ValueError(f"fleet phase at {phase.start_s} s has no replica")
    if any(b < a for a, b in zip(log.arrival_s, log.arrival_s[1:], strict=False)):
        raise ValueError("arrival times must be sorted")
    if engine == "fast":
        return _simulate_fast(log, replicas, phases)
    if engine == "reference":
        return _simulate_reference(log, replicas, phases)
    raise ValueError(f"unknown engine {engine!r}")


def _simulate_fast(
    log: RequestLog, specs: Sequence[ReplicaSpec], phases: Sequence[FleetPhase]
) -> SimulationResult:
    env = simpy.Environment()
    reps = [FastReplica(i, s.limits, s.step_time, log) for i, s in enumerate(specs)]
    active = [[reps[i] for i in p.replicas] for p in phases]
    counters = {"events": 0, "routed": 0}

    def route(rid: int, t: float, phase: int) -> None:
        pool = active[phase]
        if len(pool) == 1:
            best = pool[0]
            best.advance_to(t)
        else:
            best = pool[0]
            best_load = -1
            for rep in pool:
                load = rep.load_at(t)
                if best_load < 0 or load < best_load:
                    best, best_load = rep, load
        best.submit(rid, t)

    env.process(_arrivals(env, log, specs, phases, route, counters))
    env.run()
    for rep in reps:
        rep.flush()
    return SimulationResult(
        log=log,
        busy_periods=[r.busy_periods for r in reps],
        steps=[r.steps for r in reps],
        simpy_events=counters["events"],
        segments=sum(r.segments for r in reps),
        routed=counters["routed"],
    )


def _arrivals(
    env: simpy.Environment,
    log: RequestLog,
    specs: Sequence[ReplicaSpec],
    phases: Sequence[FleetPhase],
    route: Callable[[int, float, int], None],
    counters: dict[str, int],
) -> Generator[simpy.Event, Any, None]:
    """The arrival process: one SimPy event per distinct arrival instant.

    Requests of one instant are routed together, in order, by `route(rid, t, phase)`; a
    request longer than the phase's `max_model_len` is rejected (vLLM refuses it) and counted.
    """
    times = log.arrival_s
    starts = [p.start_s for p in phases]
    limits = [specs[p.replicas[0]].limits for p in phases]
    n = len(times)
    i = 0
    phase = 0
    while i < n:
        t = times[i]
        if t > env.now:
            yield env.timeout(t - env.now)
            counters["events"] += 1
        while phase + 1 < len(starts) and starts[phase + 1] <= t:
            phase += 1
        accepts = limits[phase].accepts
        while i < n and times[i] == t:
            if accepts(log.input_tokens[i], log.output_tokens[i]):
                route(i, t, phase)
                counters["routed"] += 1
            else:
                log.rejected[i] = True
            i += 1


def _urgent_timeout(env: simpy.Environment, delay: float) -> simpy.Event:
    """A timeout processed before NORMAL events of the same instant (SimPy has no public API)."""
    event = env.event()
    # NOTE: mirrors what simpy.Timeout does, but with URGENT priority (simpy.core.schedule).
    event._ok = True
    event._value = None
    env.schedule(event, URGENT, delay)
    return event


def _simulate_reference(
    log: RequestLog, specs: Sequence[ReplicaSpec], phases: Sequence[FleetPhase]
) -> SimulationResult:
    env = simpy.Environment()
    reps = [ReferenceReplica(i, s.limits, s.step_time, log) for i, s in enumerate(specs)]
    wake: list[simpy.Event | None] = [None] * len(reps)
    busy: list[list[tuple[float, float]]] = [[] for _ in reps]
    active = [[reps[i] for i in p.replicas] for p in phases]
    counters = {"events": 0, "routed": 0}

    def replica_process(i: int) -> Generator[simpy.Event, Any, None]:
        rep = reps[i]
        busy_since = math.nan
        while True:
            if not rep.has_work():
                if busy_since == busy_since:
                    busy[i].append((busy_since, env.now))
                    busy_since = math.nan
                ev = env.event()
                wake[i] = ev
                yield ev
                counters["events"] += 1
                wake[i] = None
                continue
            if busy_since != busy_since:
                busy_since = env.now
            duration = rep.begin_step(env.now)
            if duration is None:
                raise RuntimeError("reference replica has work but scheduled nothing")
            yield _urgent_timeout(env, duration)
            rep.end_step(env.now)
            yield env.timeout(0)  # let this instant's arrivals in before deciding
            counters["events"] += 2

    def route(rid: int, t: float, phase: int) -> None:
        best = min(active[phase], key=lambda r: (r.remaining_tokens(), r.index))
        best.submit(rid)
        ev = wake[best.index]
        if ev is not None and not ev.triggered:
            ev.succeed()

    for i in range(len(reps)):
        env.process(replica_process(i))
    env.process(_arrivals(env, log, specs, phases, route, counters))
    env.run()
    return SimulationResult(
        log=log,
        busy_periods=busy,
        steps=[r.steps for r in reps],
        simpy_events=counters["events"],
        segments=sum(r.steps for r in reps),
        routed=counters["routed"],
    )

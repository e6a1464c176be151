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

Spot reclaims and API overflow (issue #5) join through `Hybrid`:

* A replica with outages (notice, down, up) stops receiving new requests at the notice; at
  `down` whatever it has not finished is evicted and re-routed at once (prefill recomputed on
  the new replica, tokens already streamed kept); from `up` it serves again, empty.
* With an API, the router spills a request to it when a `SpillSpec` rule fires; without
  (or with `when_no_replica` off) a request finding no healthy replica waits at the router and
  is dispatched, in order, as soon as one is back.
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import simpy
from simpy.events import URGENT

from sim.api import ApiClient
from sim.config import SpillSpec
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


Outage = tuple[float, float, float]
"""(notice_s, down_s, up_s) of one reclaim of a replica; up_s may be math.inf (never back)."""


@dataclass(frozen=True)
class Hybrid:
    """Spot reclaims and API overflow for one simulation (both optional).

    outages: per replica index, its reclaims in time order (replicas without any may be absent).
    api: the overflow API client, or None (its spec's `spill` says when the router uses it).
    probe_s: if set, record a timeline sample (`SimulationResult.extra["timeline"]`) this often.
    """

    outages: dict[int, tuple[Outage, ...]] = field(default_factory=dict)
    api: ApiClient | None = None
    probe_s: float | None = None


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
    hybrid: Hybrid | None = None,
) -> SimulationResult:
    """Replay every request of `log` (arrival times ascending) through the fleet."""
    if not phases or phases[0].start_s > (log.arrival_s[0] if len(log) else 0.0):
        raise ValueError("the first fleet phase must start at or before the first arrival")
    for phase in phases:
        if not phase.replicas:
            raise ValueError(f"fleet phase at {phase.start_s} s has no replica")
    if any(b < a for a, b in zip(log.arrival_s, log.arrival_s[1:], strict=False)):
        raise ValueError("arrival times must be sorted")
    if hybrid is not None:
        if engine not in ("fast", "reference"):
            raise ValueError(f"unknown engine {engine!r}")
        return _simulate_hybrid(log, replicas, phases, engine, hybrid)
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


# ------------------------------------------------------------------------ spot and API
class _Wiring:
    """Engine-specific replica operations the hybrid router needs (fast or reference)."""

    def __init__(
        self, env: simpy.Environment, reps: list[Any], engine: Engine, counters: dict[str, int]
    ) -> None:
        self.env = env
        self.reps = reps
        self.fast = engine == "fast"
        self.wake: list[simpy.Event | None] = [None] * len(reps)
        self.epoch = [0] * len(reps)
        self.evicted_at = [math.nan] * len(reps)
        self.busy: list[list[tuple[float, float]]] = [[] for _ in reps]
        self.counters = counters

    def load(self, rep: Any, t: float) -> int:
        return int(rep.load_at(t)) if self.fast else int(rep.remaining_tokens())

    def submit(self, rep: Any, rid: int, t: float, generated: int) -> None:
        if self.fast:
            rep.submit(rid, t, generated)
            return
        rep.submit(rid, generated)
        ev = self.wake[rep.index]
        if ev is not None and not ev.triggered:
            ev.succeed()

    def evict(self, rep: Any, t: float) -> list[tuple[int, int]]:
        if self.fast:
            return list(rep.evict(t))
        self.epoch[rep.index] += 1
        self.evicted_at[rep.index] = t
        return list(rep.evict())

    def reference_process(self, i: int) -> Generator[simpy.Event, Any, None]:
        """`_simulate_reference`'s replica loop, aware that an eviction loses the step under way.

        NOTE: a replica evicted mid-step stays asleep until that step's planned end; exact as
        long as a replacement takes longer than one step (cold starts take minutes).
        """
        env, rep, busy = self.env, self.reps[i], self.busy[i]
        busy_since = math.nan
        while True:
            if not rep.has_work():
                if busy_since == busy_since:
                    end = env.now
                    if self.evicted_at[i] == self.evicted_at[i]:
                        end = min(end, self.evicted_at[i])
                    busy.append((busy_since, end))
                    busy_since = math.nan
                ev = env.event()
                self.wake[i] = ev
                yield ev
                self.counters["events"] += 1
                self.wake[i] = None
                self.evicted_at[i] = math.nan
                continue
            if busy_since != busy_since:
                busy_since = env.now
            epoch = self.epoch[i]
            duration = rep.begin_step(env.now)
            if duration is None:
                raise RuntimeError("reference replica has work but scheduled nothing")
            yield _urgent_timeout(env, duration)
            if self.epoch[i] == epoch:
                rep.end_step(env.now)
            yield env.timeout(0)
            self.counters["events"] += 2


def _simulate_hybrid(
    log: RequestLog,
    specs: Sequence[ReplicaSpec],
    phases: Sequence[FleetPhase],
    engine: Engine,
    hybrid: Hybrid,
) -> SimulationResult:
    env = simpy.Environment()
    reps: list[Any]
    if engine == "fast":
        reps = [FastReplica(i, s.limits, s.step_time, log) for i, s in enumerate(specs)]
    else:
        reps = [ReferenceReplica(i, s.limits, s.step_time, log) for i, s in enumerate(specs)]
    counters = {"events": 0, "routed": 0, "reclaims": 0, "spilled": 0, "backlogged": 0}
    wiring = _Wiring(env, reps, engine, counters)
    active = [[reps[i] for i in p.replicas] for p in phases]
    starts = [p.start_s for p in phases]
    healthy = [True] * len(reps)
    backlog: deque[tuple[int, int]] = deque()
    api = hybrid.api
    spill = api.spec.spill if api is not None else SpillSpec()
    # Full-budget prefill rate of each replica (tokens/s): the predicted-wait denominator.
    rate = [
        s.limits.max_num_batched_tokens / s.step_time.step_s(s.limits.max_num_batched_tokens, 0, 0)
        for s in specs
    ]
    inputs, outputs = log.input_tokens, log.output_tokens

    def healthy_pool(t: float) -> list[Any]:
        phase = bisect.bisect_right(starts, t) - 1
        return [r for r in active[max(phase, 0)] if healthy[r.index]]

    def to_api(rid: int, t: float) -> None:
        assert api is not None
        counters["spilled"] += 1
        log.api[rid] = True
        served = api.call(rid, t, inputs[rid], outputs[rid])
        if served is None:
            log.dropped[rid] = True
            return
        if log.first_token_s[rid] != log.first_token_s[rid]:
            log.first_token_s[rid] = served[0]
        log.finish_s[rid] = served[1]

    def must_spill(best: Any, best_load: int, pool: list[Any], rid: int, gen: int) -> bool:
        if spill.queue_over is not None and all(len(r.waiting) > spill.queue_over for r in pool):
            return True
        if spill.max_wait_s is not None and best_load > 0:
            queued = best.queued_prompt_tokens() + inputs[rid] + gen
            return bool(queued / rate[best.index] > spill.max_wait_s)
        return False

    def dispatch(rid: int, t: float, gen: int) -> None:
        pool = healthy_pool(t)
        if not pool:
            if api is not None and spill.when_no_replica:
                to_api(rid, t)
            else:
                counters["backlogged"] += 1
                backlog.append((rid, gen))
            return
        best, best_load = pool[0], -1
        for rep in pool:
            load = wiring.load(rep, t)
            if best_load < 0 or load < best_load:
                best, best_load = rep, load
        if api is not None and must_spill(best, best_load, pool, rid, gen):
            to_api(rid, t)
            return
        wiring.submit(best, rid, t, gen)

    def drain_backlog(t: float) -> None:
        while backlog and healthy_pool(t):
            rid, gen = backlog.popleft()
            dispatch(rid, t, gen)

    def route(rid: int, t: float, phase: int) -> None:
        if backlog:
            drain_backlog(t)
        dispatch(rid, t, 0)

    def reclaims(i: int, outs: tuple[Outage, ...]) -> Generator[simpy.Event, Any, None]:
        rep = reps[i]
        for notice, down, up in outs:
            if notice > env.now:
                yield env.timeout(notice - env.now)
            healthy[i] = False
            if down > env.now:
                yield env.timeout(down - env.now)
            counters["reclaims"] += 1
            for rid, gen in wiring.evict(rep, env.now):
                log.evictions[rid] += 1
                dispatch(rid, env.now, gen)
            if up == math.inf:
                return
            if up > env.now:
                yield env.timeout(up - env.now)
            healthy[i] = True
            drain_backlog(env.now)

    timeline: list[tuple[float, int, int, int, int, int]] = []
    end_s = (log.arrival_s[-1] if len(log) else 0.0) + 1.0

    def probe(every: float) -> Generator[simpy.Event, Any, None]:
        while env.now <= end_s:
            t = env.now
            phase = max(bisect.bisect_right(starts, t) - 1, 0)
            waiting = running = 0
            for rep in active[phase]:
                wiring.load(rep, t)
                waiting += len(rep.waiting)
                running += len(rep.running)
            up = sum(healthy[r.index] for r in active[phase])
            timeline.append((t, up, waiting, running, len(backlog), counters["spilled"]))
            yield env.timeout(every)

    if engine == "reference":
        for i in range(len(reps)):
            env.process(wiring.reference_process(i))
    for i, outs in sorted(hybrid.outages.items()):
        if outs:
            env.process(reclaims(i, outs))
    if hybrid.probe_s:
        env.process(probe(hybrid.probe_s))
    env.process(_arrivals(env, log, specs, phases, route, counters))
    env.run()
    if engine == "fast":
        for rep in reps:
            rep.flush()
    busy = [r.busy_periods for r in reps] if engine == "fast" else wiring.busy
    extra: dict[str, Any] = {
        "reclaims": counters["reclaims"],
        "spilled": counters["spilled"],
        "backlogged": counters["backlogged"],
        "unserved": [rid for rid, _ in backlog],
    }
    if api is not None:
        extra["api_throttled"] = api.counters.throttled
        extra["api_dropped"] = api.counters.dropped
        extra["api_throttled_rids"] = api.counters.throttled_rids
    if hybrid.probe_s:
        extra["timeline"] = timeline
    return SimulationResult(
        log=log,
        busy_periods=busy,
        steps=[r.steps for r in reps],
        simpy_events=counters["events"],
        segments=sum(getattr(r, "segments", r.steps) for r in reps),
        routed=counters["routed"],
        extra=extra,
    )

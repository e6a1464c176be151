"""The two Python data planes of `sim.model` (lazily advanced `FastReplica`s, and
`ReferenceReplica`s as SimPy processes with one event per iteration), wired for `_run`."""

from __future__ import annotations

import math
from collections.abc import Generator, Sequence
from typing import Any

import simpy
from simpy.events import URGENT

from sim.engine import FastReplica, ReferenceReplica, RequestLog
from sim.fleet.plan import ReplicaSpec


# ------------------------------------------------------------------------ the two engines
class _FastReplicas:
    """Lazily advanced replicas: no SimPy process of their own."""

    def __init__(self, log: RequestLog, specs: Sequence[ReplicaSpec]) -> None:
        self.reps = [FastReplica(i, s.limits, s.step_time, log) for i, s in enumerate(specs)]

    def evict(self, rep: FastReplica, t: float) -> list[tuple[int, int]]:
        return list(rep.evict(t))

    def start(self, env: simpy.Environment) -> None:
        """Nothing to start: the router advances each replica when it looks at it."""

    def finish(self) -> tuple[list[list[tuple[float, float]]], int]:
        """Busy periods per replica and segments simulated, after the run."""
        for rep in self.reps:
            rep.flush()
        return [r.busy_periods for r in self.reps], sum(r.segments for r in self.reps)


def _urgent_timeout(env: simpy.Environment, delay: float) -> simpy.Event:
    """A timeout processed before NORMAL events of the same instant (SimPy has no public API)."""
    event = env.event()
    # NOTE: mirrors what simpy.Timeout does, but with URGENT priority (simpy.core.schedule).
    event._ok = True
    event._value = None
    env.schedule(event, URGENT, delay)
    return event


class _ReferenceReplicas:
    """One SimPy process per replica, one event per iteration (the exactness oracle)."""

    def __init__(
        self,
        env: simpy.Environment,
        log: RequestLog,
        specs: Sequence[ReplicaSpec],
        counters: dict[str, int],
    ) -> None:
        self.env = env
        self.reps = [ReferenceReplica(i, s.limits, s.step_time, log) for i, s in enumerate(specs)]
        for rep in self.reps:
            rep.on_submit = self._wake
        self.wake: list[simpy.Event | None] = [None] * len(self.reps)
        self.epoch = [0] * len(self.reps)
        self.evicted_at = [math.nan] * len(self.reps)
        self.busy: list[list[tuple[float, float]]] = [[] for _ in self.reps]
        self.counters = counters

    def _wake(self, i: int) -> None:
        """A request was queued on replica i: wake its process if it sleeps."""
        ev = self.wake[i]
        if ev is not None and not ev.triggered:
            ev.succeed()

    def evict(self, rep: ReferenceReplica, t: float) -> list[tuple[int, int]]:
        self.epoch[rep.index] += 1
        self.evicted_at[rep.index] = t
        return list(rep.evict())

    def start(self, env: simpy.Environment) -> None:
        for i in range(len(self.reps)):
            env.process(self._process(i))

    def finish(self) -> tuple[list[list[tuple[float, float]]], int]:
        return self.busy, sum(r.steps for r in self.reps)

    def _process(self, i: int) -> Generator[simpy.Event, Any, None]:
        """The replica loop; an eviction loses the step under way.

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
            yield env.timeout(0)  # let this instant's arrivals in before deciding
            self.counters["events"] += 2

"""The control plane over the compiled data plane (`sim.engine.compiled`): `sim.model`'s
``"compiled"`` engine.

SimPy keeps what happens at its own instants — fleet-phase changes, spot notices, reclaim
deadlines and replacements, probes — and the compiled core routes and batches every arrival
between them:

* **Plain runs** (no reclaim, API or probe): one SimPy event per fleet phase; the core routes
  each phase's arrivals in one call.
* **Hybrid runs** (`Hybrid`): the arrivals process, woken at an arrival instant `t`, asks SimPy
  for the next scheduled control instant `P` (`env.peek()`) and hands every arrival in
  [t, P) to the core at once (split at fleet-phase starts); nothing else can happen before
  `P`, and the wake-up for the next arrival is scheduled from `t` — the order in which SimPy
  then breaks a tie between that arrival and a control event at the same instant is the one
  the lazy path's per-instant events give (see `_arrivals`). Reclaim deadlines call the core's
  `evict`; evicted and backlogged requests are re-dispatched by the same routing loop.
* **Spill decisions run inside the routing loop** (`Spill`): the rules are plain functions of
  the chosen replica's queued prompt tokens and the pool's queue lengths, state the core holds
  at every arrival; a request they spill is handed back and sent to the API client here, in
  order. The API's answer never feeds back into the fleet, so calling it after the core has
  routed the batch gives the calls the same order and times as calling it per arrival —
  exact, without stopping the loop at each arrival. The batch goes to the API client over
  arrays (`sim.fleet.api_arrays`: `ApiClient`'s rate-limit window in one compiled call, the
  same bits). Arrivals that find no healthy replica, or a backlog at the router, are handled
  one by one here, as in the lazy path.

`run_compiled` reads a `RequestLog` and writes the outcomes back into it (`simulate`);
`run_arrays` reads a request set's arrays and leaves the outcomes in the core's
(`sim.model.simulate_arrays`: a sampled window's path).
"""

from __future__ import annotations

import bisect
import math
from collections import deque
from collections.abc import Callable, Generator, Sequence
from typing import Any

import numpy as np
import simpy

from sim.config import AUTOSCALE_SIGNALS
from sim.engine.compiled import JSQ, P2C, ROUND_ROBIN, CompiledFleet, Requests, Spill
from sim.engine.log import RequestLog
from sim.fleet.api_arrays import ArrayApiClient
from sim.fleet.autoscale import ScaleEvent, Scaler, per_serving
from sim.fleet.plan import FleetPhase, ReplicaSpec
from sim.fleet.routing import RoutingPolicy
from sim.model import ArrayRun, Hybrid, SimulationResult, TimelineRow
from sim.model.autoscale import autoscale_process

_POLICY = {"least_outstanding_tokens": JSQ, "round_robin": ROUND_ROBIN, "power_of_two_choices": P2C}


def run_compiled(
    env: simpy.Environment,
    log: RequestLog,
    specs: Sequence[ReplicaSpec],
    phases: Sequence[FleetPhase],
    routing: RoutingPolicy,
    uniforms: np.ndarray | None,
    hybrid: Hybrid,
) -> SimulationResult:
    """Replay `log` through the fleet on the compiled core (module docstring)."""
    fleet = CompiledFleet(log, [(s.limits, s.step_time) for s in specs], uniforms)
    if _is_plain(hybrid):
        return _plain_result(
            log, fleet, _plain(env, log.arrival_s, specs, phases, fleet, _POLICY[routing])
        )
    return _Hybrid(env, log, specs, phases, fleet, _POLICY[routing], hybrid).run()


def _is_plain(hybrid: Hybrid) -> bool:
    """No reclaim, API, probe or autoscaler: the core routes each phase's arrivals at once."""
    return not hybrid.outages and hybrid.api is None and not hybrid.probe_s and not hybrid.scalers


def _plain(
    env: simpy.Environment | None,
    times: Sequence[float] | np.ndarray,
    specs: Sequence[ReplicaSpec],
    phases: Sequence[FleetPhase],
    fleet: CompiledFleet,
    policy: int,
) -> int:
    """SimPy steps through the fleet phases; between two phase starts the core routes every
    arrival (`times`: the arrival times) and advances the replicas. The SimPy events.
    `env` None: a fresh environment (at time 0), built only if the phases need one."""
    if len(phases) == 1:
        # NOTE: one phase has no control event between its arrivals: SimPy would hold a single
        # timeout to the phase's start and then route every arrival, so the core routes them
        # at once (the same run, the same event count; an eighth of a growth20pct
        # replication was building and running that environment per window).
        phase = phases[0]
        fleet.route(
            0, len(times), phase.replicas, policy, specs[phase.replicas[0]].limits.max_model_len
        )
        return 1 if phase.start_s > (0.0 if env is None else env.now) else 0
    if env is None:
        env = simpy.Environment()
    bounds = [0] + [bisect.bisect_left(times, p.start_s) for p in phases[1:]] + [len(times)]
    events = [0]

    def control() -> Generator[simpy.Event, Any, None]:
        for k, phase in enumerate(phases):
            if phase.start_s > env.now:
                yield env.timeout(phase.start_s - env.now)
                events[0] += 1
            max_len = specs[phase.replicas[0]].limits.max_model_len
            fleet.route(bounds[k], bounds[k + 1], phase.replicas, policy, max_len)

    env.process(control())
    env.run()
    return events[0]


def _plain_result(log: RequestLog, fleet: CompiledFleet, simpy_events: int) -> SimulationResult:
    """Flush the fleet, copy its outcomes into `log` and report the run."""
    fleet.flush()
    fleet.write_log(log)
    return SimulationResult(
        log=log,
        busy_periods=fleet.busy_periods(),
        steps=fleet.steps(),
        simpy_events=simpy_events,
        segments=fleet.segments(),
        routed=fleet.routed,
    )


class Marks:
    """What `_Hybrid` reads and writes of a request set besides the core's arrays, for a run
    on arrays (`run_arrays`): arrivals and lengths as lists (the same Python values a
    `RequestLog` holds, read one at a time by the control plane) and as the arrays they came
    from (`arrays`: what the API client reads a run of spilled requests from), and the
    outcomes it writes per request — reclaim evictions, API spill, API drops — as arrays."""

    __slots__ = (
        "api",
        "arrays",
        "arrival_s",
        "cached_tokens",
        "dropped",
        "evictions",
        "input_tokens",
        "output_tokens",
    )

    def __init__(self, requests: Requests) -> None:
        n = len(requests)
        self.arrays = _request_arrays(requests)
        arrival, inputs, outputs = self.arrays
        self.arrival_s: list[float] = arrival.tolist()
        self.input_tokens: list[int] = inputs.tolist()
        self.output_tokens: list[int] = outputs.tolist()
        cached = getattr(requests, "cached_tokens", None)
        self.cached_tokens: list[int] = [0] * n if cached is None else list(map(int, cached))
        self.evictions = np.zeros(n, dtype=np.int64)
        self.api = np.zeros(n, dtype=bool)
        self.dropped = np.zeros(n, dtype=bool)

    def __len__(self) -> int:
        return len(self.arrival_s)


def _request_arrays(
    log: RequestLog | Requests | Marks,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Arrival times (s, float64) and input and output tokens (int64) of a request set."""
    if isinstance(log, Marks):
        return log.arrays
    return (
        np.asarray(log.arrival_s, dtype=np.float64),
        np.asarray(log.input_tokens, dtype=np.int64),
        np.asarray(log.output_tokens, dtype=np.int64),
    )


def run_arrays(
    requests: Requests, specs: Sequence[ReplicaSpec], phases: Sequence[FleetPhase], hybrid: Hybrid
) -> ArrayRun:
    """`run_compiled` (JSQ routing) on a request set's arrays, without a `RequestLog`: the
    core's outcomes stay in its arrays (`CompiledFleet.outcomes`, `busy_inside`) and the
    control plane's in `Marks`' (`sim.model.simulate_arrays`)."""
    fleet = CompiledFleet(requests, [(s.limits, s.step_time) for s in specs])
    n = len(requests)
    if _is_plain(hybrid):  # a static or moving fleet alone: `_plain`, as `run_compiled` has it
        events = _plain(None, requests.arrival_s, specs, phases, fleet, JSQ)
        fleet.flush()
        no = np.zeros(n, dtype=bool)
        return ArrayRun(fleet, np.zeros(n, dtype=np.int64), no, no.copy(), events, [], [])
    marks = Marks(requests)
    run = _Hybrid(simpy.Environment(), marks, specs, phases, fleet, JSQ, hybrid)
    run.play()
    return ArrayRun(
        fleet,
        marks.evictions,
        marks.api,
        marks.dropped,
        run.counts["events"],
        run.scale_events,
        run.throttled(),
    )


class _Hybrid:
    """Spot reclaims, API spill, the router's backlog and probes over a `CompiledFleet`: the
    SimPy processes of `sim.model._run` with the data plane swapped for the core."""

    def __init__(
        self,
        env: simpy.Environment,
        log: RequestLog | Marks,
        specs: Sequence[ReplicaSpec],
        phases: Sequence[FleetPhase],
        fleet: CompiledFleet,
        policy: int,
        hybrid: Hybrid,
    ) -> None:
        self.env, self.log, self.fleet, self.policy, self.hybrid = env, log, fleet, policy, hybrid
        self.phases = phases
        self.starts = [p.start_s for p in phases]
        self.max_len = [specs[p.replicas[0]].limits.max_model_len for p in phases]
        self.healthy = [True] * len(specs)
        self.held = [False] * len(specs)  # out of service by its autoscaler
        self.kv_tokens = [s.limits.kv_blocks * s.limits.block_size for s in specs]
        self.pools = [list(p.replicas) for p in phases]
        self.backlog: deque[tuple[int, int]] = deque()
        # the API client over arrays: route's spilled requests go to it a run at a time, read
        # from the request set's arrays (built only where there is an API)
        self.api = None if hybrid.api is None else ArrayApiClient(hybrid.api, len(log))
        self.arrays = _request_arrays(log) if hybrid.api is not None else None
        self.spill: Spill | None = None
        self.when_no_replica = False
        # Full-budget prefill rate of each replica (tokens/s), as sim.model._run has it.
        self.rate = rate = [
            s.limits.max_num_batched_tokens
            / s.step_time.step_s(s.limits.max_num_batched_tokens, 0, 0)
            for s in specs
        ]
        if self.api is not None:
            rules = self.api.spec.spill
            self.when_no_replica = rules.when_no_replica
            self.spill = Spill(
                -1 if rules.queue_over is None else rules.queue_over,
                math.nan if rules.max_wait_s is None else rules.max_wait_s,
                np.asarray(rate, dtype=np.float64),
            )
        self.counts = {"events": 0, "reclaims": 0, "spilled": 0, "backlogged": 0}
        self.timeline: list[TimelineRow] = []
        self.scale_events: list[ScaleEvent] = []

    def run(self) -> SimulationResult:
        """Play the run and copy the outcomes into the `RequestLog`."""
        assert isinstance(self.log, RequestLog)
        log = self.log
        self.play()
        fleet = self.fleet
        fleet.write_log(log)
        return SimulationResult(
            log=log,
            busy_periods=fleet.busy_periods(),
            steps=fleet.steps(),
            simpy_events=self.counts["events"],
            segments=fleet.segments(),
            routed=len(log) - fleet.rejected(),
            reclaims=self.counts["reclaims"],
            spilled=self.counts["spilled"],
            backlogged=self.counts["backlogged"],
            unserved=[rid for rid, _ in self.backlog],
            api_throttled_rids=self.throttled(),
            timeline=self.timeline,
            scale_events=self.scale_events,
        )

    def throttled(self) -> list[int]:
        """Requests the API answered with a 429 at least once."""
        return list(self.api.counters.throttled_rids) if self.api else []

    def play(self) -> None:
        """Run the SimPy processes to the end and flush the fleet."""
        env, hybrid = self.env, self.hybrid
        for i, outs in sorted(hybrid.outages.items()):
            if outs:
                env.process(self._reclaims(i, outs))
        if hybrid.probe_s:
            env.process(self._probe(hybrid.probe_s))
        for sc in hybrid.scalers:
            signal = self._signal_of(sc)
            env.process(
                autoscale_process(env, sc, self.scale_events, signal, self._hold, self._drain)
            )
        env.process(self._arrivals())
        env.run()
        self.fleet.flush()

    # ------------------------------------------------------------------ dispatch
    def _phase_at(self, t: float) -> int:
        return max(bisect.bisect_right(self.starts, t) - 1, 0)

    def _set_health(self, i: int, up: bool) -> None:
        self.healthy[i] = up
        ok = [h and not held for h, held in zip(self.healthy, self.held, strict=True)]
        self.pools = [[r for r in p.replicas if ok[r]] for p in self.phases]

    def _hold(self, i: int, out: bool) -> None:
        self.held[i] = out
        self._set_health(i, self.healthy[i])

    def _drain(self, t: float) -> None:
        self._drain_backlog(t)

    def _signal_of(self, sc: Scaler) -> Callable[[float, Sequence[int]], float]:
        """The pool signal of `sc` at a tick, as `sim.model._run` reads it."""
        fleet, log, rate = self.fleet, self.log, self.rate

        code = AUTOSCALE_SIGNALS.index(sc.spec.signal)
        kv_tokens = np.asarray(self.kv_tokens, dtype=np.int64)
        rates = np.asarray(rate, dtype=np.float64)

        def signal_at(t: float, serving: Sequence[int]) -> float:
            # (one kernel call for the pool: `pool_signal`'s sum over `ReplicaLoad`s)
            total = fleet.pool_total(np.asarray(serving, dtype=np.int64), t, code, kv_tokens, rates)
            inputs, cached = log.input_tokens, log.cached_tokens
            backlog = sum(inputs[rid] + gen - cached[rid] for rid, gen in self.backlog)
            n = len(self.backlog)
            return per_serving(
                sc.spec.signal, total, len(serving), n, backlog, rate[sc.replicas[0]]
            )

        return signal_at

    def _to_api(self, rids: np.ndarray, t: float | None = None) -> None:
        """Send requests `rids` to the API, in order, each at its arrival (`t` None: the ones
        `route` spilled) or all at `t`: one call of the API client's kernel for the run."""
        if not len(rids):
            return
        api, log, arrays = self.api, self.log, self.arrays
        assert api is not None and arrays is not None
        self.counts["spilled"] += len(rids)
        arrival, inputs, outputs = arrays
        times = arrival[rids] if t is None else np.full(len(rids), t)
        first, finish = api.call_many(rids, times, inputs[rids], outputs[rids])
        dropped = np.isnan(first)
        if isinstance(log, Marks):
            log.api[rids] = True
            log.dropped[rids[dropped]] = True
        else:
            for rid in rids.tolist():
                log.api[rid] = True
            for rid in rids[dropped].tolist():
                log.dropped[rid] = True
        served = ~dropped
        self.fleet.served_elsewhere(rids[served], first[served], finish[served])

    def _dispatch(self, items: list[tuple[int, int]], t: float, phase: int) -> None:
        """(rid, tokens already sent) at `t`, in order: to the pool, the API or the backlog."""
        pool = self.pools[phase]
        if pool:
            self._to_api(self.fleet.dispatch(items, t, pool, self.policy, self.spill), t)
            return
        if self.api is not None and self.when_no_replica:
            self._to_api(np.array([rid for rid, _ in items], dtype=np.int64), t)
            return
        for item in items:
            self.counts["backlogged"] += 1
            self.backlog.append(item)

    def _drain_backlog(self, t: float) -> None:
        phase = self._phase_at(t)
        if self.backlog and self.pools[phase]:
            items = list(self.backlog)
            self.backlog.clear()
            self._dispatch(items, t, phase)

    # ------------------------------------------------------------------ processes
    def _arrivals(self) -> Generator[simpy.Event, Any, None]:
        """Woken at an arrival instant `t`, dispatch every arrival before the next control
        instant `P`, then sleep until the next arrival.

        NOTE: exact against the lazy path's one event per arrival instant: nothing can run
        in (t, P), and the wake-up for the next arrival T >= P, scheduled at `t`, precedes in
        SimPy's order a control event at T exactly when the lazy path's (scheduled at the
        last arrival before T, in [t, P)) does: control events at T were all scheduled at or
        before `t` (before this one: SimPy has run them) or at or after P (after both). When
        another event is due at `t` itself, only the arrivals at `t` are dispatched.
        """
        env, fleet, log, spill = self.env, self.fleet, self.log, self.spill
        times, starts = log.arrival_s, self.starts
        inputs, outputs = log.input_tokens, log.output_tokens
        n = len(times)
        i = 0
        phase = 0
        while i < n:
            t = times[i]
            if t > env.now:
                yield env.timeout(t - env.now)
                self.counts["events"] += 1
            horizon = env.peek()
            if horizon > t:
                end = bisect.bisect_left(times, horizon, lo=i)
            else:
                end = bisect.bisect_right(times, t, lo=i)
            while i < end:
                while phase + 1 < len(starts) and starts[phase + 1] <= times[i]:
                    phase += 1
                stop = end
                if phase + 1 < len(starts):
                    stop = min(end, bisect.bisect_left(times, starts[phase + 1], lo=i))
                pool = self.pools[phase]
                if pool and not self.backlog:
                    self._to_api(
                        fleet.route(i, stop, pool, self.policy, self.max_len[phase], spill)
                    )
                    i = stop
                    continue
                ta = times[i]  # no healthy replica, or a backlog: one by one
                p, o = inputs[i], outputs[i]
                if p >= 1 and o >= 1 and p + o <= self.max_len[phase]:
                    if self.backlog:
                        self._drain_backlog(ta)
                    self._dispatch([(i, 0)], ta, phase)
                else:
                    fleet.reject(i)
                i += 1

    def _reclaims(self, i: int, outs: Sequence[Any]) -> Generator[simpy.Event, Any, None]:
        env = self.env
        for o in outs:
            if o.notice_s > env.now:
                yield env.timeout(o.notice_s - env.now)
            self._set_health(i, False)
            if o.down_s > env.now:
                yield env.timeout(o.down_s - env.now)
            self.counts["reclaims"] += 1
            evicted = self.fleet.evict(i, env.now)
            for rid, _ in evicted:
                self.log.evictions[rid] += 1
            self._dispatch(evicted, env.now, self._phase_at(env.now))
            if o.up_s == math.inf:
                return
            if o.up_s > env.now:
                yield env.timeout(o.up_s - env.now)
            self._set_health(i, True)
            self._drain_backlog(env.now)

    def _probe(self, every: float) -> Generator[simpy.Event, Any, None]:
        env, log = self.env, self.log
        end_s = (log.arrival_s[-1] if len(log) else 0.0) + 1.0
        while env.now <= end_s:
            t = env.now
            replicas = self.phases[self._phase_at(t)].replicas
            waiting = running = 0
            for r in replicas:
                w, run = self.fleet.advance(r, t)
                waiting += w
                running += run
            up = sum(self.healthy[r] and not self.held[r] for r in replicas)
            row = (t, up, waiting, running, len(self.backlog), self.counts["spilled"])
            self.timeline.append(row)
            yield env.timeout(every)

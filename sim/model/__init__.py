"""One simulated request set in SimPy: arrivals → router → replicas, over a fleet that changes
by phase, with spot reclaims and API overflow. The only module that imports SimPy.

SimPy is the control plane; the replicas (and, on the compiled path, the router) are the data
plane, advanced to each control instant. The engines differ only in the data plane:

* ``"compiled"``: the numba core (`sim.engine.compiled`), routing and batching over arrays,
  driven by `sim.model.compiled`: SimPy keeps the fleet-phase changes, reclaim notices,
  deadlines and returns and the probes; the core dispatches every arrival between two of
  them, applying the spill rules as it routes (its docstring says how that stays exact).
* ``"lazy"``: `FastReplica`s (pure Python, event skipping), advanced lazily; the only SimPy
  events are arrival instants (one per distinct arrival time) and control events (reclaim
  notices, deadlines, returns, probes).
* ``"fast"`` (the default): ``"compiled"``.
* ``"reference"``: `ReferenceReplica`s, each a SimPy process with one event per iteration.
  Step ends are scheduled URGENT so that, at one instant, step ends are applied before arrivals
  are routed, and a replica decides its next step only after the arrivals of that instant (a
  zero-delay NORMAL timeout) — the tie rule of `sim.engine.fast`.

All four give the same timestamps (tests/test_engine.py, tests/test_compiled.py,
tests/test_hybrid_model.py). A fleet with
a vLLM V0 replica (`EngineLimits.scheduler == "v0"`) always runs on ``"reference"``, whatever
`engine` says: only the reference engine has the V0 scheduler.

The router sends each request to the replica the routing policy picks (`sim.fleet.routing`;
join-shortest-queue in tokens by default) among the healthy replicas of the arrival's fleet
phase; replicas dropped by a later phase receive nothing new and finish what they hold.
A request longer than `max_model_len` is rejected (vLLM refuses it).

Spot reclaims and API overflow join through `Hybrid`:

* A replica with outages (notice, down, up) stops receiving new requests at the notice; at
  `down` whatever it has not finished is evicted and re-routed at once (prefill recomputed on
  the new replica, tokens already streamed kept); from `up` it serves again, empty.
* With an API, the router spills a request to it when a spill rule fires (`sim.fleet.spill`);
  without (or with `when_no_replica` off) a request finding no healthy replica waits at the
  router and is dispatched, in order, as soon as one is back.
* An autoscaled pool (`Hybrid.scalers`, `sim.fleet.autoscale`) holds the slots its autoscaler
  has not started out of service (routed to like a replica under a spot notice: nothing new,
  nothing evicted); a replica is routable when healthy and not held. One SimPy process per
  `Scaler` (`sim.model.autoscale`, shared by every engine) ticks every `interval_s`, reads
  its pool's signal from the replicas' state and launches or releases replicas.

Tie rule of a tick at instant t (the same on every engine): it sees every step that ends by
t applied and no step decided at t (a tick is a NORMAL event scheduled one interval earlier:
the reference's step ends are URGENT, and its decisions at t are NORMAL events scheduled at
t, after it; a lazy or compiled replica advanced to t leaves a decision due at t pending).
Arrivals and other control events at t are ordered with it by SimPy's schedule order, which
the compiled path reproduces (`sim.model.compiled`). A replica that serves at the tick instant
(zero delays) is routable for the arrivals that follow it at t.
"""

from __future__ import annotations

import bisect
import itertools
import math
import operator
from collections import deque
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import simpy

from sim.config import SpillSpec
from sim.engine import RequestLog
from sim.fleet.api import ApiClient
from sim.fleet.autoscale import ReplicaLoad, ScaleEvent, Scaler, pool_signal
from sim.fleet.plan import FleetPhase, ReplicaSpec
from sim.fleet.routing import (
    ROUTING_POLICIES,
    RoutingPolicy,
    least_outstanding_tokens,
    power_of_two_choices,
    round_robin,
)
from sim.fleet.spill import must_spill
from sim.fleet.spot import Outage
from sim.model.autoscale import autoscale_process
from sim.model.engines import _FastReplicas, _ReferenceReplicas

if TYPE_CHECKING:  # (the compiled core loads numba: imported where it runs)
    from sim.engine.compiled import CompiledFleet, Requests

__all__ = [
    "ArrayRun",
    "Engine",
    "FleetPhase",
    "Hybrid",
    "ReplicaSpec",
    "RoutingPolicy",
    "SimulationResult",
    "TimelineRow",
    "simulate",
    "simulate_arrays",
]

Engine = Literal["fast", "compiled", "lazy", "reference"]
ENGINES: tuple[Engine, ...] = ("fast", "compiled", "lazy", "reference")

TimelineRow = tuple[float, int, int, int, int, int]
"""(t_s, routable replicas (healthy, not held by an autoscaler), requests waiting on replicas,
running, waiting at the router, requests spilled so far) — one probe of the fleet's state."""


@dataclass(frozen=True)
class Hybrid:
    """Spot reclaims and API overflow for one simulation (both optional).

    outages: per replica index, its reclaims in time order (replicas without any may be absent).
    api: the overflow API client, or None (its spec's `spill` says when the router uses it).
    probe_s: if set, record a `TimelineRow` this often (`SimulationResult.timeline`).
    scalers: autoscalers, one per pool and span (`sim.fleet.autoscale.Scaler`); their slots
    must be in the routing phases over their spans (`SimulationResult.scale_events`).
    """

    outages: Mapping[int, tuple[Outage, ...]] = field(default_factory=dict)
    api: ApiClient | None = None
    probe_s: float | None = None
    scalers: tuple[Scaler, ...] = ()


@dataclass
class SimulationResult:
    """What one simulation leaves behind besides the per-request timestamps in `log`."""

    log: RequestLog
    busy_periods: list[list[tuple[float, float]]]
    steps: list[int]
    simpy_events: int
    segments: int = 0
    routed: int = 0
    reclaims: int = 0
    spilled: int = 0
    backlogged: int = 0
    unserved: list[int] = field(default_factory=list)  # waiting at the router at the end
    api_throttled_rids: list[int] = field(default_factory=list)  # got a 429 at least once
    timeline: list[TimelineRow] = field(default_factory=list)
    scale_events: list[ScaleEvent] = field(default_factory=list)  # in SimPy order


@dataclass
class ArrayRun:
    """`simulate_arrays`' result: the flushed core (per-request times, rejections and
    preemptions through `fleet.outcomes`, busy seconds through `fleet.busy_inside`), the
    outcomes the control plane writes per request as arrays (reclaim evictions, sent to the
    API, dropped by its rate limit), and the run's SimPy events, scale events and throttled
    requests — what `SimulationResult` holds, for the same run."""

    fleet: CompiledFleet
    evictions: np.ndarray
    api: np.ndarray
    dropped: np.ndarray
    simpy_events: int
    scale_events: list[ScaleEvent]
    api_throttled_rids: list[int]


def simulate(
    log: RequestLog,
    replicas: Sequence[ReplicaSpec],
    phases: Sequence[FleetPhase],
    engine: Engine = "fast",
    hybrid: Hybrid | None = None,
    routing: RoutingPolicy = "least_outstanding_tokens",
    routing_rng: np.random.Generator | None = None,
) -> SimulationResult:
    """Replay every request of `log` (arrival times ascending) through the fleet.

    `routing` names the policy of `sim.fleet.routing`; `power_of_two_choices` draws two
    uniforms per request from `routing_rng` (required for it), before the run.
    """
    _check_phases(log.arrival_s[0] if len(log) else 0.0, phases)
    arrivals = log.arrival_s
    if any(map(operator.gt, arrivals, itertools.islice(arrivals, 1, None))):  # C-speed scan
        raise ValueError("arrival times must be sorted")
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}")
    if routing not in ROUTING_POLICIES:
        raise ValueError(f"unknown routing policy {routing!r}")
    uniforms: np.ndarray | None = None
    if routing == "power_of_two_choices":
        if routing_rng is None:
            raise ValueError("power_of_two_choices routing needs routing_rng")
        uniforms = routing_rng.random((len(log), 2))
    hybrid = hybrid or Hybrid()
    _check_scalers(hybrid, len(replicas))
    if engine == "fast":
        engine = "compiled"
    if any(not s.limits.v1 for s in replicas):
        # NOTE: the V0 scheduler (prefill-first, multi-step groups) is in the reference engine
        # only; the event-skipping and compiled engines assume V1's running-first order.
        engine = "reference"
    env = simpy.Environment()
    if engine == "compiled":
        # NOTE: imported here so that importing sim.model (every CLI command) does not load
        # numba (~1 s); a run pays it once per process.
        from sim.model.compiled import run_compiled

        return run_compiled(env, log, replicas, phases, routing, uniforms, hybrid)
    counters = {
        "events": 0,
        "routed": 0,
        "reclaims": 0,
        "spilled": 0,
        "backlogged": 0,
        "dispatched": 0,
    }
    wiring: _FastReplicas | _ReferenceReplicas
    if engine == "lazy":
        wiring = _FastReplicas(log, replicas)
    else:
        wiring = _ReferenceReplicas(env, log, replicas, counters)
    return _run(env, log, replicas, phases, wiring, hybrid, counters, routing, uniforms)


def _check_phases(first_arrival_s: float, phases: Sequence[FleetPhase]) -> None:
    if not phases or phases[0].start_s > first_arrival_s:
        raise ValueError("the first fleet phase must start at or before the first arrival")
    for phase in phases:
        if not phase.replicas:
            raise ValueError(f"fleet phase at {phase.start_s} s has no replica")


def _check_arrays(requests: Requests, phases: Sequence[FleetPhase]) -> None:
    # (no arrival, no constraint on the first phase's start: an empty window simulates
    # nothing; `simulate` asks a start at or before 0)
    arrivals = np.asarray(requests.arrival_s)
    _check_phases(float(arrivals[0]) if arrivals.size else math.inf, phases)
    if arrivals.size > 1 and bool((arrivals[1:] < arrivals[:-1]).any()):
        raise ValueError("arrival times must be sorted")


def _check_scalers(hybrid: Hybrid, replicas: int) -> None:
    for sc in hybrid.scalers:
        if not math.isfinite(sc.end_s) or sc.spec.interval_s <= 0:
            raise ValueError(f"autoscaler of pool {sc.pool!r}: needs a finite end_s and interval")
        if not 0 <= sc.initial <= len(sc.replicas):
            raise ValueError(f"autoscaler of pool {sc.pool!r}: initial {sc.initial} out of range")
        if any(not 0 <= i < replicas for i in sc.replicas):
            raise ValueError(f"autoscaler of pool {sc.pool!r}: replica index out of range")


def simulate_arrays(
    requests: Requests,
    replicas: Sequence[ReplicaSpec],
    phases: Sequence[FleetPhase],
    engine: Engine,
    hybrid: Hybrid,
) -> ArrayRun | None:
    """`simulate` (JSQ routing) of a request set's arrays on the compiled core — a static
    fleet, or one that moves by phase, with or without spot reclaims, API spill and
    autoscalers — read back as arrays (`ArrayRun`) instead of a `RequestLog`'s lists: the
    same run, the same bits. None where `simulate` would not use the compiled core (`engine`
    lazy or reference, or a V0 replica).

    NOTE: every sampled window is this case. Building the log's lists and copying the core's
    outcomes into them and back into arrays were a fifth of a growth20pct replication, and a
    sixth of an autoscaled window's time under cProfile (which inflates the Python around
    them)."""
    if engine not in ("fast", "compiled") or any(not s.limits.v1 for s in replicas):
        return None
    _check_arrays(requests, phases)
    _check_scalers(hybrid, len(replicas))
    from sim.model.compiled import run_arrays  # (numba on first use, as in `simulate`)

    return run_arrays(requests, replicas, phases, hybrid)


# ------------------------------------------------------------------------ the dispatch loop
def _run(
    env: simpy.Environment,
    log: RequestLog,
    specs: Sequence[ReplicaSpec],
    phases: Sequence[FleetPhase],
    wiring: _FastReplicas | _ReferenceReplicas,
    hybrid: Hybrid,
    counters: dict[str, int],
    routing: RoutingPolicy,
    uniforms: np.ndarray | None,
) -> SimulationResult:
    reps: Sequence[Any] = wiring.reps
    starts = [p.start_s for p in phases]
    active = [[reps[i] for i in p.replicas] for p in phases]
    healthy = [True] * len(reps)
    held = [False] * len(reps)  # out of service by its autoscaler
    # The routable (healthy, not held) replicas of each phase, rebuilt when either changes.
    pools = [list(pool) for pool in active]
    backlog: deque[tuple[int, int]] = deque()
    api = hybrid.api
    spill = api.spec.spill if api is not None else SpillSpec()
    # Full-budget prefill rate of each replica (tokens/s): the predicted-wait denominator.
    rate = [
        s.limits.max_num_batched_tokens / s.step_time.step_s(s.limits.max_num_batched_tokens, 0, 0)
        for s in specs
    ]
    inputs, outputs, cached = log.input_tokens, log.output_tokens, log.cached_tokens

    def phase_at(t: float) -> int:
        return max(bisect.bisect_right(starts, t) - 1, 0)

    def set_health(i: int, up: bool) -> None:
        healthy[i] = up
        for k, pool in enumerate(active):
            pools[k] = [r for r in pool if healthy[r.index] and not held[r.index]]

    def hold(i: int, out: bool) -> None:
        held[i] = out
        set_health(i, healthy[i])

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

    def dispatch(rid: int, t: float, generated: int, phase: int) -> None:
        pool = pools[phase]
        if not pool:
            if api is not None and spill.when_no_replica:
                to_api(rid, t)
            else:
                counters["backlogged"] += 1
                backlog.append((rid, generated))
            return
        turn = counters["dispatched"]
        if len(pool) == 1 or routing == "round_robin":
            # NOTE: one replica needs no policy, and without an API not even its load: skipping
            # both bought 6-10% on bench/engine.py's single-replica scenarios.
            best = round_robin(pool, turn)
            if api is None:
                best.advance_to(t)
                best.submit(rid, t, generated)
                counters["dispatched"] = turn + 1
                return
            best_load = best.load_at(t)
        elif routing == "power_of_two_choices":
            assert uniforms is not None
            best, best_load = power_of_two_choices(pool, t, uniforms[rid, 0], uniforms[rid, 1])
        else:
            best, best_load = least_outstanding_tokens(pool, t)
        if api is not None and spill.queue_over is not None:
            for rep in pool:  # a lazy replica's queue counts only once brought up to t
                rep.advance_to(t)
        if api is not None and must_spill(
            spill, pool, best, best_load, inputs[rid] + generated - cached[rid], rate[best.index]
        ):
            to_api(rid, t)
            return
        best.advance_to(t)
        best.submit(rid, t, generated)
        counters["dispatched"] = turn + 1

    def drain_backlog(t: float) -> None:
        phase = phase_at(t)
        while backlog and pools[phase]:
            rid, generated = backlog.popleft()
            dispatch(rid, t, generated, phase)

    def arrivals() -> Generator[simpy.Event, Any, None]:
        """One SimPy event per distinct arrival instant; the requests of one instant are
        routed together, in order."""
        times = log.arrival_s
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
                if accepts(inputs[i], outputs[i]):
                    if backlog:
                        drain_backlog(t)
                    dispatch(i, t, 0, phase)
                    counters["routed"] += 1
                else:
                    log.rejected[i] = True
                i += 1

    def reclaims(i: int, outs: tuple[Outage, ...]) -> Generator[simpy.Event, Any, None]:
        rep = reps[i]
        for o in outs:
            if o.notice_s > env.now:
                yield env.timeout(o.notice_s - env.now)
            set_health(i, False)
            if o.down_s > env.now:
                yield env.timeout(o.down_s - env.now)
            counters["reclaims"] += 1
            for rid, generated in wiring.evict(rep, env.now):
                log.evictions[rid] += 1
                dispatch(rid, env.now, generated, phase_at(env.now))
            if o.up_s == math.inf:
                return
            if o.up_s > env.now:
                yield env.timeout(o.up_s - env.now)
            set_health(i, True)
            drain_backlog(env.now)

    timeline: list[TimelineRow] = []
    end_s = (log.arrival_s[-1] if len(log) else 0.0) + 1.0

    def probe(every: float) -> Generator[simpy.Event, Any, None]:
        while env.now <= end_s:
            t = env.now
            phase = phase_at(t)
            waiting = running = 0
            for rep in active[phase]:
                rep.load_at(t)  # brings a lazy replica up to t
                waiting += len(rep.waiting)
                running += len(rep.running)
            up = sum(healthy[r.index] and not held[r.index] for r in active[phase])
            timeline.append((t, up, waiting, running, len(backlog), counters["spilled"]))
            yield env.timeout(every)

    kv_tokens = [s.limits.kv_blocks * s.limits.block_size for s in specs]
    state_tokens = [s.limits.state_blocks * s.limits.block_size for s in specs]

    def signal_of(sc: Scaler) -> Callable[[float, Sequence[int]], float]:
        def signal_at(t: float, serving: Sequence[int]) -> float:
            loads = []
            for i in serving:
                rep = reps[i]
                rep.load_at(t)  # brings a lazy replica up to t
                loads.append(
                    ReplicaLoad(
                        len(rep.waiting),
                        len(rep.running),
                        rep.cached_tokens_at(t) + len(rep.running) * state_tokens[i],
                        kv_tokens[i],
                        rep.queued_prompt_tokens(),
                        rate[i],
                    )
                )
            queued = sum(inputs[rid] + gen - cached[rid] for rid, gen in backlog)
            return pool_signal(sc.spec.signal, loads, len(backlog), queued, rate[sc.replicas[0]])

        return signal_at

    scale_events: list[ScaleEvent] = []
    wiring.start(env)
    for i, outs in sorted(hybrid.outages.items()):
        if outs:
            env.process(reclaims(i, outs))
    if hybrid.probe_s:
        env.process(probe(hybrid.probe_s))
    for sc in hybrid.scalers:
        env.process(autoscale_process(env, sc, scale_events, signal_of(sc), hold, drain_backlog))
    env.process(arrivals())
    env.run()
    busy, segments = wiring.finish()
    return SimulationResult(
        log=log,
        busy_periods=busy,
        steps=[r.steps for r in reps],
        simpy_events=counters["events"],
        segments=segments,
        routed=counters["routed"],
        reclaims=counters["reclaims"],
        spilled=counters["spilled"],
        backlogged=counters["backlogged"],
        unserved=[rid for rid, _ in backlog],
        api_throttled_rids=list(api.counters.throttled_rids) if api is not None else [],
        timeline=timeline,
        scale_events=scale_events,
    )

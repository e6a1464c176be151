"""A reactive autoscaler (Kubernetes HPA semantics) on one pool: the policy as plain functions,
the slot bookkeeping as one small mechanism, and the event log's billing.

`sim.model` runs one SimPy process per `Scaler` over the span it controls: at `start_s` it
holds slots `initial..` out of service (not routed to, not evicted: like a replica under a spot
notice); every `spec.interval_s` it reads the pool's signal (`pool_signal`) from the replicas'
state at the tick instant, asks the policy (`desired_replicas`) for the pool's size and
applies the change through `Autoscaler.tick`. Every change is a `ScaleEvent`.

Policy (`sim.config.AutoscaleSpec`'s docstring):

* the **recommendation** (`hpa_recommendation`): ceil(serving × signal ÷ target) with the
  signal per serving replica, unchanged (the current size) while |signal ÷ target − 1| ≤
  tolerance, at least 1 while the signal is positive (queued work with nothing serving),
  clamped to [min_replicas, max_replicas];
* the current size counts the **pending** replicas (launched, not yet serving), so a tick
  during a cold start does not launch the same replica again;
* **scale-up** to the recommendation at once, but not within `up_cooldown_s` of the previous
  scale-up; **scale-down** to the largest recommendation of the last `down_cooldown_s`
  (HPA's stabilisation window: this tick's and those strictly after t − window);
* a scale-up launches the lowest-index idle slots; a scale-down releases the highest-index
  serving replicas and never cancels a pending launch (an instance requested is paid for and
  comes up; the next ticks release it if the load stays low) — so a scale-down may release
  fewer replicas than asked, and only serving ones.

Times: a replica launched at t is billed from t + provisioning_s ("up": the instance is
obtained) and routable from t + provisioning_s + cold_start_s ("serve": weights loaded, engine
started); a released one stops receiving requests at once, finishes what it holds, and is
billed until the release. Replicas serving at `start_s` are logged "up" and "serve" there.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from sim.config import AutoscaleSpec
from sim.fleet.schedule import merge
from sim.units import HOURS_PER_WEEK, SECONDS_PER_HOUR

__all__ = [
    "Autoscaler",
    "ReplicaLoad",
    "ScaleEvent",
    "ScaleKind",
    "Scaler",
    "billed_runs",
    "desired_replicas",
    "hpa_recommendation",
    "pending_runs",
    "per_serving",
    "pool_signal",
    "profile_floor",
    "replica_signal",
    "runs_from",
]

ScaleKind = Literal["launch", "up", "serve", "release"]


@dataclass(frozen=True)
class Scaler:
    """An autoscaler over pool `pool`'s slots `replicas` (replica indices, slot 0 first) from
    `start_s` to `end_s` (finite; outside the span it does nothing: ticks at start_s +
    k·interval_s < end_s, and a launch that would come up or serve at or after end_s does
    not). At `start_s` slots 0..initial−1 serve and the others are held out. A launch serves
    `spec.provisioning_s + cold_start_s` seconds after the decision."""

    pool: str
    replicas: tuple[int, ...]
    start_s: float
    end_s: float
    initial: int
    spec: AutoscaleSpec
    cold_start_s: float = 0.0
    floor_by_hour: tuple[int, ...] = ()  # predictive: least replicas per hour of the week

    @property
    def delay_s(self) -> float:
        """Seconds from a launch decision to the replica serving."""
        return self.spec.provisioning_s + self.cold_start_s

    def floor_at(self, t_s: float) -> int:
        """The least size at a tick at `t_s`: the predictive floor of this hour of the week and
        of the hour one scale-up delay ahead, the larger (0 without a floor) — replicas come
        up before their hour and stay to its end."""
        if not self.floor_by_hour:
            return 0
        now = int(t_s // SECONDS_PER_HOUR) % HOURS_PER_WEEK
        ahead = int((t_s + self.delay_s) // SECONDS_PER_HOUR) % HOURS_PER_WEEK
        return max(self.floor_by_hour[now], self.floor_by_hour[ahead])


def profile_floor(profile: Sequence[float], spec: AutoscaleSpec) -> tuple[int, ...]:
    """Per hour of the week, the replicas the weekly `profile` (168 rate multipliers) says the
    hour needs if `max_replicas` carry its busiest hour: ceil(max × p(h) ÷ max p), within
    [min_replicas, max_replicas]. The predictive autoscaler's floor (`AutoscaleSpec`)."""
    top = max(profile)
    return tuple(
        min(
            spec.max_replicas, max(spec.min_replicas, math.ceil(spec.max_replicas * p / top - 1e-9))
        )
        for p in profile
    )


@dataclass(frozen=True)
class ScaleEvent:
    """At `t_s`, replica `replica` of pool `pool`: "launch" (instance requested), "up" (instance
    obtained: billing starts), "serve" (routable), or "release" (removed: routing and billing
    stop; it finishes what it holds). `serving`: the pool's serving replicas after the event."""

    t_s: float
    pool: str
    replica: int
    kind: ScaleKind
    serving: int


@dataclass(frozen=True)
class ReplicaLoad:
    """One replica's state at a tick instant, after every step ending by then (and before the
    decisions of that instant): what the signals are computed from.

    waiting: requests queued for prefill; running: sequences admitted (decoding or mid-prefill);
    kv_tokens / kv_capacity_tokens: tokens held in the KV cache by running sequences (with a
    hybrid model's recurrent states, `EngineLimits.state_blocks` × block size a sequence, as
    vLLM's KV usage counts their pages), and the cache's size in tokens (blocks × block size);
    queued_prompt_tokens: tokens the waiting
    queue must prefill; prefill_tokens_per_s: the full-budget prefill rate (the spill rule's).
    """

    waiting: int
    running: int
    kv_tokens: int
    kv_capacity_tokens: int
    queued_prompt_tokens: int
    prefill_tokens_per_s: float


def replica_signal(signal: str, load: ReplicaLoad) -> float:
    """One replica's value of `signal` (`sim.config.AUTOSCALE_SIGNALS`): requests waiting,
    sequences running, KV fraction in use (tokens), or predicted wait before prefill (s)."""
    match signal:
        case "queue_depth":
            return float(load.waiting)
        case "running":
            return float(load.running)
        case "kv_usage":
            return load.kv_tokens / load.kv_capacity_tokens
        case "predicted_ttft":
            return load.queued_prompt_tokens / load.prefill_tokens_per_s
    raise ValueError(f"unknown autoscale signal {signal!r}")


def pool_signal(
    signal: str,
    loads: Sequence[ReplicaLoad],
    backlog_requests: int = 0,
    backlog_prompt_tokens: int = 0,
    prefill_tokens_per_s: float = 1.0,
) -> float:
    """The pool's `signal` per serving replica: the total over the serving replicas' `loads`
    (in slot order), plus, for the queue signals, the requests waiting at the router (no
    replica routable: `backlog_requests`, whose prompts need `backlog_prompt_tokens` at
    `prefill_tokens_per_s`), divided by the serving count — by 1 when nothing serves, so that
    queued work with no replica reads as the pool's total and scales it up from zero."""
    total = 0.0
    for load in loads:
        total += replica_signal(signal, load)
    return per_serving(
        signal, total, len(loads), backlog_requests, backlog_prompt_tokens, prefill_tokens_per_s
    )


def per_serving(
    signal: str,
    total: float,
    replicas_serving: int,
    backlog_requests: int = 0,
    backlog_prompt_tokens: int = 0,
    prefill_tokens_per_s: float = 1.0,
) -> float:
    """`pool_signal` from the `total` of its `replicas_serving` replicas' signals (summed in
    slot order, from 0.0): the router's backlog added, divided by that count (1 if none)."""
    if signal == "queue_depth":
        total += backlog_requests
    elif signal == "predicted_ttft":
        total += backlog_prompt_tokens / prefill_tokens_per_s
    return total / max(replicas_serving, 1)


def hpa_recommendation(spec: AutoscaleSpec, serving: int, pending: int, signal: float) -> int:
    """This tick's size from the signal alone (module docstring), clamped to the bounds."""
    current = serving + pending
    ratio = signal / spec.target
    want = current if abs(ratio - 1.0) <= spec.tolerance else math.ceil(max(serving, 1) * ratio)
    if signal > 0.0:
        want = max(want, 1)
    return min(max(want, spec.min_replicas), spec.max_replicas)


def desired_replicas(
    spec: AutoscaleSpec,
    serving: int,
    pending: int,
    signal: float,
    t_s: float,
    history: Iterable[tuple[float, int]] = (),
    last_up_s: float = -math.inf,
    floor: int = 0,
) -> int:
    """The pool's size (serving + pending) after the tick at `t_s`: this tick's recommendation
    when it is larger (unless the last scale-up, at `last_up_s`, is within `up_cooldown_s`);
    when smaller, the largest of it and the earlier ticks' recommendations in `history`
    ((t_s, recommendation), any order) strictly within the last `down_cooldown_s`. Never
    below `floor` (the predictive floor; a rise to it ignores the scale-up cooldown)."""
    rec = max(hpa_recommendation(spec, serving, pending, signal), floor)
    cutoff = t_s - spec.down_cooldown_s
    earlier = max((r for t, r in history if t > cutoff), default=rec)
    return _desired(spec, serving + pending, rec, floor, t_s, last_up_s, earlier)


def _desired(
    spec: AutoscaleSpec,
    current: int,
    rec: int,
    floor: int,
    t_s: float,
    last_up_s: float,
    earlier: int,
) -> int:
    """`desired_replicas` from this tick's recommendation `rec` (floor applied) and the
    largest of the earlier ones within the stabilisation window, `earlier` (`rec` if none)."""
    if floor > current:
        return rec
    if rec > current:
        return rec if t_s - last_up_s >= spec.up_cooldown_s else current
    return min(max(rec, earlier), current)


class Autoscaler:
    """The mechanism of one `Scaler`: which slots serve, which are pending, the history of
    recommendations; `sim.model`'s process calls `start`, `tick` and `serve` and applies
    what they return to the router. Appends every change to `events`."""

    def __init__(self, scaler: Scaler, events: list[ScaleEvent]) -> None:
        self.scaler = scaler
        self.events = events
        self.serving: list[int] = []
        self.pending: list[int] = []
        # (tick time, recommendation) of the ticks within the stabilisation window that are
        # larger than every later one (oldest first: the first is the window's largest)
        self.history: deque[tuple[float, int]] = deque()
        self.last_up_s = -math.inf

    def _log(self, t_s: float, replica: int, kind: ScaleKind) -> None:
        event = ScaleEvent(float(t_s), self.scaler.pool, replica, kind, len(self.serving))
        self.events.append(event)

    def start(self, t_s: float) -> list[int]:
        """The span begins: slots 0..initial−1 serve, the others are idle. The idle slots."""
        sc = self.scaler
        self.serving = []
        for i in sc.replicas[: sc.initial]:
            self._log(t_s, i, "up")
            self.serving.append(i)
            self._log(t_s, i, "serve")
        return list(sc.replicas[sc.initial :])

    def tick(self, t_s: float, signal: float) -> tuple[list[int], list[int]]:
        """Decide at `t_s` on the pool's `signal` (`pool_signal`): the slots to launch (logged
        "launch"; the caller logs "up" and calls `serve` when they come) and the serving
        replicas released (logged "release"), each in order."""
        sc, spec = self.scaler, self.scaler.spec
        serving, pending = len(self.serving), len(self.pending)
        floor = sc.floor_at(t_s)
        rec = max(hpa_recommendation(spec, serving, pending, signal), floor)
        # `desired_replicas` over every earlier tick's recommendation, with the window's
        # largest kept in O(1) per tick: ticks come in time order, so the ones outside the
        # window are the oldest, and one no larger than a later one is never the largest
        # while that later one is in the window
        cutoff = t_s - spec.down_cooldown_s
        history = self.history
        while history and history[0][0] <= cutoff:
            history.popleft()
        earlier = history[0][1] if history else rec
        want = _desired(spec, serving + pending, rec, floor, t_s, self.last_up_s, earlier)
        while history and history[-1][1] <= rec:
            history.pop()
        history.append((t_s, rec))
        launch: list[int] = []
        release: list[int] = []
        if want > serving + pending:
            busy = set(self.serving) | set(self.pending)
            launch = [i for i in sc.replicas if i not in busy][: want - serving - pending]
            self.last_up_s = t_s
            for i in launch:
                self.pending.append(i)
                self._log(t_s, i, "launch")
        elif want < serving + pending:
            ranked = sorted(self.serving, key=sc.replicas.index)
            release = ranked[len(ranked) - min(serving + pending - want, serving) :][::-1]
            for i in release:
                self.serving.remove(i)
                self._log(t_s, i, "release")
        return launch, release

    def up(self, t_s: float, replica: int) -> None:
        """The instance of a pending launch is obtained (billing starts)."""
        self._log(t_s, replica, "up")

    def serve(self, t_s: float, replica: int) -> None:
        """A pending launch is ready: it serves (the caller makes it routable)."""
        self.pending.remove(replica)
        self.serving.append(replica)
        self.serving.sort(key=self.scaler.replicas.index)
        self._log(t_s, replica, "serve")


def billed_runs(events: Iterable[ScaleEvent], end_s: float) -> dict[int, list[tuple[float, float]]]:
    """Per replica, the (start, end) seconds it is billed: from each "up" to the next "release",
    or to `end_s` if none. Replicas serving at a span's start are logged "up" there."""
    return runs_from(events, "up", end_s)


def runs_from(
    events: Iterable[ScaleEvent], opened_by: ScaleKind, end_s: float
) -> dict[int, list[tuple[float, float]]]:
    """Per replica, the (start, end) runs from each `opened_by` event ("up": billed; "serve":
    routable) to the next "release", or to `end_s` if none; replicas in order, runs sorted."""
    runs: dict[int, list[tuple[float, float]]] = {}
    since: dict[int, float] = {}
    for e in sorted(events, key=lambda e: e.t_s):
        if e.kind == opened_by:
            since.setdefault(e.replica, e.t_s)
        elif e.kind == "release" and e.replica in since:
            runs.setdefault(e.replica, []).append((since.pop(e.replica), e.t_s))
    for i, t in since.items():
        runs.setdefault(i, []).append((t, max(t, end_s)))
    return {i: sorted(r) for i, r in sorted(runs.items())}


def pending_runs(
    events: Iterable[ScaleEvent], end_s: float = math.inf
) -> dict[str, list[tuple[float, float]]]:
    """Per pool, the (start, end) seconds during which at least one launch is pending (from a
    "launch" to its "serve", or `end_s`): the spans in which a cold start holds back capacity
    that was asked for. Overlapping launches are merged; pools that never wait are absent."""
    spans: dict[str, list[tuple[float, float]]] = {}
    open_at: dict[tuple[str, int], float] = {}
    for e in sorted(events, key=lambda e: e.t_s):
        key = (e.pool, e.replica)
        if e.kind == "launch":
            open_at[key] = e.t_s
        elif e.kind == "serve" and key in open_at:
            start = open_at.pop(key)
            if e.t_s > start:  # a launch without delay is never pending
                spans.setdefault(e.pool, []).append((start, e.t_s))
    for (pool, _), t in open_at.items():
        spans.setdefault(pool, []).append((t, max(t, end_s)))
    return {pool: merge(runs) for pool, runs in sorted(spans.items())}

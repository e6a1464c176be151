"""Spot markets: when each spot instance is reclaimed, and when its replacement serves again.

Concepts (all times in seconds from the start of the simulated horizon, rates per instance-hour):

* A **spot market** (`SpotMarket`, one table of `sim/data/spot_markets.toml`) says how often a
  running spot instance is reclaimed, how much notice the provider gives, how long a replacement
  takes to obtain, and the spot/on-demand price ratio. Two kinds:
  - ``"rate"``: a Poisson process per running instance, its rate taken from an AWS Spot Advisor
    interruption bucket (`rate_from_advisor_bucket`);
  - ``"trace"``: the reclaim instants of a real spot fleet (Bamboo, NSDI'23), block-bootstrapped
    over the horizon. At an instant where the trace fleet lost k of its N running instances, each of
    our running instances is reclaimed with probability k/N, so correlated reclaim waves hit several
    of our instances at once, as they did in the trace.
* A **slot** is one spot instance position of a pool: it starts serving at 0, and each
  preemption is an `Outage`: notice (the router stops sending), the instance is gone `notice_s`
  later (in-flight work is evicted), and a replacement serves again after the availability delay
  plus the cold start. Optionally the slot falls back to on-demand when no spot instance is found
  within `fallback_after_s`; an on-demand replacement is never preempted.
* **Common random numbers**: every number comes from the replication's `sim.rng.Streams`
  (`spot_waves` keyed by the market name: shared reclaim waves; `spot_hazard`/`spot_delays` by
  (pool name, slot): a slot's own draws). The plan is not in the key: slot k of pool P in
  replication r is the same whatever the
  other pools, the pool's size, or the plan.

The markets themselves are `sim.fleet.markets`; docs/spot.md gives the sources and derivations
of every default.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace

import numpy as np

from sim.config import EngineSpec, SpotSpec
from sim.data import models
from sim.engine import weight_bytes_per_gpu
from sim.fleet.markets import SpotMarket, cold_start_s, market
from sim.fleet.plan import Fleet, Slot
from sim.rng import Streams
from sim.units import SECONDS_PER_HOUR


@dataclass(frozen=True)
class Outage:
    """One preemption of one spot slot (seconds from the start of the horizon).

    notice_s: the reclaim notice: from here the router sends the slot no new requests.
    down_s: notice_s + the market's notice period: the instance is gone, in-flight work evicted.
    up_s: the replacement serves again (>= down_s); math.inf if not within the horizon.
    fallback: True if the replacement is on-demand (no spot instance within `fallback_after_s`);
        an on-demand replacement is never preempted, so it is the slot's last outage.
    """

    notice_s: float
    down_s: float
    up_s: float
    fallback: bool


def reclaim_waves(
    market: SpotMarket, *, streams: Streams, horizon_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """A trace market's bootstrapped reclaim instants over [0, horizon_s) and their k/N fractions.

    Circular block bootstrap: the horizon is cut into blocks of `block_s`; block b replays the
    trace from a uniform random offset (wrapping around its span). It depends only on (seed,
    replication, market name) (`Streams.spot_waves`), so every pool on this market sees the
    same waves. Each block is an unbiased draw of the trace's time average, so E[sum of
    fractions] / hour = the trace's always-up rate.
    """
    trace = market.trace
    if trace is None:
        raise ValueError(f"market {market.name!r} is not a trace market")
    rng = streams.spot_waves(market.name)
    times = np.asarray(trace.times_s)
    fractions = np.asarray(trace.reclaimed) / np.asarray(trace.running_before)
    n_blocks = max(0, math.ceil(horizon_s / trace.block_s))
    offsets = rng.uniform(0.0, trace.span_s, size=n_blocks)
    if n_blocks == 0:
        return np.empty(0), np.empty(0)
    # NOTE: every block at once (blocks x trace events, a few 100k floats) instead of a loop
    # of small numpy calls per block: 0.2 s -> ~0.01 s per 6-month replication. The same
    # elementwise operations give the same bits; a row's stable sort with the events outside
    # the block pushed last (inf) orders the block's events as the stable sort of them alone.
    rel = (times[None, :] - offsets[:, None]) % trace.span_s  # after each block's start
    rel = np.where(rel < trace.block_s, rel, np.inf)
    order = np.argsort(rel, axis=1, kind="stable")
    rel = np.take_along_axis(rel, order, axis=1)
    inside = rel < np.inf
    t = (np.arange(n_blocks)[:, None] * trace.block_s + rel)[inside]
    f = fractions[order][inside]
    keep = t < horizon_s
    return t[keep], f[keep]


def spot_schedule(
    market: SpotMarket,
    *,
    streams: Streams,
    pool: str,
    slots: int,
    horizon_s: float,
    cold_start_s: float,
    fallback_after_s: float | None,
    rate_per_instance_hour: float | None = None,
) -> list[list[Outage]]:
    """Outages of each of `slots` spot slots of `pool` over [0, horizon_s), sorted by time.

    Every slot serves from 0. While a slot's spot instance serves, it is preempted at the market's
    rate ("rate") or by the bootstrapped waves ("trace"). A preemption at t gives the notice at t,
    the instance is gone at t + notice_s; the replacement is requested at the notice and serves at
    max(down, t + availability delay + cold_start_s). If the delay exceeds `fallback_after_s`, an
    on-demand instance is started at t + fallback_after_s instead (serving at
    max(down, t + fallback_after_s + cold_start_s)) and never preempted again.

    rate_per_instance_hour overrides the market's mean rate: a "rate" market uses it as is; a
    "trace" market scales every reclaim probability by rate / market rate (capped at 1). A rate of
    0 gives no outages at all.

    streams: the replication's streams (`sim.rng`). pool: the pool's name (stream key).
    cold_start_s: seconds from an obtained instance to serving (`cold_start_s()`).
    """
    if slots < 0 or horizon_s < 0 or cold_start_s < 0:
        raise ValueError("slots, horizon_s and cold_start_s must be >= 0")
    if fallback_after_s is not None and fallback_after_s < 0:
        raise ValueError("fallback_after_s must be >= 0 or None")
    rate = market.preemptions_per_instance_hour
    if rate_per_instance_hour is not None:
        if rate_per_instance_hour < 0:
            raise ValueError("rate_per_instance_hour must be >= 0")
        rate = rate_per_instance_hour
    if rate == 0.0 or slots == 0 or horizon_s == 0:
        return [[] for _ in range(slots)]

    waves: tuple[np.ndarray, np.ndarray] | None = None
    if market.kind == "trace":
        t, f = reclaim_waves(market, streams=streams, horizon_s=horizon_s)
        if market.preemptions_per_instance_hour > 0:
            f = np.minimum(1.0, f * (rate / market.preemptions_per_instance_hour))
        waves = (t, f)

    out = []
    for slot in range(slots):
        hazard = streams.spot_hazard(pool, slot)
        delays = streams.spot_delays(pool, slot)
        out.append(
            _slot_outages(
                market, waves, rate, hazard, delays, horizon_s, cold_start_s, fallback_after_s
            )
        )
    return out


def _slot_outages(
    market: SpotMarket,
    waves: tuple[np.ndarray, np.ndarray] | None,
    rate_per_hour: float,
    hazard: np.random.Generator,
    delays: np.random.Generator,
    horizon_s: float,
    cold_start: float,
    fallback_after_s: float | None,
) -> list[Outage]:
    outages: list[Outage] = []
    up_since = 0.0
    if waves is not None:
        # One uniform per wave for this slot, drawn whether or not the slot is up then, so the
        # slot's draws do not depend on its own history (tighter coupling between plans).
        hit = hazard.random(waves[0].size) < waves[1]
        candidates = waves[0][hit]
        idx = 0
    while True:
        if waves is None:
            notice = up_since + hazard.exponential(SECONDS_PER_HOUR / rate_per_hour)
        else:
            # NOTE: a wave exactly at the moment the replacement starts serving counts (>=).
            idx += int(np.searchsorted(candidates[idx:], up_since, side="left"))
            if idx >= candidates.size:
                break
            notice = float(candidates[idx])
            idx += 1
        if notice >= horizon_s:
            break
        down = notice + market.notice_s
        delay = float(market.availability_delay.quantile_s(delays.random()))
        fallback = fallback_after_s is not None and delay > fallback_after_s
        wait = fallback_after_s if fallback and fallback_after_s is not None else delay
        up = max(down, notice + wait + cold_start)
        outages.append(Outage(notice, down, up if up < horizon_s else math.inf, fallback))
        if fallback or up >= horizon_s:
            break
        up_since = up
    return outages


def replica_cold_start_s(spot: SpotSpec | None, engine: EngineSpec) -> float:
    """Instance start → serving: `[spot] cold_start_s`, else derived from the model's weights
    (`sim.fleet.markets.cold_start_s`: weights ÷ load bandwidth + engine start)."""
    if spot is not None and spot.cold_start_s is not None:
        return spot.cold_start_s
    weights = weight_bytes_per_gpu(models()[engine.model], engine.weights, engine.tp)
    return cold_start_s(weights / 1e9)


def spot_outages(
    spot: SpotSpec | None,
    fleet: Fleet,
    streams: Streams,
    horizon_s: float,
    cold_start: float,
) -> dict[int, tuple[Outage, ...]]:
    """Reclaims of every spot replica of `fleet` over the horizon, by replica index."""
    if spot is None or not fleet.spot_slots():
        return {}
    mk = market(spot.market)
    if spot.notice_s is not None:
        mk = replace(mk, notice_s=spot.notice_s)
    by_pool: dict[str, list[Slot]] = {}
    for slot in fleet.spot_slots():
        by_pool.setdefault(slot.pool, []).append(slot)
    out: dict[int, tuple[Outage, ...]] = {}
    for pool, members in sorted(by_pool.items()):
        schedule = spot_schedule(
            mk,
            streams=streams,
            pool=pool,
            slots=max(m.k for m in members) + 1,
            horizon_s=horizon_s,
            cold_start_s=cold_start,
            fallback_after_s=spot.fallback_after_s,
            rate_per_instance_hour=spot.preemptions_per_instance_hour,
        )
        for m in members:
            out[m.index] = tuple(schedule[m.k])
    return out


def outages_touching(
    outages: Mapping[int, tuple[Outage, ...]], t0: float, end: float
) -> dict[int, tuple[Outage, ...]]:
    """The reclaims that touch [t0, end] (a replica down at t0 is down from the start)."""
    out = {}
    for i, outs in outages.items():
        near = tuple(o for o in outs if o.notice_s <= end and o.up_s > t0)
        if near:
            out[i] = near
    return out

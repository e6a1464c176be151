"""The autoscaler as a SimPy process (`autoscale_process`), shared by every engine of
`sim.model`: ticks, launches after provisioning and cold start, releases (`sim.fleet.autoscale`
has the policy and the bookkeeping)."""

from __future__ import annotations

from collections.abc import Callable, Generator, Sequence
from typing import Any

import simpy

from sim.fleet.autoscale import Autoscaler, ScaleEvent, Scaler


# ------------------------------------------------------------------------ the autoscaler
def autoscale_process(
    env: simpy.Environment,
    scaler: Scaler,
    events: list[ScaleEvent],
    signal_at: Callable[[float, Sequence[int]], float],
    hold: Callable[[int, bool], None],
    drain: Callable[[float], None],
) -> Generator[simpy.Event, Any, None]:
    """One `Scaler` over its span, on any engine: `signal_at(t, serving)` reads the pool's
    signal (`pool_signal`) over its serving replicas at t, `hold(i, True)` takes replica i out
    of routing (`False` gives it back) and `drain(t)` dispatches the router's backlog.

    Ticks are at start_s + k·interval_s < end_s; a launch serves `delay_s` later unless that
    is at or after end_s (then only "launch" — and "up" if the instance came — are logged).
    """
    if scaler.end_s <= scaler.start_s:
        return
    mech = Autoscaler(scaler, events)
    if scaler.start_s > env.now:
        yield env.timeout(scaler.start_s - env.now)
    for i in scaler.replicas[: scaler.initial]:
        hold(i, False)
    for i in mech.start(env.now):
        hold(i, True)
    drain(env.now)
    spec = scaler.spec

    def launched(i: int) -> Generator[simpy.Event, Any, None]:
        if spec.provisioning_s > 0:
            if env.now + spec.provisioning_s >= scaler.end_s:
                return
            yield env.timeout(spec.provisioning_s)
        mech.up(env.now, i)
        if scaler.cold_start_s > 0:
            if env.now + scaler.cold_start_s >= scaler.end_s:
                return
            yield env.timeout(scaler.cold_start_s)
        mech.serve(env.now, i)
        hold(i, False)
        drain(env.now)

    k = 1
    while (t := scaler.start_s + k * spec.interval_s) < scaler.end_s:
        yield env.timeout(t - env.now)
        k += 1
        launch, release = mech.tick(env.now, signal_at(env.now, mech.serving))
        for i in release:
            hold(i, True)
        if launch and scaler.delay_s == 0:  # serves at once, for this instant's arrivals
            for i in launch:
                mech.up(env.now, i)
                mech.serve(env.now, i)
                hold(i, False)
            drain(env.now)
        else:
            for i in launch:
                env.process(launched(i))

"""The reclaim timeline of the risk section: the fleet's state around one spot reclaim.

The first replication that has a reclaim (in any plan) gives the instant; every plan then
replays the same stretch of that replication's traffic — from `TIMELINE_MARGIN_S` before the
notice to `TIMELINE_MARGIN_S` after the replacement is up, at most `TIMELINE_MAX_S` — from an
empty fleet warmed up `horizon.warmup_s` before, with the same reclaims, probing the fleet every
`TIMELINE_PROBE_S`. The report shows the queue a reclaim causes and the API spill absorbing it.
"""

from __future__ import annotations

import polars as pl

from sim.experiment import Experiment
from sim.fleet import FleetPhase, Outage, build_fleet, outages_touching, spot_outages
from sim.fleet.spot import replica_cold_start_s
from sim.model import simulate
from sim.model.outcomes import request_log
from sim.records import TIMELINE_EVENTS_SCHEMA, TIMELINE_SCHEMA
from sim.replication import hybrid_for, plan_run, sample_growth, window_requests
from sim.rng import TIMELINE_WINDOW, Streams
from sim.units import SECONDS_PER_MONTH

TIMELINE_PROBE_S = 10.0  # fleet-state sample period
TIMELINE_MARGIN_S = 900.0  # shown before the reclaim notice and after the replacement
TIMELINE_MAX_S = 7200.0  # the longest stretch simulated (a reclaim that never comes back)


def first_reclaim(exp: Experiment, replications: int) -> tuple[int, Outage] | None:
    """(replication, reclaim) of the earliest reclaim notice in the first replication that has
    one, over every plan; None when no plan has spot pools or nothing is reclaimed."""
    spec = exp.spec
    fleets = [build_fleet(plan, exp.engine) for plan in spec.all_plans()]
    horizon_s = float(spec.months * SECONDS_PER_MONTH)
    cold = replica_cold_start_s(spec.spot, spec.engine)
    for k in range(replications):
        found: Outage | None = None
        streams = Streams(spec.seed, k)
        for fleet in fleets:
            outages = spot_outages(spec.spot, fleet, streams, horizon_s, cold)
            downs = [(o.notice_s, i) for i, outs in outages.items() for o in outs]
            if downs:
                notice, i = min(downs)  # ties: the lowest replica index
                if found is None or notice < found.notice_s:
                    found = next(o for o in outages[i] if o.notice_s == notice)
        if found is not None:
            return k, found
    return None


def sample_timeline(exp: Experiment, replications: int) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Fleet state around the first spot reclaim (module docstring) and the reclaim events
    inside the stretch; empty tables when there is no reclaim."""
    timeline = pl.DataFrame(schema=TIMELINE_SCHEMA)
    events = pl.DataFrame(schema=TIMELINE_EVENTS_SCHEMA)
    found = first_reclaim(exp, replications)
    if found is None:
        return timeline, events
    k, reclaim = found
    spec = exp.spec
    streams = Streams(spec.seed, k)
    notice = reclaim.notice_s
    up = min(reclaim.up_s, notice + TIMELINE_MAX_S - TIMELINE_MARGIN_S)
    month = int(notice // SECONDS_PER_MONTH) + 1
    month_start = float((month - 1) * SECONDS_PER_MONTH)
    start = max(month_start, notice - TIMELINE_MARGIN_S)
    end = min(float(month * SECONDS_PER_MONTH), up + TIMELINE_MARGIN_S)
    growth = sample_growth(spec, streams)
    t0, req = window_requests(
        exp.traffic(),
        month,
        start,
        end,
        warmup_s=spec.horizon.warmup_s,
        growth=float(growth[month - 1]),
        rngs=streams.window(month, TIMELINE_WINDOW),
    )
    frames, event_rows = [], []
    for plan in spec.all_plans():
        if len(req.arrival_s) == 0:
            break
        run = plan_run(exp, plan, streams)
        outages = outages_touching(run.outages, t0, end)
        log = request_log(req)
        api_rng = streams.api(month, TIMELINE_WINDOW)
        hybrid = hybrid_for(spec.api, run, outages, api_rng, len(log), probe_s=TIMELINE_PROBE_S)
        active = run.fleet.phases[month - 1].replicas
        res = simulate(log, run.fleet.replicas, [FleetPhase(t0, active)], "fast", hybrid)
        rows = [r for r in res.timeline if start <= r[0] <= end]
        frames.append(
            pl.DataFrame([(plan.name, *r) for r in rows], schema=TIMELINE_SCHEMA, orient="row")
        )
        for i, outs_i in sorted(outages.items()):
            for o in outs_i:
                for name, t in (("notice", o.notice_s), ("down", o.down_s), ("up", o.up_s)):
                    if start <= t <= end:
                        event_rows.append((plan.name, i, name, t))
    if frames:
        timeline = pl.concat(frames)
    if event_rows:
        events = pl.DataFrame(event_rows, schema=TIMELINE_EVENTS_SCHEMA, orient="row")
    return timeline, events

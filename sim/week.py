"""One week of a fleet that moves, for the report: replicas serving, queues and scale events.

Every plan whose pools move within a month (schedules, autoscalers) replays the same week of
replication 0 — the first whole week (from Monday 00:00) of the plan's last month, the busiest
under growth — from an empty fleet warmed up `horizon.warmup_s` before it, probing the fleet
every `WEEK_PROBE_S`. A week at very high volume is cut to its first day (`WEEK_MAX_REQUESTS`)
so the report never costs more than a few seconds.
"""

from __future__ import annotations

import numpy as np
import polars as pl

from sim.experiment import Experiment
from sim.fleet import outages_touching
from sim.model import simulate
from sim.model.outcomes import request_log
from sim.records import FLEET_WEEK_SCHEMA, SCALE_EVENTS_SCHEMA
from sim.replication import hybrid_for, plan_run, sample_growth, window_requests
from sim.rng import WEEK_WINDOW, Streams
from sim.units import HOURS_PER_WEEK, SECONDS_PER_DAY, SECONDS_PER_HOUR, SECONDS_PER_MONTH
from sim.workload import MonthRequests

WEEK_PROBE_S = 300.0  # fleet-state sample period: 2,016 probes a week
WEEK_MAX_REQUESTS = 10_000_000  # above this, the first day only (~10 s of compiled engine)

WEEK_S = float(HOURS_PER_WEEK * SECONDS_PER_HOUR)


def week_span(month: int) -> tuple[float, float]:
    """[start, end) of the first whole week (Monday 00:00 on) inside 1-based `month`."""
    month_start = (month - 1) * SECONDS_PER_MONTH
    start = -(-month_start // int(WEEK_S)) * WEEK_S
    return float(start), float(start + WEEK_S)


def sample_week(exp: Experiment) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The fleet-week probes and scale events of every moving plan (module docstring); empty
    tables when no plan moves."""
    spec = exp.spec
    moving = [p for p in spec.all_plans() if p.moves]
    week = pl.DataFrame(schema=FLEET_WEEK_SCHEMA)
    events = pl.DataFrame(schema=SCALE_EVENTS_SCHEMA)
    if not moving:
        return week, events
    month = spec.months
    start, end = week_span(month)
    streams = Streams(spec.seed, 0)
    growth = float(sample_growth(spec, streams)[month - 1])
    rngs = streams.window(month, WEEK_WINDOW)
    t0, req = window_requests(
        exp.traffic(), month, start, end, warmup_s=spec.horizon.warmup_s, growth=growth, rngs=rngs
    )
    if len(req.arrival_s) > WEEK_MAX_REQUESTS:  # the week's own first day (arrivals sorted)
        end = start + SECONDS_PER_DAY
        n = int(np.searchsorted(req.arrival_s, end, side="left"))
        req = MonthRequests(
            req.month, req.arrival_s[:n], req.input_tokens[:n], req.output_tokens[:n]
        )
    if len(req.arrival_s) == 0:
        return week, events
    frames: list[pl.DataFrame] = []
    event_frames: list[pl.DataFrame] = []
    for plan in moving:
        run = plan_run(exp, plan, streams)
        log = request_log(req)
        api_rng = streams.api(month, WEEK_WINDOW)
        near = outages_touching(run.outages, t0, end)
        scalers = run.scalers(t0, end)
        hybrid = hybrid_for(
            spec.api, run, near, api_rng, len(log), probe_s=WEEK_PROBE_S, scalers=scalers
        )
        res = simulate(log, run.fleet.replicas, run.fleet.routing_between(t0, end), "fast", hybrid)
        rows = [(plan.name, *r) for r in res.timeline if start <= r[0] < end]
        frames.append(pl.DataFrame(rows, schema=FLEET_WEEK_SCHEMA, orient="row"))
        scale = [
            (plan.name, e.t_s, e.pool, e.replica, e.kind, e.serving)
            for e in res.scale_events
            if start <= e.t_s < end
        ]
        event_frames.append(pl.DataFrame(scale, schema=SCALE_EVENTS_SCHEMA, orient="row"))
    if frames:
        week = pl.concat(frames)
    if event_frames:
        events = pl.concat(event_frames)
    return week, events

"""When replicas serve: a fleet's scheduled runs and an autoscaler's serve/release events, as
replica-seconds per hour of the horizon (the denominator of utilisation when the fleet moves)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from sim.fleet.autoscale import ScaleEvent, runs_from
from sim.fleet.plan import Fleet
from sim.units import SECONDS_PER_MONTH
from sim.workload.clock import seconds_by_hour


def serving_by_hour(
    fleet: Fleet, hours: int, events: Sequence[ScaleEvent] = (), end_s: float = 0.0
) -> np.ndarray:
    """Replica-seconds serving in each hour of the horizon, over every slot of `fleet`: its
    schedule's serving runs, or, for autoscaled slots, from "serve" to "release" in the scale
    `events` of a simulation that ends at `end_s`."""
    scaled = {i for sp in fleet.scaled for i in sp.replicas}
    total = np.zeros(hours)
    for i, runs in enumerate(fleet.serving):
        if i not in scaled:
            total += seconds_by_hour(list(runs), hours)
    for scaled_runs in serving_runs(events, end_s).values():
        total += seconds_by_hour(scaled_runs, hours)
    return total


def scaler_spans(
    events: Sequence[ScaleEvent], sim_end_s: float
) -> list[tuple[float, list[ScaleEvent]]]:
    """Scale events split by the autoscaler span that logged them — one per pool and plan month
    (a span's events lie inside its month) — with each span's end (the month's end, or
    `sim_end_s` if sooner): a span leaves its replicas as they are at its end, and the next
    span starts over from its month's `count`, so each is accounted on its own."""
    groups: dict[tuple[str, int], list[ScaleEvent]] = {}
    for e in events:
        groups.setdefault((e.pool, int(e.t_s // SECONDS_PER_MONTH)), []).append(e)
    return [
        (min(sim_end_s, float((m + 1) * SECONDS_PER_MONTH)), span)
        for (_, m), span in sorted(groups.items())
    ]


def serving_runs(
    events: Sequence[ScaleEvent], end_s: float
) -> dict[int, list[tuple[float, float]]]:
    """Per replica, its (serve, release) runs in the scale `events` of a simulation ending at
    `end_s` (a run still open at its span's end closes there)."""
    runs: dict[int, list[tuple[float, float]]] = {}
    for span_end, span in scaler_spans(events, end_s):
        for i, served in runs_from(span, "serve", span_end).items():
            runs.setdefault(i, []).extend(served)
    return runs

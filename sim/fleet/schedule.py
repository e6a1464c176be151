"""Scheduled fleets: when each slot of a scheduled pool serves, and the routing phases that
follow.

A pool's `schedule` (`sim.config.ScheduleRule`s) sets how many replicas serve in each hour
of the week; slot k of the pool serves in an hour when that hour's count exceeds k, so the
lowest slots serve longest. A schedule is known in advance, so its operator starts an
instance one cold start before the hour it must serve (the instance is billed from then,
`sim.cost`); at the end of its hours the slot takes no new requests and finishes what it
holds. A static slot serves its whole months.

Times are plan seconds (`sim.workload.clock`: t = 0 is Monday 00:00); intervals are
half-open [start, end).
"""

from __future__ import annotations

from collections.abc import Sequence

from sim.units import HOURS_PER_WEEK, SECONDS_PER_HOUR

Interval = tuple[float, float]


def serving_hours(counts: Sequence[int], k: int, start_s: float, end_s: float) -> list[Interval]:
    """Where slot `k` serves inside [start_s, end_s) under hour-of-week `counts` (168
    values): maximal runs of whole hours whose count exceeds `k`, clipped to the span."""
    if len(counts) != HOURS_PER_WEEK:
        raise ValueError(f"counts must have {HOURS_PER_WEEK} values, got {len(counts)}")
    out: list[Interval] = []
    if all(c > k for c in counts):
        return [(start_s, end_s)] if end_s > start_s else []
    hour = int(start_s // SECONDS_PER_HOUR)
    run_start: float | None = None
    while hour * SECONDS_PER_HOUR < end_s:
        t = max(start_s, float(hour * SECONDS_PER_HOUR))
        on = counts[hour % HOURS_PER_WEEK] > k
        if on and run_start is None:
            run_start = t
        elif not on and run_start is not None:
            out.append((run_start, t))
            run_start = None
        hour += 1
    if run_start is not None:
        out.append((run_start, end_s))
    return out


def overlap_s(runs: Sequence[Interval], start: float, end: float) -> float:
    """Seconds of `runs` inside [start, end)."""
    return float(sum(max(0.0, min(b, end) - max(a, start)) for a, b in runs))


def merge(intervals: Sequence[Interval]) -> list[Interval]:
    """Sorted, touching or overlapping intervals joined (a slot serving across a month
    boundary is one run)."""
    out: list[Interval] = []
    for a, b in sorted(intervals):
        if out and a <= out[-1][1]:
            out[-1] = (out[-1][0], max(out[-1][1], b))
        else:
            out.append((a, b))
    return out


def routing_changes(
    serving: Sequence[Sequence[Interval]], boundaries: Sequence[float]
) -> list[tuple[float, tuple[int, ...]]]:
    """(start_s, replicas serving from then on) at every `boundaries` instant (month starts,
    the last one the horizon's end) and wherever a slot starts or stops serving, in time
    order; `serving[i]` are slot i's disjoint intervals. One sweep over the edges."""
    edges: dict[float, list[tuple[int, int]]] = {t: [] for t in boundaries}
    for i, runs in enumerate(serving):
        for a, b in runs:
            edges.setdefault(a, []).append((i, 1))
            edges.setdefault(b, []).append((i, -1))
    on: set[int] = set()
    fixed = set(boundaries)
    out: list[tuple[float, tuple[int, ...]]] = []
    for t in sorted(edges):
        for i, step in sorted(edges[t], key=lambda e: e[1]):  # stops before starts
            if step < 0:
                on.discard(i)
            else:
                on.add(i)
        if t < boundaries[0] or t >= boundaries[-1]:
            continue
        now = tuple(sorted(on))
        if out and out[-1][1] == now and t not in fixed:
            continue
        out.append((t, now))
    return out

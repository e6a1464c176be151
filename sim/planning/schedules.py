"""Scheduled candidates: an on-demand fleet that follows the weekly profile, and its bill.

A static fleet of N replicas is sized for the busiest hour of the week and idles in the quiet
ones. Its scheduled variant serves, in hour h of the week,

    c[h] = max(1, ceil(N × p[h] / max(p)))

replicas (`profile_counts`; p = the experiment's weekly profile, 168 multipliers of mean 1),
so no hour's load per serving replica exceeds the static fleet's at its peak hour: where
the static fleet meets the SLO at its peak, the scheduled one faces no heavier hour (cold
starts and drains are simulated like every candidate's, and its risk comes from simulation).
At least one replica always serves, so the fleet never goes dark.

`schedule_rules` writes the 168 counts as a pool's `count` plus `ScheduleRule`s (the form
`[fleet]` pools take in an experiment file); `scheduled_bill_usd` is the month's on-demand
bill of such a fleet (`sim.cost.plan_month_costs`: each serving run billed from one cold start
before it, to its end), the search's cost lower bound for it.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

from sim.config import CostSpec, EngineSpec, PlanSpec, PoolSpec, ScheduleRule, SpotSpec
from sim.cost import plan_month_costs
from sim.engine import resolve_engine
from sim.fleet import build_fleet, replica_cold_start_s
from sim.units import HOURS_PER_DAY, HOURS_PER_WEEK

DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # as `sim.config.pools` reads them


def profile_counts(peak_count: int, profile: Sequence[float]) -> tuple[int, ...]:
    """Replicas serving in each hour of the week when `peak_count` serve at the profile's
    busiest hour (module docstring). The 1e-9 keeps N × p/max(p) = 2.0000000001 at 2."""
    if len(profile) != HOURS_PER_WEEK:
        raise ValueError(f"a weekly profile has {HOURS_PER_WEEK} values, got {len(profile)}")
    top = max(profile)
    if top <= 0:
        raise ValueError("a weekly profile needs a positive value")
    return tuple(max(1, math.ceil(peak_count * p / top - 1e-9)) for p in profile)


def schedule_rules(counts: Sequence[int]) -> tuple[int, tuple[ScheduleRule, ...]]:
    """168 hourly counts as (the pool's `count`, its schedule rules): `count` is the most
    frequent hourly count; each day's runs of equal other counts become [start, end) rules,
    one rule for all the days that share the same run. `PoolSpec(count=..., schedule=...)`
    `.hourly_counts()` gives `counts` back (tests/test_plan_schedules.py)."""
    if len(counts) != HOURS_PER_WEEK:
        raise ValueError(f"counts must have {HOURS_PER_WEEK} values, got {len(counts)}")
    freq = Counter(counts)
    base = max(sorted(freq), key=lambda c: freq[c])
    days_of: dict[tuple[int, int, int], list[int]] = {}
    for day in range(7):
        hours = counts[day * HOURS_PER_DAY : (day + 1) * HOURS_PER_DAY]
        start = 0
        for h in range(1, HOURS_PER_DAY + 1):
            if h == HOURS_PER_DAY or hours[h] != hours[start]:
                if hours[start] != base:
                    days_of.setdefault((start, h, hours[start]), []).append(day)
                start = h
    rules = [ScheduleRule(tuple(d), a, b, c) for (a, b, c), d in days_of.items()]
    return base, tuple(sorted(rules, key=lambda r: (r.days, r.start_hour)))


def scheduled_pool(name: str, gpu: str, counts: Sequence[int]) -> PoolSpec:
    """An on-demand pool of `gpu` serving `counts` replicas by hour of the week."""
    base, rules = schedule_rules(counts)
    return PoolSpec(name, gpu, base, "on_demand", rules)


def days_text(days: Sequence[int]) -> str:
    """Day indices as `sim.config.pools.parse_days` reads them: (0, 1, 2, 3, 4, 6) →
    "mon-fri,sun"; all seven → "all"."""
    ds = sorted(set(days))
    if len(ds) == 7:
        return "all"
    parts: list[str] = []
    i = 0
    while i < len(ds):
        j = i
        while j + 1 < len(ds) and ds[j + 1] == ds[j] + 1:
            j += 1
        a, b = DAY_NAMES[ds[i]], DAY_NAMES[ds[j]]
        parts.append(a if i == j else f"{a}-{b}")
        i = j + 1
    return ",".join(parts)


def rule_table(rule: ScheduleRule) -> dict[str, object]:
    """One rule as the experiment file writes it: `{ days, hours = [start, end], count }`."""
    return {
        "days": days_text(rule.days),
        "hours": [rule.start_hour, rule.end_hour],
        "count": rule.count,
    }


def scheduled_bill_usd(
    plan: PlanSpec, engine: EngineSpec, spot: SpotSpec | None, cost: CostSpec
) -> tuple[float, ...]:
    """Per month of `plan`, its on-demand and reserved GPU bill (USD, operations excluded) as
    a replication bills it: the plan's fleet built on `engine` (step times do not enter the
    bill), scheduled slots billed from one cold start (`sim.fleet.replica_cold_start_s`)
    before each serving run. Spot slots and the API are not included."""
    gpus = sorted({p.gpu for m in plan.fleet for p in m.pools})
    fleet = build_fleet(plan, resolve_engine(engine, gpus))
    cold = replica_cold_start_s(spot, engine)
    return tuple(m.gpu_cost_usd for m in plan_month_costs(plan, engine.tp, cost, fleet, cold))

"""Lead times: when each fleet increase must be ordered, and what month 1 can have.

A GPU type with a lead time of L days (`[plan] lead_time_days`) serves L days after it is
ordered. An increase of that type in month m (more replicas — a fleet's most replicas, its
`slots` — than in month m − 1, or than `[plan] current_fleet` before month 1; nothing
before month 1 when no current fleet is given) must be ordered L days before month m starts:
by day (m − 1) × 730/24 − L of the plan (730-hour billing months, `sim.units`). An order day
before day 0 is already late: "order now", and the replicas arrive on day L of the plan.

Since such a month would start short, the search (and the dynamic programme of
`sim.planning.constraints`) gives a month that starts before day L at most the current
replicas of that type (`fleet_cap`); without a `current_fleet` there is no cap.
"""

from __future__ import annotations

import datetime
import math
from collections.abc import Sequence
from dataclasses import dataclass

from sim.config import MonthPlan
from sim.config.plan import PlanSearchSpec
from sim.units import HOURS_PER_DAY, HOURS_PER_MONTH

DAYS_PER_MONTH = HOURS_PER_MONTH / HOURS_PER_DAY  # 30.42: the 730-hour billing month


def month_start_day(month: int) -> float:
    """Days from the plan start to the start of 1-based `month`."""
    return (month - 1) * DAYS_PER_MONTH


def current_count(s: PlanSearchSpec, gpu: str) -> int:
    """Replicas of `gpu` in `[plan] current_fleet` (0 when absent or not given)."""
    return dict(s.current_fleet or ()).get(gpu, 0)


def fleet_cap(s: PlanSearchSpec, gpu: str, month: int) -> int | None:
    """The most replicas of `gpu` month `month` may have (module docstring), None: no cap."""
    if s.current_fleet is None:
        return None
    lead = s.lead_time(gpu)
    if lead > 0 and month_start_day(month) < lead:
        return current_count(s, gpu)
    return None


@dataclass(frozen=True)
class Order:
    """One fleet increase: `gpu` from `before` to `after` replicas in `month`, to be ordered
    by `order_day` (days from the plan start; < 0: late, order now) for a `lead_days` lead
    time; `arrive_day` is when it serves if ordered on time, or on day 0 when late."""

    gpu: str
    month: int
    before: int
    after: int
    lead_days: float
    order_day: float

    @property
    def late(self) -> bool:
        return self.order_day < 0

    @property
    def arrive_day(self) -> float:
        return self.lead_days if self.late else month_start_day(self.month)

    def words(self, start: datetime.date | None = None) -> str:
        """E.g. "month 3, 2 → 3 × a100-80gb: order by day 46 (2027-02-16); 14-day lead
        time" (the date only with a `start` date)."""
        head = f"month {self.month}, {self.before} → {self.after} × {self.gpu}"
        lead = f"{_days(self.lead_days)}-day lead time"
        if self.late:
            when = f"day {_days(self.arrive_day)}" + _date(start, self.arrive_day)
            return f"{head}: order now: arrives on {when}; {lead}"
        day = math.floor(self.order_day)
        return f"{head}: order by day {day}{_date(start, day)}; {lead}"


def _days(x: float) -> str:
    return f"{x:g}" if x == int(x) else f"{x:.1f}"


def _date(start: datetime.date | None, day: float) -> str:
    if start is None:
        return ""
    return f" ({(start + datetime.timedelta(days=math.floor(day))).isoformat()})"


def gpu_counts(month: MonthPlan) -> dict[str, int]:
    """GPU type → replicas of the month (every pool at its most, `PoolSpec.slots`)."""
    out: dict[str, int] = {}
    for p in month.pools:
        out[p.gpu] = out.get(p.gpu, 0) + p.slots
    return out


def orders(s: PlanSearchSpec, fleet: Sequence[MonthPlan]) -> list[Order]:
    """Every increase of a GPU type with a lead time in the plan's months, in month order."""
    prev = dict(s.current_fleet or ())
    out: list[Order] = []
    for m, month in enumerate(fleet, start=1):
        now = gpu_counts(month)
        for gpu in sorted(now):
            lead = s.lead_time(gpu)
            before = prev.get(gpu, 0)
            if lead > 0 and now[gpu] > before:
                out.append(Order(gpu, m, before, now[gpu], lead, month_start_day(m) - lead))
        prev = now
    return out

"""Units of the plan clock, in one place, and the small enums every layer shares.

Time is float seconds since the start of the plan; `t = 0` is Monday 00:00 in the weekly
profile's timezone. A month is the cloud-billing month of 8760 / 12 = 730 hours (so month 2
starts on a Wednesday, hour 730 mod 168 = 58). `sim.workload.clock` has the functions over it.
"""

from __future__ import annotations

from enum import StrEnum

SECONDS_PER_HOUR = 3600
HOURS_PER_DAY = 24
SECONDS_PER_DAY = HOURS_PER_DAY * SECONDS_PER_HOUR
HOURS_PER_WEEK = 168
HOURS_PER_MONTH = 730  # 8760 / 12: the cloud-billing month
SECONDS_PER_MONTH = HOURS_PER_MONTH * SECONDS_PER_HOUR  # 2,628,000 s


class Market(StrEnum):
    """How a pool's instances are bought (`fleet.months[].pools[].market`)."""

    ON_DEMAND = "on_demand"
    SPOT = "spot"
    RESERVED = "reserved"


MARKETS = tuple(m.value for m in Market)

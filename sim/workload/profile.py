"""The weekly profile: 168 hour-of-week rate multipliers with mean 1."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

from sim.units import HOURS_PER_WEEK
from sim.workload.clock import FloatArray, hour_edges, hour_of_week

_MEAN_TOLERANCE = 1e-9


@dataclass(frozen=True)
class WeeklyProfile:
    """Relative arrival rate for each hour of the week, normalised so that its mean is 1.

    `multipliers[h]` (dimensionless) scales the base rate during hour of week `h`
    (0 = Monday 00:00–01:00 in the profile's timezone, see `sim.workload.clock`). Because the
    mean is 1, the profile reshapes traffic within a week without changing its weekly volume:
    a week at base rate `r` req/s carries `r · 168 · 3600` requests on average.

    The constructor validates and does not normalise; use `from_values` to normalise raw rates.
    """

    multipliers: tuple[float, ...]
    _array: FloatArray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        values = tuple(float(v) for v in self.multipliers)
        _check_values(values)
        mean = math.fsum(values) / HOURS_PER_WEEK
        if abs(mean - 1.0) > _MEAN_TOLERANCE:
            raise ValueError(
                f"weekly profile must have mean 1, got mean {mean!r}; "
                "use WeeklyProfile.from_values to normalise raw values"
            )
        array = np.array(values, dtype=np.float64)
        array.flags.writeable = False
        object.__setattr__(self, "multipliers", values)
        object.__setattr__(self, "_array", array)

    def __reduce__(self) -> tuple[type[WeeklyProfile], tuple[tuple[float, ...]]]:
        # Rebuild through the constructor so an unpickled copy has its read-only array.
        return (type(self), (self.multipliers,))

    @classmethod
    def from_values(cls, values: Iterable[float]) -> WeeklyProfile:
        """Profile from 168 non-negative raw values (e.g. mean req/s per hour) over their mean."""
        raw = tuple(float(v) for v in values)
        _check_values(raw)
        mean = math.fsum(raw) / HOURS_PER_WEEK
        return cls(tuple(v / mean for v in raw))

    @classmethod
    def flat(cls) -> WeeklyProfile:
        """The constant profile (every multiplier 1)."""
        return cls((1.0,) * HOURS_PER_WEEK)

    @property
    def array(self) -> FloatArray:
        """The 168 multipliers as a read-only float64 array."""
        return self._array

    def mean(self) -> float:
        """Mean multiplier over the week: 1 by construction."""
        return math.fsum(self.multipliers) / HOURS_PER_WEEK

    def at(self, t_s: FloatArray | float) -> FloatArray:
        """Multiplier in force at plan times `t_s` (seconds)."""
        return self._array[hour_of_week(t_s)]

    def integral_s(self, start_s: float, end_s: float) -> float:
        """∫ profile(t) dt over `[start_s, end_s)`, in seconds (= expected arrivals at 1 req/s)."""
        if not end_s >= start_s:
            raise ValueError(f"need end_s >= start_s, got {start_s!r}, {end_s!r}")
        edges = hour_edges(start_s, end_s)
        return float(np.sum(self.at(edges[:-1]) * np.diff(edges)))

    def peak_to_trough(self) -> float:
        """Ratio of the largest to the smallest multiplier (inf if some hour is 0)."""
        low = min(self.multipliers)
        return math.inf if low == 0.0 else max(self.multipliers) / low


def _check_values(values: tuple[float, ...]) -> None:
    if len(values) != HOURS_PER_WEEK:
        raise ValueError(f"weekly profile needs {HOURS_PER_WEEK} values, got {len(values)}")
    for hour, value in enumerate(values):
        if not math.isfinite(value):
            raise ValueError(f"weekly profile value at hour {hour} must be finite, got {value!r}")
        if value < 0.0:
            raise ValueError(f"weekly profile value at hour {hour} must be >= 0, got {value!r}")
    if not any(v > 0.0 for v in values):
        raise ValueError("weekly profile values are all zero: no traffic at any hour")

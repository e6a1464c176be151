"""Workload domain model (DESIGN §2): arrivals, bursts, growth and request lengths.

Pure numpy (no SimPy); every stochastic function takes a `numpy.random.Generator`.

    rate(t) = base_rate_per_s × growth(month) × profile(hour_of_week(t)) × burst(t)   [req/s]

- `clock`: plan time in seconds, `hour_of_week`, the 730-hour month.
- `WeeklyProfile`: 168 hour-of-week multipliers with mean 1.
- `MarkovBurst` / `LogNormalOU` / `ProductBurst` / `NoBurst`: a stationary rate multiplier with
  mean 1 (variance, not volume); `AZURE_CONV_BURST` is fitted to the Azure 2023 conversation trace.
- `sample_arrivals`: exact piecewise sampling of the resulting Poisson process (no thinning bound,
  no clipping of gaps); `expected_arrivals` its mean.
- `sample_monthly_growth`: compounded log-normal monthly volume factors with exact mean.
- `EmpiricalLengths`: joint bootstrap of real (input, output) token pairs (optionally smoothed).
- `WorkloadModel`, `sample_month`: one month of requests from its streams (`sim.rng.Streams.month`).
- `ReplayTraffic` over a `RequestReplay` or `RateReplay`: a real trace replayed on the plan
  clock, rate- and time-scaled, looped, grown (`sim.workload.replay` has the exact semantics).
  Both it and `WorkloadModel` are `Traffic`: `sample(rngs, start_s, end_s, growth_factor)`.
"""

from sim.workload.arrivals import (
    expected_arrivals,
    piecewise_rate,
    sample_arrivals,
    sample_by_time_change,
    sample_piecewise_poisson,
)
from sim.workload.burst import (
    AZURE_CONV_BURST,
    BurstProcess,
    LogNormalOU,
    MarkovBurst,
    NoBurst,
    ProductBurst,
)
from sim.workload.clock import hour_of_week, month_window_s
from sim.workload.growth import growth_moments, sample_monthly_growth
from sim.workload.lengths import EmpiricalLengths
from sim.workload.month import (
    MonthRequests,
    Traffic,
    WorkloadModel,
    sample_month,
)
from sim.workload.profile import WeeklyProfile
from sim.workload.replay import RateReplay, ReplayTraffic, RequestReplay

__all__ = [
    "AZURE_CONV_BURST",
    "BurstProcess",
    "EmpiricalLengths",
    "LogNormalOU",
    "MarkovBurst",
    "MonthRequests",
    "NoBurst",
    "ProductBurst",
    "RateReplay",
    "ReplayTraffic",
    "RequestReplay",
    "Traffic",
    "WeeklyProfile",
    "WorkloadModel",
    "expected_arrivals",
    "growth_moments",
    "hour_of_week",
    "month_window_s",
    "piecewise_rate",
    "sample_arrivals",
    "sample_by_time_change",
    "sample_month",
    "sample_monthly_growth",
    "sample_piecewise_poisson",
]

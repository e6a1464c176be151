"""KPIs: the one definition of every per-request and per-month figure, their estimation over a
full or a sampled month, and their distribution across replications.

- `kpi`: `request_set_kpis` (TTFT, TPOT, E2E of the served requests, SLO met, counts),
  `MonthKpis` and `month_row` (the one builder of a `months` row), `full_month_rows` (every
  request of the month, exact percentiles).
- `sampled`: `window_result` and `sampled_month_rows` (weighted estimates from the windows of
  `sim.horizon`, stratified-bootstrap standard errors).
- `summary`: `summarise` (mean and p5/p50/p95 across replications), `paired_differences`.
"""

from sim.stats.kpi import (
    MonthKpis,
    RequestSetKpis,
    full_month_rows,
    hourly_rows,
    month_row,
    request_set_kpis,
)
from sim.stats.sampled import WindowResult, sampled_month_rows, weighted_quantile, window_result
from sim.stats.summary import hourly_frame, months_frame, paired_differences, summarise

__all__ = [
    "MonthKpis",
    "RequestSetKpis",
    "WindowResult",
    "full_month_rows",
    "hourly_frame",
    "hourly_rows",
    "month_row",
    "months_frame",
    "paired_differences",
    "request_set_kpis",
    "sampled_month_rows",
    "summarise",
    "weighted_quantile",
    "window_result",
]

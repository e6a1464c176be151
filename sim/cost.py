"""Cost of a plan: GPU-hours × price, fixed monthly operations, and unit costs.

All money in US dollars, all prices per hour or per million tokens as named. The reference
calculations of DESIGN §10 (practitioners' break-even sums) are tests of this module.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(frozen=True)
class PoolCost:
    """A pool's GPU-hours and dollars over one billing period."""

    gpu_hours: float
    gpu_usd: float


def pool_cost(
    count: int, gpus_per_replica: int, hours: float, price_usd_per_hour: float
) -> PoolCost:
    """GPU-hours and cost of `count` replicas of `gpus_per_replica` GPUs over `hours`."""
    if count < 0 or gpus_per_replica < 1 or hours < 0 or price_usd_per_hour < 0:
        raise ValueError("count, hours and price must be >= 0 and gpus_per_replica >= 1")
    gpu_hours = count * gpus_per_replica * hours
    return PoolCost(gpu_hours, gpu_hours * price_usd_per_hour)


def total_cost_usd(pools: Iterable[PoolCost], ops_usd: float) -> float:
    """GPU cost of all pools plus fixed operations cost."""
    return sum(p.gpu_usd for p in pools) + ops_usd


def usd_per_million_tokens(cost_usd: float, tokens: int) -> float:
    """Cost per million tokens served (input + output); NaN when nothing was served."""
    return cost_usd / tokens * 1e6 if tokens > 0 else float("nan")


def api_usd_per_request(
    input_tokens: float,
    output_tokens: float,
    input_usd_per_million: float,
    output_usd_per_million: float,
) -> float:
    """What one request costs on a paid API with per-million-token list prices."""
    return (input_tokens * input_usd_per_million + output_tokens * output_usd_per_million) / 1e6


def break_even_requests(fixed_usd: float, api_usd_per_request: float) -> float:
    """Requests per period above which a fixed self-hosted cost beats paying per request."""
    if api_usd_per_request <= 0:
        raise ValueError("api_usd_per_request must be > 0")
    return fixed_usd / api_usd_per_request

"""The fleet: what a plan runs on, how it loses and regains capacity, and where overflow goes.

- `plan`: a plan's replicas, their slots and routing phases (`build_fleet`), and the
  replication's step-time scale per GPU type (`step_time_factors`).
- `markets`: spot markets (`sim/data/spot_markets.toml`): reclaim rates or traces, notice,
  availability delays, cold start, spot price paths.
- `spot`: the reclaims (`Outage`s) of a plan's spot slots in one replication.
- `api`: the paid API as an overflow server (latency draws, rate limits).
- `routing`, `spill`: the router's policies, as plain functions; `sim.model` is the mechanism
  that calls them.
"""

from sim.fleet.api import ApiClient, api_client, latency_draws
from sim.fleet.markets import SpotMarket, cold_start_s, market, markets, spot_price_path
from sim.fleet.plan import Fleet, FleetPhase, ReplicaSpec, Slot, build_fleet, step_time_factors
from sim.fleet.routing import least_outstanding_tokens
from sim.fleet.spill import must_spill
from sim.fleet.spot import (
    Outage,
    outages_touching,
    replica_cold_start_s,
    spot_outages,
    spot_schedule,
)

__all__ = [
    "ApiClient",
    "Fleet",
    "FleetPhase",
    "Outage",
    "ReplicaSpec",
    "Slot",
    "SpotMarket",
    "api_client",
    "build_fleet",
    "cold_start_s",
    "latency_draws",
    "least_outstanding_tokens",
    "market",
    "markets",
    "must_spill",
    "outages_touching",
    "replica_cold_start_s",
    "spot_outages",
    "spot_price_path",
    "spot_schedule",
    "step_time_factors",
]

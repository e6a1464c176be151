"""What one replica can serve while meeting the SLO: the denominator of token utilisation.

Busy time says little about a continuously batching engine: a replica that runs any sequence
is "busy", so it reads 95–99 % busy long before it saturates. Token utilisation instead divides
the tokens a fleet served by the tokens it could have served at the SLO.

`capacity_at_slo` measures that point for one GPU type by simulation: one replica of the
experiment's engine and step times, Poisson arrivals at rate λ with (input, output) lengths from
the experiment's length distribution (`CAPACITY_REQUESTS` requests, a fixed seed), and the
largest λ whose p95 TTFT and p95 TPOT both meet the SLO, found by bisection to
`CAPACITY_REL_TOL`. The capacity is reported in requests/s and in tokens/s (input + output at
that λ). Bursts, the weekly profile and growth are left out on purpose: they are what the
utilisation figure then shows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np
import polars as pl

from sim.config import PlanSpec, SloSpec
from sim.engine import RequestLog, ResolvedEngine
from sim.fleet import FleetPhase, ReplicaSpec
from sim.model import simulate
from sim.rng import capacity_rng
from sim.units import SECONDS_PER_MONTH
from sim.workload import EmpiricalLengths

CAPACITY_REQUESTS = 3000
"""Requests per probe: the p95 of 3,000 requests has a binomial standard error of about 0.4
percentile points (sqrt(0.95·0.05/3000)), small beside the SLO's margin."""
CAPACITY_REL_TOL = 0.02
"""Bisection stops when the bracket is within 2 % of its upper end."""


@dataclass(frozen=True)
class Capacity:
    """One replica of `gpu` at the SLO: requests/s and (input + output) tokens/s."""

    gpu: str
    requests_per_s: float
    tokens_per_s: float


def _meets_slo(
    rate: float, replica: ReplicaSpec, inp: np.ndarray, out: np.ndarray, slo: SloSpec
) -> bool:
    gaps = capacity_rng(1).exponential(1.0 / rate, size=inp.size)
    arrival = np.cumsum(gaps) - gaps[0]
    log = RequestLog(arrival.tolist(), inp.tolist(), out.tolist())
    simulate(log, [replica], [FleetPhase(0.0, (0,))])
    first, finish = np.asarray(log.first_token_s), np.asarray(log.finish_s)
    if np.isnan(finish).any():
        return False
    ttft = first - arrival
    multi = out > 1
    tpot = (finish[multi] - first[multi]) / (out[multi] - 1)
    ttft_ok = float(np.percentile(ttft, 95)) <= slo.ttft_s
    tpot_ok = tpot.size == 0 or float(np.percentile(tpot, 95)) <= slo.tpot_s
    return ttft_ok and tpot_ok


def capacity_at_slo(
    engine: ResolvedEngine, gpu: str, lengths: EmpiricalLengths, slo: SloSpec
) -> Capacity:
    """The largest Poisson rate one replica of `gpu` serves within the SLO (module docstring)."""
    replica = ReplicaSpec("capacity", gpu, engine.limits(gpu), engine.step_time(gpu).step)
    inp, out = lengths.sample(capacity_rng(0), CAPACITY_REQUESTS)
    lo, hi = 0.0, 1.0
    while _meets_slo(hi, replica, inp, out, slo):
        lo, hi = hi, hi * 2.0
        if hi > 1e6:
            break
    for _ in range(40):  # 40 halvings: far below any useful rate when nothing meets the SLO
        if hi - lo <= CAPACITY_REL_TOL * hi:
            break
        mid = (lo + hi) / 2.0
        if _meets_slo(mid, replica, inp, out, slo):
            lo = mid
        else:
            hi = mid
    mean_tokens = float(np.mean(inp + out))
    return Capacity(gpu, lo, lo * mean_tokens)


_CACHE: dict[tuple[object, ...], Capacity] = {}


def capacities(
    engine: ResolvedEngine, gpus: Iterable[str], lengths: EmpiricalLengths, slo: SloSpec
) -> dict[str, Capacity]:
    """`capacity_at_slo` of each GPU type, cached per (engine on that GPU, lengths, SLO) for
    the life of the process (a plan search asks for the same ones many times)."""
    out = {}
    fingerprint = (
        lengths.size,
        hash(lengths.input_tokens.tobytes()),
        hash(lengths.output_tokens.tobytes()),
    )
    for gpu in sorted(set(gpus)):
        key = (engine.settings, engine.per_gpu[gpu], fingerprint, slo)
        if key not in _CACHE:
            _CACHE[key] = capacity_at_slo(engine, gpu, lengths, slo)
        out[gpu] = _CACHE[key]
    return out


def with_token_utilisation(
    months: pl.DataFrame, plans: Iterable[PlanSpec], caps: Mapping[str, Capacity]
) -> pl.DataFrame:
    """`months` with `token_utilisation`: tokens the GPUs served in the month (input + output,
    API-spilled tokens excluded) ÷ what the month's planned replicas could serve at the SLO
    (Σ count × `Capacity.tokens_per_s` × the month's seconds; for a month whose pools move,
    the row's `serving_replica_hours` × the pools' slot-weighted mean capacity, exact for one
    GPU type). NaN when the month has no replica or no capacity."""
    rows = []
    for plan in plans:
        for m, month in enumerate(plan.fleet, start=1):
            tokens_per_s = sum(p.count * caps[p.gpu].tokens_per_s for p in month.pools)
            # a month that moves: capacity per replica-hour serving (the row's
            # `serving_replica_hours`), at the slot-weighted mean capacity of its pools
            slots = sum(p.slots for p in month.pools)
            per_replica = sum(p.slots * caps[p.gpu].tokens_per_s for p in month.pools) / max(
                slots, 1
            )
            moves = any(p.moves for p in month.pools)
            rows.append(
                (plan.name, m, tokens_per_s * SECONDS_PER_MONTH, per_replica if moves else None)
            )
    cap = pl.DataFrame(
        rows,
        schema={
            "plan": pl.String,
            "month": pl.Int64,
            "capacity_tokens": pl.Float64,
            "per_replica_tokens_per_s": pl.Float64,
        },
        orient="row",
    )
    if "serving_replica_hours" in months.columns:
        cap_moving = pl.col("per_replica_tokens_per_s") * pl.col("serving_replica_hours") * 3600.0
    else:
        cap_moving = pl.lit(None, dtype=pl.Float64)
    capacity = (
        pl.when(pl.col("per_replica_tokens_per_s").is_not_null())
        .then(cap_moving)
        .otherwise(pl.col("capacity_tokens"))
    )
    served = (
        pl.col("input_tokens")
        + pl.col("output_tokens")
        - pl.col("api_input_tokens")
        - pl.col("api_output_tokens")
    ).cast(pl.Float64)
    util = (
        pl.when(pl.col("capacity_tokens") > 0)
        .then(served / pl.col("capacity_tokens"))
        .otherwise(float("nan"))
    )
    joined = months.drop("token_utilisation", strict=False).join(
        cap, on=["plan", "month"], how="left"
    )
    joined = joined.with_columns(capacity.alias("capacity_tokens"))
    return joined.with_columns(util.alias("token_utilisation")).select(months.columns)

"""Month KPIs from a sampled horizon's windows: what each window measured, weighted estimates
and their stratified-bootstrap standard errors (`sim.horizon` chooses the windows and their
weights; docs/horizon.md derives the estimator).

Every measured request carries its window's weight. Month percentiles are weighted quantiles
(inverted weighted CDF); SLO attainment is the weighted share of requests meeting the SLO;
utilisation = Σ w_i busy_i / (replicas × month seconds); counts are weighted sums (rounded).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sim.config import SloSpec
from sim.cost import NO_API, NO_SPOT, ApiUse, MonthCost, SpotBill
from sim.horizon import Window
from sim.records import BoolArray, FloatArray, Outcomes
from sim.stats.kpi import MonthKpis, api_use, hourly_rows, month_row, request_kpis
from sim.units import HOURS_PER_WEEK

BOOTSTRAP = 40  # resamples for the standard errors: ±11% relative precision on the SE itself


@dataclass(frozen=True)
class WindowResult:
    """What one window measured: requests arriving inside it, busy time inside it."""

    window: Window
    requests: int
    rejected: int
    ttft_s: FloatArray  # served requests
    tpot_s: FloatArray  # served requests with more than one output token
    e2e_s: FloatArray  # served requests
    met: int  # requests meeting both SLOs
    input_tokens: int
    output_tokens: int
    preemptions: int
    busy_s: float  # summed over the month's replicas
    replicas: int
    requeued: int = 0  # evictions by spot reclaims
    api: ApiUse = NO_API  # traffic spilled to the API


def window_result(
    window: Window,
    outcomes: Outcomes,
    inside: BoolArray,
    slo: SloSpec,
    busy_s: float,
    replicas: int,
) -> WindowResult:
    """The measurements of one window: the requests of `outcomes` arriving `inside` it."""
    o = outcomes
    r = request_kpis(o, slo)
    served = inside & r.served
    return WindowResult(
        window=window,
        requests=int(inside.sum()),
        rejected=int((inside & o.rejected).sum()),
        ttft_s=r.ttft_s[served],
        tpot_s=r.tpot_s[served & r.multi],
        e2e_s=r.e2e_s[served],
        met=int((inside & r.met).sum()),
        input_tokens=int(o.input_tokens[served].sum()),
        output_tokens=int(o.output_tokens[served].sum()),
        preemptions=int(o.preemptions[inside].sum()),
        busy_s=busy_s,
        replicas=replicas,
        requeued=int(o.evictions[inside].sum()),
        api=api_use(o, inside),
    )


def weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    """Smallest value whose weighted CDF reaches `q` (0..1); NaN for no values."""
    if values.size == 0:
        return float("nan")
    order = np.argsort(values, kind="stable")
    cum = np.cumsum(weights[order])
    idx = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(values[order[min(idx, values.size - 1)]])


def _pooled(results: Sequence[WindowResult], field: str) -> tuple[FloatArray, FloatArray]:
    arrays = [getattr(r, field) for r in results]
    weights = [np.full(a.size, r.window.weight) for a, r in zip(arrays, results, strict=True)]
    if not arrays:
        return np.empty(0), np.empty(0)
    return np.concatenate(arrays), np.concatenate(weights)


def _estimates(results: Sequence[WindowResult], month_s: float) -> dict[str, float]:
    w = np.array([r.window.weight for r in results])
    n = np.array([r.requests for r in results], dtype=np.float64)
    ttft, wt = _pooled(results, "ttft_s")
    replicas = results[0].replicas
    return {
        "ttft_p95_s": weighted_quantile(ttft, wt, 0.95),
        "slo_attainment": float(np.dot(w, [r.met for r in results]) / np.dot(w, n))
        if np.dot(w, n) > 0
        else float("nan"),
        "gpu_utilisation": float(np.dot(w, [r.busy_s for r in results]) / (replicas * month_s)),
    }


def _bootstrap_se(
    results: Sequence[WindowResult], month_s: float, rng: np.random.Generator
) -> dict[str, float]:
    by_stratum: dict[int, list[WindowResult]] = {}
    for r in results:
        by_stratum.setdefault(r.window.stratum, []).append(r)
    draws: dict[str, list[float]] = {"ttft_p95_s": [], "slo_attainment": [], "gpu_utilisation": []}
    for _ in range(BOOTSTRAP):
        sample: list[WindowResult] = []
        for group in by_stratum.values():
            picks = rng.integers(0, len(group), size=len(group))
            sample.extend(group[i] for i in picks.tolist())
        for key, value in _estimates(sample, month_s).items():
            draws[key].append(value)
    return {f"{k}_se": float(np.nanstd(v, ddof=1)) for k, v in draws.items()}


def sampled_month_rows(
    *,
    plan: str,
    replication: int,
    month: int,
    results: Sequence[WindowResult],
    slot_stratum: npt.NDArray[np.int64],
    month_s: float,
    cost: MonthCost,
    growth: float,
    rng: np.random.Generator,
    spot: SpotBill = NO_SPOT,
    api_prices: tuple[float, float] | None = None,
) -> tuple[dict[str, object], list[dict[str, object]]]:
    """One month's KPI row and its 168 hour-of-week utilisation rows, from its windows.

    Counts (requests, tokens, re-queued, API traffic) are weighted sums over the windows; the
    spot bill and reclaim count come from the whole month's schedule, not from windows.
    Hour-of-week utilisation uses each slot's simulated windows; a slot not sampled this
    month takes the mean of its stratum's windows.
    """
    w = np.array([r.window.weight for r in results])
    ttft, wt = _pooled(results, "ttft_s")
    tpot, wp = _pooled(results, "tpot_s")
    e2e, we = _pooled(results, "e2e_s")
    requests = float(np.dot(w, [r.requests for r in results]))
    rejected = float(np.dot(w, [r.rejected for r in results]))
    est = _estimates(results, month_s)
    se = _bootstrap_se(results, month_s, rng)
    n_req = round(requests)
    n_rej = round(rejected)

    def total(values: list[int]) -> int:
        return round(float(np.dot(w, values)))

    api = ApiUse(
        requests=total([r.api.requests for r in results]),
        dropped=total([r.api.dropped for r in results]),
        throttled=total([r.api.throttled for r in results]),
        input_tokens=total([r.api.input_tokens for r in results]),
        output_tokens=total([r.api.output_tokens for r in results]),
    )
    kpis = MonthKpis(
        requests=n_req,
        finished=n_req - n_rej - api.dropped,
        rejected=n_rej,
        in_flight_at_end=0,
        preemptions=total([r.preemptions for r in results]),
        requeued=total([r.requeued for r in results]),
        ttft_p50_s=weighted_quantile(ttft, wt, 0.50),
        ttft_p95_s=est["ttft_p95_s"],
        ttft_p99_s=weighted_quantile(ttft, wt, 0.99),
        tpot_p50_s=weighted_quantile(tpot, wp, 0.50),
        tpot_p95_s=weighted_quantile(tpot, wp, 0.95),
        e2e_p50_s=weighted_quantile(e2e, we, 0.50),
        e2e_p95_s=weighted_quantile(e2e, we, 0.95),
        e2e_p99_s=weighted_quantile(e2e, we, 0.99),
        slo_attainment=est["slo_attainment"],
        gpu_utilisation=est["gpu_utilisation"],
        input_tokens=total([r.input_tokens for r in results]),
        output_tokens=total([r.output_tokens for r in results]),
        api=api,
        ttft_p95_se_s=se["ttft_p95_s_se"],
        slo_attainment_se=se["slo_attainment_se"],
        gpu_utilisation_se=se["gpu_utilisation_se"],
    )
    row = month_row(
        plan=plan,
        replication=replication,
        month=month,
        kpis=kpis,
        cost=cost,
        growth=growth,
        spot=spot,
        api_prices=api_prices,
    )
    share: dict[int, list[float]] = {r.window.hour_of_week: [] for r in results}
    by_stratum: dict[int, list[float]] = {}
    for r in results:
        busy_share = r.busy_s / (r.window.length_s * r.replicas)
        share[r.window.hour_of_week].append(busy_share)
        by_stratum.setdefault(r.window.stratum, []).append(busy_share)
    util = [
        float(np.mean(share.get(slot) or by_stratum.get(int(slot_stratum[slot]), [float("nan")])))
        for slot in range(HOURS_PER_WEEK)
    ]
    return row, hourly_rows(plan, replication, month, util)

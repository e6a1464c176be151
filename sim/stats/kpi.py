"""The one definition of every per-request and per-month KPI (docs/glossary.md has the formulas).

Per request (`request_set_kpis`, one compiled pass of `sim.stats._window`): TTFT = first
token − arrival; E2E = finish − arrival; TPOT = (finish − first token) / (output tokens − 1) for
requests of more than one output token (vLLM bench's definition); a request is *served* when
accepted and finished (not dropped by the API, not left waiting); it *meets the SLO* when served
with TTFT ≤ `slo.ttft_s` and (one output token or TPOT ≤ `slo.tpot_s`).

Per month (`month_row`): the one builder of a `months` row, from a `MonthKpis` estimated either
over every request of the month (`full_month_rows`, exact percentiles) or from sampled windows
(`sim.stats.sampled`, weighted quantiles), plus the month's bill (`sim.cost`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from sim.config import SloSpec
from sim.cost import NO_API, NO_SPOT, ApiUse, MonthCost, SpotBill, cost_fields
from sim.records import BoolArray, FloatArray, Outcomes
from sim.stats._window import (
    N_API,
    N_API_DROPPED,
    N_API_INPUT,
    N_API_OUTPUT,
    N_API_THROTTLED,
    N_INPUT,
    N_MET,
    N_OUTPUT,
    N_PREEMPTIONS,
    N_REJECTED,
    N_REQUESTS,
    N_REQUEUED,
    window_measures,
)
from sim.units import HOURS_PER_WEEK, SECONDS_PER_HOUR


@dataclass(frozen=True)
class RequestSetKpis:
    """What a set of requests measured (module docstring): the latencies of its served requests
    (seconds, in request order; TPOT of those with more than one output token) and its counts."""

    ttft_s: FloatArray
    tpot_s: FloatArray
    e2e_s: FloatArray
    requests: int
    rejected: int
    met: int  # served and within both SLOs
    input_tokens: int  # of the served requests
    output_tokens: int
    preemptions: int
    requeued: int
    api: ApiUse  # traffic spilled to the API


def request_set_kpis(o: Outcomes, slo: SloSpec, sel: BoolArray | None = None) -> RequestSetKpis:
    """The KPIs of the requests of `o` selected by `sel` (None: all of them), computed in one
    compiled pass (`sim.stats._window.window_measures`, the definitions of the module
    docstring): a sampled window holds ~150 requests, where ~40 numpy calls cost more than
    their arithmetic."""

    def pick(a: np.ndarray) -> np.ndarray:
        return a if sel is None else a[sel]

    ttft, tpot, e2e, c = window_measures(
        pick(o.arrival_s),
        pick(o.first_token_s),
        pick(o.finish_s),
        pick(o.input_tokens),
        pick(o.output_tokens),
        pick(o.rejected),
        pick(o.preemptions),
        pick(o.evictions),
        pick(o.api),
        pick(o.dropped),
        pick(o.throttled),
        float(slo.ttft_s),
        float(slo.tpot_s),
    )
    n = c.tolist()
    return RequestSetKpis(
        ttft_s=ttft,
        tpot_s=tpot,
        e2e_s=e2e,
        requests=n[N_REQUESTS],
        rejected=n[N_REJECTED],
        met=n[N_MET],
        input_tokens=n[N_INPUT],
        output_tokens=n[N_OUTPUT],
        preemptions=n[N_PREEMPTIONS],
        requeued=n[N_REQUEUED],
        api=ApiUse(
            requests=n[N_API],
            dropped=n[N_API_DROPPED],
            throttled=n[N_API_THROTTLED],
            input_tokens=n[N_API_INPUT],
            output_tokens=n[N_API_OUTPUT],
        ),
    )


@dataclass(frozen=True)
class MonthKpis:
    """One month of one plan and replication, before its bill (columns of `months`).

    The `*_se` fields are the sampled-horizon estimator's standard errors (NaN when every
    request of the month was simulated).
    """

    requests: int
    finished: int
    rejected: int
    in_flight_at_end: int
    preemptions: int
    requeued: int
    ttft_p50_s: float
    ttft_p95_s: float
    ttft_p99_s: float
    tpot_p50_s: float
    tpot_p95_s: float
    e2e_p50_s: float
    e2e_p95_s: float
    e2e_p99_s: float
    slo_attainment: float
    gpu_utilisation: float
    input_tokens: int
    output_tokens: int
    api: ApiUse = NO_API
    ttft_p95_se_s: float = float("nan")
    slo_attainment_se: float = float("nan")
    gpu_utilisation_se: float = float("nan")


def month_row(
    *,
    plan: str,
    replication: int,
    month: int,
    kpis: MonthKpis,
    cost: MonthCost,
    growth: float,
    spot: SpotBill = NO_SPOT,
    api_prices: tuple[float, float] | None = None,
) -> dict[str, object]:
    """The one builder of a `months` row (`sim.records.MONTH_SCHEMA`)."""
    k = kpis
    return {
        "plan": plan,
        "replication": replication,
        "month": month,
        "requests": k.requests,
        "finished": k.finished,
        "rejected": k.rejected,
        "in_flight_at_end": k.in_flight_at_end,
        "preemptions": k.preemptions,
        "requeued": k.requeued,
        "ttft_p50_s": k.ttft_p50_s,
        "ttft_p95_s": k.ttft_p95_s,
        "ttft_p99_s": k.ttft_p99_s,
        "tpot_p50_s": k.tpot_p50_s,
        "tpot_p95_s": k.tpot_p95_s,
        "e2e_p50_s": k.e2e_p50_s,
        "e2e_p95_s": k.e2e_p95_s,
        "e2e_p99_s": k.e2e_p99_s,
        "slo_attainment": k.slo_attainment,
        "gpu_utilisation": k.gpu_utilisation,
        **cost_fields(cost, k.input_tokens, k.output_tokens, spot, k.api, api_prices),
        "growth_factor": growth,
        "ttft_p95_se_s": k.ttft_p95_se_s,
        "slo_attainment_se": k.slo_attainment_se,
        "gpu_utilisation_se": k.gpu_utilisation_se,
    }


def hourly_rows(
    plan: str, replication: int, month: int, utilisation: Sequence[float]
) -> list[dict[str, object]]:
    """The 168 `hourly` rows of one month: utilisation per hour-of-week slot."""
    return [
        {
            "plan": plan,
            "replication": replication,
            "month": month,
            "hour_of_week": h,
            "utilisation": float(utilisation[h]),
        }
        for h in range(HOURS_PER_WEEK)
    ]


def _pct(values: FloatArray, q: float) -> float:
    return float(np.percentile(values, q)) if values.size else float("nan")


def full_month_rows(
    *,
    plan: str,
    replication: int,
    outcomes: Outcomes,
    slo: SloSpec,
    month_s: float,
    months: int,
    busy_hours: Sequence[FloatArray],
    active: Sequence[Sequence[int]],
    costs: Sequence[MonthCost],
    growth: Sequence[float],
    spot: Sequence[SpotBill] | None = None,
    api_prices: tuple[float, float] | None = None,
    serving_hours: FloatArray | None = None,
) -> tuple[list[dict[str, object]], list[dict[str, object]]]:
    """KPI rows (one per month) and hour-of-week utilisation rows of one fully simulated
    replication: exact percentiles over every request arriving in the month.

    `busy_hours[r]` is replica r's busy seconds per hour of the horizon; `active[m]` lists the
    replicas that month m (0-based) routes to; utilisation is their busy share of that month,
    or of `serving_hours` (replica-seconds serving per hour of the horizon) when the fleet
    moves within the month.
    """
    horizon_s = months * month_s
    o = outcomes
    month_of = np.minimum((o.arrival_s // month_s).astype(np.int64), months - 1)
    hours_per_month = round(month_s / SECONDS_PER_HOUR)
    rows: list[dict[str, object]] = []
    hourly: list[dict[str, object]] = []
    for m in range(months):
        sel = month_of == m
        r = request_set_kpis(o, slo, sel)
        n = r.requests
        finished = int((sel & ~o.rejected & (o.finish_s <= horizon_s)).sum())
        reps = list(active[m])
        h0, h1 = m * hours_per_month, (m + 1) * hours_per_month
        busy = np.zeros(hours_per_month)
        for rep in reps:
            busy += busy_hours[rep][h0:h1]
        kpis = MonthKpis(
            requests=n,
            finished=finished,
            rejected=r.rejected,
            in_flight_at_end=n - r.rejected - finished - r.api.dropped,
            preemptions=r.preemptions,
            requeued=r.requeued,
            ttft_p50_s=_pct(r.ttft_s, 50),
            ttft_p95_s=_pct(r.ttft_s, 95),
            ttft_p99_s=_pct(r.ttft_s, 99),
            tpot_p50_s=_pct(r.tpot_s, 50),
            tpot_p95_s=_pct(r.tpot_s, 95),
            e2e_p50_s=_pct(r.e2e_s, 50),
            e2e_p95_s=_pct(r.e2e_s, 95),
            e2e_p99_s=_pct(r.e2e_s, 99),
            slo_attainment=r.met / n if n else float("nan"),
            gpu_utilisation=float(busy.sum() / (len(reps) * month_s))
            if serving_hours is None
            else float(busy.sum() / serving_hours[h0:h1].sum()),
            input_tokens=r.input_tokens,
            output_tokens=r.output_tokens,
            api=r.api,
        )
        rows.append(
            month_row(
                plan=plan,
                replication=replication,
                month=m + 1,
                kpis=kpis,
                cost=costs[m],
                growth=float(growth[m]),
                spot=spot[m] if spot is not None else NO_SPOT,
                api_prices=api_prices,
            )
        )
        how = np.arange(h0, h1) % HOURS_PER_WEEK
        busy_how = np.bincount(how, weights=busy, minlength=HOURS_PER_WEEK)
        hours_how = np.bincount(how, minlength=HOURS_PER_WEEK).astype(np.float64)
        if serving_hours is None:
            util = busy_how / (hours_how * float(SECONDS_PER_HOUR) * len(reps))
        else:
            serving_how = np.bincount(how, weights=serving_hours[h0:h1], minlength=HOURS_PER_WEEK)
            util = busy_how / np.maximum(serving_how, 1e-9)
        hourly.extend(hourly_rows(plan, replication, m + 1, util.tolist()))
    return rows, hourly

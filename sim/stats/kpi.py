"""The one definition of every per-request and per-month KPI (docs/glossary.md has the formulas).

Per request (`request_kpis`): TTFT = first token − arrival; E2E = finish − arrival; TPOT =
(finish − first token) / (output tokens − 1) for requests of more than one output token (vLLM
bench's definition); a request is *served* when accepted and finished (not dropped by the API,
not left waiting); it *meets the SLO* when served with TTFT ≤ `slo.ttft_s` and (one output
token or TPOT ≤ `slo.tpot_s`).

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
from sim.units import HOURS_PER_WEEK, SECONDS_PER_HOUR


@dataclass(frozen=True)
class RequestKpis:
    """Per-request latencies (seconds, NaN where undefined) and SLO flags of one request set."""

    ttft_s: FloatArray
    tpot_s: FloatArray  # NaN for single-token requests
    e2e_s: FloatArray
    multi: BoolArray  # more than one output token
    served: BoolArray  # accepted and finished
    met: BoolArray  # served and within both SLOs


def request_kpis(o: Outcomes, slo: SloSpec) -> RequestKpis:
    """TTFT, TPOT, E2E, served and SLO-met of every request of `o` (module docstring)."""
    arrival = o.arrival_s
    ttft = o.first_token_s - arrival
    e2e = o.finish_s - arrival
    multi = o.output_tokens > 1
    tpot = np.full(arrival.shape, np.nan)
    tpot[multi] = (o.finish_s[multi] - o.first_token_s[multi]) / (o.output_tokens[multi] - 1)
    served = ~o.rejected & ~np.isnan(o.finish_s)
    met = served & (ttft <= slo.ttft_s) & (~multi | (tpot <= slo.tpot_s))
    return RequestKpis(ttft, tpot, e2e, multi, served, met)


def api_use(o: Outcomes, sel: BoolArray) -> ApiUse:
    """The traffic of the selected requests that went to the API."""
    on_api = sel & o.api
    dropped = on_api & o.dropped
    served = on_api & ~dropped
    return ApiUse(
        requests=int(on_api.sum()),
        dropped=int(dropped.sum()),
        throttled=int((on_api & o.throttled).sum()),
        input_tokens=int(o.input_tokens[served].sum()),
        output_tokens=int(o.output_tokens[served].sum()),
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
    accepted = ~o.rejected
    r = request_kpis(o, slo)
    hours_per_month = round(month_s / SECONDS_PER_HOUR)
    rows: list[dict[str, object]] = []
    hourly: list[dict[str, object]] = []
    for m in range(months):
        sel = month_of == m
        acc = sel & accepted
        n = int(sel.sum())
        finished = int((acc & (o.finish_s <= horizon_s)).sum())
        served = sel & r.served
        ttft_m = r.ttft_s[served]
        tpot_m = r.tpot_s[served & r.multi]
        e2e_m = r.e2e_s[served]
        reps = list(active[m])
        h0, h1 = m * hours_per_month, (m + 1) * hours_per_month
        busy = np.zeros(hours_per_month)
        for rep in reps:
            busy += busy_hours[rep][h0:h1]
        api = api_use(o, sel)
        kpis = MonthKpis(
            requests=n,
            finished=finished,
            rejected=int((sel & o.rejected).sum()),
            in_flight_at_end=int(acc.sum()) - finished - api.dropped,
            preemptions=int(o.preemptions[sel].sum()),
            requeued=int(o.evictions[sel].sum()),
            ttft_p50_s=_pct(ttft_m, 50),
            ttft_p95_s=_pct(ttft_m, 95),
            ttft_p99_s=_pct(ttft_m, 99),
            tpot_p50_s=_pct(tpot_m, 50),
            tpot_p95_s=_pct(tpot_m, 95),
            e2e_p50_s=_pct(e2e_m, 50),
            e2e_p95_s=_pct(e2e_m, 95),
            e2e_p99_s=_pct(e2e_m, 99),
            slo_attainment=float(r.met[sel].mean()) if n else float("nan"),
            gpu_utilisation=float(busy.sum() / (len(reps) * month_s))
            if serving_hours is None
            else float(busy.sum() / serving_hours[h0:h1].sum()),
            input_tokens=int(o.input_tokens[served].sum()),
            output_tokens=int(o.output_tokens[served].sum()),
            api=api,
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

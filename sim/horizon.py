"""Sampled horizon: month-level KPIs from a stratified sample of short windows (DESIGN §7).

Why: a full 6-month replication of growth20pct is ~1.5M requests; planners want hundreds of
replications. Latency, SLO attainment and utilisation are averages over the month's hours, so
a well-chosen sample of hours estimates them, with an error we can compute.

The design, per month and replication:

* **Strata over the 168 hours of the week** by expected load (the weekly profile; growth is
  constant within a month). Stratum 0 holds the `peak_hours` busiest hour-of-week slots; the
  other slots are split, in order of load, into `strata` groups of equal size.
* **Sample**: every peak slot is simulated once, in one representative week drawn at random;
  from each other stratum, `windows_per_stratum` hours of the month are drawn uniformly without
  replacement. Inside each drawn hour one window of `window_s` seconds (a divisor of an hour) is
  drawn uniformly. Window `i` stands for `w_i` windows of the month: (3600 / window_s) × the
  number of times its slot occurs in the month (peak), or × N_k / n_k (stratum k: N_k hours of
  the month, n_k drawn). The weights × window_s sum to the month's 730 hours.
* **Window**: it is simulated on an empty fleet started `warmup_s` earlier with the real rate
  of that time (the first window of a month gets what warm-up the month allows); only requests
  arriving inside the window are measured, and busy time inside it.
* **Estimators**: every measured request carries its window's weight. Month percentiles are
  weighted quantiles (inverted weighted CDF); SLO attainment is the weighted share of requests
  meeting the SLO; utilisation = Σ w_i busy_i / (replicas × month seconds); request and token
  counts are weighted sums (rounded). Cost does not depend on the sample: it comes from the plan.
* **Error**: a stratified bootstrap (resampling windows with replacement within each stratum,
  `BOOTSTRAP` times) gives the standard error of p95 TTFT, SLO attainment and utilisation: the
  `*_se` columns of the months table.

Hour-of-week utilisation (the heatmap) uses each slot's simulated windows; a slot not sampled
this month takes the mean of its stratum's windows.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sim.stats import (
    HOUR_S,
    HOURS_PER_WEEK,
    NO_API,
    NO_SPOT,
    ApiUse,
    MonthCost,
    SpotBill,
    cost_fields,
)

FloatArray = npt.NDArray[np.float64]
BOOTSTRAP = 40  # resamples for the standard errors: ±11% relative precision on the SE itself


@dataclass(frozen=True)
class Window:
    """One sampled hour: where it starts, which slot and stratum, how many hours it stands for."""

    month: int  # 1-based
    start_s: float  # plan seconds
    length_s: float
    hour_of_week: int
    stratum: int  # 0 = peak slots
    weight: float  # windows of the month this one stands for


def strata_of_slots(profile: FloatArray, peak_hours: int, strata: int) -> npt.NDArray[np.int64]:
    """Stratum of each of the 168 hour-of-week slots (0 = the `peak_hours` busiest)."""
    order = np.argsort(-profile, kind="stable")  # busiest first; ties by slot index
    out = np.empty(HOURS_PER_WEEK, dtype=np.int64)
    out[order[:peak_hours]] = 0
    rest = order[peak_hours:][::-1]  # quietest first
    for k, group in enumerate(np.array_split(rest, strata), start=1):
        out[group] = k
    return out


def choose_windows(
    rng: np.random.Generator,
    month: int,
    hours_per_month: int,
    slot_stratum: npt.NDArray[np.int64],
    windows_per_stratum: int,
    window_s: float,
) -> list[Window]:
    """The sampled windows of 1-based `month` (see the module docstring)."""
    per_hour = round(HOUR_S / window_s)
    if per_hour < 1 or per_hour * window_s != HOUR_S:
        raise ValueError(f"window_s must divide an hour, got {window_s}")
    first = (month - 1) * hours_per_month
    hours = np.arange(first, first + hours_per_month)
    slots = hours % HOURS_PER_WEEK
    stratum = slot_stratum[slots]
    windows: list[Window] = []
    # Peak slots: one representative week; each slot weighted by its occurrences in the month.
    full_weeks = hours_per_month // HOURS_PER_WEEK
    week = int(rng.integers(0, full_weeks)) if full_weeks > 0 else 0
    week_start = first + week * HOURS_PER_WEEK
    for slot in np.flatnonzero(slot_stratum == 0):
        occurrences = np.flatnonzero(slots == slot)
        in_week = [h for h in hours[occurrences] if week_start <= h < week_start + HOURS_PER_WEEK]
        hour = in_week[0] if in_week else int(hours[occurrences[0]])
        start = float(hour) * HOUR_S + int(rng.integers(0, per_hour)) * window_s
        weight = float(occurrences.size * per_hour)
        windows.append(Window(month, start, window_s, int(slot), 0, weight))
    for k in range(1, int(slot_stratum.max()) + 1):
        members = hours[stratum == k]
        if members.size == 0:
            continue
        n = min(windows_per_stratum, members.size)
        picked = np.sort(rng.choice(members, size=n, replace=False))
        offsets = rng.integers(0, per_hour, size=n)
        weight = members.size / n * per_hour
        for hour, offset in zip(picked.tolist(), offsets.tolist(), strict=True):
            start = float(hour) * HOUR_S + offset * window_s
            windows.append(Window(month, start, window_s, int(hour % HOURS_PER_WEEK), k, weight))
    return windows


@dataclass(frozen=True)
class WindowResult:
    """What one window measured: requests arriving inside it, busy time inside it."""

    window: Window
    requests: int
    rejected: int
    ttft_s: FloatArray  # accepted requests
    tpot_s: FloatArray  # accepted requests with more than one output token
    e2e_s: FloatArray  # accepted requests
    met: int  # requests meeting both SLOs
    input_tokens: int
    output_tokens: int
    preemptions: int
    busy_s: float  # summed over the month's replicas
    replicas: int
    requeued: int = 0  # evictions by spot reclaims
    api: ApiUse = NO_API  # traffic spilled to the API


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
    """
    w = np.array([r.window.weight for r in results])
    ttft, wt = _pooled(results, "ttft_s")
    tpot, wp = _pooled(results, "tpot_s")
    e2e, we = _pooled(results, "e2e_s")
    requests = float(np.dot(w, [r.requests for r in results]))
    rejected = float(np.dot(w, [r.rejected for r in results]))
    tokens_in = round(float(np.dot(w, [r.input_tokens for r in results])))
    tokens_out = round(float(np.dot(w, [r.output_tokens for r in results])))
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
    row: dict[str, object] = {
        "plan": plan,
        "replication": replication,
        "month": month,
        "requests": n_req,
        "finished": n_req - n_rej - api.dropped,
        "rejected": n_rej,
        "in_flight_at_end": 0,
        "preemptions": round(float(np.dot(w, [r.preemptions for r in results]))),
        "requeued": total([r.requeued for r in results]),
        "ttft_p50_s": weighted_quantile(ttft, wt, 0.50),
        "ttft_p95_s": est["ttft_p95_s"],
        "ttft_p99_s": weighted_quantile(ttft, wt, 0.99),
        "tpot_p50_s": weighted_quantile(tpot, wp, 0.50),
        "tpot_p95_s": weighted_quantile(tpot, wp, 0.95),
        "e2e_p50_s": weighted_quantile(e2e, we, 0.50),
        "e2e_p95_s": weighted_quantile(e2e, we, 0.95),
        "e2e_p99_s": weighted_quantile(e2e, we, 0.99),
        "slo_attainment": est["slo_attainment"],
        "gpu_utilisation": est["gpu_utilisation"],
        **cost_fields(cost, tokens_in, tokens_out, spot, api, api_prices),
        "growth_factor": growth,
        "ttft_p95_se_s": se["ttft_p95_s_se"],
        "slo_attainment_se": se["slo_attainment_se"],
        "gpu_utilisation_se": se["gpu_utilisation_se"],
    }
    share = {r.window.hour_of_week: [] for r in results}  # type: dict[int, list[float]]
    for r in results:
        share[r.window.hour_of_week].append(r.busy_s / (r.window.length_s * r.replicas))
    by_stratum: dict[int, list[float]] = {}
    for r in results:
        by_stratum.setdefault(r.window.stratum, []).append(
            r.busy_s / (r.window.length_s * r.replicas)
        )
    hourly = []
    for slot in range(HOURS_PER_WEEK):
        values = share.get(slot) or by_stratum.get(int(slot_stratum[slot]), [float("nan")])
        hourly.append(
            {
                "plan": plan,
                "replication": replication,
                "month": month,
                "hour_of_week": slot,
                "utilisation": float(np.mean(values)),
            }
        )
    return row, hourly

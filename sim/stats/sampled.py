"""Month KPIs from a sampled horizon's windows: what each window measured, weighted estimates
and their stratified-bootstrap standard errors (`sim.horizon` chooses the windows and their
weights; docs/horizon.md derives the estimator).

Every measured request carries its window's weight (counts also its window's `scale`, the
fleet requests a request of an exchangeable slice stands for). Month percentiles are weighted
quantiles (inverted weighted CDF); SLO attainment is the weighted share of requests meeting the SLO;
utilisation = Σ w_i busy_i / (replicas × month seconds); counts are weighted sums (rounded).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from sim.config import SloSpec
from sim.cost import NO_API, NO_SPOT, ApiUse, MonthCost, SpotBill
from sim.horizon import Window
from sim.records import FloatArray, Outcomes, exact_dot
from sim.stats._resample import resampled_quantile_blocks
from sim.stats.kpi import MonthKpis, hourly_rows, month_row, request_set_kpis
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
    scale: float = 1.0  # fleet requests per simulated one: R / k on an exchangeable slice
    # replica-seconds serving inside the window, when the fleet moves within the month (a
    # schedule or an autoscaler); None: `replicas` × the window's length
    serving_s: float | None = None


def window_result(
    window: Window,
    outcomes: Outcomes,
    slo: SloSpec,
    busy_s: float,
    replicas: int,
    scale: float = 1.0,
    serving_s: float | None = None,
) -> WindowResult:
    """The measurements of one window: the requests of `outcomes` (those arriving inside it),
    on `replicas` simulated replicas (`busy_s` summed over them); on an exchangeable slice of
    k of R replicas, `scale` = R / k fleet requests per simulated one
    (`sim.horizon.fleet_slice`). Its KPIs are `kpi.request_set_kpis`'."""
    r = request_set_kpis(outcomes, slo)
    return WindowResult(
        window=window,
        requests=r.requests,
        rejected=r.rejected,
        ttft_s=r.ttft_s,
        tpot_s=r.tpot_s,
        e2e_s=r.e2e_s,
        met=r.met,
        input_tokens=r.input_tokens,
        output_tokens=r.output_tokens,
        preemptions=r.preemptions,
        busy_s=busy_s,
        replicas=replicas,
        requeued=r.requeued,
        api=r.api,
        scale=scale,
        serving_s=serving_s,
    )


def weighted_quantile(values: FloatArray, weights: FloatArray, q: float) -> float:
    """Smallest value whose weighted CDF reaches `q` (0..1); NaN for no values."""
    return _Sorted.of(values, weights).quantile(q)


@dataclass(frozen=True)
class _Sorted:
    """Values sorted once (stable), with their weights in that order and their cumulative sum:
    every quantile of one pooled sample reads the same sort."""

    values: FloatArray
    weights: FloatArray
    cum: FloatArray

    @staticmethod
    def of(values: FloatArray, weights: FloatArray) -> _Sorted:
        order = stable_argsort(values)
        w = weights[order]
        return _Sorted(values[order], w, np.cumsum(w))

    @staticmethod
    def of_windows(arrays: Sequence[FloatArray], w: FloatArray) -> _Sorted:
        """`of` over the windows' `arrays` concatenated, window j's values weighing `w[j]`:
        the same arrays, bit for bit, faster (`sorted_windows`)."""
        values, window = sorted_windows(arrays)
        weights = w[window]
        return _Sorted(values, weights, np.cumsum(weights))

    def quantile(self, q: float) -> float:
        return _quantile(self.values, self.cum, q)


def sorted_windows(arrays: Sequence[FloatArray]) -> tuple[FloatArray, npt.NDArray[np.int64]]:
    """The windows' values concatenated and sorted as `stable_argsort` orders them, and
    each value's window (equal values by window, then by place).

    NOTE: positive finite floats order as their bit patterns do, so when every value is
    positive and finite and their patterns span few enough bits to leave room for the
    window number below them, one sort of the packed integers (bits − least bits) << b |
    window — numpy's vectorised sort, no permutation — gives both; equal values of one
    window are the same bits, so their order is immaterial. Otherwise (zeros, negatives,
    NaNs, a span too wide): `stable_argsort`. 200,000 values in 20 windows, with and without
    a third tied: 6.4–7.3 ms against 18 ms for `stable_argsort` (this machine, idle; best of
    3 × 20), three per month (TTFT, TPOT, E2E).
    """
    sizes = [a.size for a in arrays]
    window = np.repeat(np.arange(len(arrays), dtype=np.int64), sizes)
    values = np.concatenate(arrays) if arrays else np.empty(0)
    if values.size == 0:
        return values, window
    b = max(len(arrays) - 1, 1).bit_length()
    lo, hi = values.min(), values.max()
    if lo > 0 and np.isfinite(hi):
        bits = values.view(np.int64)
        least = int(lo.view(np.int64))
        if int(hi.view(np.int64)) - least < 1 << (63 - b):
            packed = np.sort(((bits - least) << b) | window)
            out = ((packed >> b) + least).view(np.float64)
            return out, packed & ((1 << b) - 1)
    order = stable_argsort(values)
    return values[order], window[order]


def stable_argsort(values: FloatArray) -> npt.NDArray[np.intp]:
    """`np.argsort(values, kind="stable")`, the same permutation, several times faster.

    numpy's stable sort of floats is a merge sort; its default argsort is a vectorised
    quicksort that may order equal values any way. Equal values (NaNs counted equal, as both
    sorts put them last) are then put back in index order: each gets the key (rank of its
    value among the distinct values) × n + its index, unique keys whose sort order is the
    stable one whatever the algorithm (only the members of such runs are sorted again).

    NOTE: 60,000 TTFTs with ties: 13.5 ms stable against 1.6 ms quicksort (numpy 2.4 on this
    machine); a month of a static hybrid_burst fleet sorts three such arrays, a quarter of its
    CPU in a plan search.
    """
    order = np.argsort(values)
    n = order.size
    if n < 2:
        return order
    v = values[order]
    same = v[1:] == v[:-1]
    same |= np.isnan(v[1:]) & np.isnan(v[:-1])
    if not same.any():
        return order
    tied = np.zeros(n, dtype=bool)  # members of a run of equal values: only they move
    tied[1:] = same
    tied[:-1] |= same
    at = np.flatnonzero(tied)
    rank = np.cumsum(~same[at[1:] - 1])  # runs are contiguous: a new run where not `same`
    key = np.concatenate(([0], rank)) * n + order[at]
    order[at] = order[at][np.argsort(key)]
    return order


def _quantile(values: FloatArray, cum: FloatArray, q: float) -> float:
    """Inverted weighted CDF over sorted `values` with cumulative weights `cum`."""
    if values.size == 0:
        return float("nan")
    idx = int(np.searchsorted(cum, q * cum[-1], side="left"))
    return float(values[min(idx, values.size - 1)])


@dataclass(frozen=True)
class _Pooled:
    """One field of every window of a month, pooled and sorted once, as tie blocks.

    Values are replaced by their *block* (the rank of their distinct value), and each window
    keeps its values' blocks in ascending order. A bootstrap resample (windows drawn in some
    order, with repeats) is then ordered by a counting sort over the blocks
    (`sim.stats._resample`), instead of sorting floats from scratch.

    Bit-identical to `weighted_quantile` over the resample's concatenated values: a stable sort
    orders equal values by their position in the concatenation, i.e. by draw order, and the
    values of one window inside one block share that window's weight, so the cumulative sum
    sees the same weights in the same order. (Equal values across windows are common: on an
    idle replica TTFT is the prefill time of the prompt's length, whatever the arrival time.)
    """

    sorted: _Sorted
    block_value: FloatArray  # the value of each block, ascending
    keys: npt.NDArray[np.int64]  # window by window, its values' blocks, ascending
    bounds: npt.NDArray[np.int64]  # window j's blocks are keys[bounds[j]:bounds[j + 1]]

    @staticmethod
    def of(arrays: Sequence[FloatArray], w: FloatArray) -> _Pooled:
        sizes = np.array([a.size for a in arrays], dtype=np.int64)
        values, win = sorted_windows(arrays)  # == stable_argsort of the concatenation
        weights = w[win]
        s = _Sorted(values, weights, np.cumsum(weights))
        # NaN != NaN: each NaN is a block of its own (they sort last either way)
        new = np.empty(s.values.size, dtype=bool)
        new[:1] = True
        np.not_equal(s.values[1:], s.values[:-1], out=new[1:])
        block = np.cumsum(new) - 1
        # (a stable sort of 16-bit keys is numpy's radix sort: the same permutation, faster)
        by_window = np.argsort(win.astype(np.uint16) if len(arrays) < 2**16 else win, kind="stable")
        bounds = np.concatenate(([0], np.cumsum(sizes))).astype(np.int64)
        return _Pooled(s, s.values[new], block[by_window].astype(np.int64), bounds)

    def resampled_quantiles(
        self, picks: npt.NDArray[np.int64], w: FloatArray, q: float
    ) -> FloatArray:
        """`weighted_quantile` of each row of window `picks` (in draw order, with repeats),
        pooled; NaN for a resample without values."""
        picks = np.ascontiguousarray(picks, dtype=np.int64).reshape(-1, picks.shape[-1])
        if picks.shape[1] == 0:
            return np.full(picks.shape[0], np.nan)
        blocks = resampled_quantile_blocks(
            self.keys, self.bounds, self.block_value.size, picks, w.astype(np.float64), q
        )
        values = np.append(self.block_value, np.nan)  # block -1: no values
        return np.asarray(values[blocks], dtype=np.float64)


BOOTSTRAPPED = ("ttft_p95_s", "slo_attainment", "gpu_utilisation")
"""The month KPIs whose standard error the bootstrap gives (`<kpi>_se`, NaN without it)."""


def _bootstrap_se(
    results: Sequence[WindowResult],
    ttft: _Pooled,
    month_s: float,
    rng: np.random.Generator,
) -> dict[str, float]:
    """Stratified bootstrap of the windows: the standard errors of p95 TTFT, SLO attainment and
    utilisation (`BOOTSTRAP` resamples of each stratum's windows, with replacement)."""
    by_stratum: dict[int, list[int]] = {}
    for i, r in enumerate(results):
        by_stratum.setdefault(r.window.stratum, []).append(i)
    groups = [np.array(g, dtype=np.int64) for g in by_stratum.values()]
    w = np.array([r.window.weight for r in results])
    met = np.array([r.met for r in results], dtype=np.int64)
    n = np.array([r.requests for r in results], dtype=np.float64)
    busy = np.array([r.busy_s for r in results], dtype=np.float64)
    replicas = [r.replicas for r in results]
    serving = _serving(results)
    draws: dict[str, list[float]] = {k: [] for k in BOOTSTRAPPED}
    # NOTE: one float sort per month, then integer ranks of sorted runs per resample (and dot
    # products over index arrays instead of lists of window objects): _bootstrap_se went from
    # 0.21 s to 0.03 s per replication of growth20pct (cProfile, 4-8 replications on a loaded
    # 2-core machine), the same bits. The resamples' quantiles by one compiled counting sort
    # (`sim.stats._resample`) instead of a radix argsort per resample: the bootstrap's share
    # of a growth20pct replication 14 % -> 7 % (cProfile, 40 replications), the same bits.
    # NOTE: every draw's picks in one `integers` call with one bound per pick: numpy's
    # generator gives the same numbers (and leaves the same state) as one call per stratum and
    # draw — checked for 300 seeds, and by the golden tables. 12,000 calls -> 60 per
    # replication: 0.02 s less.
    sizes = np.array([g.size for g in groups], dtype=np.int64)
    members = np.concatenate(groups) if groups else np.empty(0, dtype=np.int64)
    base = np.repeat(np.cumsum(sizes) - sizes, sizes)  # each pick's group start in `members`
    local = rng.integers(0, np.tile(np.repeat(sizes, sizes), BOOTSTRAP))
    every = members[np.tile(base, BOOTSTRAP) + local].reshape(BOOTSTRAP, members.size)
    draws["ttft_p95_s"] = ttft.resampled_quantiles(every, w, 0.95).tolist()
    for idx in every:
        ws = w[idx]
        total = exact_dot(ws, n[idx])
        draws["slo_attainment"].append(
            exact_dot(ws, met[idx]) / total if total > 0 else float("nan")
        )
        capacity = (
            replicas[int(idx[0])] * month_s if serving is None else exact_dot(ws, serving[idx])
        )
        draws["gpu_utilisation"].append(exact_dot(ws, busy[idx]) / capacity)
    return {f"{k}_se": float(np.nanstd(v, ddof=1)) for k, v in draws.items()}


def _serving(results: Sequence[WindowResult]) -> FloatArray | None:
    """Replica-seconds serving per window when the fleet moves (else None: fixed replicas)."""
    if all(r.serving_s is None for r in results):
        return None
    return np.array(
        [r.replicas * r.window.length_s if r.serving_s is None else r.serving_s for r in results]
    )


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
    rng: np.random.Generator | None,
    spot: SpotBill = NO_SPOT,
    api_prices: tuple[float, float] | None = None,
) -> tuple[dict[str, object], list[dict[str, object]]]:
    """One month's KPI row and its 168 hour-of-week utilisation rows, from its windows.

    `rng` draws the stratified bootstrap of the standard errors; None skips it (the `*_se`
    columns are NaN, every other column the same bits): a plan search reads no standard
    error, and at high volume the bootstrap is a third of a month's CPU time.

    Counts (requests, tokens, re-queued, API traffic) are weighted sums over the windows; the
    spot bill and reclaim count come from the whole month's schedule, not from windows.
    Hour-of-week utilisation uses each slot's simulated windows; a slot not sampled this
    month takes the mean of its stratum's windows.
    """
    w = np.array([r.window.weight for r in results])
    serving = _serving(results)
    if rng is None:
        ttft = _Sorted.of_windows([r.ttft_s for r in results], w)  # == _Pooled.of(...).sorted
        se = {f"{k}_se": float("nan") for k in BOOTSTRAPPED}
    else:
        pooled = _Pooled.of([r.ttft_s for r in results], w)
        ttft = pooled.sorted
        se = _bootstrap_se(results, pooled, month_s, rng)
    tpot = _Sorted.of_windows([r.tpot_s for r in results], w)
    e2e = _Sorted.of_windows([r.e2e_s for r in results], w)
    # counts: each window's weight x fleet requests per simulated one (x 1.0: the same bits)
    wc = w * np.array([r.scale for r in results])
    requests = exact_dot(wc, [r.requests for r in results])
    rejected = exact_dot(wc, [r.rejected for r in results])
    n = np.array([r.requests for r in results], dtype=np.float64)
    met = exact_dot(w, [r.met for r in results])
    weighted_n = exact_dot(w, n)
    n_req = round(requests)
    n_rej = round(rejected)

    def total(values: list[int]) -> int:
        return round(exact_dot(wc, values))

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
        ttft_p50_s=ttft.quantile(0.50),
        ttft_p95_s=ttft.quantile(0.95),
        ttft_p99_s=ttft.quantile(0.99),
        tpot_p50_s=tpot.quantile(0.50),
        tpot_p95_s=tpot.quantile(0.95),
        e2e_p50_s=e2e.quantile(0.50),
        e2e_p95_s=e2e.quantile(0.95),
        e2e_p99_s=e2e.quantile(0.99),
        slo_attainment=float(met / weighted_n) if weighted_n > 0 else float("nan"),
        gpu_utilisation=float(
            exact_dot(w, [r.busy_s for r in results])
            / (results[0].replicas * month_s if serving is None else exact_dot(w, serving))
        ),
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
        busy_share = r.busy_s / (
            r.window.length_s * r.replicas if r.serving_s is None else max(r.serving_s, 1e-9)
        )
        share[r.window.hour_of_week].append(busy_share)
        by_stratum.setdefault(r.window.stratum, []).append(busy_share)
    # NOTE: one mean per sampled slot and per stratum, not one per hour of the week (168):
    # 0.012 s less per replication of growth20pct.
    slot_mean = {slot: float(np.mean(v)) for slot, v in share.items() if v}
    stratum_mean = {k: float(np.mean(v)) for k, v in by_stratum.items()}
    util = [
        slot_mean[slot]
        if slot in slot_mean
        else stratum_mean.get(int(slot_stratum[slot]), math.nan)
        for slot in range(HOURS_PER_WEEK)
    ]
    return row, hourly_rows(plan, replication, month, util)

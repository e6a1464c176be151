"""The sampled horizon: its design (weights, strata) and its agreement with full runs."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import sim.horizon
from sim.config import HorizonSpec, MonthPlan, PoolSpec
from sim.experiment import Experiment, load_experiment
from sim.horizon import (
    SLICE_MIN_REPLICAS,
    SLICE_REPLICAS,
    choose_windows,
    fleet_slice,
    strata_of_slots,
)
from sim.replication import busy_inside, run_replication
from sim.runner import run_experiment
from sim.stats import months_frame, weighted_quantile
from sim.stats.sampled import _Pooled, _Sorted, sorted_windows, stable_argsort
from sim.units import HOURS_PER_MONTH, SECONDS_PER_MONTH

ROOT = Path(__file__).resolve().parents[1]


def profile() -> np.ndarray:
    return load_experiment(ROOT / "experiments" / "growth20pct.toml").profile.array


def test_strata_put_the_busiest_slots_first() -> None:
    p = profile()
    strata = strata_of_slots(p, peak_hours=8, strata=4)
    assert np.count_nonzero(strata == 0) == 8
    assert p[strata == 0].min() >= p[strata != 0].max()
    means = [p[strata == k].mean() for k in range(1, 5)]
    assert means == sorted(means)  # stratum 1 quietest … 4 busiest


@pytest.mark.parametrize("month", [1, 4])
def test_windows_cover_the_month_with_weights_summing_to_it(month: int) -> None:
    strata = strata_of_slots(profile(), 8, 4)
    rng = np.random.default_rng(5)
    windows = choose_windows(rng, month, HOURS_PER_MONTH, strata, 3, 1800.0)
    assert len(windows) == 8 + 4 * 3
    start, end = (month - 1) * SECONDS_PER_MONTH, month * SECONDS_PER_MONTH
    assert all(start <= w.start_s and w.start_s + w.length_s <= end for w in windows)
    assert sum(w.weight * w.length_s for w in windows) == pytest.approx(SECONDS_PER_MONTH)
    assert {w.hour_of_week for w in windows if w.stratum == 0} == set(
        np.flatnonzero(strata == 0).tolist()
    )
    assert all(w.start_s % 1800 == 0 for w in windows)


def test_windows_must_divide_an_hour() -> None:
    with pytest.raises(ValueError, match="divide an hour"):
        choose_windows(
            np.random.default_rng(0),
            1,
            HOURS_PER_MONTH,
            strata_of_slots(profile(), 8, 4),
            3,
            1700.0,
        )


def test_weighted_quantile() -> None:
    values = np.arange(1.0, 101.0)
    assert weighted_quantile(values, np.ones(100), 0.95) == 95.0
    # doubling the weight of the top half moves the median into it
    weights = np.where(values > 50, 2.0, 1.0)
    assert weighted_quantile(values, weights, 0.5) == pytest.approx(63.0, abs=1)
    assert np.isnan(weighted_quantile(np.empty(0), np.empty(0), 0.5))


def test_auto_rule() -> None:
    exp = load_experiment(ROOT / "experiments" / "growth20pct.toml")
    spec = exp.spec
    mode, why = exp.horizon()
    assert mode == "sampled" and "300,000" in why
    assert "exchangeable slice" in why  # the slice rule is printed with the horizon rule
    small = dataclasses.replace(
        spec, workload=dataclasses.replace(spec.workload, base_requests_per_day=500.0)
    )
    assert dataclasses.replace(exp, spec=small).horizon()[0] == "full"
    forced = dataclasses.replace(spec, horizon=HorizonSpec(mode="full"))
    assert dataclasses.replace(exp, spec=forced).horizon()[0] == "full"


@pytest.mark.slow
def test_sampled_agrees_with_full_on_a_small_case(
    scale_step_times: Callable[..., Experiment],
) -> None:
    """Per-month medians across replications, same seeds (the tolerances of issue #6)."""
    # a GPU 8x slower than the A100 fit: real queueing at peaks, p95 TTFT ~1.5-3 s
    exp = scale_step_times(
        load_experiment(ROOT / "experiments" / "growth20pct.toml"), flat_s=8, per_token_s=8
    )
    spec = dataclasses.replace(
        exp.spec,
        months=2,
        fleet=(MonthPlan((PoolSpec("base", "a100-80gb", 1),)),) * 2,
        workload=dataclasses.replace(exp.spec.workload, base_requests_per_day=2500.0),
        # the estimator alone: no step-time draw per replication (it moves this near-saturated
        # case's SLO attainment by several points and so the median of 8 replications)
        calibration_uncertainty=False,
    )
    full = run_experiment(
        dataclasses.replace(exp, spec=dataclasses.replace(spec, horizon=HorizonSpec("full"))),
        replications=8,
        jobs=2,
    )
    sampled = run_experiment(
        dataclasses.replace(exp, spec=dataclasses.replace(spec, horizon=HorizonSpec("sampled"))),
        replications=8,
        jobs=2,
    )
    cols = ["ttft_p95_s", "slo_attainment", "gpu_utilisation", "cost_usd"]
    f = full.months.group_by("month").agg(pl.col(cols).median()).sort("month")
    s = sampled.months.group_by("month").agg(pl.col(cols).median()).sort("month")
    assert (f["ttft_p95_s"] > 1.0).all()  # queueing shows in the case
    assert np.allclose(s["ttft_p95_s"], f["ttft_p95_s"], rtol=0.05)
    assert np.allclose(s["slo_attainment"], f["slo_attainment"], rtol=0, atol=0.01)
    # 8 replications: the median's own noise is ~1.2% here (32 replications: -0.09% ± 0.62%)
    assert np.allclose(s["gpu_utilisation"], f["gpu_utilisation"], rtol=0.03)
    assert np.allclose(s["cost_usd"], f["cost_usd"], rtol=1e-12)
    assert (sampled.months["ttft_p95_se_s"] > 0).all()
    assert full.months["ttft_p95_se_s"].is_nan().all()


def test_resampled_quantile_is_the_sort_of_the_resample() -> None:
    """The bootstrap's p95 over a resample of windows equals `weighted_quantile` over the
    resample's concatenated values bit for bit, with many equal values across windows."""
    rng = np.random.default_rng(3)
    for _ in range(200):
        n = int(rng.integers(1, 12))
        arrays = [
            rng.integers(0, 30, size=int(rng.integers(0, 40))).astype(np.float64) * 0.1
            for _ in range(n)
        ]
        w = rng.choice([1.0, 8.0, 10.0, 106.66666666666667, 73.0 / 3.0], size=n)
        pooled = _Pooled.of(arrays, w)
        every = rng.integers(0, n, size=(3, n))
        for q in (0.5, 0.95, 0.99):
            got = pooled.resampled_quantiles(every, w, q)
            for picks, value in zip(every, got, strict=True):
                values = np.concatenate([arrays[j] for j in picks])
                weights = np.concatenate([np.full(arrays[j].size, w[j]) for j in picks])
                expected = weighted_quantile(values, weights, q)
                assert value == expected or (np.isnan(value) and np.isnan(expected))


def test_busy_inside_is_the_loop_it_replaced() -> None:
    rng = np.random.default_rng(4)
    for _ in range(50):
        periods = []
        for _ in range(int(rng.integers(0, 4))):
            edges = np.sort(rng.uniform(0, 100, size=2 * int(rng.integers(0, 20))))
            periods.append([(float(a), float(b)) for a, b in edges.reshape(-1, 2)])
        start, end = 30.0 + rng.uniform(), 70.0 + rng.uniform()
        busy = 0.0
        for rep in periods:
            for s, e in rep:
                busy += max(0.0, min(e, end) - max(s, start))
        assert busy_inside(periods, start, end) == busy


def test_fleet_slice_rule() -> None:
    a, b = object(), object()
    n = SLICE_MIN_REPLICAS
    same = [a] * (n + 5)
    assert fleet_slice(same, range(n), plain=True) == SLICE_REPLICAS
    assert fleet_slice(same, range(n - 1), plain=True) == n - 1  # small fleets whole
    assert fleet_slice(same, range(n), plain=False) == n  # spot reclaims or an API: whole
    assert fleet_slice([a] * n + [b], range(n + 1), plain=True) == n + 1  # not identical


def large_fleet(volume: float, fleet: int, months: int) -> Experiment:
    exp = load_experiment(ROOT / "experiments" / "growth20pct.toml")
    spec = dataclasses.replace(
        exp.spec,
        months=months,
        fleet=(MonthPlan((PoolSpec("base", "a100-80gb", fleet),)),) * months,
        workload=dataclasses.replace(
            exp.spec.workload,
            base_requests_per_day=exp.spec.workload.base_requests_per_day * volume,
        ),
        horizon=HorizonSpec("sampled"),
    )
    return dataclasses.replace(exp, spec=spec)


def months_of(exp: Experiment, replications: int) -> pl.DataFrame:
    return months_frame(
        [row for k in range(replications) for row in run_replication(exp, k).months]
    )


@pytest.mark.slow
def test_slice_agrees_with_the_whole_fleet(monkeypatch: pytest.MonkeyPatch) -> None:
    """A slice of 16 of 40 identical replicas with 16/40 of the traffic estimates the whole
    fleet within docs/horizon.md's sampled-vs-full tolerances (per-month medians, same seeds),
    at ~55% utilisation, where batching and routing matter."""
    exp = large_fleet(volume=133.0, fleet=40, months=1)
    sliced = months_of(exp, 4)
    monkeypatch.setattr(sim.horizon, "SLICE_MIN_REPLICAS", 10**9)
    whole = months_of(exp, 4)
    cols = ["ttft_p95_s", "slo_attainment", "gpu_utilisation", "cost_usd", "requests"]
    f = whole.group_by("month").agg(pl.col(cols).median()).sort("month")
    s = sliced.group_by("month").agg(pl.col(cols).median()).sort("month")
    assert (f["gpu_utilisation"] > 0.45).all(), f
    assert np.allclose(s["ttft_p95_s"], f["ttft_p95_s"], rtol=0.05)
    assert np.allclose(s["slo_attainment"], f["slo_attainment"], rtol=0, atol=0.01)
    assert np.allclose(s["gpu_utilisation"], f["gpu_utilisation"], rtol=0.03)
    assert np.allclose(s["cost_usd"], f["cost_usd"], rtol=1e-12)
    assert np.allclose(s["requests"], f["requests"], rtol=0.02)
    assert sliced["requests"].sum() > 0


def test_stable_argsort_is_numpys_stable_argsort() -> None:
    """The quicksort-then-fix-the-ties permutation equals numpy's stable sort, with ties,
    NaNs, signed zeros and infinities."""
    rng = np.random.default_rng(8)
    for trial in range(2000):
        n = int(rng.integers(0, 300))
        kind = trial % 4
        if kind == 0:
            v = rng.integers(0, 5, n).astype(np.float64) * 0.1
        elif kind == 1:
            v = rng.normal(size=n)
        elif kind == 2:
            v = rng.integers(0, 4, n).astype(np.float64)
            v[rng.random(n) < 0.3] = np.nan
            v[rng.random(n) < 0.2] = -0.0
        else:
            v = np.where(rng.random(n) < 0.5, np.inf, rng.integers(0, 3, n) * 1.0)
        assert np.array_equal(stable_argsort(v), np.argsort(v, kind="stable"))


def test_sorted_windows_is_the_stable_sort_of_the_concatenation() -> None:
    """`sorted_windows` gives, bit for bit, the values, windows, weights and cumulative
    weights of the stable sort of the windows' concatenation: positive values (packed), with
    ties within and across windows, and the fallback's zeros, negatives, NaNs, signed zeros,
    infinities and spans too wide to pack; empty windows and none."""
    rng = np.random.default_rng(11)
    for trial in range(1500):
        k = int(rng.integers(0, 25))
        arrays = []
        for _ in range(k):
            n = int(rng.integers(0, 60)) if rng.random() < 0.9 else 0
            kind = trial % 7
            if kind == 0:
                v = rng.integers(0, 5, n).astype(np.float64) * 0.1
            elif kind == 1:
                v = rng.normal(size=n)
            elif kind == 4:  # positive: the packed sort, with ties
                v = rng.integers(1, 6, n).astype(np.float64) * 0.1
            elif kind == 5:  # positive, distinct, several decades
                v = rng.lognormal(-2.0, 2.0, n)
            elif kind == 6:  # positive, a span too wide to pack
                v = 10.0 ** rng.uniform(-300, 300, n)
            elif kind == 2:
                v = rng.integers(0, 3, n).astype(np.float64)
                v[rng.random(n) < 0.3] = np.nan
                v[rng.random(n) < 0.3] = -0.0
                v[rng.random(n) < 0.1] = -np.nan
            else:
                v = np.where(rng.random(n) < 0.4, np.inf, rng.integers(-2, 3, n) * 1.0)
            arrays.append(v)
        w = rng.random(k) + 0.5
        concat = np.concatenate(arrays) if arrays else np.empty(0)
        window = np.repeat(np.arange(k), [a.size for a in arrays])
        order = np.argsort(concat, kind="stable")
        values, win = sorted_windows(arrays)
        assert np.array_equal(values.view(np.int64), concat[order].view(np.int64))
        assert np.array_equal(win, window[order])
        fast = _Sorted.of_windows(arrays, w)
        slow = _Sorted.of(concat, np.repeat(w, [a.size for a in arrays]))
        for a, b in (
            (fast.values, slow.values),
            (fast.weights, slow.weights),
            (fast.cum, slow.cum),
        ):
            assert np.array_equal(a.view(np.int64), b.view(np.int64))


def test_exact_dot_is_exactly_rounded_in_any_order() -> None:
    """`exact_dot` is the exactly rounded sum of the float64 products (checked against
    rational arithmetic), so it does not depend on the order of the terms (or on the CPU's
    BLAS, which `np.dot` would use): cancellation included, where a naive sum is off."""
    from fractions import Fraction

    from sim.records import exact_dot

    rng = np.random.default_rng(5)
    for _ in range(300):
        n = int(rng.integers(1, 60))
        a = rng.normal(size=n) * 10.0 ** rng.integers(-8, 9, n)
        b = rng.normal(size=n)
        products = np.multiply(a, b)
        exact = float(sum((Fraction(float(p)) for p in products), Fraction(0)))
        assert exact_dot(a, b) == exact
        order = rng.permutation(n)
        assert exact_dot(a[order], b[order]) == exact
    assert exact_dot([1e16, 1.0, -1e16], [1.0, 1.0, 1.0]) == 1.0  # a naive left sum gives 0.0

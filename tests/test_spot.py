"""sim.spot: preemption rates, trace bootstrap, determinism, outage invariants, prices."""

from __future__ import annotations

import dataclasses
import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest
from scipy import stats

from sim.fleet.markets import (
    DEFAULT_ENGINE_INIT_S,
    DEFAULT_LOAD_GB_PER_S,
    DelayDistribution,
    SpotMarket,
    availability_delays,
    cold_start_s,
    market,
    markets,
    rate_from_advisor_bucket,
    spot_price_path,
)
from sim.fleet.spot import Outage, reclaim_waves, spot_schedule
from sim.rng import Streams

ROOT = Path(__file__).resolve().parents[1]
HOUR = 3600.0


def exposure_and_count(schedule: list[list[Outage]], horizon_s: float) -> tuple[int, float]:
    """Preemptions and spot instance-hours at risk (serving, before a notice) of a schedule."""
    count, at_risk_s = 0, 0.0
    for outages in schedule:
        up = 0.0
        for o in outages:
            at_risk_s += o.notice_s - up
            count += 1
            up = o.up_s
        if math.isfinite(up) and not (outages and outages[-1].fallback):
            at_risk_s += horizon_s - up
    return count, at_risk_s / HOUR


def poisson_999(mean: float) -> tuple[float, float]:
    return float(stats.poisson.ppf(0.0005, mean)), float(stats.poisson.ppf(0.9995, mean))


# ---------------------------------------------------------------- the packaged data


def test_packaged_markets_have_sources_and_provider_notices() -> None:
    found = markets()
    assert {"aws-advisor-lt5pct", "aws-advisor-gt20pct", "bamboo-g4dn", "bamboo-p3"} <= set(found)
    for m in found.values():
        assert m.source and m.availability_delay.source
        assert m.notice_s == {"aws": 120.0, "gcp": 30.0}[m.provider]
        assert m.availability_delay.mean_s > 0


def test_bamboo_rates_match_the_published_figures() -> None:
    # bamboo-spot-traces/SOURCE.md: 0.545 and 0.611 preemptions per instance-hour.
    assert market("bamboo-g4dn").preemptions_per_instance_hour == pytest.approx(0.545, abs=5e-4)
    assert market("bamboo-p3").preemptions_per_instance_hour == pytest.approx(0.611, abs=6e-4)


def _derive_module() -> object:
    spec = importlib.util.spec_from_file_location("derive_spot", ROOT / "scripts/derive_spot.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_trace_tables_are_derived_from_the_shipped_traces() -> None:
    derive = _derive_module()
    changes, span = derive.event_trace(ROOT / "traces/spot/bamboo_g4dn_trace.csv")  # type: ignore[attr-defined]
    info = derive.reclaim_instants(changes, 0, span)  # type: ignore[attr-defined]
    trace = market("bamboo-g4dn").trace
    assert trace is not None
    assert trace.times_s == tuple(info["times_s"])
    assert trace.reclaimed == tuple(info["removed"])
    assert trace.running_before == tuple(info["running_before"])
    assert sum(trace.reclaimed) == 74 and trace.span_s == 38_280


def test_advisor_bucket_convention() -> None:
    assert rate_from_advisor_bucket("<5%") == pytest.approx(-math.log(0.975) / 730)
    assert rate_from_advisor_bucket(">20%") == pytest.approx(-math.log(0.8) / 730)
    rates = [rate_from_advisor_bucket(b) for b in ("<5%", "5-10%", "10-15%", "15-20%", ">20%")]
    assert rates == sorted(rates)
    assert market("aws-advisor-5-10pct").preemptions_per_instance_hour == pytest.approx(
        rate_from_advisor_bucket("5-10%"), rel=1e-5
    )
    with pytest.raises(ValueError, match="bucket"):
        rate_from_advisor_bucket("5%")


def test_cold_start_default() -> None:
    assert cold_start_s(16.06) == pytest.approx(
        16.06 / DEFAULT_LOAD_GB_PER_S + DEFAULT_ENGINE_INIT_S
    )
    assert 100 < cold_start_s(16.06) < 120
    assert cold_start_s(10.0, 2.0, 5.0) == 10.0
    with pytest.raises(ValueError):
        cold_start_s(1.0, 0.0)


def test_delay_distribution_sampling_mean() -> None:
    d = availability_delays()["skypilot-aws-v100-2023"]
    u = np.random.default_rng(0).random(400_000)
    samples = d.quantile_s(u)
    assert samples.mean() == pytest.approx(d.mean_s, rel=0.02)
    assert d.quantile_s(0.5) == 2320.0
    assert np.median(samples) == pytest.approx(2320, rel=0.02)
    assert DelayDistribution.constant(42.0).quantile_s(0.3) == 42.0


# ---------------------------------------------------------------- rates


def test_rate_market_counts_match_the_configured_rate() -> None:
    # The packaged >20% Advisor market (3.06e-4 /h) over 2000 slots x 6 months (~1,800 expected).
    m = market("aws-advisor-gt20pct")
    horizon = 6 * 730 * HOUR
    sched = spot_schedule(
        m,
        streams=Streams(11, 0),
        pool="spot",
        slots=2000,
        horizon_s=horizon,
        cold_start_s=109.0,
        fallback_after_s=None,
    )
    count, at_risk_h = exposure_and_count(sched, horizon)
    lo, hi = poisson_999(m.preemptions_per_instance_hour * at_risk_h)
    assert lo <= count <= hi, (count, lo, hi)


@pytest.mark.parametrize("rate", [0.05, 0.5, 2.0])
def test_rate_override_counts_within_poisson_bounds(rate: float) -> None:
    m = market("aws-advisor-lt5pct")
    horizon = 2000 * HOUR
    sched = spot_schedule(
        m,
        streams=Streams(3, 1),
        pool="p",
        slots=20,
        horizon_s=horizon,
        cold_start_s=60.0,
        fallback_after_s=None,
        rate_per_instance_hour=rate,
    )
    count, at_risk_h = exposure_and_count(sched, horizon)
    lo, hi = poisson_999(rate * at_risk_h)
    assert lo <= count <= hi, (count, lo, hi)
    # and not the market's own (tiny) rate
    assert count > 10 * m.preemptions_per_instance_hour * at_risk_h


def test_bootstrapped_g4dn_keeps_its_mean_rate() -> None:
    m = market("bamboo-g4dn")
    horizon = 3000 * HOUR
    sched = spot_schedule(
        m,
        streams=Streams(5, 0),
        pool="spot",
        slots=60,
        horizon_s=horizon,
        cold_start_s=109.0,
        fallback_after_s=None,
    )
    count, at_risk_h = exposure_and_count(sched, horizon)
    measured = count / at_risk_h
    assert measured == pytest.approx(0.545, rel=0.10), measured


def test_bootstrap_waves_keep_the_trace_time_average() -> None:
    m = market("bamboo-g4dn")
    assert m.trace is not None
    total, hours = 0.0, 0.0
    for r in range(20):
        _, f = reclaim_waves(m, streams=Streams(2, r), horizon_s=1000 * HOUR)
        total += f.sum()
        hours += 1000
    assert total / hours == pytest.approx(m.trace.always_up_rate_per_hour, rel=0.05)


def test_rate_zero_means_no_outages() -> None:
    for name in ("aws-advisor-gt20pct", "bamboo-g4dn"):
        sched = spot_schedule(
            market(name),
            streams=Streams(1, 0),
            pool="p",
            slots=4,
            horizon_s=1e7,
            cold_start_s=100.0,
            fallback_after_s=None,
            rate_per_instance_hour=0.0,
        )
        assert sched == [[], [], [], []]


# ---------------------------------------------------------------- determinism and CRN


def _schedule(name: str, **kw: object) -> list[list[Outage]]:
    args: dict[str, object] = dict(
        seed=7,
        replication=3,
        pool="spot-a",
        slots=6,
        horizon_s=500 * HOUR,
        cold_start_s=109.0,
        fallback_after_s=None,
        rate_per_instance_hour=None,
    )
    args.update(kw)
    args["streams"] = Streams(args.pop("seed"), args.pop("replication"))  # type: ignore[arg-type]
    return spot_schedule(market(name), **args)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["aws-advisor-lt5pct", "bamboo-g4dn", "bamboo-gcp-v100"])
def test_same_seed_same_schedule_and_seed_matters(name: str) -> None:
    rate = 0.3 if name.startswith("aws") else None
    a = _schedule(name, rate_per_instance_hour=rate)
    assert a == _schedule(name, rate_per_instance_hour=rate)
    assert sum(map(len, a)) > 0
    assert a != _schedule(name, rate_per_instance_hour=rate, seed=8)
    assert a != _schedule(name, rate_per_instance_hour=rate, replication=4)


@pytest.mark.parametrize("name", ["aws-advisor-lt5pct", "bamboo-p3"])
def test_slot_unchanged_when_the_pool_grows(name: str) -> None:
    rate = 0.3 if name.startswith("aws") else None
    small = _schedule(name, slots=3, rate_per_instance_hour=rate)
    large = _schedule(name, slots=12, rate_per_instance_hour=rate)
    assert large[:3] == small
    other_pool = _schedule(name, slots=3, pool="spot-b", rate_per_instance_hour=rate)
    assert other_pool != small


def test_pools_on_one_trace_market_share_the_waves() -> None:
    m = market("bamboo-g4dn")
    waves, _ = reclaim_waves(m, streams=Streams(7, 3), horizon_s=500 * HOUR)
    notices = {
        o.notice_s for pool in ("a", "b") for s in _schedule("bamboo-g4dn", pool=pool) for o in s
    }
    assert notices and notices <= set(waves.tolist())


# ---------------------------------------------------------------- invariants


@pytest.mark.parametrize("name", sorted(markets()))
@pytest.mark.parametrize("fallback_after_s", [None, 0.0, 1800.0])
def test_outages_are_ordered_and_never_overlap(name: str, fallback_after_s: float | None) -> None:
    horizon = 400 * HOUR
    rate = 0.4 if name.startswith("aws") else None
    for rep in range(3):
        sched = _schedule(
            name,
            replication=rep,
            horizon_s=horizon,
            fallback_after_s=fallback_after_s,
            rate_per_instance_hour=rate,
        )
        for outages in sched:
            previous_up = 0.0
            for i, o in enumerate(outages):
                assert previous_up <= o.notice_s < horizon
                assert o.notice_s <= o.down_s <= o.up_s
                assert o.down_s - o.notice_s == pytest.approx(market(name).notice_s)
                if o.fallback or not math.isfinite(o.up_s):
                    assert i == len(outages) - 1  # on-demand is never preempted again
                previous_up = o.up_s
            if fallback_after_s == 0.0:
                assert all(o.fallback for o in outages)


def test_fallback_after_a_wait() -> None:
    # Constant 1-hour availability delay: falling back after 10 minutes always wins.
    m = dataclasses.replace(
        market("aws-advisor-lt5pct"), availability_delay=DelayDistribution.constant(3600.0)
    )
    kw = dict(
        streams=Streams(1, 0),
        pool="p",
        slots=50,
        horizon_s=1000 * HOUR,
        cold_start_s=100.0,
        rate_per_instance_hour=0.2,
    )
    with_fb = spot_schedule(m, fallback_after_s=600.0, **kw)  # type: ignore[arg-type]
    without = spot_schedule(m, fallback_after_s=None, **kw)  # type: ignore[arg-type]
    for a, b in zip(with_fb, without, strict=True):
        assert len(a) == 1 and a[0].fallback
        assert a[0].up_s == pytest.approx(a[0].notice_s + 700.0)
        assert a[0] == dataclasses.replace(b[0], up_s=a[0].up_s, fallback=True)
        assert len(b) > 1 and not any(o.fallback for o in b)
        assert b[0].up_s == pytest.approx(b[0].notice_s + 3700.0)


def test_replacement_never_before_the_instance_is_gone() -> None:
    m = dataclasses.replace(market("bamboo-g4dn"), availability_delay=DelayDistribution.constant(0))
    sched = spot_schedule(
        m,
        streams=Streams(1, 0),
        pool="p",
        slots=5,
        horizon_s=100 * HOUR,
        cold_start_s=10.0,
        fallback_after_s=None,
    )
    outages = [o for s in sched for o in s]
    assert outages and all(o.up_s == o.down_s for o in outages)


def test_market_validation() -> None:
    m = market("bamboo-g4dn")
    with pytest.raises(ValueError):
        dataclasses.replace(m, kind="rate")
    with pytest.raises(ValueError):
        SpotMarket(
            **{
                **dataclasses.asdict(m),
                "kind": "x",  # type: ignore[arg-type]
                "availability_delay": m.availability_delay,
                "trace": m.trace,
            }
        )


# ---------------------------------------------------------------- prices


def test_spot_price_path_mean_changes_and_cap() -> None:
    rng = np.random.default_rng(4)
    od, ratio = 12.29, 0.28
    paths = np.stack([spot_price_path(rng, 168 * 52, od, ratio) for _ in range(40)])
    assert paths.max() <= od and paths.min() > 0
    assert paths.mean() == pytest.approx(od * ratio, rel=0.01)
    weekly = paths[:, ::168]
    changed = np.mean(weekly[:, 1:] != weekly[:, :-1])
    assert changed == pytest.approx(0.1056, abs=0.02)
    flat = spot_price_path(rng, 100, od, ratio, change_probability_per_week=0.0, level_log_sd=0.0)
    assert np.all(flat == pytest.approx(od * ratio))
    assert spot_price_path(rng, 0, od, ratio).size == 0


def _waves_block_by_block(
    m: SpotMarket, streams: Streams, horizon_s: float
) -> tuple[np.ndarray, np.ndarray]:
    """The circular block bootstrap written one block at a time (the definition)."""
    trace = m.trace
    assert trace is not None
    offsets = streams.spot_waves(m.name).uniform(
        0.0, trace.span_s, size=max(0, math.ceil(horizon_s / trace.block_s))
    )
    times = np.asarray(trace.times_s)
    fractions = np.asarray(trace.reclaimed) / np.asarray(trace.running_before)
    out_t, out_f = [np.empty(0)], [np.empty(0)]
    for b, start in enumerate(offsets):
        rel = (times - start) % trace.span_s
        inside = rel < trace.block_s
        order = np.argsort(rel[inside], kind="stable")
        out_t.append(b * trace.block_s + rel[inside][order])
        out_f.append(fractions[inside][order])
    t, f = np.concatenate(out_t), np.concatenate(out_f)
    return t[t < horizon_s], f[t < horizon_s]


@pytest.mark.parametrize("name", [n for n, m in markets().items() if m.trace is not None])
def test_waves_are_the_block_by_block_bootstrap(name: str) -> None:
    """`reclaim_waves` bootstraps every block at once: the same bits as one block at a time,
    for horizons that are not a multiple of the block, shorter than one, empty, and blocks
    longer than the trace (every event inside)."""
    base = markets()[name]
    assert base.trace is not None
    long_blocks = dataclasses.replace(
        base, trace=dataclasses.replace(base.trace, block_s=2.5 * base.trace.span_s)
    )
    for m in (base, long_blocks):
        for seed in range(6):
            for horizon_s in (0.0, 1.0, 3599.0, 3600.0, 1e5 + 0.5, 6 * 730 * HOUR):
                s = Streams(seed, seed % 3)
                got = reclaim_waves(m, streams=s, horizon_s=horizon_s)
                want = _waves_block_by_block(m, Streams(seed, seed % 3), horizon_s)
                assert got[0].tobytes() == want[0].tobytes()
                assert got[1].tobytes() == want[1].tobytes()

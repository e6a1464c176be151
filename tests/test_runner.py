"""Monte Carlo runner: seeds, worker counts, common random numbers, conservation."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sim import runner
from sim.config import SloSpec
from sim.experiment import Experiment
from sim.replication import WHOLE, Scope, run_replication, sample_workload
from sim.rng import Streams
from sim.runner import replicate, run_experiment, shared_workers
from sim.stats import months_frame

ROOT = Path(__file__).resolve().parents[1]
Tiny = Callable[..., Experiment]  # the `tiny` fixture (conftest.py)


@pytest.mark.slow
def test_same_seed_same_tables_whatever_the_number_of_workers(
    tiny: Tiny,
) -> None:
    exp = tiny(months=2)
    one = run_experiment(exp, replications=3, jobs=1)
    two = run_experiment(exp, replications=3, jobs=2)
    assert one.replications_done == two.replications_done == [0, 1, 2]
    assert one.months.equals(two.months)
    assert one.hourly.equals(two.hourly)
    assert one.summary.equals(two.summary)
    # and the replications really differ from each other (streams are per replication)
    counts = one.months.filter(pl.col("month") == 1)["requests"].to_list()
    assert len(set(counts)) == 3


@pytest.mark.slow
def test_shared_workers_start_once_and_change_nothing(tiny: Tiny) -> None:
    """Inside `shared_workers` every batch runs on the same two worker processes (a search's
    hundreds of batches start no new ones) and gives the same rows as one process."""
    exp = tiny(months=2)
    serial = replicate(exp, range(4), jobs=1)
    pids: list[set[int]] = []
    with shared_workers(2):
        pool = runner._SHARED.get()
        assert pool is not None
        for batch in (range(2), range(2, 4)):
            outs = replicate(exp, batch, jobs=2)
            got = months_frame([r for o in outs for r in o.months])
            assert got.equals(months_frame([r for k in batch for r in serial[k].months]))
            pids.append(set(pool._processes))
    assert runner._SHARED.get() is None
    assert pids[0] == pids[1] and len(pids[0]) == 2


def test_different_seed_different_traffic(tiny: Tiny) -> None:
    exp = tiny()
    other = dataclasses.replace(exp, spec=dataclasses.replace(exp.spec, seed=exp.spec.seed + 1))
    a = sample_workload(exp, Streams(exp.spec.seed, 0))
    b = sample_workload(other, Streams(other.spec.seed, 0))
    assert a.arrival_s.size != b.arrival_s.size or not np.array_equal(a.arrival_s, b.arrival_s)


def test_plan_is_not_in_the_seed_common_random_numbers(tiny: Tiny) -> None:
    """Two fleets see exactly the same requests in replication k."""
    small, big = tiny(replicas=1), tiny(replicas=3)
    a, b = (
        sample_workload(small, Streams(small.spec.seed, 4)),
        sample_workload(big, Streams(big.spec.seed, 4)),
    )
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert np.array_equal(a.input_tokens, b.input_tokens)
    assert np.array_equal(a.output_tokens, b.output_tokens)


@pytest.mark.slow
def test_bigger_fleet_never_has_worse_p95_under_common_random_numbers(
    tiny: Tiny,
) -> None:
    # a GPU 25x slower than an A100 makes 3,000 requests/day a real load for one replica
    results = {
        n: run_experiment(tiny(slow=25.0, replicas=n), replications=3, jobs=1) for n in (1, 2, 3)
    }
    for metric in ("ttft_p95_s", "e2e_p95_s"):
        values = {n: r.months.sort("replication")[metric].to_numpy() for n, r in results.items()}
        assert np.all(values[2] <= values[1]), metric
        assert np.all(values[3] <= values[2]), metric
    # the case has queueing in it: one replica is worse than three in every replication
    assert results[1].months["ttft_p95_s"].min() > results[3].months["ttft_p95_s"].max()


def test_conservation_bounds_and_costs(tiny: Tiny) -> None:
    out = run_replication(tiny(slow=25.0), 0)
    assert out.error is None
    for row in out.months:
        assert row["requests"] == row["finished"] + row["rejected"] + row["in_flight_at_end"]
        assert 0.0 <= row["gpu_utilisation"] <= 1.0
        assert 0.0 <= row["slo_attainment"] <= 1.0
        assert row["cost_usd"] >= 0.0
        assert row["cost_usd"] == pytest.approx(row["gpu_cost_usd"] + row["ops_cost_usd"])
    hourly = np.array([h["utilisation"] for h in out.hourly])
    assert hourly.size == 168 and np.all((hourly >= 0) & (hourly <= 1))
    assert hourly.max() > 0.2  # the slow GPU is busy at peak hours


def test_interrupt_keeps_finished_replications(monkeypatch: pytest.MonkeyPatch, tiny: Tiny) -> None:
    import sim.runner as runner

    real = runner._safe_replication
    calls = []

    def flaky(exp: Experiment, k: int, scope: Scope) -> runner.ReplicationOutput:
        calls.append(k)
        if k == 2:
            raise KeyboardInterrupt
        return real(exp, k, scope)

    monkeypatch.setattr(runner, "_safe_replication", flaky)
    res = run_experiment(tiny(), replications=4, jobs=1)
    assert res.interrupted
    assert res.replications_done == [0, 1]
    assert res.months["replication"].unique().sort().to_list() == [0, 1]


def test_failed_replication_is_recorded_and_the_rest_go_on(
    monkeypatch: pytest.MonkeyPatch, tiny: Tiny
) -> None:
    import sim.runner as runner

    real = runner.run_replication

    def broken(
        exp: Experiment, k: int, engine: str = "fast", scope: Scope = WHOLE
    ) -> runner.ReplicationOutput:
        if k == 1:
            raise RuntimeError("boom")
        return real(exp, k, engine, scope)

    monkeypatch.setattr(runner, "run_replication", broken)
    res = run_experiment(tiny(), replications=3, jobs=1)
    assert res.replications_done == [0, 2]
    assert res.errors == {1: "RuntimeError: boom"}


def test_slo_breach_probability_ignores_months_without_requests() -> None:
    from sim.records import MONTH_SCHEMA
    from sim.stats import summarise

    base = dict.fromkeys(MONTH_SCHEMA, 0.0) | {"plan": "p", "month": 1}
    rows = [
        base | {"replication": 0, "ttft_p95_s": 2.0},
        base | {"replication": 1, "ttft_p95_s": 1.0},
        base | {"replication": 2, "ttft_p95_s": float("nan")},
    ]
    for row in rows:
        for k, dtype in MONTH_SCHEMA.items():
            if dtype == pl.Int64:
                row[k] = int(row[k])
    summary = summarise(pl.DataFrame(rows, schema=MONTH_SCHEMA), SloSpec(ttft_s=1.5, tpot_s=0.1))
    risk = summary.filter(pl.col("metric") == "p_ttft_p95_above_slo")["mean"].item()
    assert risk == 0.5

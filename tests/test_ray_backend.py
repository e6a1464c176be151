"""The Ray backend against a real local Ray cluster: same tables as the process pool."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sim.config import MonthPlan, PoolSpec
from sim.experiment import load_experiment
from sim.runner import replicate, run_experiment
from sim.stats import months_frame

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'sim[ray]')")

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def local_cluster():  # type: ignore[no-untyped-def]
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.mark.slow
def test_ray_backend_gives_the_same_tables_as_local_processes(local_cluster: None) -> None:
    exp = load_experiment(ROOT / "experiments" / "growth20pct.toml")
    spec = dataclasses.replace(
        exp.spec,
        months=1,
        fleet=(MonthPlan((PoolSpec("base", "a100-80gb", 1),)),),
        workload=dataclasses.replace(exp.spec.workload, base_requests_per_day=1500.0),
    )
    exp = dataclasses.replace(exp, spec=spec)
    on_ray = run_experiment(exp, replications=3, jobs=2, backend="ray")
    local = run_experiment(exp, replications=3, jobs=2)
    assert on_ray.errors == {} and on_ray.replications_done == [0, 1, 2]
    assert on_ray.months.equals(local.months)
    assert on_ray.hourly.equals(local.hourly)
    # a sequential test's stop ends both backends at the same replication, in order
    whole = replicate(exp, range(2), jobs=1)
    for backend in ("ray", "local"):
        outs = replicate(
            exp, range(3), jobs=2, backend=backend, stop=lambda out: out.replication == 1
        )
        assert [o.replication for o in outs] == [0, 1]
        got = months_frame([r for o in outs for r in o.months])
        assert got.equals(months_frame([r for o in whole for r in o.months]))

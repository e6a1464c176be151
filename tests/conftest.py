"""Shared fixtures (SimPy's tests/conftest.py style): small experiments and a test API.

- `growth_experiment`: experiments/growth20pct.toml, loaded once per session.
- `tiny`: a factory of growth20pct cut to a few months and one pool, optionally on a GPU
  `slow` times slower (real queueing at light volume).
- `api_spec`: a factory of a test API ($1/$5 per M tokens, 0.5 s TTFT, 100 tokens/s, no
  rate limits), any field overridable.
- `day_night`: one month of 15,000 requests/day on one L4 under a 4:1 day/night profile
  (the small searches of tests/test_plan_schedules.py and tests/test_plan_autoscale.py).
- `scale_step_times`: `scale(exp, **factors)` gives the experiment with named step-time
  coefficients multiplied on every GPU type.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from sim.config import ApiSpec, MonthPlan, PoolSpec, SpillSpec
from sim.engine import GpuEngine
from sim.experiment import Experiment, load_experiment

ROOT = Path(__file__).resolve().parents[1]

TinyFactory = Callable[..., Experiment]
ApiFactory = Callable[..., ApiSpec]


def scaled_step_times(exp: Experiment, **factors: float) -> Experiment:
    """`exp` with each named `StepTimeModel` coefficient multiplied by its factor on every GPU."""
    per_gpu = {}
    for gpu, e in exp.engine.per_gpu.items():
        step = e.step_time.step
        scaled = dataclasses.replace(
            step, **{name: getattr(step, name) * f for name, f in factors.items()}
        )
        per_gpu[gpu] = GpuEngine(gpu, dataclasses.replace(e.step_time, step=scaled), e.kv_blocks)
    return dataclasses.replace(exp, engine=dataclasses.replace(exp.engine, per_gpu=per_gpu))


def make_tiny(
    base: Experiment,
    requests_per_day: float = 3000.0,
    slow: float = 1.0,
    replicas: int = 1,
    months: int = 1,
) -> Experiment:
    """growth20pct cut to `months` months of one A100 pool, on a GPU `slow` times slower (every
    step-time term but the CPU overhead)."""
    spec = base.spec
    plan = MonthPlan((PoolSpec("base", "a100-80gb", replicas),))
    spec = dataclasses.replace(
        spec,
        months=months,
        fleet=(plan,) * months,
        workload=dataclasses.replace(spec.workload, base_requests_per_day=requests_per_day),
    )
    exp = dataclasses.replace(base, spec=spec)
    if slow == 1.0:
        return exp
    return scaled_step_times(
        exp,
        flat_s=slow,
        per_token_s=slow,
        decode_attn_s_per_token=slow,
        prefill_attn_s_per_pair=slow,
    )


def make_api_spec(**changes: object) -> ApiSpec:
    """A test API: $1/$5 per M tokens, 0.5 s TTFT, 100 tokens/s, no limits (override any)."""
    spec = ApiSpec(
        provider="test",
        input_usd_per_million=1.0,
        output_usd_per_million=5.0,
        ttft_median_s=0.5,
        ttft_p95_s=0.5,
        output_tokens_per_s_median=100.0,
        output_tokens_per_s_p5=100.0,
        rpm=None,
        tpm=None,
        input_tpm=None,
        output_tpm=None,
        on_limit="retry",
        max_retry_wait_s=60.0,
        spill=SpillSpec(),
        source="test",
    )
    return dataclasses.replace(spec, **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="session")
def growth_experiment() -> Experiment:
    return load_experiment(ROOT / "experiments" / "growth20pct.toml")


@pytest.fixture
def tiny(growth_experiment: Experiment) -> TinyFactory:
    def factory(**kw: float) -> Experiment:
        return make_tiny(growth_experiment, **kw)  # type: ignore[arg-type]

    return factory


@pytest.fixture(scope="session")
def api_spec() -> ApiFactory:
    return make_api_spec


@pytest.fixture
def scale_step_times() -> Callable[..., Experiment]:
    return scaled_step_times


DAY_NIGHT = [4.0 if 8 <= h % 24 < 20 else 1.0 for h in range(168)]  # busy 08-20 every day


@pytest.fixture(scope="session")
def day_night(tmp_path_factory: pytest.TempPathFactory) -> Experiment:
    """One month of 15,000 requests/day on L4s, busy 08-20 (4×) and quiet at night: one L4
    (≈ 0.28 requests/s at the default SLO, `sim.capacity`) holds the night, not the day. The
    profile is read from a CSV written here."""
    tmp = tmp_path_factory.mktemp("daynight")
    csv = tmp / "profile.csv"
    csv.write_text(
        "hour_of_week,multiplier\n" + "".join(f"{h},{v}\n" for h, v in enumerate(DAY_NIGHT))
    )
    text = (ROOT / "experiments" / "growth20pct.toml").read_text()
    text = text.replace('"../traces/servegen_weekly_profile.csv"', f'"{csv.as_posix()}"')
    text = text.replace('"../traces/', f'"{ROOT.as_posix()}/traces/')
    text = text.replace("base_requests_per_day = 5000", "base_requests_per_day = 15000")
    text = text.replace("months = 6", "months = 1")
    head, _, rest = text.partition("[[fleet.months]]")
    fleet = '[[fleet.months]]\npools = [{ name = "base", gpu = "l4", count = 1 }]\n'
    f = tmp / "daynight.toml"
    f.write_text(head + fleet + rest[rest.index("[cost]") :])
    return load_experiment(f)

"""Plans with spot pools and API overflow through the Monte Carlo runner (issue #5).

Checks: spot at rate 0 with no API gives exactly the on-demand plan's latencies; conservation
per month with reclaims, spill and rate-limit drops; paired differences of identical plans are
zero; the spot bill follows the reclaims; the configuration errors are located.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest

from sim.config import ApiSpec, MonthPlan, PlanSpec, PoolSpec, SpillSpec, SpotSpec, parse_experiment
from sim.errors import ConfigError
from sim.experiment import Experiment
from sim.runner import run_experiment

ROOT = Path(__file__).resolve().parents[1]
Tiny = Callable[..., Experiment]  # the `tiny` fixture (conftest.py)
Api = Callable[..., ApiSpec]  # the `api_spec` fixture
LATENCY_COLUMNS = ("ttft_p50_s", "ttft_p95_s", "tpot_p95_s", "e2e_p95_s", "slo_attainment")


def _api(api_spec: Api, **kw: object) -> ApiSpec:
    """Claude Haiku 4.5's prices with an assumed latency spread."""
    latency: dict[str, object] = dict(
        provider="claude-haiku-4-5",
        ttft_median_s=0.48,
        ttft_p95_s=1.0,
        output_tokens_per_s_median=53.0,
        output_tokens_per_s_p5=30.0,
        spill=SpillSpec(max_wait_s=0.5),
    )
    return api_spec(**(latency | kw))


def _with_plans(exp, plans, *, spot=None, api=None, months=1):
    spec = dataclasses.replace(
        exp.spec, plans=tuple(plans), fleet=plans[0].fleet, spot=spot, api=api, months=months
    )
    return dataclasses.replace(exp, spec=spec)


def _plan(name: str, pools: tuple[PoolSpec, ...], months: int = 1, api: bool = True) -> PlanSpec:
    return PlanSpec(name, (MonthPlan(pools),) * months, api)


def test_spot_at_rate_zero_without_api_equals_the_on_demand_plan(tiny: Tiny) -> None:
    exp = tiny(requests_per_day=3000.0, slow=25.0, replicas=2)
    on_demand = _plan("on-demand", (PoolSpec("base", "a100-80gb", 2),))
    spot = _plan(
        "spot",
        (PoolSpec("base", "a100-80gb", 1), PoolSpec("spot", "a100-80gb", 1, "spot")),
        api=False,
    )
    exp = _with_plans(
        exp,
        [on_demand, spot],
        spot=SpotSpec("aws-advisor-gt20pct", preemptions_per_instance_hour=0.0),
    )
    res = run_experiment(exp, replications=2)
    a = res.months.filter(pl.col("plan") == "on-demand")
    b = res.months.filter(pl.col("plan") == "spot")
    for col in (*LATENCY_COLUMNS, "requests", "finished", "gpu_utilisation"):
        assert a[col].to_list() == b[col].to_list(), col
    assert b["spot_preemptions"].sum() == 0 and b["requeued"].sum() == 0
    # the spot replica runs all month at the spot price path (mean 0.89/5.12 of on-demand)
    assert (b["gpu_cost_spot_usd"] > 0).all()
    assert (b["gpu_cost_usd"] < a["gpu_cost_usd"]).all()
    assert b["gpu_hours"].to_list() == pytest.approx(a["gpu_hours"].to_list())


def test_conservation_with_reclaims_spill_and_drops(tiny: Tiny, api_spec: Api) -> None:
    exp = tiny(requests_per_day=3000.0, slow=40.0, replicas=2, months=2)
    hybrid = _plan(
        "hybrid",
        (PoolSpec("base", "a100-80gb", 1), PoolSpec("spot", "a100-80gb", 2, "spot")),
        months=2,
    )
    exp = _with_plans(
        exp,
        [hybrid],
        # a market reclaiming each instance every ~2 h, 30 s notice: in-flight work is cut
        spot=SpotSpec("aws-advisor-gt20pct", preemptions_per_instance_hour=0.5, notice_s=30.0),
        api=_api(
            api_spec, rpm=2, on_limit="retry", max_retry_wait_s=5.0, spill=SpillSpec(max_wait_s=0.2)
        ),
        months=2,
    )
    exp = dataclasses.replace(
        exp,
        spec=dataclasses.replace(
            exp.spec, horizon=dataclasses.replace(exp.spec.horizon, mode="full")
        ),
    )
    res = run_experiment(exp, replications=2)
    m = res.months
    assert m["spot_preemptions"].sum() > 10
    assert m["requeued"].sum() > 0
    assert m["api_requests"].sum() > 0 and m["api_dropped"].sum() > 0
    assert (m["api_throttled"] >= m["api_dropped"]).all()
    lhs = m["requests"]
    rhs = m["finished"] + m["api_dropped"] + m["in_flight_at_end"] + m["rejected"]
    assert lhs.to_list() == rhs.to_list()
    # the bill: spot slots ran less than the whole month; API dollars from its tokens
    assert (m["gpu_cost_spot_usd"] > 0).all()
    api_usd = (m["api_input_tokens"] * 1.0 + m["api_output_tokens"] * 5.0) / 1e6
    assert m["api_cost_usd"].to_list() == pytest.approx(api_usd.to_list())
    total = m["gpu_cost_usd"] + m["ops_cost_usd"] + m["api_cost_usd"]
    assert m["cost_usd"].to_list() == pytest.approx(total.to_list())
    saving = m["all_api_cost_usd"] - m["cost_usd"]
    assert m["savings_vs_all_api_usd"].to_list() == pytest.approx(saving.to_list())


def test_identical_plans_have_zero_paired_differences(tiny: Tiny) -> None:
    exp = tiny(requests_per_day=2000.0, slow=25.0)
    pools = (PoolSpec("base", "a100-80gb", 1),)
    exp = _with_plans(exp, [_plan("a", pools), _plan("b", pools)])
    res = run_experiment(exp, replications=3)
    assert set(res.paired["plan"].to_list()) == {"b"}
    assert (res.paired["mean"] == 0).all() and (res.paired["p5"] == 0).all()
    assert (res.paired["p_better"] == 0.5).all()


@pytest.mark.slow
def test_more_spot_capacity_lowers_paired_ttft(tiny: Tiny) -> None:
    exp = tiny(requests_per_day=3000.0, slow=40.0)
    base = _plan("base", (PoolSpec("base", "a100-80gb", 1),))
    more = _plan("more", (PoolSpec("base", "a100-80gb", 1), PoolSpec("s", "a100-80gb", 1, "spot")))
    exp = _with_plans(exp, [base, more], spot=SpotSpec("aws-advisor-gt20pct"))
    res = run_experiment(exp, replications=3)
    row = res.paired.filter(pl.col("metric") == "ttft_p95_s").row(0, named=True)
    assert row["p95"] < 0 and row["p_better"] == 1.0


HEAD = """
name = "x"
seed = 1
months = 1
[workload]
base_requests_per_day = 1000
weekly_profile = "{root}/traces/servegen_weekly_profile.csv"
lengths = "{root}/traces/azure_conv_2023.csv"
[workload.growth]
mean_monthly = 0.0
sd_log = 0.0
[engine]
model = "llama-3-8b"
max_num_seqs = 64
max_num_batched_tokens = 2048
max_model_len = 8192
[cost]
ops_usd_per_month = 0
[slo]
ttft_s = 1
tpot_s = 0.1
"""


FLEET = '[fleet]\npools = [{gpu = "a100-80gb", count = 1}]\n'
API = FLEET + '[api]\nprovider = "claude-haiku-4-5"\n'


@pytest.mark.parametrize(
    ("tail", "message"),
    [
        (
            '[fleet]\npools = [{gpu = "a100-80gb", count = 1, market = "spot"}]\n',
            'x.toml: spot: is required: a pool has market = "spot"',
        ),
        (
            '[fleet]\npools = [{gpu = "a100-80gb", count = 1, market = "spto"}]\n',
            "x.toml: fleet.pools[0].market: must be one of on_demand, spot, reserved "
            "(did you mean 'spot'?), got 'spto'",
        ),
        (
            '[fleet]\npools = [{gpu = "a100-80gb", count = 1}]\n[spot]\nmarket = "aws"\n',
            "x.toml: spot.market: must be one of",
        ),
        (
            '[fleet]\npools = [{gpu = "a100-80gb", count = 1}]\n'
            '[[plans]]\nname = "a"\npools = [{gpu = "a100-80gb", count = 1}]\n',
            "x.toml: fleet: give either [fleet] or [[plans]], not both",
        ),
        (
            '[[plans]]\nname = "a"\npools = [{gpu = "a100-80gb", count = 1}]\n'
            '[[plans]]\nname = "a"\npools = [{gpu = "a100-80gb", count = 1}]\n',
            "x.toml: plans[1].name: is used by another plan",
        ),
        (
            API,
            "x.toml: api.ttft_median_s: is required: no published figure for claude-haiku-4-5",
        ),
        (
            API + "ttft_median_s = 1.0\nttft_p95_s = 0.5\noutput_tokens_per_s_median = 50\n"
            "output_tokens_per_s_p5 = 20\n",
            "x.toml: api.ttft_p95_s: must be >= ttft_median_s (1.0), got 0.5",
        ),
        (
            API + "ttft_median_s = 1.0\nttft_p95_s = 2\noutput_tokens_per_s_median = 50\n"
            'output_tokens_per_s_p5 = 20\non_limit = "wait"\n[api.spill]\nmax_wait = 1\n',
            "x.toml: api.spill.max_wait: unknown key (did you mean 'max_wait_s'?)",
        ),
    ],
)
def test_hybrid_config_errors_are_located(tail: str, message: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_experiment(HEAD.format(root=ROOT) + tail, "x.toml")
    assert any(message in str(p) for p in err.value.problems), [str(p) for p in err.value.problems]


def test_hybrid_burst_experiment_parses_with_three_plans() -> None:
    from sim.config import load_experiment_spec

    spec = load_experiment_spec(ROOT / "experiments" / "hybrid_burst.toml")
    assert [p.name for p in spec.all_plans()] == ["baseline", "baseline+spot", "hybrid"]
    assert spec.api is not None and spec.api.input_usd_per_million == 1.0
    assert spec.spot is not None and not math.isnan(spec.cost.spot_price("a100-80gb"))

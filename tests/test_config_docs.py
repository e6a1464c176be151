"""docs/config.md lists every key the experiment reader accepts, and no key it does not.

The reader asks for every key it knows in each section present (`sim.config.keys_read`), so
parsing the shipped experiments plus a few variants that open every other section and kind
gives the accepted keys. A key is documented when it is the first backticked token of a table
row of docs/config.md (list indices as `[]`, per-GPU keys as `<gpu>`); a key naming a table is
documented through the keys under it.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from sim.config import keys_read, parse_experiment

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "config.md"
ENGINE = """
[engine]
model = "llama-3-8b"
max_num_seqs = 64
max_num_batched_tokens = 2048
max_model_len = 8192
"""
REST = """
[cost]
ops_usd_per_month = 0.0
[cost.gpu_usd_per_hour]
"a100-80gb" = 1.0
[cost.spot_usd_per_hour]
"a100-80gb" = 0.5
[cost.reserved_usd_per_hour]
"a100-80gb" = 0.9
[cost.billing_granularity_s]
on_demand = 1
spot = 1
reserved = 3600
[slo]
ttft_s = 1.0
tpot_s = 0.1
"""
TRACES = (ROOT / "traces").as_posix()
AUTOSCALE = (
    "{min_replicas = 0, max_replicas = 2, target = 4, signal = 'queue_depth', interval_s = 15, "
    "tolerance = 0.1, up_cooldown_s = 0, down_cooldown_s = 300, provisioning_s = 0, "
    "predictive = false}"
)
WEEKDAYS = '[{days = "mon-fri", hours = [8, 20], count = 1}]'
NIGHTS = '[{days = "all", hours = [0, 4], count = 2}]'
WEEKEND = '[{days = "weekend", hours = [10, 12], count = 0}]'
SCALED_MONTH = (
    f'{{pools = [{{name = "b", gpu = "a100-80gb", count = 1, autoscale = {AUTOSCALE}}}]}}'
)

VARIANTS = {
    # a generated workload with a burst product, a lengths table and one pool for all months
    "generated": f"""
name = "x"
seed = 1
[workload]
base_requests_per_day = 100
weekly_profile = "{TRACES}/servegen_weekly_profile.csv"
[workload.lengths]
file = "{TRACES}/azure_conv_2023.csv"
[workload.growth]
mean_monthly = 0.1
[workload.burst]
kind = "product"
layers = [{{kind = "markov", mean_calm_s = 1, mean_burst_s = 1, burst_ratio = 2}},
          {{kind = "ou", sigma = 0.1, correlation_time_s = 60}}]
{ENGINE}
[fleet]
pools = [{{name = "a", gpu = "a100-80gb", count = 1, market = "spot"}},
         {{name = "s", gpu = "a100-80gb", count = 0, schedule = {WEEKDAYS}}},
         {{name = "r", gpu = "a100-80gb", count = 1, market = "reserved"}},
         {{name = "b", gpu = "a100-80gb", count = 0, autoscale = {AUTOSCALE}}}]
[spot]
market = "aws-advisor-lt5pct"
{REST}
""",
    # a replay, and plans that give pools for all months
    "replay": f"""
name = "x"
seed = 1
[workload]
kind = "replay"
trace = "{TRACES}/azure_conv_2023.csv"
[workload.growth]
mean_monthly = 0.1
{ENGINE}
[[plans]]
name = "p"
pools = [{{name = "a", gpu = "a100-80gb", count = 1, schedule = {NIGHTS}}},
         {{name = "b", gpu = "a100-80gb", count = 0, autoscale = {AUTOSCALE}}}]
[[plans]]
name = "q"
months = [{", ".join([SCALED_MONTH] * 6)}]
{REST}
""",
    # monthly pools that move
    "moving": f"""
name = "x"
seed = 1
months = 1
[workload]
base_requests_per_day = 100
weekly_profile = "{TRACES}/servegen_weekly_profile.csv"
lengths = "{TRACES}/azure_conv_2023.csv"
[workload.growth]
mean_monthly = 0.1
{ENGINE}
[[fleet.months]]
pools = [{{name = "a", gpu = "a100-80gb", count = 1, schedule = {WEEKEND}}},
         {{name = "b", gpu = "a100-80gb", count = 1, autoscale = {AUTOSCALE}}}]
{REST}
""",
}


def accepted_keys() -> set[str]:
    keys: set[str] = set()
    for path in sorted((ROOT / "experiments").glob("*.toml")):
        keys |= keys_read(path.read_text(encoding="utf-8"), str(path))
    for name, text in VARIANTS.items():
        keys |= keys_read(text, f"{ROOT / 'experiments'}/{name}.toml")
    return {
        re.sub(r"^(cost\.(?:gpu|spot|reserved)_usd_per_hour)\..+$", r"\1.<gpu>", k) for k in keys
    }


def documented_keys() -> set[str]:
    rows = [line for line in DOC.read_text(encoding="utf-8").splitlines() if line.startswith("|")]
    keys = set()
    for row in rows:
        first = re.search(r"`([^`]+)`", row.split("|")[1])
        if first:
            keys.add(first.group(1))
    return keys


def test_the_variants_parse_as_valid_experiments() -> None:
    for name, text in VARIANTS.items():
        parse_experiment(text, f"{ROOT / 'experiments'}/{name}.toml")


def test_every_accepted_key_is_documented() -> None:
    documented = documented_keys()
    missing = sorted(
        k
        for k in accepted_keys()
        if k not in documented and not any(d.startswith((k + ".", k + "[]")) for d in documented)
    )
    assert missing == [], f"docs/config.md lacks {missing}"


def test_every_documented_key_is_accepted() -> None:
    accepted = accepted_keys()
    stale = sorted(documented_keys() - accepted)
    assert stale == [], f"docs/config.md documents keys the reader does not accept: {stale}"


@pytest.mark.parametrize("key", ["monte_carlo.replications", "fleet.months[].pools[].count"])
def test_the_doc_is_in_the_expected_format(key: str) -> None:
    assert key in documented_keys()

"""Shared prompt prefixes and vLLM's prefix cache: the hits by hand, the datasets that make
them (`sim bench --random-prefix-len`, `--dataset prefix_repetition`; inference-perf's
shared_prefix in the published-runs replay: tests/test_public_runs_replay.py) and what the
cache changes in a prediction."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sim.calibration.bench import BenchSpec, run_bench
from sim.cli import main
from sim.errors import ConfigError
from sim.workload.prefix import SharedPrefix, prefix_cache_hits, prefix_footprint_tokens

# Four requests: prompts 0, 1 (group 0), 0 again, 2 (group 1); 150 tokens each; 16-token blocks.
GROUP = np.array([0, 0, 0, 1])
PROMPT = np.array([0, 1, 0, 2])
INPUTS = np.array([150, 150, 150, 150])


def test_hits_by_hand() -> None:
    shared = SharedPrefix(prefix_tokens=100, groups=2, prompts_per_group=2)
    hits = prefix_cache_hits(shared, GROUP, PROMPT, INPUTS, 16)
    # first of its group: nothing; same group: 96 of the 100 shared tokens (6 whole blocks);
    # the same prompt again: 144 (9 blocks), the 150th token always computed; a new group: 0
    assert hits.tolist() == [0, 96, 144, 0]
    warm = prefix_cache_hits(
        SharedPrefix(100, 2, 2, warm=True), GROUP, PROMPT, INPUTS, 16
    )  # every prompt served before the run
    assert warm.tolist() == [144, 144, 144, 144]
    # a prompt as long as whole blocks still computes its last token: 160 -> 144
    assert prefix_cache_hits(shared, GROUP, PROMPT, INPUTS + 10, 16).tolist() == [0, 96, 144, 0]


def test_each_data_parallel_engine_misses_a_prefix_once() -> None:
    shared = SharedPrefix(prefix_tokens=100, groups=2, prompts_per_group=2)
    group, prompt = np.array([0, 0, 0, 0, 0]), np.array([0, 0, 1, 0, 1])
    hits = prefix_cache_hits(shared, group, prompt, np.full(5, 150), 16, caches=2)
    # prompt 0: missed twice (once per engine), then whole; prompt 1: its group's prefix is
    # known to both engines by then (two earlier requests of group 0), then missed once more
    assert hits.tolist() == [0, 0, 96, 144, 96]


def test_no_prompt_is_cached_past_its_last_token() -> None:
    shared = SharedPrefix(prefix_tokens=64)
    hits = prefix_cache_hits(shared, np.zeros(3, int), np.arange(3), np.array([64, 65, 10]), 16)
    assert hits.tolist() == [0, 64, 0]  # 64 tokens: 48 would be cached, but it is the first


def test_datasets_assign_groups_and_prompts() -> None:
    rng = np.random.default_rng(0)
    group, prompt = SharedPrefix(256, groups=10).assign(1000, rng)
    assert np.bincount(group).tolist() == [100] * 10  # vLLM's num_requests // num_prefixes each
    assert np.unique(prompt).size == 1000  # every prompt its own suffix
    group, prompt = SharedPrefix(100, groups=10, prompts_per_group=10).assign(450, rng)
    assert np.unique(prompt[:100]).size == 100  # a shuffled round of the fixed set ...
    assert (prompt[100:200] == prompt[:100]).all()  # ... sent again in the same order
    assert (group == prompt // 10).all()


def test_footprint_counts_each_prefix_once_and_repeated_prompts() -> None:
    shared = SharedPrefix(prefix_tokens=100, groups=2, prompts_per_group=2)
    # two groups' prefixes, and the rest of prompt 0 (sent twice)
    assert prefix_footprint_tokens(shared, GROUP, PROMPT, INPUTS) == 2 * 100 + 50
    assert prefix_footprint_tokens(SharedPrefix(100), GROUP, PROMPT, INPUTS) == 2 * 100


def test_the_prefix_cache_shortens_prefills_and_says_so() -> None:
    base = dict(
        model="llama-3-8b", gpu="h100-80gb", num_prompts=200, input_len=64, output_len=32,
        request_rate=4.0, prefix_len=2000, vllm_version="0.15.1",
    )  # fmt: skip
    cached = run_bench(BenchSpec(**base))  # type: ignore[arg-type]
    plain = run_bench(BenchSpec(**base, enable_prefix_caching=False))  # type: ignore[arg-type]
    assert (cached.input_lens == 2064).all()  # the prefix comes before --input-len's tokens
    assert np.median(cached.ttfts_s) < 0.5 * np.median(plain.ttfts_s)
    assert cached.ttfts_s[0] == pytest.approx(plain.ttfts_s[0])  # the first computes it all
    assert any("prefix cache: 96% of prompt tokens" in n for n in cached.notes)
    assert not any("prefix cache" in n for n in plain.notes)
    v0 = run_bench(BenchSpec(**{**base, "vllm_version": "0.6.3"}))  # type: ignore[arg-type]
    assert not any("prefix cache" in n for n in v0.notes)  # off by default in V0


def test_data_parallel_engines_each_miss_the_prefix_once() -> None:
    base = dict(model="llama-3-8b", gpu="h100-80gb", num_prompts=20, input_len=64,
                output_len=8, request_rate=4.0, prefix_len=512, vllm_version="0.15.1")  # fmt: skip
    two = run_bench(BenchSpec(**base, data_parallel_size=2))  # type: ignore[arg-type]
    assert two.cached_tokens is not None
    assert two.cached_tokens.tolist() == [0, 0] + [512] * 18
    assert any("one miss on each of 2 engines" in n for n in two.notes)


def test_prefix_options_are_checked() -> None:
    with pytest.raises(ConfigError, match="random dataset only"):
        run_bench(
            BenchSpec("llama-3-8b", "h100-80gb", prefix_len=8, input_lens=(1,), output_lens=(1,))
        )
    with pytest.raises(ConfigError, match="num_prefixes: must be >= 1"):
        run_bench(BenchSpec("llama-3-8b", "h100-80gb", num_prefixes=0))


def test_saved_result_says_which_prompt_tokens_were_cached(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    args = ["bench", "--model", "llama-3-8b", "--gpu", "h100-80gb", "--num-prompts", "4"]
    more = ["--random-prefix-len", "40", "--input-len", "8", "--vllm-version", "0.15.1"]
    res = CliRunner().invoke(main, [*args, *more, "--save-result", str(out)])
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert doc["input_lens"] == [48] * 4
    assert doc["sim_cached_tokens"] == [0, 32, 32, 32]  # two whole blocks of the 40-token prefix
    assert doc["sim_engine"]["prefix_caching"] and doc["sim_engine"]["async_scheduling"]


def test_prefix_datasets_on_the_cli() -> None:
    args = ["bench", "--model", "llama-3-8b", "--gpu", "h100-80gb", "--request-rate", "8"]
    res = CliRunner().invoke(
        main, [*args, "--dataset", "prefix_repetition", "--num-prompts", "95",
               "--prefix-repetition-num-prefixes", "10", "--prefix-repetition-output-len", "8"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "Successful requests:                     90" in res.output  # 10 x (95 // 10)
    assert "Total input tokens:                      46080" in res.output  # 90 x (256 + 256)
    assert "prefix cache:" in res.output
    # inference-perf's fixed prompt set: 2 x 3 prompts of 32 + 64 tokens, sent in turn
    shared = [*args, "--dataset", "shared_prefix", "--shared-prefix-num-groups", "2",
              "--shared-prefix-prompts-per-group", "3", "--shared-prefix-system-len", "32",
              "--input-len", "64", "--output-len", "4", "--num-prompts", "12"]  # fmt: skip
    cold = CliRunner().invoke(main, shared)
    assert cold.exit_code == 0, cold.output
    assert "Total input tokens:                      1152" in cold.output  # 12 x 96
    # the first round: 4 of 6 prompts find their group's 32 tokens; the second: 80 of 96 each
    assert f"prefix cache: {(4 * 32 + 6 * 80) / 1152:.0%} of prompt tokens" in cold.output
    warm = CliRunner().invoke(main, [*shared, "--prefix-cache-warm"])
    assert f"prefix cache: {80 / 96:.0%} of prompt tokens" in warm.output
    missing = CliRunner().invoke(main, [*args, "--dataset", "shared_prefix"])
    assert missing.exit_code == 2 and "--shared-prefix-num-groups" in missing.output
    bad = CliRunner().invoke(main, [*args, "--dataset", "sharegpt", "--random-prefix-len", "5"])
    assert bad.exit_code == 2 and "Traceback" not in bad.output
    assert "--random-prefix-len" in bad.output

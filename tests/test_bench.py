"""`sim bench`: vLLM's JSON keys and printed block, its arrival process and refusals."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from sim.calibration.bench import BenchSpec, engine_setup, run_bench
from sim.cli import main
from sim.data import sharegpt_lengths
from sim.errors import ConfigError
from sim.workload.client import send_times

# The keys `vllm bench serve --save-result --save-detailed` writes for a generation run with
# the default --percentile-metrics (ttft,tpot,itl) and --metric-percentiles (99): vLLM main,
# vllm/benchmarks/serve.py @ 009e6d4a1cd6ba3fb2a9fc00f4ec06f5297232a1 (`main`'s result_json
# head, `benchmark`'s result dict, `process_one_metric`). Left out, because a prediction has
# nothing to put there: generated_texts, queue_times, max_output_tokens_per_s, rtfx.
VLLM_KEYS = [
    "date", "endpoint_type", "backend", "label", "model_id", "tokenizer_id", "num_prompts",
    "request_rate", "burstiness", "max_concurrency",
    "duration", "completed", "failed", "total_input_tokens", "total_output_tokens",
    "request_throughput", "request_goodput", "output_throughput", "total_token_throughput",
    "input_lens", "output_lens", "ttfts", "itls", "latencies", "start_times", "errors",
    "max_concurrent_requests",
    "mean_ttft_ms", "median_ttft_ms", "std_ttft_ms", "p99_ttft_ms",
    "mean_tpot_ms", "median_tpot_ms", "std_tpot_ms", "p99_tpot_ms",
    "mean_itl_ms", "median_itl_ms", "std_itl_ms", "p99_itl_ms",
]  # fmt: skip


def small(**kw: object) -> BenchSpec:
    base: dict[str, object] = dict(
        model="llama-3-8b", gpu="h100-80gb", num_prompts=40, input_len=256, output_len=32
    )
    return BenchSpec(**(base | kw))  # type: ignore[arg-type]


def test_json_keys_equal_vllms(tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    res = CliRunner().invoke(
        main,
        ["bench", "--model", "llama-3-8b", "--gpu", "h100-80gb", "--num-prompts", "30",
         "--request-rate", "5", "--save-result", str(out)],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    doc = json.loads(out.read_text())
    assert [k for k in doc if not k.startswith("sim_")] == VLLM_KEYS
    assert doc["completed"] == 30 and len(doc["itls"]) == 30
    assert all(len(g) == n - 1 for g, n in zip(doc["itls"], doc["output_lens"], strict=True))


def test_block_as_vllm_prints_it() -> None:
    r = run_bench(small(request_rate=4.0))
    block = r.block(("ttft", "tpot", "itl", "e2el"), (50.0, 99.0, 99.9))
    lines = block.splitlines()
    assert lines[0] == "============ Serving Benchmark Result ============"
    assert lines[-1] == "=" * 50
    assert "---------------Time to First Token----------------" in lines
    assert "----------------End-to-end Latency----------------" in lines
    assert any(line.startswith("P99.9 E2EL (ms):") for line in lines)
    row = next(line for line in lines if line.startswith("Successful requests:"))
    assert row == f"{'Successful requests:':<40} 40"


def test_send_times_follow_vllm() -> None:
    rng = np.random.default_rng(0)
    assert (send_times(5, math.inf, 1.0, rng) == 0).all()
    even = send_times(4, 2.0, math.inf, rng)
    assert np.allclose(even, [0.5, 1.0, 1.5, 2.0])
    t = send_times(1000, 10.0, 0.5, rng)
    assert t[-1] == 100.0  # rescaled: the last send at num_prompts / rate
    gaps = np.diff(t)
    cv = gaps.std() / gaps.mean()
    assert 1.2 < cv < 1.6  # Gamma shape 0.5: CV = 1/sqrt(0.5) = 1.41


def test_rate_inf_scales_exactly_with_step_time() -> None:
    r = run_bench(small())
    assert (r.start_times_s == 0).all() and r.ok.all()


def test_max_concurrency_is_a_closed_loop() -> None:
    args = ["bench", "--model", "llama-3-8b", "--gpu", "h100-80gb", "--max-concurrency", "4"]
    res = CliRunner().invoke(main, [*args, "--num-prompts", "20", "--output-len", "16"])
    assert res.exit_code == 0, res.output
    assert "Maximum request concurrency:             4" in res.output
    assert "Peak concurrent requests:                4.00" in res.output


def test_vllm_version_selects_v0_and_its_defaults() -> None:
    from sim.calibration.bench import BenchSpec, engine_setup

    spec = BenchSpec("llama-3-8b", "h100-80gb", vllm_version="0.6.3", num_scheduler_steps=8)
    setup, _notes = engine_setup(spec)
    assert (setup.scheduler, setup.max_num_seqs, setup.num_scheduler_steps) == ("v0", 256, 8)
    assert setup.max_num_batched_tokens == max(setup.max_model_len, 2048)
    assert (
        engine_setup(BenchSpec("llama-3-8b", "h100-80gb", vllm_version="0.10.1"))[0].scheduler
        == "v1"
    )


def test_hugging_face_id_names_its_catalog_model() -> None:
    """`--model` takes the id `vllm bench serve --model` was given (catalog aliases): the same
    prediction as the catalog name; an unknown id is one located line."""
    tail = ["--gpu", "h100-80gb", "--num-prompts", "20", "--output-len", "16"]
    by_id = CliRunner().invoke(main, ["bench", "--model", "Qwen/Qwen3.5-9B", *tail])
    by_name = CliRunner().invoke(main, ["bench", "--model", "qwen3.5-9b", *tail])
    assert by_id.exit_code == 0, by_id.output
    assert by_id.stdout == by_name.stdout and "hybrid: 24 of 32 layers" in by_id.output
    assert "note: model Qwen/Qwen3.5-9B: the catalog's qwen3.5-9b" in by_id.stderr
    bad = CliRunner().invoke(main, ["bench", "--model", "Qwen/Qwen9-1B", *tail])
    assert bad.exit_code == 2 and "model" in bad.stderr and bad.stderr.count("\n") == 1


def test_sharegpt_dataset_samples_the_shipped_table() -> None:
    """`--dataset sharegpt` draws its requests from the shipped ShareGPT table (vLLM's filters:
    prompts of 4-1,024 tokens, outputs of 4 or more, 2,048 together; Llama-3 tokens with the
    begin-of-text token), whose means sit within 3 % of those `vllm bench serve` printed for
    1,000 ShareGPT prompts on GPUStack's runs (215.3-217.4 input tokens with the gpt-oss and
    Qwen3 tokenizers)."""
    ins, outs = (np.asarray(c) for c in sharegpt_lengths())
    assert len(ins) == len(outs) == 15_822
    assert ins.min() >= 4 and outs.min() >= 4 and ins.max() <= 1024 and (ins + outs).max() <= 2048
    assert abs(ins.mean() / 215.3 - 1) < 0.03 and abs(ins.mean() / 217.4 - 1) < 0.03
    args = ["bench", "--model", "llama-3-8b", "--gpu", "h100-80gb", "--num-prompts", "200"]
    res = CliRunner().invoke(main, [*args, "--dataset", "sharegpt", "--request-rate", "4"])
    assert res.exit_code == 0, res.output
    total_in = int(res.output.split("Total input tokens:")[1].split()[0])
    assert 0.8 < total_in / 200 / ins.mean() < 1.2  # 200 draws from the table
    again = CliRunner().invoke(main, [*args, "--dataset", "sharegpt", "--request-rate", "4"])
    assert again.output == res.output  # the same seed draws the same requests


@pytest.mark.parametrize(
    ("args", "key"),
    [
        # 47 GB of bf16 weights on a 48 GB L40S leave no KV cache
        (
            ["--model", "mistralai/Mistral-Small-24B-Instruct-2501", "--gpu", "L40S"],
            "max_model_len",
        ),
        (["--model", "llama-3-8b", "--gpu", "l4", "--max-model-len", "200000"], "max_model_len"),
        (["--model", "llama-3-8b", "--gpu", "h100", "--kv-blocks", "10"], "kv_blocks"),
        (["--model", "llama-3-8b", "--gpu", "h100", "--tp", "3"], "tp"),
        (
            ["--model", "llama-3-8b", "--gpu", "h100", "--max-num-batched-tokens", "16"],
            "engine limits",
        ),
        (
            [
                "--model",
                "llama-3-8b",
                "--gpu",
                "h100",
                "--vllm-version",
                "0.10.1",
                "--num-scheduler-steps",
                "8",
            ],
            "engine limits",
        ),
        (["--model", "Qwen/Qwen2.5-7B-Instruct", "--gpu", "h100", "--tp", "8"], "tp"),
    ],
)
def test_an_engine_vllm_would_not_start_is_one_line(args: list[str], key: str) -> None:
    """An engine vLLM refuses to start (a KV cache that cannot hold one request of
    max_model_len; a tensor-parallel size the heads do not split over; a step budget below
    max_num_seqs; multi-step on V1) is a located line and exit 2, not a traceback; the tp-2
    engine of the non-fitting model runs."""
    res = CliRunner().invoke(main, ["bench", *args, "--num-prompts", "5"])
    assert res.exit_code == 2, res.output
    errors = [line for line in res.stderr.splitlines() if not line.startswith("note: ")]
    assert len(errors) == 1 and errors[0].startswith(f"error: bench: {key}: "), res.stderr
    assert "Traceback" not in res.output
    assert ("less than max_model_len" in res.stderr) == (key in ("max_model_len", "kv_blocks"))
    if key == "max_model_len" and "L40S" in args:
        ok = CliRunner().invoke(main, ["bench", *args, "--tp", "2", "--num-prompts", "5"])
        assert ok.exit_code == 0, ok.output


def test_unknown_gpu_is_one_line() -> None:
    res = CliRunner().invoke(main, ["bench", "--model", "llama-3-8b", "--gpu", "tpu-v9"])
    assert res.exit_code == 2
    assert res.stderr.strip().count("\n") == 0 and "gpu" in res.stderr


def test_gpu_memory_utilization_sets_the_kv_estimate(tmp_path: Path) -> None:
    """`--gpu-memory-utilization` as vLLM's: less memory, fewer KV blocks (in the JSON)."""
    blocks = []
    for share in ("0.5", "0.9"):
        out = tmp_path / f"{share}.json"
        args = ["bench", "--model", "llama-3-8b", "--gpu", "a100-80gb", "--num-prompts", "5"]
        more = ["--gpu-memory-utilization", share, "--save-result", str(out)]
        res = CliRunner().invoke(main, [*args, *more])
        assert res.exit_code == 0, res.output
        blocks.append(json.loads(out.read_text())["sim_engine"]["kv_blocks"])
    assert 0 < blocks[0] < blocks[1]
    bad = CliRunner().invoke(main, [*args, "--gpu-memory-utilization", "0"])
    assert bad.exit_code == 2


def test_cpu_family_follows_version_and_async_flag() -> None:
    from sim.engine.versions import cpu_family, parse_version

    cases = [
        ("0.6.3", None, "v0"),
        ("0.6.3", True, "v0"),  # V0 has no async scheduling: the flag does nothing
        ("0.10.1", None, "v1"),
        ("0.13.0", None, "v1"),
        ("0.10.1", True, "v1-async"),
        ("0.14.0", None, "v1-async"),
        ("v0.15.1", False, "v1"),
    ]
    for text, flag, family in cases:
        assert cpu_family(parse_version(text), flag) == family, (text, flag)


def _bench_with(tmp_path: Path, overhead_factor: float | None, **kw: Any) -> Any:
    """A small open-loop bench of llama-3-8b/a100-80gb with, when `overhead_factor` is given,
    a user calibration file holding the packaged entry with its overhead scaled by it (None:
    the packaged catalog alone)."""
    from sim.calibration.profiles import render_entries
    from sim.calibration.runs import scaled_entry
    from sim.engine.catalog import load_step_time_catalog

    cal = None
    if overhead_factor is not None:
        entry = load_step_time_catalog()[("llama-3-8b", "a100-80gb", 1, "fp16")]
        path = tmp_path / f"overhead-x{overhead_factor:g}.toml"
        path.write_text(render_entries([scaled_entry(entry, (overhead_factor, 1, 1))], path.stem))
        cal = str(path)
    spec = BenchSpec(
        "llama-3-8b",
        "a100-80gb",
        input_len=300,
        output_len=40,
        request_rate=6.0,
        num_prompts=60,
        calibration=cal,
        **kw,
    )
    return run_bench(spec)


def test_version_sets_the_cpu_time_of_a_step(tmp_path: Path) -> None:
    """Async scheduling (0.14+): a step is its GPU time, the packaged entry without its
    overhead; synchronous V1: no overhead, CPU per sequence; a user's entry keeps its own."""
    from sim.engine.versions import V1_CPU_PER_SEQ_S

    for version in ("0.14.0", "0.15.1"):
        # a user entry keeps its overhead (0 here); async scheduling follows the version
        gpu_only = _bench_with(tmp_path, 0.0, vllm_version=version)
        run = _bench_with(tmp_path, None, vllm_version=version)
        assert run.e2els_s.tolist() == gpu_only.e2els_s.tolist()
        assert any("async scheduling" in n for n in run.notes)
    gpu_only = _bench_with(tmp_path, 0.0)  # no version: synchronous V1
    old = _bench_with(tmp_path, None)  # no version: the catalog's 1.84 ms overhead
    assert float(old.e2els_s.mean()) > float(gpu_only.e2els_s.mean())
    sync = _bench_with(tmp_path, None, vllm_version="0.10.1")
    same = _bench_with(tmp_path, 0.0, cpu_per_seq_s=V1_CPU_PER_SEQ_S)
    assert sync.e2els_s.tolist() == same.e2els_s.tolist()
    off = _bench_with(tmp_path, None, vllm_version="0.15.1", async_scheduling=False)
    assert off.e2els_s.tolist() == sync.e2els_s.tolist()
    # The user's entry was fitted on their server, CPU included: its overhead stays.
    mine = _bench_with(tmp_path, 1.0, vllm_version="0.15.1", async_scheduling=False)
    assert mine.e2els_s.tolist() == old.e2els_s.tolist()
    # async scheduling chooses a step's batch when the step before starts: arrivals wait longer
    mine_async = _bench_with(tmp_path, 1.0, vllm_version="0.15.1")
    assert float(mine_async.ttfts_s.mean()) > float(mine.ttfts_s.mean())


def test_async_scheduling_flag_on_the_cli() -> None:
    base = ["bench", "--model", "llama-3-8b", "--gpu", "a100-80gb", "--num-prompts", "20"]
    more = ["--request-rate", "4", "--output-len", "16", "--vllm-version", "0.10.1"]
    on = CliRunner().invoke(main, [*base, *more, "--async-scheduling"])
    off = CliRunner().invoke(main, [*base, *more])
    assert on.exit_code == 0 and off.exit_code == 0, (on.output, off.output)
    assert "async scheduling" in on.output and "synchronous engine" in off.output


def test_usual_gpu_and_checkpoint_names_name_their_catalog_rows() -> None:
    """`--gpu H100-SXM-80GB` is the catalog's h100-80gb; a quantised checkpoint id names its
    model and, unless `--dtype` says otherwise, its weights' precision; each is said on stderr."""
    tail = ["--num-prompts", "20", "--output-len", "16", "--request-rate", "4"]
    usual = CliRunner().invoke(
        main, ["bench", "--model", "llama-3.1-8b", "--gpu", "H100-SXM-80GB", *tail]
    )
    catalog = CliRunner().invoke(
        main, ["bench", "--model", "llama-3.1-8b", "--gpu", "h100-80gb", *tail]
    )
    assert usual.exit_code == 0 and usual.stdout == catalog.stdout
    assert "note: GPU H100-SXM-80GB: the catalog's h100-80gb" in usual.stderr
    fp8 = ["--gpu", "h100-80gb", "--tp", "4", *tail]
    by_id = CliRunner().invoke(
        main, ["bench", "--model", "RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", *fp8]
    )
    by_name = CliRunner().invoke(
        main, ["bench", "--model", "llama-3.3-70b", "--dtype", "fp8", *fp8]
    )
    assert by_id.exit_code == 0 and by_id.stdout == by_name.stdout
    assert "note: weights fp8, as the checkpoint's name says" in by_id.stderr
    bad = CliRunner().invoke(
        main, ["bench", "--model", "llama-3.1-8b", "--gpu", "H100 PCIe", *tail]
    )
    assert bad.exit_code == 2 and "not in the GPU catalog, got 'H100 PCIe'" in bad.stderr


def test_kv_cache_auto_is_the_models_16_bit_dtype_whatever_the_weights() -> None:
    """vLLM's `--kv-cache-dtype auto` stores KV in the model's dtype (bf16/fp16), an FP8 or AWQ
    checkpoint included; only `--kv-cache-dtype fp8` halves it."""
    base = BenchSpec(model="llama-3.1-8b", gpu="h100-80gb", dtype="fp8")
    auto = engine_setup(base)[0]
    fp8 = engine_setup(dataclasses.replace(base, kv_cache_dtype="fp8"))[0]
    awq = engine_setup(dataclasses.replace(base, dtype="int4"))[0]
    assert auto.dtype == awq.dtype == "fp16" and fp8.dtype == "fp8"
    assert auto.weight_dtype == "fp8" and awq.weight_dtype == "int4"
    assert fp8.resolved_kv_blocks() > 1.9 * auto.resolved_kv_blocks()


def test_data_parallel_engines_share_a_burst() -> None:
    """`--data-parallel-size 2`: two engines behind one front end finish a burst in about half
    the time of one (routing to the least outstanding tokens); MoE and closed loop refused."""
    spec = BenchSpec(
        model="llama-3.1-8b", gpu="h100-80gb", num_prompts=400, input_len=512, output_len=128
    )
    one = run_bench(spec)
    two = run_bench(dataclasses.replace(spec, data_parallel_size=2))
    assert one.duration_s is not None and two.duration_s is not None
    assert 1.6 < one.duration_s / two.duration_s < 2.2
    assert any("data parallel: 2 engines" in n for n in two.notes)
    assert two.result_json()["sim_data_parallel_size"] == 2
    for bad in (
        dataclasses.replace(spec, model="mixtral-8x7b", tp=2, data_parallel_size=2),
        dataclasses.replace(spec, max_concurrency=4, data_parallel_size=2),
    ):
        with pytest.raises(ConfigError, match="data_parallel_size"):
            run_bench(bad)

"""How a published vLLM run becomes a `sim bench` replay (`sim.calibration.public_runs.case_of`):
checkpoint names, the lengths the engine generates and the client counts, the KV size a server
log quotes, and which published metrics time what the simulator times. Synthetic rows: fast, no
data files needed."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import pytest

from sim.calibration.public_runs import METRIC_COLUMNS, _model, case_of
from sim.data import sharegpt_lengths
from sim.data.names import gpu_by_name

COLUMNS = (
    *("row_id", "engine", "engine_version", "model", "precision", "quantization"),
    *("kv_cache_dtype", "gpu_type", "tensor_parallel", "pipeline_parallel", "replicas"),
    *("max_num_seqs", "max_num_batched_tokens", "max_model_len", "chunked_prefill"),
    *("num_scheduler_steps", "gpu_memory_utilization", "server_flags", "workload_type"),
    *("dataset", "input_len_tokens", "output_len_tokens", "num_requests", "request_rate_qps"),
    *("concurrency", "client_tool", "client_command", "completed_requests"),
    *("total_input_tokens", "total_output_tokens", "sweep_id", "notes", "prefix_caching"),
    "benchmark_duration_s",
)


SHORT_RANDOM = {"dataset": "random", "input_len_tokens": "100", "output_len_tokens": "10"}
"""A `random` workload of 100-token prompts and 10-token outputs."""
POISSON = {"workload_type": "online_poisson", "request_rate_qps": "4", **SHORT_RANDOM}
"""That workload at a Poisson 4 req/s."""


def row(**fields: Any) -> dict[str, str]:
    """A runs.csv row: every column empty unless given (metric columns by their CSV names)."""
    base = {c: "" for c in COLUMNS}
    base.update({col: "" for col, _ in METRIC_COLUMNS.values()})
    base.update(
        row_id="T1",
        engine="vLLM",
        engine_version="0.11.0",
        model="meta-llama/Llama-2-7b-hf",
        precision="BF16",
        gpu_type="H100-SXM-80GB",
        tensor_parallel="1",
        workload_type="offline_burst",
        num_requests="100",
        request_rate_qps="inf",
        client_tool="vllm bench serve",
    )
    base.update({k: str(v) for k, v in fields.items()})
    return base


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("mistralai/Mixtral-8x7B-v0.1", ("mixtral-8x7b", "fp16")),
        ("codellama/CodeLlama-34b-Instruct-hf", ("codellama-34b", "fp16")),
        ('Qwen/Qwen2-7B-Instruct (local copy "Qwen2-7B-Instruct")', ("qwen2-7b", "fp16")),
        ("Qwen/Qwen3-8B-FP8", ("qwen3-8b", "fp8")),
        ("Qwen/Qwen3-32B-AWQ", ("qwen3-32b", "int4")),
        ("openai/gpt-oss-20b", ("gpt-oss-20b", "fp16")),
        ("RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic", ("llama-3.3-70b", "fp8")),
        ("RedHatAI/Meta-Llama-3.1-8B-Instruct-FP8-dynamic", ("llama-3.1-8b", "fp8")),
        ("neuralmagic/Meta-Llama-3.1-70B-Instruct-quantized.w8a8", ("llama-3.1-70b", "int8")),
        ("neuralmagic/Meta-Llama-3.1-8B-Instruct-quantized.w4a16", ("llama-3.1-8b", "int4")),
        ("hugging-quants/Meta-Llama-3.1-70B-Instruct-AWQ-INT4", ("llama-3.1-70b", "int4")),
        ("Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4", ("qwen2.5-7b", "int4")),
        ("Qwen/Qwen2.5-72B-Instruct-GPTQ-Int8", ("qwen2.5-72b", "int8")),
        ("google/gemma-3-27b-it", ("gemma-3-27b", "fp16")),
        ("meta-llama/CodeLlama-34b-Instruct-hf", ("codellama-34b", "fp16")),
        ("mistralai/Mistral-Nemo-Instruct-2407-FP8", ("mistral-nemo-12b", "fp8")),
        ("RedHatAI/Mistral-Small-24B-Instruct-2501-FP8-dynamic", ("mistral-small-24b", "fp8")),
        ("microsoft/phi-4", ("phi-4", "fp16")),
        ("RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic", ("llama-4-scout", "fp8")),
        ("someone/Qwen2.5-7B-Instruct-AWQ", ("qwen2.5-7b", "int4")),
        ("tiiuae/falcon-7b", (None, "fp16")),
    ],
)
def test_checkpoint_names_map_through_the_catalog_aliases(name: str, expected: tuple) -> None:
    assert _model(name) == expected


def test_random_outputs_without_ignore_eos_stop_at_eos() -> None:
    # vllm bench serve sends ignore_eos only with --ignore-eos: 500 x 200-token caps produced
    # 52,309 tokens, so the engine generated 105 per request on average, not 200
    r = row(
        dataset="random (vllm bench, seed 42)",
        input_len_tokens=4000,
        output_len_tokens=200,
        num_requests=500,
        completed_requests=500,
        total_output_tokens=52309,
        client_command="vllm bench serve --dataset-name random --random-output-len 200",
    )
    c = case_of(r)
    assert c.spec is not None
    assert (c.spec.input_len, c.spec.output_len) == (4000, 105)
    forced = case_of({**r, "client_command": r["client_command"] + " --ignore-eos"})
    assert forced.spec is not None and forced.spec.output_len == 200


def test_inference_perf_lengths_engine_cap_and_client_count() -> None:
    # ignore_eos: the engine generates the 247-token cap; the client re-tokenises the text and
    # counts 193.72 per request, which is what its output throughput divides
    notes = (
        "output_len 247 (ignore_eos true); measured prompt_len mean 591.63 / p50 591.0; "
        "output_len mean 193.72 / p50 247.0 / p99 249.0"
    )
    r = row(
        workload_type="online_constant_rate",
        dataset="inference-perf synthetic shared_prefix (codegen)",
        input_len_tokens=566,
        output_len_tokens=247,
        request_rate_qps=5.0,
        num_requests=3000,
        completed_requests=3000,
        max_num_seqs=128,
        max_num_batched_tokens=2048,
        client_tool="inference-perf (kubernetes-sigs), streaming /v1/completions",
        notes=notes,
        ttft_mean_ms=25.0,
        tpot_mean_ms=3.6,
        e2e_mean_ms=1810.0,
        output_throughput_tok_per_s=966.0,
    )
    c = case_of(r)
    assert c.spec is not None
    assert (c.spec.input_len, c.spec.output_len) == (592, 247)
    assert c.counted == pytest.approx(192 / 247, abs=0.01)  # the rounded measured mean
    # E2E - TTFT = 1785 ms is ~2 x 246 TPOTs of 3.6 ms: TPOT times stream chunks, not tokens
    assert "tpot_mean" not in c.measured and "TPOT not compared" in c.approx
    assert {"ttft_mean", "e2e_mean", "throughput"} <= set(c.measured)


@pytest.mark.parametrize("ratio", [1.1, 0.5])
def test_tpot_kept_when_it_times_tokens(ratio: float) -> None:
    # a burst's short requests decode in its crowded start, so E2E - TTFT can fall well below
    # (output - 1) x mean TPOT (0.57 in a ShareGPT-like burst replay): only "too fine" drops
    r = row(
        dataset="random",
        input_len_tokens=512,
        output_len_tokens=128,
        client_command="vllm bench serve --ignore-eos",
        ttft_mean_ms=40.0,
        tpot_mean_ms=10.0,
        e2e_mean_ms=40.0 + 127 * 10.0 * ratio,
    )
    c = case_of(r)
    assert "tpot_mean" in c.measured and "TPOT" not in c.approx


def test_kv_size_quoted_from_the_server_log_overrides_the_estimate() -> None:
    r = row(
        model='Qwen/Qwen2-7B-Instruct (local copy "Qwen2-7B-Instruct")',
        gpu_type="A100-80GB",
        dataset="random (benchmark_serving.py defaults)",
        input_len_tokens=1024,
        output_len_tokens=1024,
        max_model_len=16384,
        gpu_memory_utilization=0.25,
        server_flags="vllm serve ... --gpu-memory-utilization 0.25; KV cache 5.01 GiB = "
        "93,872 tokens (5,867 blocks of 16)",
    )
    c = case_of(r)
    assert c.spec is not None and c.spec.kv_blocks == 93872 // 16
    assert case_of({**r, "server_flags": "vllm serve"}).spec.kv_blocks is None  # type: ignore[union-attr]


def test_a_context_the_kv_estimate_cannot_hold_replays_at_the_estimate_when_requests_fit() -> None:
    """vLLM served Qwen3-32B on one H100 at its 40,960-token context; the KV estimate holds
    fewer tokens. The row replays at the estimate's context when every request fits in it, and
    says so; a row with a request longer than the estimate is not replayed."""
    qwen = {"model": "Qwen/Qwen3-32B", "dataset": "random", "output_len_tokens": "100"}
    fits = case_of(row(**qwen, input_len_tokens="1000"))
    assert fits.spec is not None and fits.reason == ""
    assert fits.spec.max_model_len is not None and 1100 <= fits.spec.max_model_len < 40960
    assert "short of the model's 40,960 that vLLM served" in fits.approx
    assert not fits.approx.startswith(";")
    long = case_of(row(**qwen, input_len_tokens="32000"))
    assert long.spec is None and long.reason.startswith("engine does not fit")
    given = case_of(row(**qwen, input_len_tokens="1000", max_model_len="40960"))
    assert given.spec is None  # a context the row sets itself is not second-guessed


@pytest.mark.parametrize(
    ("text", "version"),
    [
        ("0.11.0", "0.11"),
        ("0.15.1 (per companion design doc; journey-tracing build)", "0.15"),
        ("main at 2025-08-19 (after v0.10.1; exact commit not stated)", "0.10"),
        ("unknown", ""),
    ],
)
def test_the_version_a_row_states_or_the_release_its_main_build_follows(
    text: str, version: str
) -> None:
    assert case_of(row(engine_version=text)).version == version


@pytest.mark.parametrize(
    ("name", "gpu"),
    [
        ("H100-SXM-80GB", "h100-80gb"),
        ("H100-80GB-HBM3", "h100-80gb"),
        ("H100 PCIe", None),  # 2.0 TB/s: not the catalog's SXM part
        ("NVIDIA H100 NVL", None),
        ("H200", "h200"),
        ("A100-SXM-80GB", "a100-80gb"),
        ("A100-SXM4-40GB", "a100-40gb"),
        ("A100-PCIE-40GB", None),  # PCIe parts are not the catalog's SXM ones
        ('H100-SXM-80GB (page: "NVIDIA H100 80GB HBM3")', "h100-80gb"),
        ('A100-80GB (file names "A10080GB"; pod with 1 GPU)', "a100-80gb"),
        ("my-l40s-like", None),
        ("NVIDIA GeForce RTX 4090", "rtx-4090"),
        ("NVIDIA L40S", "l40s"),
        ("L40", None),
        ("NVIDIA L4", "l4"),
        ("A10G", "a10g"),
        ("A40", "a40"),
        ("MI300X-192GB", "mi300x"),
        ("RTX 4090", "rtx-4090"),
        ("RTX PRO 6000", "rtx-pro-6000"),
        ("B200", "b200"),
        ("T4", None),
    ],
)
def test_published_gpu_names_map_to_the_catalog(name: str, gpu: str | None) -> None:
    assert gpu_by_name(name) == gpu
    if gpu is None:
        assert case_of(row(gpu_type=name)).reason == f"GPU {name} not in the catalog"


def test_a_sharegpt_run_without_token_totals_replays_the_shipped_table() -> None:
    case = case_of(row(dataset="ShareGPT V3 (vllm bench sharegpt sampler)"))
    assert case.spec is not None and case.spec.input_lens is not None
    assert len(case.spec.input_lens) == len(sharegpt_lengths()[0])
    assert "token totals are not published" in case.approx
    assert case_of(row(dataset="sonnet")).reason.startswith("lengths unknown")
    sonnet = case_of(row(dataset="sonnet", input_len_tokens="550", output_len_tokens="150"))
    assert sonnet.spec is not None and (sonnet.spec.input_len, sonnet.spec.output_len) == (550, 150)
    assert sonnet.approx == "lengths: the nominal 550/150 of dataset 'sonnet'"


def test_gpustacks_guidellm_runs_replay_the_first_turns_they_sent() -> None:
    """GPUStack's benchmark-runner converts ShareGPT in file order, unfiltered, and guidellm sends
    the first N: a run of 1,000 requests replays the first 1,000 first turns of the shipped
    table, scaled to its realised means; a `vllm bench serve` ShareGPT run, vLLM's sampler."""
    totals = {"completed_requests": "1000", "total_input_tokens": "342058"}
    gpustack = row(
        dataset="ShareGPT V3 (guidellm sampler)",
        client_tool="guidellm (GPUStack benchmark-runner wrapper)",
        num_requests="1000",
        total_output_tokens="281412",
        **totals,
    )
    case = case_of(gpustack)
    assert case.spec is not None and case.spec.input_lens is not None
    assert case.spec.output_lens is not None
    outs = np.asarray(sharegpt_lengths("first-turns")[1][:1000], dtype=float)
    assert len(case.spec.input_lens) == 1000
    assert np.mean(case.spec.input_lens) == pytest.approx(342, rel=0.01)
    assert np.mean(case.spec.output_lens) == pytest.approx(281, rel=0.01)
    scaled = np.rint(outs * 281 / outs.mean())
    assert np.array_equal(np.maximum(scaled, 1), case.spec.output_lens)
    assert "first 1000 of ShareGPT's first turns" in case.approx
    vllm = case_of(
        row(
            dataset="ShareGPT V3 (vllm bench sharegpt sampler)",
            **totals,
            total_output_tokens="200000",
        )
    )
    assert vllm.spec is not None and vllm.spec.input_lens is not None
    assert len(vllm.spec.input_lens) == len(sharegpt_lengths()[0])
    assert "vLLM's sampler" in vllm.approx


def test_the_first_turns_table_is_what_gpustacks_runs_sent() -> None:
    """The first 1,000 first turns hold 270,010 output tokens in Llama-3's tokenizer; GPUStack's
    1,000-request runs report 281,412 in Qwen's (+4.2 %, another tokenizer on the same texts).
    Unfiltered, its prompts run past vLLM's 1,024-token cap and its outputs sit closer to
    their mean than vLLM's sample's (the shape the E2E percentiles of those runs show)."""
    ins, outs = (np.asarray(c) for c in sharegpt_lengths("first-turns"))
    assert int(outs[:1000].sum()) == 270_010
    assert 0 < 281_412 / outs[:1000].sum() - 1 < 0.05
    assert ins.max() > 1024 and ins.min() >= 1 and outs.min() >= 1
    v_out = np.asarray(sharegpt_lengths("vllm")[1])
    assert np.median(outs) / outs.mean() > 0.85  # 238 of 270
    assert np.median(v_out) / v_out.mean() < 0.7  # 130 of 199


def test_a_poisson_runs_burstiness_is_its_gamma_shape() -> None:
    spec = case_of(row(**POISSON, burstiness="0.5")).spec
    assert spec is not None and spec.request_rate == 4.0 and spec.burstiness == 0.5
    plain = case_of(row(**POISSON)).spec
    assert plain is not None and plain.burstiness == 1.0


def test_a_run_shorter_than_its_stated_rate_allows_replays_as_a_burst() -> None:
    """200 requests at a constant 1 req/s take 199 s to send; GPUStack's generation-heavy
    profile (P156) finished them in 57.74 s with all 200 in flight at its peak: sent at once.
    A run as long as its rate needs keeps the rate; a Poisson run's sends may run 5 SDs short
    (100 at 4 req/s: 24.75 s, SD 2.49 s) before it counts as sent at once."""
    constant = {"workload_type": "online_constant_rate", "request_rate_qps": "1", **SHORT_RANDOM}
    fast = case_of(row(**constant, num_requests="200", benchmark_duration_s="57.74"))
    assert fast.spec is not None and math.isinf(fast.spec.request_rate)
    assert "sent at once: 200 requests in 57.74 s" in fast.approx and fast.load >= 1.0
    slow = case_of(row(**constant, num_requests="200", benchmark_duration_s="205"))
    assert slow.spec is not None and slow.spec.request_rate == 1.0 and "at once" not in slow.approx
    assert case_of(row(**POISSON, benchmark_duration_s="13")).spec.request_rate == 4.0
    assert math.isinf(case_of(row(**POISSON, benchmark_duration_s="12")).spec.request_rate)


def test_data_parallel_engines_replay_for_dense_models_in_open_loop() -> None:
    dense = case_of(row(replicas="2", **POISSON))
    assert dense.spec is not None and dense.spec.data_parallel_size == 2
    moe = case_of(row(replicas="2", model="mistralai/Mixtral-8x7B-v0.1", tensor_parallel="2"))
    assert moe.reason.startswith("data-parallel MoE")
    closed = case_of(
        row(replicas="2", workload_type="closed_loop_concurrency", concurrency="8", **SHORT_RANDOM)
    )
    assert closed.reason.startswith("closed-loop clients over data-parallel engines")
    assert case_of(row(pipeline_parallel="2")).reason == "pipeline parallel: not modelled"


def _blis_row(stage: int) -> dict[str, object]:
    notes = (
        'workload profile "general": inference-perf shared_prefix generator, 10 groups x 10'
        " prompts/group, system prompt 100 tok + question 447 tok, output_len 248 (ignore_eos"
        f" true); stage {stage} of 2 (8.0 req/s x 600 s, 20.0 req/s x 600 s); measured"
        " prompt_len mean 574.91 / p50 575.0; output_len mean 246.08 / p50 249.0"
    )
    return row(
        workload_type="online_constant_rate",
        dataset="inference-perf synthetic shared_prefix (general)",
        input_len_tokens=547,
        output_len_tokens=248,
        request_rate_qps=8.0,
        num_requests=4800,
        completed_requests=4800,
        max_num_seqs=128,
        max_num_batched_tokens=2048,
        prefix_caching="on (per design doc)",
        client_tool="inference-perf (kubernetes-sigs), streaming /v1/completions",
        notes=notes,
        ttft_mean_ms=57.0,
        e2e_mean_ms=4678.0,
    )


@pytest.mark.parametrize("stage", [0, 1])
def test_inference_perf_shared_prefix_rows_replay_their_prompt_set(stage: int) -> None:
    c = case_of(_blis_row(stage))
    s = c.spec
    assert s is not None
    # 575 tokens as served; the system prompt grown in the same proportion: 100 x 575 / 547
    assert (s.prefix_len, s.input_len, s.num_prefixes, s.prompts_per_prefix) == (105, 470, 10, 10)
    assert s.prefix_cache_warm is bool(stage) and s.enable_prefix_caching is True
    assert s.num_prompts == 4800  # the whole run: its cold first round keeps its share
    assert "shared prefix: 10 x 10 prompts" in c.approx

"""`sim bench`: predict what `vllm bench serve` would report (sim/calibration/bench.py)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from pathlib import Path

import click

from sim.calibration.bench import (
    DEFAULT_PERCENTILE_METRICS,
    PERCENTILE_METRICS,
    BenchSpec,
    read_names,
    run_bench,
)
from sim.cli.common import SafePath, user_errors
from sim.data import DTYPE_BYTES, sharegpt_lengths
from sim.errors import TraceError
from sim.traces import RequestTrace, read_trace


def _dataset_lengths(path: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    trace = read_trace(path)
    if not isinstance(trace, RequestTrace):
        raise TraceError(path, None, None, trace.format, "a rate trace has no token lengths")
    return (
        tuple(int(v) for v in trace.frame["input_tokens"]),
        tuple(int(v) for v in trace.frame["output_tokens"]),
    )


@click.command()
@click.option(
    "--model",
    required=True,
    help="Catalog model or a checkpoint id, e.g. llama-3.1-8b, meta-llama/Llama-3.1-8B-Instruct,"
    " RedHatAI/Llama-3.3-70B-Instruct-FP8-dynamic.",
)
@click.option("--gpu", required=True, help="Catalog GPU or its usual name, e.g. h100-80gb, H100.")
@click.option("--tp", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--data-parallel-size",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Engines of --tp GPUs each behind one front end (dense models, open loop).",
)
@click.option(
    "--dtype",
    type=click.Choice(tuple(DTYPE_BYTES)),
    help="The weights' precision [default: the checkpoint name's quantisation, else fp16].",
)
@click.option(
    "--kv-cache-dtype",
    type=click.Choice(("auto", "fp16", "bf16", "fp8")),
    default="auto",
    show_default=True,
    help="auto = the model's 16-bit dtype, as vLLM's.",
)
@click.option(
    "--dataset",
    default="random",
    show_default=True,
    help="random; sharegpt (ShareGPT V3's lengths as vLLM samples them, Llama-3 tokens:"
    " sim/data/SOURCE.md); prefix_repetition (vLLM's: prompts sharing one of a few prefixes);"
    " shared_prefix (inference-perf's: a fixed prompt set sent in turn); or a request trace"
    " FILE whose (input, output) lengths are sampled.",
)
@click.option(
    "--random-prefix-len",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="random: tokens of one prefix every prompt starts with, before its --input-len.",
)
@click.option("--prefix-repetition-prefix-len", type=click.IntRange(min=0), default=256)
@click.option("--prefix-repetition-suffix-len", type=click.IntRange(min=1), default=256)
@click.option("--prefix-repetition-num-prefixes", type=click.IntRange(min=1), default=10)
@click.option("--prefix-repetition-output-len", type=click.IntRange(min=1), default=128)
@click.option(
    "--shared-prefix-num-groups",
    type=click.IntRange(min=1),
    help="shared_prefix: system prompts (inference-perf's num_groups).",
)
@click.option(
    "--shared-prefix-prompts-per-group",
    type=click.IntRange(min=1),
    help="shared_prefix: questions per system prompt (num_prompts_per_group); the prompt set"
    " is sent in turn, so a prompt comes back every groups x prompts requests.",
)
@click.option(
    "--shared-prefix-system-len",
    type=click.IntRange(min=1),
    help="shared_prefix: tokens of each system prompt, before the --input-len of a question.",
)
@click.option(
    "--prefix-cache-warm",
    is_flag=True,
    help="The server has served these prompts before (an earlier stage of the same"
    " benchmark): every shared prefix and fixed prompt is cached from the start.",
)
@click.option("--input-len", type=click.IntRange(min=1), default=1024, show_default=True)
@click.option("--output-len", type=click.IntRange(min=1), default=128, show_default=True)
@click.option("--range-ratio", type=click.FloatRange(0, 1, max_open=True), default=0.0)
@click.option("--request-rate", type=float, default=math.inf, help="req/s [default: inf].")
@click.option("--burstiness", type=float, default=1.0, show_default=True)
@click.option("--num-prompts", type=click.IntRange(min=1), default=1000, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--max-num-seqs", type=click.IntRange(min=1), help="[default: vLLM's for the GPU]")
@click.option("--max-num-batched-tokens", type=click.IntRange(min=1), help="[default: vLLM's]")
@click.option("--max-model-len", type=click.IntRange(min=2), help="[default: the model's]")
@click.option("--kv-blocks", type=click.IntRange(min=1), help="vLLM's num_gpu_blocks.")
@click.option(
    "--gpu-memory-utilization",
    type=click.FloatRange(0, 1, min_open=True),
    default=0.9,
    show_default=True,
    help="vLLM's share of GPU memory for weights, activations and KV (the KV estimate).",
)
@click.option(
    "--max-concurrency",
    type=click.IntRange(min=1),
    help="Closed-loop clients (vLLM's semaphore); each request's clock starts when it is sent.",
)
@click.option(
    "--vllm-version",
    help="The server's vLLM (e.g. 0.10.1): V1 (>= 0.8) or V0 scheduler, defaults, CPU time.",
)
@click.option(
    "--num-scheduler-steps",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="V0 (vLLM 0.6-0.7) multi-step scheduling: decode groups of this many steps, whose "
    "tokens reach the client at the group's end and whose CPU time is paid once.",
)
@click.option("--enable-chunked-prefill", is_flag=True, help="V0 only (V1 always chunks).")
@click.option(
    "--enable-prefix-caching/--no-enable-prefix-caching",
    default=None,
    help="The server's automatic prefix caching: shared prompt prefixes are computed once"
    "  [default: on for V1, off for V0].",
)
@click.option(
    "--async-scheduling/--no-async-scheduling",
    default=None,
    help="V1: the server's async scheduling (CPU overlapped with the GPU)  "
    "[default: on from vLLM 0.14].",
)
@click.option(
    "--timing",
    type=click.Choice(("engine", "client")),
    default="engine",
    show_default=True,
    help="client adds the HTTP/tokenisation time client-side benchmarks include.",
)
@click.option(
    "--percentile-metrics",
    default=",".join(DEFAULT_PERCENTILE_METRICS),
    show_default=True,
    help="Comma-separated: ttft, tpot, itl, e2el.",
)
@click.option("--metric-percentiles", default="99", show_default=True)
@click.option(
    "--calibration",
    type=SafePath(dir_okay=False, path_type=Path),
    help="Your step-time entries (TOML from `sim calibrate runs --out`) over the catalog.",
)
@click.option("--save-result", type=SafePath(dir_okay=False, path_type=Path))
@user_errors
def bench(
    model: str,
    gpu: str,
    tp: int,
    data_parallel_size: int,
    dtype: str | None,
    kv_cache_dtype: str,
    dataset: str,
    random_prefix_len: int,
    prefix_repetition_prefix_len: int,
    prefix_repetition_suffix_len: int,
    prefix_repetition_num_prefixes: int,
    prefix_repetition_output_len: int,
    shared_prefix_num_groups: int | None,
    shared_prefix_prompts_per_group: int | None,
    shared_prefix_system_len: int | None,
    prefix_cache_warm: bool,
    input_len: int,
    output_len: int,
    range_ratio: float,
    request_rate: float,
    burstiness: float,
    num_prompts: int,
    seed: int,
    max_num_seqs: int | None,
    max_num_batched_tokens: int | None,
    max_model_len: int | None,
    kv_blocks: int | None,
    gpu_memory_utilization: float,
    max_concurrency: int | None,
    vllm_version: str | None,
    num_scheduler_steps: int,
    enable_chunked_prefill: bool,
    enable_prefix_caching: bool | None,
    async_scheduling: bool | None,
    timing: str,
    percentile_metrics: str,
    metric_percentiles: str,
    calibration: Path | None,
    save_result: Path | None,
) -> None:
    """Predict what `vllm bench serve` would report for MODEL on GPU."""
    if not request_rate > 0:
        raise click.BadParameter("must be > 0 (or inf)", param_hint="--request-rate")
    if not burstiness > 0:
        raise click.BadParameter("must be > 0", param_hint="--burstiness")
    metrics = tuple(m.strip() for m in percentile_metrics.split(",") if m.strip())
    if not metrics or set(metrics) - set(PERCENTILE_METRICS):
        raise click.BadParameter(
            f"choose from {', '.join(PERCENTILE_METRICS)}", param_hint="--percentile-metrics"
        )
    try:
        percentiles = tuple(float(p) for p in metric_percentiles.split(","))
    except ValueError:
        raise click.BadParameter("numbers in [0, 100]", param_hint="--metric-percentiles") from None
    if not all(0 <= p <= 100 for p in percentiles):
        raise click.BadParameter("numbers in [0, 100]", param_hint="--metric-percentiles")
    lens: tuple[tuple[int, ...], tuple[int, ...]] | tuple[None, None] = (None, None)
    if random_prefix_len and dataset != "random":
        raise click.BadParameter("applies to --dataset random", param_hint="--random-prefix-len")
    prefix_len, num_prefixes, per_prefix = random_prefix_len, 1, 0
    if dataset == "sharegpt":  # the shipped table: vLLM's filters, Llama-3 token counts
        lens = sharegpt_lengths()
    elif dataset == "prefix_repetition":  # vLLM's PrefixRepetitionRandomDataset
        prefix_len, num_prefixes = prefix_repetition_prefix_len, prefix_repetition_num_prefixes
        input_len, output_len = prefix_repetition_suffix_len, prefix_repetition_output_len
        range_ratio = 0.0
    elif dataset == "shared_prefix":  # inference-perf's SharedPrefixDataGenerator
        given = (
            shared_prefix_num_groups,
            shared_prefix_prompts_per_group,
            shared_prefix_system_len,
        )
        if None in given:
            raise click.BadParameter(
                "needs --shared-prefix-num-groups, --shared-prefix-prompts-per-group and"
                " --shared-prefix-system-len",
                param_hint="--dataset shared_prefix",
            )
        num_prefixes, per_prefix, prefix_len = (int(x or 0) for x in given)
        range_ratio = 0.0
    elif dataset != "random":
        lens = _dataset_lengths(dataset)
    model, gpu, weights, name_notes = read_names(
        model, gpu, dtype, None if calibration is None else str(calibration)
    )
    for note in name_notes:
        click.echo(f"note: {note}", err=True)
    spec = BenchSpec(
        model=model,
        gpu=gpu,
        tp=tp,
        data_parallel_size=data_parallel_size,
        dtype=weights,
        kv_cache_dtype=None if kv_cache_dtype == "auto" else kv_cache_dtype,
        input_len=input_len,
        output_len=output_len,
        range_ratio=range_ratio,
        request_rate=request_rate,
        burstiness=burstiness,
        num_prompts=num_prompts,
        seed=seed,
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        max_model_len=max_model_len,
        kv_blocks=kv_blocks,
        gpu_memory_utilization=gpu_memory_utilization,
        calibration=None if calibration is None else str(calibration),
        input_lens=lens[0],
        output_lens=lens[1],
        max_concurrency=max_concurrency,
        vllm_version=vllm_version,
        chunked_prefill=enable_chunked_prefill or None,
        async_scheduling=async_scheduling,
        num_scheduler_steps=num_scheduler_steps,
        timing=timing,
        enable_prefix_caching=enable_prefix_caching,
        prefix_len=prefix_len,
        num_prefixes=num_prefixes,
        prompts_per_prefix=per_prefix,
        prefix_cache_warm=prefix_cache_warm,
    )
    result = run_bench(spec)
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"step times: {result.step_time.provenance}: {result.step_time.source}", err=True)
    click.echo(result.block(metrics, percentiles))
    if save_result is not None:
        doc = result.result_json(metrics, percentiles, datetime.now().strftime("%Y%m%d-%H%M%S"))
        save_result.parent.mkdir(parents=True, exist_ok=True)
        tmp = save_result.with_name(save_result.name + ".tmp")
        tmp.write_text(json.dumps(doc), encoding="utf-8")
        tmp.replace(save_result)
        click.echo(f"wrote {save_result}", err=True)

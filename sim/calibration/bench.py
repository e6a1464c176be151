"""`sim bench`: what `vllm bench serve` would report for a model on a GPU, predicted by replay.

`run_bench(BenchSpec(...)) -> BenchResult` (the options and the engine they make:
`sim.calibration.bench_setup`) draws the benchmark's requests as vLLM's client does,
pushes them through `sim.model.simulate` (one replica, the engine's limits and KV blocks from
`sim.calibration.measured.EngineSetup`, step times from `sim.engine.catalog.resolve_step_time`
with the user's calibration file when given) and computes vLLM's statistics.

What follows vLLM (`vllm/benchmarks/serve.py` and `vllm/benchmarks/datasets.py`, vLLM main at
commit 009e6d4a1cd6ba3fb2a9fc00f4ec06f5297232a1, read through the search tool):

* arrivals and `random` dataset lengths: `sim.workload.client` (`send_times`,
  `random_lengths`); every request generates exactly its output length, as with
  `--ignore-eos` (vLLM sends `ignore_eos` only with that flag: without it a real model may stop
  early at EOS, which this prediction does not model — give the realised lengths as a dataset).
* prompts that share a prefix (`--random-prefix-len`, the `prefix_repetition` dataset, and
  inference-perf's fixed `shared_prefix` prompt set) and vLLM's prefix cache, on by default in
  V1 (`sim.workload.prefix`: a request prefills only what follows the longest prefix an
  earlier one sent, in whole KV blocks; the engines start it with the rest computed);
* statistics (`calculate_metrics`): TTFT, TPOT = (E2E − TTFT)/(output − 1) for outputs > 1,
  ITL = every gap between consecutive tokens, E2EL; mean, median, std and `np.percentile` at
  `--metric-percentiles` (default 99), reported in ms for `--percentile-metrics` (default
  "ttft,tpot,itl"); throughputs over the benchmark duration (first send to last completion).

What differs (documented, not hidden):

* ITLs: the engine records each request's first and last token, and its decode steps within a
  request are not stored one by one, so each request's ITL list is its (E2E − TTFT) spread
  uniformly over output − 1 gaps. Means and TPOT are exact; ITL percentiles are those of
  per-request mean gaps (narrower than a real run's, which also has per-step jitter).
* Timing: `timing = "engine"` (default) has no HTTP, tokenisation or streaming time;
  "client" adds the fitted client time of the version family to every TTFT and E2E
  (`sim.engine.versions.CLIENT_S`; DESIGN §13).
* `--max-concurrency`: closed-loop clients (`sim.engine.closed_loop`): vLLM's semaphore, with
  each request's clock started when it is sent; with a finite rate the sends also wait for
  their scheduled time.
* `--vllm-version`: V1 (>= 0.8) or V0 (0.5-0.7: prefill-first scheduler, `num_scheduler_steps`,
  V0's default limits; run on the reference engine) and the CPU time of a step
  (`sim.engine.versions.cpu_family`): V0 keeps the catalog's per-step overhead; synchronous V1
  (0.8-0.13) replaces it by a CPU time per sequence; async scheduling (the default from 0.14,
  or `--async-scheduling`) overlaps the CPU with the GPU, so a step is its GPU time, and
  chooses a step's batch when the step before starts (`EngineLimits.async_scheduling`). An entry
  from the user's calibration file keeps its own overhead (it was fitted on their server).
  Without a version: V1 with the catalog's overhead and no CPU term (as before this option).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from sim.calibration.bench_setup import (
    BenchSpec,
    engine_refusal,
    engine_setup,
    read_names,
    vllm_default_limits,
)
from sim.calibration.measured import EngineSetup, MeasuredRun
from sim.engine import RequestLog
from sim.engine.catalog import (
    ResolvedStepTime,
    load_user_calibration,
    resolve_step_time,
)
from sim.engine.closed_loop import run_closed_loop
from sim.engine.steptime import StepTimeModel
from sim.errors import ConfigError
from sim.model import FleetPhase, ReplicaSpec, simulate
from sim.workload.client import random_lengths, send_times
from sim.workload.prefix import SharedPrefix, prefix_cache_hits, prefix_footprint_tokens

__all__ = [
    "BenchResult",
    "BenchSpec",
    "engine_setup",
    "read_names",
    "run_bench",
    "vllm_default_limits",
]
"""The bench API; `BenchSpec`, `engine_setup`, `read_names` and `vllm_default_limits` live in
`sim.calibration.bench_setup`."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

VLLM_SOURCE = "vllm/benchmarks/serve.py @ 009e6d4a1cd6ba3fb2a9fc00f4ec06f5297232a1"
PERCENTILE_METRICS = ("ttft", "tpot", "itl", "e2el")
DEFAULT_PERCENTILE_METRICS = ("ttft", "tpot", "itl")  # vLLM's default for generation
DEFAULT_METRIC_PERCENTILES = (99.0,)  # vLLM's `--metric-percentiles` default "99"
METRIC_HEADERS = {
    "ttft": ("TTFT", "Time to First Token"),
    "tpot": ("TPOT", "Time per Output Token (excl. 1st token)"),
    "itl": ("ITL", "Inter-token Latency"),
    "e2el": ("E2EL", "End-to-end Latency"),
}


@dataclass(frozen=True, eq=False)
class BenchResult:
    """A predicted `vllm bench serve` run: per request (in send order) its lengths, send time,
    TTFT and E2E latency (s; NaN when the engine rejected it: longer than max_model_len), its
    queue time (send to first scheduled, s: vLLM's queued interval, engine side, without the
    client time), and the engine and step times it ran on."""

    spec: BenchSpec
    engine: EngineSetup
    step_time: ResolvedStepTime
    start_times_s: FloatArray = field(repr=False)
    input_lens: IntArray = field(repr=False)
    output_lens: IntArray = field(repr=False)
    ttfts_s: FloatArray = field(repr=False)
    e2els_s: FloatArray = field(repr=False)
    queues_s: FloatArray = field(repr=False)
    notes: tuple[str, ...] = ()
    cached_tokens: IntArray | None = field(default=None, repr=False)  # prefix-cache hits

    @property
    def ok(self) -> npt.NDArray[np.bool_]:
        return np.isfinite(self.e2els_s)

    @property
    def duration_s(self) -> float:
        """First send (t = 0) to the last completion, as vLLM's `benchmark_duration`."""
        done = self.start_times_s + self.e2els_s
        return float(np.nanmax(done)) if self.ok.any() else 0.0

    def itls_s(self) -> list[list[float]]:
        """Per request, its output − 1 inter-token gaps (uniform within a request; see module)."""
        out = []
        for ok, n, ttft, e2e in zip(
            self.ok, self.output_lens, self.ttfts_s, self.e2els_s, strict=True
        ):
            out.append([(e2e - ttft) / (n - 1)] * (int(n) - 1) if ok and n > 1 else [])
        return out

    def measured_run(self, name: str = "sim-bench") -> MeasuredRun:
        """The completed requests as a measured run (for calibration round trips)."""
        ok = self.ok
        return MeasuredRun(
            name=name,
            file=name,
            arrival_s=self.start_times_s[ok],
            input_tokens=self.input_lens[ok],
            output_tokens=self.output_lens[ok],
            ttft_s=self.ttfts_s[ok],
            e2e_s=self.e2els_s[ok],
            cached_tokens=None if self.cached_tokens is None else self.cached_tokens[ok],
        )

    def metrics(
        self,
        percentile_metrics: Sequence[str] = DEFAULT_PERCENTILE_METRICS,
        metric_percentiles: Sequence[float] = DEFAULT_METRIC_PERCENTILES,
    ) -> dict[str, Any]:
        """vLLM's result fields this prediction fills (`VLLM_SOURCE`), in vLLM's order."""
        ok = self.ok
        dur = self.duration_s or float("nan")
        n_in = int(self.input_lens[ok].sum())
        n_out = int(self.output_lens[ok].sum())
        itls = self.itls_s()
        ttft = self.ttfts_s[ok]
        e2e = self.e2els_s[ok]
        out_ok = self.output_lens[ok]
        multi = out_ok > 1
        values = {
            "ttft": ttft,
            "tpot": (e2e[multi] - ttft[multi]) / (out_ok[multi] - 1),
            "itl": np.array([g for gaps in itls for g in gaps]),
            "e2el": e2e,
        }
        result: dict[str, Any] = {
            "duration": self.duration_s,
            "completed": int(ok.sum()),
            "failed": int((~ok).sum()),
            "total_input_tokens": n_in,
            "total_output_tokens": n_out,
            "request_throughput": int(ok.sum()) / dur,
            "request_goodput": None,
            "output_throughput": n_out / dur,
            "total_token_throughput": (n_in + n_out) / dur,
            "input_lens": [int(v) for v in self.input_lens],
            "output_lens": [int(v) if k else 0 for v, k in zip(self.output_lens, ok, strict=True)],
            "ttfts": [float(v) if k else 0.0 for v, k in zip(self.ttfts_s, ok, strict=True)],
            "itls": itls,
            "latencies": [float(v) if k else 0.0 for v, k in zip(self.e2els_s, ok, strict=True)],
            "start_times": [float(v) for v in self.start_times_s],
            "errors": ["" if k else "rejected: longer than max_model_len" for k in ok],
            "max_concurrent_requests": _peak(self.start_times_s[ok], self.start_times_s[ok] + e2e),
        }
        for name in percentile_metrics:
            v = values[name]
            v = v if v.size else np.zeros(1)
            result[f"mean_{name}_ms"] = float(np.mean(v)) * 1e3
            result[f"median_{name}_ms"] = float(np.median(v)) * 1e3
            result[f"std_{name}_ms"] = float(np.std(v)) * 1e3
            for p in metric_percentiles:
                result[f"p{_p_word(p)}_{name}_ms"] = float(np.percentile(v, p)) * 1e3
        return result

    def result_json(
        self,
        percentile_metrics: Sequence[str] = DEFAULT_PERCENTILE_METRICS,
        metric_percentiles: Sequence[float] = DEFAULT_METRIC_PERCENTILES,
        date: str = "",
    ) -> dict[str, Any]:
        """What `vllm bench serve --save-result --save-detailed` writes (the fields it fills),
        plus `sim_*` keys naming the prediction's engine and step-time source."""
        s = self.spec
        head: dict[str, Any] = {
            "date": date,
            "endpoint_type": "sim",
            "backend": "sim",
            "label": "sim-bench",
            "model_id": s.model,
            "tokenizer_id": s.model,
            "num_prompts": s.num_prompts,
            "request_rate": "inf" if math.isinf(s.request_rate) else s.request_rate,
            "burstiness": s.burstiness,
            "max_concurrency": s.max_concurrency,
        }
        body = self.metrics(percentile_metrics, metric_percentiles)
        e = self.engine
        extra = {
            "sim_gpu": s.gpu,
            "sim_tp": s.tp,
            "sim_data_parallel_size": s.data_parallel_size,
            "sim_engine": {
                "max_num_seqs": e.max_num_seqs,
                "max_num_batched_tokens": e.max_num_batched_tokens,
                "max_model_len": e.max_model_len,
                "kv_blocks": e.resolved_kv_blocks(),
                "block_size": e.block_size,
                "async_scheduling": e.async_scheduling,
                "prefix_caching": s.prefix_caching,
            },
            "sim_step_time": self.step_time.provenance,
            "sim_step_time_source": self.step_time.source,
            "sim_notes": list(self.notes),
        }
        if self.cached_tokens is not None:  # per request, as input_lens: the prefix-cache hit
            extra["sim_cached_tokens"] = self.cached_tokens.tolist()
        return {**head, **body, **extra}

    def block(
        self,
        percentile_metrics: Sequence[str] = DEFAULT_PERCENTILE_METRICS,
        metric_percentiles: Sequence[float] = DEFAULT_METRIC_PERCENTILES,
    ) -> str:
        """vLLM's printed "Serving Benchmark Result" block, same labels and widths."""
        r = self.metrics(percentile_metrics, metric_percentiles)
        lines = ["{s:{c}^{n}}".format(s=" Serving Benchmark Result ", n=50, c="=")]

        def row(label: str, value: Any, fmt: str = "<10") -> None:
            lines.append(("{:<40} {:" + fmt + "}").format(label, value))

        row("Successful requests:", r["completed"])
        row("Failed requests:", r["failed"])
        if self.spec.max_concurrency is not None:
            row("Maximum request concurrency:", self.spec.max_concurrency)
        if not math.isinf(self.spec.request_rate):
            row("Request rate configured (RPS):", self.spec.request_rate, "<10.2f")
        row("Benchmark duration (s):", r["duration"], "<10.2f")
        row("Total input tokens:", r["total_input_tokens"])
        row("Total generated tokens:", r["total_output_tokens"])
        row("Request throughput (req/s):", r["request_throughput"], "<10.2f")
        row("Output token throughput (tok/s):", r["output_throughput"], "<10.2f")
        row("Peak concurrent requests:", float(r["max_concurrent_requests"]), "<10.2f")
        row("Total token throughput (tok/s):", r["total_token_throughput"], "<10.2f")
        for name in PERCENTILE_METRICS:
            if name not in percentile_metrics:
                continue
            label, header = METRIC_HEADERS[name]
            lines.append("{s:{c}^{n}}".format(s=header, n=50, c="-"))
            row(f"Mean {label} (ms):", r[f"mean_{name}_ms"], "<10.2f")
            row(f"Median {label} (ms):", r[f"median_{name}_ms"], "<10.2f")
            for p in metric_percentiles:
                row(f"P{_p_word(p)} {label} (ms):", r[f"p{_p_word(p)}_{name}_ms"], "<10.2f")
        lines.append("=" * 50)
        return "\n".join(line.rstrip() for line in lines)


def _prefix_note(
    setup: EngineSetup,
    shared: SharedPrefix,
    group: IntArray,
    prompt: IntArray,
    input_lens: IntArray,
    cached: IntArray,
    engines: int,
) -> str:
    """The run's prefix-cache hits in words, and whether the cache can keep what they need."""
    share = float(cached.sum()) / max(float(input_lens.sum()), 1.0)
    need = prefix_footprint_tokens(shared, group, prompt, input_lens)
    held = setup.resolved_kv_blocks() * setup.block_size
    fits = (
        f"they need {need:,} tokens kept, of {held:,} in the KV cache"
        if need <= held
        else f"OVERSTATED: they need {need:,} tokens kept, more than the KV cache's {held:,}"
        " (vLLM would evict some)"
    )
    when = "once an earlier request sent it"
    if engines > 1:
        when = f"from its {engines + 1}th request on (one miss on each of {engines} engines)"
    return (
        f"prefix cache: {share:.0%} of prompt tokens found cached (shared prefixes of"
        f" {shared.prefix_tokens} tokens in {shared.groups} group(s); a prefix counts as cached"
        f" {when}, nothing evicted: {fits})"
    )


def _peak(start: FloatArray, end: FloatArray) -> int:
    if start.size == 0:
        return 0
    events = np.concatenate([start, end])
    delta = np.concatenate([np.ones(start.size), -np.ones(end.size)])
    order = np.lexsort((delta, events))  # departures first at equal times (half-open)
    return int(np.max(np.cumsum(delta[order])))


def _p_word(p: float) -> str:
    return str(int(p)) if int(p) == p else str(p)


def run_bench(spec: BenchSpec) -> BenchResult:
    """Predict one `vllm bench serve` run (module docstring). Deterministic in `spec.seed`."""
    if spec.calibration is not None:
        load_user_calibration(spec.calibration)  # a bad file fails before anything runs
    setup, notes = engine_setup(spec)
    if (problem := engine_refusal(setup)) is not None:
        raise ConfigError([problem])
    step = resolve_step_time(
        setup.model,
        setup.gpu,
        setup.tp,
        setup.dtype,
        setup.weight_dtype,
        calibration=spec.calibration,
    )
    if not step.calibrated:
        notes.append(
            f"uncalibrated: {setup.model}/{setup.gpu}/tp{setup.tp}/"
            f"{setup.weight_dtype or setup.dtype} step times "
            "come from the roofline of the specs"
        )
    rng = np.random.default_rng(spec.seed)
    n = spec.num_prompts
    shared = spec.shared_prefix
    if shared.groups > 1 and shared.prompts_per_group == 0 and n % shared.groups:
        n -= n % shared.groups
        notes.append(
            f"{n} requests: {shared.groups} prefixes x {n // shared.groups} prompts each, as"
            " vLLM's prefix_repetition dataset makes them (num_prompts // num_prefixes each)"
        )
    group, prompt = np.zeros(n, dtype=np.int64), np.arange(n, dtype=np.int64)  # all distinct
    if spec.input_lens is not None and spec.output_lens is not None:
        pick = rng.choice(len(spec.input_lens), size=n, replace=n > len(spec.input_lens))
        input_lens = np.asarray(spec.input_lens, dtype=np.int64)[pick]
        output_lens = np.asarray(spec.output_lens, dtype=np.int64)[pick]
    else:
        fixed = shared.prompts_per_group > 0  # a fixed prompt set: one length pair per prompt
        distinct = shared.groups * shared.prompts_per_group if fixed else n
        ins = random_lengths(distinct, spec.input_len, spec.range_ratio, rng)
        outs = random_lengths(distinct, spec.output_len, spec.range_ratio, rng)
        if shared.prefix_tokens > 0 or fixed:  # (no draw otherwise: plain runs as before)
            group, prompt = shared.assign(n, rng)
        input_lens = shared.prefix_tokens + ins[prompt]
        output_lens = outs[prompt]
    cached = None
    if spec.prefix_caching and (shared.prefix_tokens > 0 or shared.prompts_per_group > 0):
        dp = spec.data_parallel_size
        cached = prefix_cache_hits(shared, group, prompt, input_lens, setup.block_size, dp)
        notes.append(_prefix_note(setup, shared, group, prompt, input_lens, cached, dp))
    start = send_times(n, spec.request_rate, spec.burstiness, rng)
    model = spec.step_model(step.step, step.user_entry)
    if spec.max_concurrency is not None:
        start, ttft, e2e, queue = closed_loop_requests(
            setup, model, spec.max_concurrency, start, input_lens, output_lens, cached
        )
    else:
        ttft, e2e, queue = simulate_requests(
            setup, model, start, input_lens, output_lens, spec.data_parallel_size, cached
        )
    client = spec.client_s()
    if client:
        ttft = ttft + client
        e2e = e2e + client
    return BenchResult(
        spec=spec,
        engine=setup,
        step_time=step,
        start_times_s=start,
        input_lens=input_lens,
        output_lens=output_lens,
        ttfts_s=ttft,
        e2els_s=e2e,
        queues_s=queue,
        cached_tokens=cached,
        notes=tuple(notes),
    )


def closed_loop_requests(
    setup: EngineSetup,
    step: StepTimeModel,
    concurrency: int,
    ready_s: FloatArray,
    input_lens: IntArray,
    output_lens: IntArray,
    cached: IntArray | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """(send time, TTFT, E2E, queue time) per request from `concurrency` closed-loop clients
    sending in order, each request not before its `ready_s` (NaN latencies: rejected);
    `cached`: each request's prefix-cache hit in tokens (`RequestLog.cached_tokens`)."""
    hits = None if cached is None else cached.tolist()
    log = RequestLog(ready_s.tolist(), input_lens.tolist(), output_lens.tolist(), hits)
    run_closed_loop(log, setup.limits(), step, concurrency, ready_s=ready_s.tolist())
    sent = np.asarray(log.arrival_s)
    ttft = np.asarray(log.first_token_s, dtype=np.float64) - sent
    e2e = np.asarray(log.finish_s, dtype=np.float64) - sent
    queue = np.asarray(log.first_scheduled_s, dtype=np.float64) - sent
    return sent, ttft, e2e, queue


def simulate_requests(
    setup: EngineSetup,
    step: StepTimeModel,
    arrival_s: FloatArray,
    input_lens: IntArray,
    output_lens: IntArray,
    replicas: int = 1,
    cached: IntArray | None = None,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(TTFT, E2E, queue time) per request (NaN: rejected), in the given order, on `replicas`
    identical engines with join-shortest-queue routing (`sim.model.simulate`); `cached`:
    each request's prefix-cache hit in tokens (`RequestLog.cached_tokens`)."""
    order = np.argsort(arrival_s, kind="stable")
    log = RequestLog(
        arrival_s[order].tolist(),
        input_lens[order].tolist(),
        output_lens[order].tolist(),
        None if cached is None else cached[order].tolist(),
    )
    spec = ReplicaSpec("bench", setup.gpu, setup.limits(), step)
    simulate(log, [spec] * replicas, [FleetPhase(0.0, tuple(range(replicas)))], engine="fast")
    arrival = np.asarray(log.arrival_s)
    ttft = np.empty(order.size)
    e2e = np.empty(order.size)
    queue = np.empty(order.size)
    ttft[order] = np.asarray(log.first_token_s, dtype=np.float64) - arrival
    e2e[order] = np.asarray(log.finish_s, dtype=np.float64) - arrival
    queue[order] = np.asarray(log.first_scheduled_s, dtype=np.float64) - arrival
    return ttft, e2e, queue

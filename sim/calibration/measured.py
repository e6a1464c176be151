"""Measured vLLM runs, their latency statistics, and their replay through the simulator.

A *measured run* is a workload (arrival time, input and output tokens per request) plus what a
real vLLM engine measured for it: per-request TTFT and E2E latency, or, for published results,
only their summary statistics. `replay` pushes the same requests, at the same times, through
`sim.model.simulate` (fast engine, one replica with the run's engine limits) and `compare`
puts measured and simulated statistics side by side.

Metric definitions follow `vllm bench serve` (all per request, seconds):

* TTFT = first token − arrival; E2E = last token − arrival;
* TPOT = (E2E − TTFT) / (output tokens − 1), defined for requests with ≥ 2 output tokens;
* ITL = gaps between consecutive tokens. The simulator records only first and last token, so
  only the *mean* ITL is compared, pooled over tokens: Σ(E2E − TTFT) / Σ(output − 1).
* Percentiles are numpy's linear interpolation (`np.percentile`), as `vllm bench serve` uses.

Where the clock starts matters: LLMServingSim's per-request logs are the engine's own
timestamps (queued → first token → last token), so they exclude the client and the network,
like the simulator; `vllm bench serve` times from the client, so its TTFT and E2E also contain
HTTP, tokenisation, detokenisation and streaming (a few ms per request), which the simulator
does not model. `docs/validation.md` lists the cases and what each one includes.

`sim.calibration.validate` compares replays with the packaged cases; `sim.calibration.runs`
fits step-time scale factors to them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from sim.config import EngineSpec
from sim.data import models
from sim.engine import EngineLimits, RequestLog, StepTimeModel
from sim.engine.catalog import StepTimeEntry, gpu_spec
from sim.engine.kv import engine_state_blocks, kv_cache
from sim.errors import ConfigError, Problem, TraceError
from sim.model import FleetPhase, ReplicaSpec, simulate

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

METRICS = (
    "ttft_mean_s",
    "ttft_p50_s",
    "ttft_p95_s",
    "ttft_p99_s",
    "tpot_mean_s",
    "tpot_p50_s",
    "tpot_p95_s",
    "tpot_p99_s",
    "itl_mean_s",
    "e2e_mean_s",
    "e2e_p50_s",
    "e2e_p95_s",
    "e2e_p99_s",
)


# ------------------------------------------------------------------------------ metrics


def latency_metrics(
    ttft_s: npt.ArrayLike, e2e_s: npt.ArrayLike | None, output_tokens: npt.ArrayLike
) -> dict[str, float]:
    """`vllm bench serve` statistics (seconds) of per-request TTFT and E2E (module docstring).

    `e2e_s` may be None (only TTFT known). Requests with NaN latencies (never finished) are
    left out; TPOT uses only requests with at least 2 output tokens.
    """
    ttft = np.asarray(ttft_s, dtype=np.float64)
    out = np.asarray(output_tokens, dtype=np.float64)
    stats: dict[str, float] = {}
    _add_stats(stats, "ttft", ttft[np.isfinite(ttft)])
    if e2e_s is None:
        return stats
    e2e = np.asarray(e2e_s, dtype=np.float64)
    ok = np.isfinite(e2e) & np.isfinite(ttft)
    _add_stats(stats, "e2e", e2e[ok])
    multi = ok & (out >= 2)
    decode_s = e2e[multi] - ttft[multi]
    _add_stats(stats, "tpot", decode_s / (out[multi] - 1.0))
    if multi.any():
        stats["itl_mean_s"] = float(decode_s.sum() / (out[multi] - 1.0).sum())
    return stats


def _add_stats(stats: dict[str, float], name: str, values: FloatArray) -> None:
    if values.size == 0:
        return
    stats[f"{name}_mean_s"] = float(values.mean())
    for q in (50, 95, 99):
        stats[f"{name}_p{q}_s"] = float(np.percentile(values, q))


# ------------------------------------------------------------------------------ runs


@dataclass(frozen=True, eq=False)
class MeasuredRun:
    """A workload and what a real engine measured for it.

    arrival_s: when each request reached the engine, seconds from the first (ascending).
    input_tokens, output_tokens: per request (>= 1).
    ttft_s, e2e_s: measured per-request latencies (s), or None when only `published`
        statistics exist.
    published: summary statistics as published (metric name from `METRICS` -> seconds); they
        take precedence over statistics computed from the per-request columns.
    cached_tokens: each request's prefix-cache hit in tokens (`RequestLog.cached_tokens`), or
        None: every prompt prefilled in full (what a measured file can say).
    """

    name: str
    file: str
    arrival_s: FloatArray = field(repr=False)
    input_tokens: IntArray = field(repr=False)
    output_tokens: IntArray = field(repr=False)
    ttft_s: FloatArray | None = field(default=None, repr=False)
    e2e_s: FloatArray | None = field(default=None, repr=False)
    published: Mapping[str, float] = field(default_factory=dict)
    cached_tokens: IntArray | None = field(default=None, repr=False)

    @property
    def size(self) -> int:
        return int(self.arrival_s.size)

    def measured_metrics(self) -> dict[str, float]:
        """Per-request statistics where the columns exist, overridden by `published` ones."""
        stats = (
            latency_metrics(self.ttft_s, self.e2e_s, self.output_tokens)
            if self.ttft_s is not None
            else {}
        )
        stats.update(self.published)
        return stats

    def peak_in_system(self) -> int:
        """Most requests the engine held at once (arrived, not finished), from the measurement.

        Without measured E2E (published runs) every request counts as present at its arrival.
        """
        if self.e2e_s is None:
            return self.size
        return _peak_in_system(self.arrival_s, self.arrival_s + self.e2e_s)


def _peak_in_system(start_s: FloatArray, end_s: FloatArray) -> int:
    events = np.concatenate([start_s, end_s])
    delta = np.concatenate([np.ones(start_s.size), -np.ones(end_s.size)])
    # Ends sort before starts at the same instant: a request leaving frees its slot first.
    order = np.lexsort((delta, events))
    return int(np.max(np.cumsum(delta[order])))


VALIDATION_COLUMNS = ("arrival_s", "input_tokens", "output_tokens")


def read_validation_csv(path: str | Path, name: str = "") -> MeasuredRun:
    """A per-request CSV: `arrival_s, input_tokens, output_tokens[, ttft_s[, e2e_s]]`.

    Seconds throughout; rows are sorted by arrival. A malformed file is one located TraceError.
    """
    file = str(path)
    try:
        frame = pl.read_csv(path, infer_schema_length=None)
    except (OSError, pl.exceptions.PolarsError) as err:
        raise TraceError(
            file, None, None, str(err).splitlines()[0][:80], "cannot read CSV"
        ) from None
    for col in VALIDATION_COLUMNS:
        if col not in frame.columns:
            raise TraceError(file, None, col, None, "missing column")
    arrays: dict[str, FloatArray] = {}
    for col in (*VALIDATION_COLUMNS, "ttft_s", "e2e_s"):
        if col not in frame.columns:
            continue
        try:
            values = frame[col].cast(pl.Float64).to_numpy()
        except pl.exceptions.PolarsError:
            raise TraceError(file, None, col, frame[col].dtype, "must be numeric") from None
        bad = ~np.isfinite(values) | (values < 0)
        if col.endswith("tokens"):
            bad |= (values < 1) | (values != np.round(values))
        if bad.any():
            i = int(np.argmax(bad))
            raise TraceError(file, i + 1, col, values[i], "must be finite and >= 0 (tokens >= 1)")
        arrays[col] = values
    order = np.argsort(arrays["arrival_s"], kind="stable")
    t = arrays["arrival_s"][order]
    return MeasuredRun(
        name=name or Path(file).stem,
        file=file,
        arrival_s=t - t[0],
        input_tokens=arrays["input_tokens"][order].astype(np.int64),
        output_tokens=arrays["output_tokens"][order].astype(np.int64),
        ttft_s=arrays["ttft_s"][order] if "ttft_s" in arrays else None,
        e2e_s=arrays["e2e_s"][order] if "e2e_s" in arrays else None,
    )


# ------------------------------------------------------------------------------ engine


@dataclass(frozen=True)
class EngineSetup:
    """The engine a run used, as the simulator needs it.

    max_num_seqs, max_num_batched_tokens, max_model_len: the vLLM settings of the run.
    kv_blocks: vLLM's `num_gpu_blocks` when the run logged it, else None (estimated from the
        GPU and model catalogs by `sim.engine.kv.kv_cache`, the one KV-capacity function).
    weight_dtype: the weights' precision when it differs from `dtype` (as `[engine]`).
    gpu_memory_utilization: vLLM's setting (for the estimate).
    """

    model: str
    gpu: str
    tp: int
    dtype: str
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    kv_blocks: int | None = None
    gpu_memory_utilization: float = 0.9
    block_size: int = 16
    weight_dtype: str | None = None
    scheduler: str = "v1"
    num_scheduler_steps: int = 1
    async_scheduling: bool = False  # V1's async scheduling (EngineLimits.async_scheduling)
    calibration: str | None = None  # a user calibration file: its [[gpu]] types are known
    vllm_version: str | None = None  # the server's vLLM version, when the run states it

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.model, self.gpu, self.tp, self.dtype)

    @property
    def settings(self) -> EngineSpec:
        """The same engine as the experiment layer's `[engine]` settings (for `kv_cache`)."""
        return EngineSpec(
            model=self.model,
            dtype=self.dtype,
            tp=self.tp,
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            max_model_len=self.max_model_len,
            gpu_memory_utilization=self.gpu_memory_utilization,
            block_size=self.block_size,
            kv_blocks=self.kv_blocks,
            weight_dtype=self.weight_dtype,
            calibration=self.calibration,
        )

    def resolved_kv_blocks(self) -> int:
        """`kv_blocks`, or the estimate of `sim.engine.kv.kv_cache` (a ConfigError if the
        model or GPU is not in the catalog)."""
        if self.kv_blocks is not None:
            return self.kv_blocks
        try:
            gpu_spec(self.gpu, self.calibration)  # packaged, or the calibration file's
            known = True
        except KeyError:
            known = False
        if self.model not in models() or not known:
            missing = self.model if self.model not in models() else self.gpu
            raise ConfigError(
                [Problem("engine", "kv_blocks", "not logged and not in the catalog", missing)]
            )
        return kv_cache(self.settings, self.gpu).blocks

    def resolved_state_blocks(self) -> int:
        """Blocks a running sequence's recurrent state takes (`sim.engine.kv.state_blocks`;
        0 for a model without linear-attention layers, or one not in the catalog)."""
        return engine_state_blocks(self.settings)

    def longest_context(self) -> int:
        """Tokens one request can hold: the KV blocks left beside one sequence's state."""
        return (self.resolved_kv_blocks() - self.resolved_state_blocks()) * self.block_size

    def limits(self) -> EngineLimits:
        return EngineLimits(
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            kv_blocks=self.resolved_kv_blocks(),
            max_model_len=self.max_model_len,
            block_size=self.block_size,
            scheduler=self.scheduler,
            num_scheduler_steps=self.num_scheduler_steps,
            async_scheduling=self.async_scheduling,
            state_blocks=self.resolved_state_blocks(),
        )

    def concurrency_capacity(self, mean_request_tokens: float) -> float:
        """Requests the engine can hold at once: min(max_num_seqs, KV tokens / mean tokens).

        `mean_request_tokens` is the mean of input + output tokens; a request holds on average
        about its input plus half its output in KV, so this is a conservative (low) capacity.
        A hybrid model's request holds its recurrent state's blocks too.
        """
        kv_tokens = self.resolved_kv_blocks() * self.block_size
        per_request = max(mean_request_tokens, 1.0) + self.resolved_state_blocks() * self.block_size
        return min(float(self.max_num_seqs), kv_tokens / per_request)


def step_time_model(entry: StepTimeEntry) -> StepTimeModel:
    """The engine's step-time model from a catalog entry."""
    return entry.step


@dataclass(frozen=True)
class Replay:
    """Simulated per-request latencies (s) of a replayed run (NaN: rejected, too long).

    queue_s: arrival to first scheduled (vLLM's queued interval; prefill = TTFT − queue)."""

    ttft_s: FloatArray
    e2e_s: FloatArray
    preemptions: int
    queue_s: FloatArray

    def metrics(self, output_tokens: npt.ArrayLike) -> dict[str, float]:
        return latency_metrics(self.ttft_s, self.e2e_s, output_tokens)


def replay(
    run: MeasuredRun,
    limits: EngineLimits,
    step_time: StepTimeModel,
    replicas: int = 1,
) -> Replay:
    """Simulate `run`'s requests at their real arrival times on `replicas` identical replicas
    (join-shortest-queue routing, as `sim.model`), fast engine."""
    hits = None if run.cached_tokens is None else run.cached_tokens.tolist()
    log = RequestLog(
        run.arrival_s.tolist(), run.input_tokens.tolist(), run.output_tokens.tolist(), hits
    )
    spec = ReplicaSpec("validation", "gpu", limits, step_time)
    simulate(log, [spec] * replicas, [FleetPhase(0.0, tuple(range(replicas)))], engine="fast")
    arrival = np.asarray(log.arrival_s)
    return Replay(
        ttft_s=np.asarray(log.first_token_s) - arrival,
        e2e_s=np.asarray(log.finish_s) - arrival,
        preemptions=int(sum(log.preemptions)),
        queue_s=np.asarray(log.first_scheduled_s) - arrival,
    )

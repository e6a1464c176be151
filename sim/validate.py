"""End-to-end validation: replay measured vLLM runs through the simulator and compare latencies.

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

Validation cases shipped with the package live in `sim/data/validation/cases.toml`.
"""

from __future__ import annotations

import functools
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from sim.catalog import StepTimeEntry, load_step_time_catalog
from sim.engine import EngineLimits, RequestLog, StepTimeModel
from sim.errors import ConfigError, Problem, TraceError
from sim.hardware import gpus, kv_capacity_tokens, models
from sim.model import FleetPhase, ReplicaSpec, simulate

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

CASES_FILE = "data/validation/cases.toml"

# Targets of issue #3, as fractions, for cases at <= GATE_MAX_LOAD of capacity.
TARGETS: dict[str, float] = {
    "tpot_p50_s": 0.05,
    "tpot_p95_s": 0.05,
    "e2e_p95_s": 0.10,
    "ttft_p95_s": 0.15,
}
GATE_MAX_LOAD = 0.85

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
    """

    name: str
    file: str
    arrival_s: FloatArray = field(repr=False)
    input_tokens: IntArray = field(repr=False)
    output_tokens: IntArray = field(repr=False)
    ttft_s: FloatArray | None = field(default=None, repr=False)
    e2e_s: FloatArray | None = field(default=None, repr=False)
    published: Mapping[str, float] = field(default_factory=dict)

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
        GPU and model catalogs by `sim.hardware.kv_capacity_tokens`).
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

    @property
    def key(self) -> tuple[str, str, int, str]:
        return (self.model, self.gpu, self.tp, self.dtype)

    def resolved_kv_blocks(self) -> int:
        """`kv_blocks`, or the catalog estimate (a ConfigError if model or GPU is unknown)."""
        if self.kv_blocks is not None:
            return self.kv_blocks
        shape, gpu = models().get(self.model), gpus().get(self.gpu)
        if shape is None or gpu is None:
            missing = self.model if shape is None else self.gpu
            raise ConfigError(
                [Problem("engine", "kv_blocks", "not logged and not in the catalog", missing)]
            )
        tokens = kv_capacity_tokens(
            shape,
            gpu,
            dtype=self.dtype,
            tp=self.tp,
            gpu_memory_utilization=self.gpu_memory_utilization,
            max_num_batched_tokens=self.max_num_batched_tokens,
            max_num_seqs=self.max_num_seqs,
        )
        return max(0, int(tokens // self.block_size))

    def limits(self) -> EngineLimits:
        return EngineLimits(
            max_num_seqs=self.max_num_seqs,
            max_num_batched_tokens=self.max_num_batched_tokens,
            kv_blocks=self.resolved_kv_blocks(),
            max_model_len=self.max_model_len,
            block_size=self.block_size,
        )

    def concurrency_capacity(self, mean_request_tokens: float) -> float:
        """Requests the engine can hold at once: min(max_num_seqs, KV tokens / mean tokens).

        `mean_request_tokens` is the mean of input + output tokens; a request holds on average
        about its input plus half its output in KV, so this is a conservative (low) capacity.
        """
        kv_tokens = self.resolved_kv_blocks() * self.block_size
        return min(float(self.max_num_seqs), kv_tokens / max(mean_request_tokens, 1.0))


def step_time_model(entry: StepTimeEntry) -> StepTimeModel:
    """The engine's step-time model from a catalog entry."""
    return StepTimeModel.of(entry)


@dataclass(frozen=True)
class Replay:
    """Simulated per-request latencies (s) of a replayed run (NaN: rejected, too long)."""

    ttft_s: FloatArray
    e2e_s: FloatArray
    preemptions: int

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
    log = RequestLog(run.arrival_s.tolist(), run.input_tokens.tolist(), run.output_tokens.tolist())
    spec = ReplicaSpec("validation", "gpu", limits, step_time)
    simulate(log, [spec] * replicas, [FleetPhase(0.0, tuple(range(replicas)))], engine="fast")
    arrival = np.asarray(log.arrival_s)
    return Replay(
        ttft_s=np.asarray(log.first_token_s) - arrival,
        e2e_s=np.asarray(log.finish_s) - arrival,
        preemptions=int(sum(log.preemptions)),
    )


# ------------------------------------------------------------------------------ cases


@dataclass(frozen=True)
class ValidationCase:
    """One packaged validation case (`sim/data/validation/cases.toml`).

    replicas: independent engines behind one router (vLLM data parallelism).
    gate: whether the issue-#3 targets apply (also needs load <= GATE_MAX_LOAD).
    skip: why the case cannot be replayed (listed by `sim validate --all`), or "".
    note: what the measurement includes and why a target may be missed.
    """

    name: str
    data: str
    engine: EngineSetup
    source: str
    replicas: int = 1
    gate: bool = True
    skip: str = ""
    note: str = ""
    published: Mapping[str, float] = field(default_factory=dict)

    def run(self) -> MeasuredRun:
        path = resources.files("sim").joinpath("data", "validation", self.data)
        with resources.as_file(path) as p:
            base = read_validation_csv(p, self.name)
        return MeasuredRun(
            name=base.name,
            file=base.file,
            arrival_s=base.arrival_s,
            input_tokens=base.input_tokens,
            output_tokens=base.output_tokens,
            ttft_s=base.ttft_s,
            e2e_s=base.e2e_s,
            published=dict(self.published),
        )


_ENGINE_KEYS = {
    "model": str,
    "gpu": str,
    "tp": int,
    "dtype": str,
    "max_num_seqs": int,
    "max_num_batched_tokens": int,
    "max_model_len": int,
    "kv_blocks": int,
    "gpu_memory_utilization": float,
}
_CASE_KEYS = {"name", "data", "source", "replicas", "gate", "skip", "note", "published", "engine"}


def parse_cases(doc: dict[str, Any], file: str = CASES_FILE) -> tuple[ValidationCase, ...]:
    """Validate a parsed cases document (`[[case]]` tables); all problems raised at once."""
    problems: list[Problem] = []
    for k in sorted(set(doc) - {"case", "not_reproducible"}):
        problems.append(Problem(file, k, "unknown top-level key", has_value=False))
    out: list[ValidationCase] = []
    for i, raw in enumerate(doc.get("case", [])):
        path = f"case[{i}]"
        for k in sorted(set(raw) - _CASE_KEYS):
            problems.append(Problem(file, f"{path}.{k}", "unknown key", has_value=False))
        eng = raw.get("engine", {})
        for k in sorted(set(eng) - set(_ENGINE_KEYS)):
            problems.append(Problem(file, f"{path}.engine.{k}", "unknown key", has_value=False))
        for k in ("name", "data", "source", "engine"):
            if k not in raw:
                problems.append(Problem(file, f"{path}.{k}", "missing", has_value=False))
        for k, kind in _ENGINE_KEYS.items():
            if k in eng and not isinstance(eng[k], kind if kind is not float else (int, float)):
                problems.append(
                    Problem(file, f"{path}.engine.{k}", f"must be {kind.__name__}", eng[k])
                )
        required = ("model", "gpu", "tp", "dtype", "max_num_seqs", "max_num_batched_tokens")
        for k in (*required, "max_model_len"):
            if k not in eng:
                problems.append(Problem(file, f"{path}.engine.{k}", "missing", has_value=False))
        published = raw.get("published", {})
        for k, v in published.items():
            if k not in METRICS or isinstance(v, bool) or not isinstance(v, (int, float)):
                problems.append(
                    Problem(file, f"{path}.published.{k}", "unknown metric or not a number", v)
                )
        if problems:
            continue
        out.append(
            ValidationCase(
                name=raw["name"],
                data=raw["data"],
                source=raw["source"],
                replicas=int(raw.get("replicas", 1)),
                gate=bool(raw.get("gate", True)),
                skip=str(raw.get("skip", "")),
                note=str(raw.get("note", "")),
                published={k: float(v) for k, v in published.items()},
                engine=EngineSetup(**eng),
            )
        )
    if problems:
        raise ConfigError(problems)
    return tuple(out)


@functools.cache
def _cases_doc() -> dict[str, Any]:
    return tomllib.loads(resources.files("sim").joinpath(CASES_FILE).read_text(encoding="utf-8"))


def load_cases() -> tuple[ValidationCase, ...]:
    """The packaged validation cases, in file order."""
    return parse_cases(_cases_doc(), f"sim/{CASES_FILE}")


@dataclass(frozen=True)
class Unreproduced:
    """Published numbers that cannot be replayed, and why (`[[not_reproducible]]`)."""

    name: str
    reason: str


def load_unreproduced() -> tuple[Unreproduced, ...]:
    """The packaged list of published results that are not validation cases, with reasons."""
    return tuple(
        Unreproduced(str(item["name"]), str(item["reason"]))
        for item in _cases_doc().get("not_reproducible", [])
    )


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case: `rows` has one row per compared metric (see `compare`)."""

    case: ValidationCase
    load: float
    rows: pl.DataFrame
    step_time_source: str
    skipped: str = ""

    @property
    def gated(self) -> bool:
        return self.case.gate and not self.skipped and self.load <= GATE_MAX_LOAD

    @property
    def passed(self) -> bool:
        """Whether every gated metric is within its target (True for ungated cases)."""
        if not self.gated:
            return True
        return bool(self.rows.filter(pl.col("target").is_not_null())["ok"].all())


COMPARE_SCHEMA = {
    "case": pl.String,
    "load": pl.Float64,
    "metric": pl.String,
    "measured_s": pl.Float64,
    "simulated_s": pl.Float64,
    "error": pl.Float64,
    "target": pl.Float64,
    "ok": pl.Boolean,
}


def compare(
    name: str,
    measured: Mapping[str, float],
    simulated: Mapping[str, float],
    load: float,
    gated: bool,
) -> pl.DataFrame:
    """One row per metric known on both sides: error = simulated / measured − 1.

    `target` is the issue-#3 tolerance when the case is gated, else null; `ok` is
    |error| <= target (null when ungated).
    """
    rows = []
    for metric in METRICS:
        if metric not in measured or metric not in simulated:
            continue
        m, s = measured[metric], simulated[metric]
        err = s / m - 1.0 if m > 0 else math.nan
        target = TARGETS.get(metric) if gated else None
        ok = None if target is None else bool(abs(err) <= target)
        rows.append((name, load, metric, m, s, err, target, ok))
    return pl.DataFrame(rows, schema=COMPARE_SCHEMA, orient="row")


def validate_case(
    case: ValidationCase, catalog: Mapping[tuple[str, str, int, str], StepTimeEntry] | None = None
) -> CaseResult:
    """Replay one case with the catalog entry for its (model, gpu, tp, dtype)."""
    cat = load_step_time_catalog() if catalog is None else catalog
    empty = pl.DataFrame(schema=COMPARE_SCHEMA)
    if case.skip:
        return CaseResult(case, math.nan, empty, "", skipped=case.skip)
    entry = cat.get(case.engine.key)
    if entry is None:
        m, g, tp, d = case.engine.key
        reason = f"no step-time calibration for {m} on {g} tp{tp} {d} in the catalog"
        return CaseResult(case, math.nan, empty, "", skipped=reason)
    run = case.run()
    limits = case.engine.limits()
    mean_tokens = float(np.mean(run.input_tokens + run.output_tokens))
    capacity = case.engine.concurrency_capacity(mean_tokens) * case.replicas
    load = run.peak_in_system() / capacity
    sim = replay(run, limits, step_time_model(entry), case.replicas)
    gated = case.gate and load <= GATE_MAX_LOAD
    rows = compare(case.name, run.measured_metrics(), sim.metrics(run.output_tokens), load, gated)
    return CaseResult(case, load, rows, entry.source)


def validate_all(
    cases: Sequence[ValidationCase] | None = None,
    catalog: Mapping[tuple[str, str, int, str], StepTimeEntry] | None = None,
) -> list[CaseResult]:
    """Every case (default: the packaged ones), in order."""
    return [validate_case(c, catalog) for c in (load_cases() if cases is None else cases)]

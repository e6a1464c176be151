"""End-to-end calibration from measured vLLM runs (`sim calibrate runs`).

Users already have runs of their own stack: `vllm bench serve --save-result --save-detailed`
JSON, or per-request logs with arrival, first-token and last-token timestamps. This module
replays such a run's workload (real arrival times and lengths) through the simulator and
chooses three scale factors of a starting catalog entry that minimise the error of the
latency percentiles:

    overhead_s                                  × s_overhead
    flat_s, per_token_s                         × s_linear       (knee_tokens unchanged)
    decode_attn_s_per_token, prefill_attn_s_per_pair × s_attention

The objective is the mean squared log ratio simulated/measured over TTFT, TPOT and E2E p50 and
p95 (`FIT_METRICS`) of every run; it is minimised over log factors in [−3, 3] (factors
e^±3 ≈ 0.05..20) by Nelder–Mead, which needs no gradient (the replay is piecewise constant in
the coefficients at fine scale). Three factors, not six coefficients: a few hundred requests
pin down how fast the engine is overall, at small and at large batch, and how attention grows
with context, but not a six-parameter curve.

Readers (`read_measured_run`): LLMServingSim per-request JSON lines (`queued_ts`,
`first_token_ts`, `last_token_ts`; the engine configuration from a `meta.json` beside it when
present), `vllm bench serve` result JSON with `ttfts` and `itls` (E2E = TTFT + Σ ITL), and the
validation CSV schema of `sim.calibration.validate`.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import minimize

from sim.calibration.measured import (
    EngineSetup,
    MeasuredRun,
    read_validation_csv,
    replay,
    step_time_model,
)
from sim.engine.catalog import StepTimeEntry
from sim.errors import TraceError
from sim.traces._io import base_suffix, read_bytes
from sim.traces.readers import read_json_lines, vllm_bench_trace

FIT_METRICS = ("ttft_p50_s", "ttft_p95_s", "tpot_p50_s", "tpot_p95_s", "e2e_p50_s", "e2e_p95_s")
FACTOR_NAMES = ("overhead", "linear", "attention")
LOG_FACTOR_BOUND = 3.0

LLMSERVINGSIM_TIMES = {
    "input_toks": "integer",
    "output_toks": "integer",
    "queued_ts": "number",
    "first_token_ts": "number",
    "last_token_ts": "number",
}


@dataclass(frozen=True)
class EngineHints:
    """Engine settings a run file records (None: not recorded). See `EngineSetup`."""

    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    max_model_len: int | None = None
    kv_blocks: int | None = None
    tp: int | None = None
    replicas: int | None = None
    gpu_memory_utilization: float | None = None


# ------------------------------------------------------------------------------ readers


def read_measured_run(path: str | Path) -> tuple[MeasuredRun, EngineHints]:
    """A measured run and the engine settings it records; a located TraceError if malformed.

    `.json`: `vllm bench serve` result; `.jsonl`/`.ndjson`: LLMServingSim per-request log;
    `.csv`: the validation schema (`arrival_s, input_tokens, output_tokens, ttft_s, e2e_s`).
    """
    file = str(path)
    if not Path(path).is_file():
        raise TraceError(file, None, None, file, "no such file")
    suffix = base_suffix(path)
    if suffix == ".json":
        return _vllm_bench_run(path), EngineHints()
    if suffix in (".jsonl", ".ndjson"):
        return _llmservingsim_run(path), _llmservingsim_meta(Path(path).with_name("meta.json"))
    if suffix == ".csv":
        run = read_validation_csv(path)
        if run.ttft_s is None or run.e2e_s is None:
            raise TraceError(file, None, "ttft_s, e2e_s", None, "missing columns")
        return run, EngineHints()
    raise TraceError(file, None, None, suffix, "unknown run format (need .json, .jsonl or .csv)")


def _llmservingsim_run(path: str | Path) -> MeasuredRun:
    file = str(path)
    frame = read_json_lines(path, LLMSERVINGSIM_TIMES)
    q = frame["queued_ts"].to_numpy()
    first = frame["first_token_ts"].to_numpy()
    last = frame["last_token_ts"].to_numpy()
    bad = (first < q) | (last < first)
    if bad.any():
        i = int(np.argmax(bad))
        raise TraceError(file, i + 1, "first_token_ts", float(first[i]), "timestamps out of order")
    for col in ("input_toks", "output_toks"):
        tokens = frame[col].to_numpy()
        if (tokens < 1).any():
            i = int(np.argmax(tokens < 1))
            raise TraceError(file, i + 1, col, int(tokens[i]), "token count must be >= 1")
    order = np.argsort(q, kind="stable")
    return MeasuredRun(
        name=_run_name(Path(file)),
        file=file,
        arrival_s=q[order] - q[order][0],
        input_tokens=frame["input_toks"].to_numpy()[order].astype(np.int64),
        output_tokens=frame["output_toks"].to_numpy()[order].astype(np.int64),
        ttft_s=(first - q)[order],
        e2e_s=(last - q)[order],
    )


def _run_name(path: Path) -> str:
    """`…/<GPU>/<model>/vllm/requests.jsonl` → `<GPU>/<model>`; otherwise the file stem."""
    if path.parent.name == "vllm" and len(path.parents) > 3:
        return f"{path.parents[2].name}/{path.parents[1].name}"
    return path.stem


def _llmservingsim_meta(path: Path) -> EngineHints:
    if not path.is_file():
        return EngineHints()
    try:
        meta = json.loads(read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        raise TraceError(str(path), None, None, str(err)[:80], "not valid JSON") from None
    if not isinstance(meta, dict):
        raise TraceError(str(path), None, None, type(meta).__name__, "expected a JSON object")
    kw = meta.get("engine_kwargs") or {}
    kv = meta.get("kv_cache") or {}

    def num(obj: dict[str, Any], key: str) -> int | None:
        v = obj.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) else None

    util = kv.get("gpu_memory_utilization")
    return EngineHints(
        max_num_seqs=num(kw, "max_num_seqs"),
        max_num_batched_tokens=num(kw, "max_num_batched_tokens"),
        max_model_len=num(kw, "max_model_len"),
        kv_blocks=num(kv, "num_gpu_blocks"),
        tp=num(kw, "tensor_parallel_size"),
        replicas=num(kw, "data_parallel_size"),
        gpu_memory_utilization=float(util) if isinstance(util, (int, float)) else None,
    )


def _vllm_bench_run(path: str | Path) -> MeasuredRun:
    """`vllm bench serve` JSON: lengths as `sim.traces` reads them, TTFT and ITLs per request.

    Arrivals are `start_times` when recorded; without them only a `request_rate` of inf (every
    request sent at once) can be replayed, so all arrivals are 0.
    """
    file = str(path)
    trace = vllm_bench_trace(path)  # validates lengths, errors and start_times
    obj = json.loads(read_bytes(path))
    n = len(obj["input_lens"])
    errors = obj.get("errors") or [""] * n
    keep = [i for i in range(n) if not errors[i] and obj["output_lens"][i] != 0]
    ttfts, itls = obj.get("ttfts"), obj.get("itls")
    for name, values in (("ttfts", ttfts), ("itls", itls)):
        if not isinstance(values, list) or len(values) != n:
            raise TraceError(file, None, name, None, f"need one entry per request ({n})")
    ttft = np.empty(len(keep))
    e2e = np.empty(len(keep))
    for j, i in enumerate(keep):
        t, gaps = ttfts[i], itls[i]  # type: ignore[index]
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t):
            raise TraceError(file, i + 1, "ttfts", t, "not a finite number")
        if not isinstance(gaps, list) or not all(
            isinstance(g, (int, float)) and not isinstance(g, bool) for g in gaps
        ):
            raise TraceError(file, i + 1, "itls", gaps, "must be a list of numbers")
        ttft[j], e2e[j] = float(t), float(t) + float(sum(gaps))
    if trace.has_arrivals:
        arrival = trace.frame["arrival_s"].to_numpy()
    elif str(obj.get("request_rate")) == "inf":
        arrival = np.zeros(len(keep))
    else:
        raise TraceError(
            file,
            None,
            "start_times",
            None,
            "missing: cannot replay a rate-limited run without per-request send times",
        )
    return MeasuredRun(
        name=Path(file).stem,
        file=file,
        arrival_s=arrival,
        input_tokens=trace.frame["input_tokens"].to_numpy().astype(np.int64),
        output_tokens=trace.frame["output_tokens"].to_numpy().astype(np.int64),
        ttft_s=ttft,
        e2e_s=e2e,
    )


# ------------------------------------------------------------------------------ fitting


def scaled_entry(base: StepTimeEntry, factors: Sequence[float], **changes: Any) -> StepTimeEntry:
    """`base` with (overhead, linear, attention) multiplied by `factors` (see module doc)."""
    s_over, s_lin, s_att = (float(f) for f in factors)
    b = base.step
    step = dataclasses.replace(
        b,
        overhead_s=b.overhead_s * s_over,
        flat_s=b.flat_s * s_lin,
        per_token_s=b.per_token_s * s_lin,
        decode_attn_s_per_token=b.decode_attn_s_per_token * s_att,
        prefill_attn_s_per_pair=b.prefill_attn_s_per_pair * s_att,
    )
    return dataclasses.replace(base, step=step, **changes)


@dataclass(frozen=True)
class RunCase:
    """One measured run with the engine it ran on and its data-parallel replica count."""

    run: MeasuredRun
    engine: EngineSetup
    replicas: int = 1


def run_case(
    file: str | Path,
    *,
    model: str,
    gpu: str,
    dtype: str = "fp16",
    given: EngineHints = EngineHints(),
) -> RunCase:
    """One measured run as a calibration case. Each engine setting is the one `given` (e.g. on
    the command line), else the one the file records, else vLLM's default where it has one
    (tp 1, one replica, gpu_memory_utilization 0.9 — vLLM's `EngineArgs` default) or the
    longest request for max_model_len. The scheduler limits have no safe default: a run that
    records neither is a located error naming the options to pass."""
    run, recorded = read_measured_run(file)

    def pick(name: str) -> Any:
        value = getattr(given, name)
        return getattr(recorded, name) if value is None else value

    seqs, budget = pick("max_num_seqs"), pick("max_num_batched_tokens")
    if seqs is None or budget is None:
        raise TraceError(
            str(file),
            None,
            None,
            None,
            "engine limits not recorded: pass --max-num-seqs and --max-num-batched-tokens",
        )
    longest = int((run.input_tokens + run.output_tokens).max())
    engine = EngineSetup(
        model=model,
        gpu=gpu,
        tp=pick("tp") or 1,
        dtype=dtype,
        max_num_seqs=seqs,
        max_num_batched_tokens=budget,
        max_model_len=pick("max_model_len") or longest,
        kv_blocks=pick("kv_blocks"),
        gpu_memory_utilization=pick("gpu_memory_utilization") or 0.9,
    )
    return RunCase(run, engine, pick("replicas") or 1)


def run_errors(entry: StepTimeEntry, cases: Sequence[RunCase]) -> pl.DataFrame:
    """Per run and metric of `FIT_METRICS`: measured, simulated (s) and error sim/meas − 1."""
    rows = []
    model = step_time_model(entry)
    for c in cases:
        measured = c.run.measured_metrics()
        simulated = replay(c.run, c.engine.limits(), model, c.replicas).metrics(c.run.output_tokens)
        for metric in FIT_METRICS:
            if metric in measured and metric in simulated:
                m, s = measured[metric], simulated[metric]
                rows.append((c.run.name, metric, m, s, s / m - 1.0))
    return pl.DataFrame(
        rows,
        schema={
            "run": pl.String,
            "metric": pl.String,
            "measured_s": pl.Float64,
            "simulated_s": pl.Float64,
            "error": pl.Float64,
        },
        orient="row",
    )


def _objective(entry: StepTimeEntry, cases: Sequence[RunCase]) -> float:
    err = run_errors(entry, cases)["error"].to_numpy()
    if err.size == 0:
        raise ValueError("no metric to fit: runs need TTFT and E2E per request")
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log1p(err)
    logs = np.where(np.isfinite(logs), logs, 10.0)  # a request never finished: heavy penalty
    return float(np.mean(logs**2))


@dataclass(frozen=True)
class RunFit:
    """The fitted entry, its factors (overhead, linear, attention), and errors before/after."""

    entry: StepTimeEntry
    factors: tuple[float, float, float]
    before: pl.DataFrame
    after: pl.DataFrame
    evaluations: int


def fit_runs(
    base: StepTimeEntry,
    cases: Sequence[RunCase],
    *,
    fit: Sequence[str] = FACTOR_NAMES,
    max_evaluations: int = 300,
    **entry_changes: Any,
) -> RunFit:
    """Fit the scale factors named in `fit` (others stay 1) to `cases`, starting from `base`.

    `entry_changes` (e.g. model=, gpu=, source=) are applied to the returned entry.
    Deterministic: Nelder–Mead from factors 1 with a fixed initial simplex.
    """
    unknown = set(fit) - set(FACTOR_NAMES)
    if unknown or not fit:
        raise ValueError(f"fit: choose from {FACTOR_NAMES}, got {tuple(fit)}")
    free = [FACTOR_NAMES.index(name) for name in fit]

    def factors_of(x: np.ndarray) -> list[float]:
        logs = np.zeros(3)
        logs[free] = np.clip(x, -LOG_FACTOR_BOUND, LOG_FACTOR_BOUND)
        return [float(v) for v in np.exp(logs)]

    count = 0

    def f(x: np.ndarray) -> float:
        nonlocal count
        count += 1
        return _objective(scaled_entry(base, factors_of(x)), cases)

    x0 = np.zeros(len(free))
    simplex = np.vstack([x0, *(x0 + 0.5 * np.eye(len(free)))])
    res = minimize(
        f,
        x0,
        method="Nelder-Mead",
        options={
            "initial_simplex": simplex,
            "maxfev": max_evaluations,
            "xatol": 1e-3,
            "fatol": 1e-6,
        },
    )
    factors = factors_of(np.asarray(res.x))
    fitted = scaled_entry(base, factors)
    after = run_errors(fitted, cases)
    changes = dict(entry_changes)
    err_after = after["error"].to_numpy()
    changes.setdefault("heldout_mape", float(np.mean(np.abs(err_after))))
    changes.setdefault("residual_sd_log", float(np.std(np.log1p(err_after))))
    fitted = dataclasses.replace(fitted, **changes)
    return RunFit(
        entry=fitted,
        factors=(factors[0], factors[1], factors[2]),
        before=run_errors(base, cases),
        after=after,
        evaluations=count,
    )

"""Reading a measured run and the engine settings it records (`sim calibrate runs`).

`read_measured_run(path)` → (the run, `EngineHints`): LLMServingSim per-request JSON lines
(`queued_ts`, `first_token_ts`, `last_token_ts`; the engine configuration from a `meta.json`
beside it when present), `vllm bench serve` result JSON with `ttfts` and `itls` (E2E = TTFT +
Σ ITL), GuideLLM reports and `/metrics` scrapes (`sim.calibration.sources`), and the
validation CSV schema of `sim.calibration.validate`. A `vllm bench serve --save-result` JSON
without `--save-detailed` (vLLM's default: no per-request lists) is a summary run
(`vllm_bench_summary_run`).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from sim.calibration.measured import METRICS, MeasuredRun, read_validation_csv
from sim.calibration.sources import (
    ScrapeRun,
    guidellm_run,
    is_guidellm,
    is_prometheus_range,
    scrape_run,
)
from sim.config.reader import as_float
from sim.errors import TraceError
from sim.traces._io import base_suffix, read_bytes
from sim.traces.readers import read_json_lines, vllm_bench_trace
from sim.workload.client import send_times

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


NO_HINTS = EngineHints()
"""A run file that records no engine setting."""


# ------------------------------------------------------------------------------ readers


SCRAPE_SUFFIXES = (".prom", ".metrics", ".txt")


def read_measured_run(path: str | Path) -> tuple[MeasuredRun | ScrapeRun, EngineHints]:
    """A measured run and the engine settings it records; a located TraceError if malformed.

    `.json`: `vllm bench serve` result, GuideLLM report (`benchmarks`) or Prometheus range
    export (`data.resultType = "matrix"`), told apart by content; `.prom`/`.metrics`/`.txt`:
    a `/metrics` scrape (`sim.calibration.sources`); `.jsonl`/`.ndjson`: LLMServingSim
    per-request log; `.csv`: a per-request log (`arrival_s, input_tokens, output_tokens,
    ttft_s, e2e_s`).
    """
    file = str(path)
    if not Path(path).is_file():
        raise TraceError(file, None, None, file, "no such file")
    suffix = base_suffix(path)
    if suffix in SCRAPE_SUFFIXES:
        scrape = scrape_run(path)
        return scrape, EngineHints(kv_blocks=scrape.kv_blocks)
    if suffix == ".json":
        doc = _load_json_doc(path)
        if is_guidellm(doc):
            return guidellm_run(path, doc), EngineHints()
        if is_prometheus_range(doc):
            scrape = scrape_run(path)
            return scrape, EngineHints(kv_blocks=scrape.kv_blocks)
        if isinstance(doc, dict) and "input_lens" not in doc and "completed" in doc:
            return vllm_bench_summary_run(path, doc), _vllm_bench_hints(doc)
        return _vllm_bench_run(path), _vllm_bench_hints(doc)
    if suffix in (".jsonl", ".ndjson"):
        return _llmservingsim_run(path), _llmservingsim_meta(Path(path).with_name("meta.json"))
    if suffix == ".csv":
        run = read_validation_csv(path)
        if run.ttft_s is None or run.e2e_s is None:
            raise TraceError(file, None, "ttft_s, e2e_s", None, "missing columns")
        return run, EngineHints()
    raise TraceError(file, None, None, suffix, "unknown run format (need .json, .jsonl or .csv)")


def _load_json_doc(path: str | Path) -> Any:
    try:
        return json.loads(read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        where = f"line {err.lineno}" if isinstance(err, json.JSONDecodeError) else "file"
        raise TraceError(str(path), None, None, where, "not valid JSON (truncated?)") from None


def _vllm_bench_hints(doc: Any) -> EngineHints:
    """Engine limits a `sim bench` result records (`sim_engine`); vLLM's own JSON has none."""
    eng = doc.get("sim_engine") if isinstance(doc, dict) else None
    if not isinstance(eng, dict):
        return EngineHints()

    def num(key: str) -> int | None:
        v = eng.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    return EngineHints(
        max_num_seqs=num("max_num_seqs"),
        max_num_batched_tokens=num("max_num_batched_tokens"),
        max_model_len=num("max_model_len"),
        kv_blocks=num("kv_blocks"),
    )


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


SUMMARY_STATS = {"mean": "mean", "median": "p50", "p95": "p95", "p99": "p99"}
"""vLLM's summary statistic prefixes (`mean_ttft_ms`, `median_…`, `p95_…`, `p99_…`) -> ours."""
SUMMARY_METRICS = {"ttft": "ttft", "tpot": "tpot", "itl": "itl", "e2el": "e2e"}
"""vLLM's metric names in the summary keys -> ours (`sim.calibration.measured.METRICS`)."""


def vllm_bench_summary_run(path: str | Path, doc: dict[str, Any]) -> MeasuredRun:
    """A `vllm bench serve --save-result` JSON without `--save-detailed`: no per-request
    lengths, send times or latencies, only the run's totals and statistics (vLLM's
    `vllm/benchmarks/serve.py` result keys).

    The replay workload is rebuilt from what the summary says: `completed` requests of the
    mean lengths (`total_input_tokens` / `completed`, `total_output_tokens` / `completed`,
    rounded), sent as the run sent them (`request_rate`, `burstiness`: `sim bench`'s
    `send_times`, seed 0). `MeasuredRun.published` holds every `mean_/median_/p95_/p99_` of
    `ttft`, `tpot`, `itl`, `e2el` present (ms -> s); the fit matches those among its
    `FIT_METRICS` (means, medians and p95 of TTFT, TPOT and E2E; p99 and ITL are kept for the
    report). Failed requests (`failed`) loaded the server but are not replayed. A run with
    `max_concurrency` (closed-loop clients) is refused: its send times depend on the engine;
    so is one without `request_rate` (vLLM always writes it).
    """
    file = str(path)

    def number(key: str, *, integer: bool = False, default: float | None = None) -> float:
        v = doc.get(key, default)
        f = as_float(v)  # a finite number, or None
        if f is None or f <= 0 or (integer and not f.is_integer()):
            kind = "a positive integer" if integer else "a positive number"
            raise TraceError(file, None, key, v, f"must be {kind} (summary-only vllm bench JSON)")
        return f

    if doc.get("max_concurrency") not in (None, 0):
        raise TraceError(
            file,
            None,
            "max_concurrency",
            doc.get("max_concurrency"),
            "closed-loop clients: their send times depend on the engine, so a summary without "
            "per-request start times cannot be replayed (rerun with --save-detailed)",
        )
    n = int(number("completed", integer=True))
    mean_in = max(1, round(number("total_input_tokens") / n))
    mean_out = max(1, round(number("total_output_tokens") / n))
    if "request_rate" not in doc:
        raise TraceError(file, None, "request_rate", None, "missing (vLLM writes it: inf or req/s)")
    rate = math.inf if str(doc["request_rate"]) == "inf" else number("request_rate")
    burstiness = number("burstiness", default=1.0)
    published: dict[str, float] = {}
    for metric, ours in SUMMARY_METRICS.items():
        for stat, our_stat in SUMMARY_STATS.items():
            v = as_float(doc.get(f"{stat}_{metric}_ms"))
            name = f"{ours}_{our_stat}_s"
            if v is not None and name in METRICS:
                published[name] = v / 1e3
    if not published:
        raise TraceError(
            file, None, "mean_ttft_ms", None, "no latency statistic (mean_/median_/p99_…_ms)"
        )
    return MeasuredRun(
        name=Path(file).stem,
        file=file,
        arrival_s=send_times(n, rate, burstiness, np.random.default_rng(0)),
        input_tokens=np.full(n, mean_in, dtype=np.int64),
        output_tokens=np.full(n, mean_out, dtype=np.int64),
        published=published,
    )

"""vLLM's counters from a Prometheus range-query export → a rate trace (format `prometheus`).

Input: the JSON of `/api/v1/query_range` (`{"status": "success", "data": {"resultType":
"matrix", "result": [{"metric": {"__name__": …, labels…}, "values": [[t, "v"], …]}]}}`, or its
`data` object alone) for the raw counters, e.g. the query
`{__name__=~"vllm:request_success_total|vllm:prompt_tokens_total|vllm:generation_tokens_total"}`
with a step of 60 s. The step (the spacing of the samples) is the window.

- requests: `vllm:request_success_total` (every `finished_reason`, every instance, summed); when
  absent, the `_count` of `vllm:e2e_request_latency_seconds` or `vllm:request_prompt_tokens`.
  These count finished requests: a window's arrivals are taken as its completions, shifted by
  the requests' latency (seconds, against windows of a minute or more).
- tokens: `vllm:prompt_tokens_total` and `vllm:generation_tokens_total` → `mean_input_tokens`
  and `mean_output_tokens` per window (their increase over the requests').
- `vllm:num_requests_running|waiting` are gauges (requests in the system, not arrivals): read
  by `sim calibrate`, ignored here, and said so.

Each series' increase over a window is computed as Prometheus' `increase()` does for counter
resets: a sample lower than the one before means the counter restarted from 0 (a server
restart), so the increase is the new value itself. What no restart explains is an error: a
negative, NaN or infinite counter value, timestamps not increasing, samples off the step grid,
or a series without `__name__` (an aggregate or `rate(...)`: summing counters across instances
before the reset handling turns one pod's restart into a drop of the sum that reads as a reset
of all of them). A series that misses samples (a scrape gap) spreads its increase evenly over
the windows of the gap.
"""

from __future__ import annotations

import datetime as dt
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sim.errors import NO_VALUE, TraceError
from sim.traces._io import json_number, read_bytes
from sim.traces.model import RateTrace

REQUEST_COUNTERS = (
    "vllm:request_success_total",
    "vllm:e2e_request_latency_seconds_count",
    "vllm:request_prompt_tokens_count",
)
PROMPT_TOKENS = "vllm:prompt_tokens_total"
GENERATION_TOKENS = "vllm:generation_tokens_total"
MAX_SERIES_SAMPLES = 10_000_000  # ~19 years at a 60 s step: beyond, not a query export


def looks_like_prometheus(head: bytes) -> bool:
    """Whether a JSON file's first bytes are a Prometheus query result (format detection)."""
    return b'"resultType"' in head[:4096]


def prometheus_trace(path: str | Path) -> RateTrace:
    """A range-query export of vLLM's counters as a rate trace (module docstring)."""
    file = str(path)
    try:
        obj = json.loads(read_bytes(path))
    except (ValueError, RecursionError):
        raise TraceError(file, None, None, NO_VALUE, "not valid JSON") from None
    data = obj.get("data", obj) if isinstance(obj, dict) else obj
    if not isinstance(data, dict) or "resultType" not in data:
        raise TraceError(file, None, "data.resultType", NO_VALUE, "not a Prometheus query result")
    if data["resultType"] != "matrix":
        raise TraceError(
            file,
            None,
            "data.resultType",
            data["resultType"],
            'must be "matrix" (a range query: an instant query has no windows)',
        )
    result = data.get("result")
    if not isinstance(result, list) or not result:
        raise TraceError(file, None, "data.result", NO_VALUE, "no series in the export")
    series: dict[str, list[tuple[str, np.ndarray, np.ndarray]]] = {}
    for i, item in enumerate(result):
        key = f"data.result[{i}]"
        name = _name(file, key, item)
        t, v = _samples(file, key, item)
        series.setdefault(name, []).append((key, t, v))
    requests_name = next((n for n in REQUEST_COUNTERS if n in series), None)
    if requests_name is None:
        raise TraceError(
            file,
            None,
            "data.result",
            sorted(series)[:4],
            f"no request counter; export one of {', '.join(REQUEST_COUNTERS)}",
        )
    used = [requests_name] + [n for n in (PROMPT_TOKENS, GENERATION_TOKENS) if n in series]
    all_t = np.concatenate([t for name in used for _, t, _ in series[name]])
    step = _step(series, used)
    t0, t_end = float(all_t.min()), float(all_t.max())
    windows = round((t_end - t0) / step) if step > 0 else 0
    if windows < 1:
        raise TraceError(file, None, "data.result", 1, "need at least 2 samples (one window)")
    resets = 0
    increases: dict[str, np.ndarray] = {}
    for name in used:
        total = np.zeros(windows)
        for key, t, v in series[name]:
            k = (t - t0) / step
            off = np.abs(k - np.round(k)) > 1e-3
            if off.any():
                j = int(np.flatnonzero(off)[0])
                raise TraceError(
                    file, None, f"{key}.values[{j}]", float(t[j]), f"not on the {step:g} s grid"
                )
            idx = np.round(k).astype(np.int64)
            d = np.diff(v)
            reset = d < 0
            resets += int(reset.sum())
            inc = np.where(reset, v[1:], d)  # Prometheus: a drop is a restart from 0
            spans = np.diff(idx)
            for lo, n, x in zip(idx[:-1].tolist(), spans.tolist(), inc.tolist(), strict=True):
                total[lo : lo + n] += x / n
        increases[name] = total
    requests = increases[requests_name]
    if not requests.sum() > 0:
        raise TraceError(file, None, requests_name, 0.0, "no request finished in the export")
    frame = pl.DataFrame({"start_s": np.arange(windows) * step, "rate_per_s": requests / step})
    with np.errstate(divide="ignore", invalid="ignore"):
        for name, column in (
            (PROMPT_TOKENS, "mean_input_tokens"),
            (GENERATION_TOKENS, "mean_output_tokens"),
        ):
            if name in increases:
                mean = np.where(requests > 0, increases[name] / requests, np.nan)
                frame = frame.with_columns(pl.Series(column, mean).fill_nan(None))
    notes = [
        f"{sum(len(series[n]) for n in used)} counter series, {windows} windows of {step:g} s "
        f"from {_utc(t0)}; requests from {requests_name} (finished requests)",
        f"{resets} counter resets (restarts) read as Prometheus' increase() does",
    ]
    for name, column in ((PROMPT_TOKENS, "input"), (GENERATION_TOKENS, "output")):
        if name in increases:
            notes.append(
                f"mean {column} tokens per request: {increases[name].sum() / requests.sum():.1f}"
            )
        else:
            notes.append(f"no {name}: mean {column} tokens unknown")
    ignored = sorted(set(series) - set(used))
    if ignored:
        notes.append(
            f"ignored {len(ignored)} other metrics (gauges are not arrivals): "
            + ", ".join(ignored[:4])
        )
    return RateTrace(file, "prometheus", step, frame, notes=tuple(notes))


def _name(file: str, key: str, item: object) -> str:
    if not isinstance(item, dict) or not isinstance(item.get("metric"), dict):
        raise TraceError(file, None, key, NO_VALUE, "expected {metric, values}")
    name = item["metric"].get("__name__")
    if not isinstance(name, str):
        raise TraceError(
            file,
            None,
            f"{key}.metric",
            item["metric"],
            "series without __name__: export the raw counters, not sum(...) or rate(...)",
        )
    return name


def _samples(file: str, key: str, item: dict[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    values = item.get("values")
    if not isinstance(values, list) or not values:
        raise TraceError(file, None, f"{key}.values", NO_VALUE, "missing or empty (a matrix row)")
    if len(values) > MAX_SERIES_SAMPLES:
        raise TraceError(file, None, f"{key}.values", len(values), "too many samples")
    t = np.empty(len(values))
    v = np.empty(len(values))
    for j, pair in enumerate(values):
        where = f"{key}.values[{j}]"
        if not (isinstance(pair, list) and len(pair) == 2):
            raise TraceError(file, None, where, pair, 'expected [unix time, "value"]')
        stamp = json_number(pair[0])
        if stamp is None or stamp < 0:
            raise TraceError(file, None, where, pair[0], "not a unix time")
        try:
            value = float(pair[1]) if isinstance(pair[1], str) else math.nan
        except ValueError:
            value = math.nan
        if not math.isfinite(value) or value < 0:
            raise TraceError(
                file,
                None,
                where,
                pair[1],
                "a counter is a finite number >= 0 (no restart explains this value)",
            )
        if j and stamp <= t[j - 1]:
            raise TraceError(
                file, None, where, pair[0], f"timestamps must increase (previous {t[j - 1]:g})"
            )
        t[j], v[j] = stamp, value
    return t, v


def _step(series: dict[str, list[tuple[str, np.ndarray, np.ndarray]]], used: list[str]) -> float:
    """The query step: the smallest spacing of consecutive samples of any used series."""
    gaps = [np.diff(t) for name in used for _, t, _ in series[name] if t.size > 1]
    return float(min(g.min() for g in gaps)) if gaps else 0.0


def _utc(t: float) -> str:
    return f"{dt.datetime.fromtimestamp(t, dt.UTC):%Y-%m-%d %H:%M} UTC"

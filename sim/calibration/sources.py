"""More measured-run formats for `sim calibrate runs`: GuideLLM reports and Prometheus scrapes.

* **GuideLLM** (`guidellm benchmark --output-path report.json`, a `GenerativeBenchmarksReport`):
  `benchmarks[].requests.successful[]` with `prompt_tokens`, `output_tokens`, `start_time`,
  `first_token_time`, `last_token_time` (epoch seconds; GuideLLM 0.2–0.3's
  `GenerativeTextResponseStats`, src/guidellm/benchmark/benchmark.py). Every benchmark of the
  report is one timeline (they run one after another), so all become one measured run.
* **Prometheus** (vLLM's `/metrics`, text exposition format, parsed by `prometheus-client`):
  one snapshot, or several in one file separated by `# EOF` lines (what concatenated
  OpenMetrics scrapes look like), or a Prometheus range-query JSON export
  (`/api/v1/query_range`, first and last sample of each series). The window's requests are the
  difference between the last and first snapshot (one snapshot: since the process started,
  `process_start_time_seconds`). Read: the histograms `vllm:time_to_first_token_seconds`,
  `vllm:inter_token_latency_seconds` (or the older `vllm:time_per_output_token_seconds`),
  `vllm:e2e_request_latency_seconds`, `vllm:request_prompt_tokens`,
  `vllm:request_generation_tokens`, and `vllm:cache_config_info` (num_gpu_blocks,
  block_size); when present, the per-request interval histograms of the engine core's
  timestamps (`INTERVAL_HISTOGRAMS`: queue, prefill, decode, inference time and per-request
  TPOT). A scrape has no per-request arrival times: the replay sends the window's
  requests evenly at the window's mean rate (count / window length; pass the load
  generator's rate when it is known), with lengths at the quantiles of the token histograms
  rescaled to their exact means. Bursty traffic queues more than the even replay: expect TTFT to
  be under-fitted there.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from prometheus_client.parser import text_string_to_metric_families

from sim.calibration.measured import MeasuredRun
from sim.errors import TraceError
from sim.traces._io import read_bytes

FloatArray = npt.NDArray[np.float64]

GUIDELLM_FIELDS = ("prompt_tokens", "output_tokens", "start_time", "first_token_time")

LATENCY_HISTOGRAMS = {
    "ttft": ("vllm:time_to_first_token_seconds",),
    "itl": ("vllm:inter_token_latency_seconds", "vllm:time_per_output_token_seconds"),
    "e2e": ("vllm:e2e_request_latency_seconds",),
}
INTERVAL_HISTOGRAMS = {
    "queue": "vllm:request_queue_time_seconds",
    "prefill": "vllm:request_prefill_time_seconds",
    "decode": "vllm:request_decode_time_seconds",
    "inference": "vllm:request_inference_time_seconds",
    "tpot": "vllm:request_time_per_output_token_seconds",
}
"""Optional per-request histograms, observed once per finished request (vLLM V1
`vllm/v1/metrics/stats.py` `update_from_finished_request`, `loggers.py`): queue = first
scheduled − queued, prefill = first token − first scheduled, decode = last token − first token,
inference = last token − first scheduled, tpot = decode / (output tokens − 1), 0 for a
one-token output (`request_time_per_output_token` is vLLM ≥ 0.11; the others are older)."""
TOKEN_HISTOGRAMS = {
    "input": "vllm:request_prompt_tokens",
    "output": "vllm:request_generation_tokens",
}


def _load_json(path: str | Path) -> Any:
    try:
        return json.loads(read_bytes(path))
    except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as err:
        where = f"line {err.lineno}" if isinstance(err, json.JSONDecodeError) else "file"
        raise TraceError(str(path), None, None, where, "not valid JSON (truncated?)") from None


def is_guidellm(doc: object) -> bool:
    return isinstance(doc, dict) and isinstance(doc.get("benchmarks"), list)


def is_prometheus_range(doc: object) -> bool:
    return (
        isinstance(doc, dict)
        and isinstance(doc.get("data"), dict)
        and doc["data"].get("resultType") == "matrix"
    )


# ------------------------------------------------------------------------------ GuideLLM


def guidellm_run(path: str | Path, doc: Any) -> MeasuredRun:
    """The successful requests of every benchmark of a GuideLLM report, on one timeline."""
    file = str(path)
    rows: list[tuple[float, int, int, float, float]] = []
    for b, bench in enumerate(doc["benchmarks"]):
        reqs = bench.get("requests") if isinstance(bench, dict) else None
        ok = reqs.get("successful") if isinstance(reqs, dict) else None
        if not isinstance(ok, list):
            raise TraceError(file, None, f"benchmarks[{b}].requests.successful", None, "missing")
        for i, r in enumerate(ok):
            where = f"benchmarks[{b}].requests.successful[{i}]"
            if not isinstance(r, dict):
                raise TraceError(file, None, where, None, "must be an object")
            vals = []
            for key in (*GUIDELLM_FIELDS, "last_token_time"):
                v = r.get(key, r.get("end_time") if key == "last_token_time" else None)
                if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                    raise TraceError(file, None, f"{where}.{key}", v, "must be a finite number")
                vals.append(float(v))
            p, o, start, first, last = vals
            if p < 1 or o < 1 or first < start or last < first:
                raise TraceError(file, None, where, None, "tokens < 1 or times out of order")
            rows.append((start, int(p), int(o), first - start, last - start))
    if not rows:
        raise TraceError(file, None, "benchmarks", None, "no successful requests")
    a = np.array(sorted(rows))
    return MeasuredRun(
        name=Path(file).stem,
        file=file,
        arrival_s=a[:, 0] - a[0, 0],
        input_tokens=a[:, 1].astype(np.int64),
        output_tokens=a[:, 2].astype(np.int64),
        ttft_s=a[:, 3],
        e2e_s=a[:, 4],
    )


# ------------------------------------------------------------------------------ Prometheus


@dataclass(frozen=True)
class Histogram:
    """A cumulative Prometheus histogram over a window: upper bounds (ascending, last +inf),
    cumulative counts, and the sum of observations."""

    bounds: FloatArray
    cumulative: FloatArray
    total: float

    @property
    def count(self) -> float:
        return float(self.cumulative[-1])

    @property
    def mean(self) -> float:
        return self.total / self.count if self.count > 0 else math.nan

    def quantile(self, q: float) -> float:
        """Linear interpolation inside the bucket (as PromQL's histogram_quantile)."""
        return bucket_quantile(self.bounds, self.cumulative, q)


def bucket_quantile(bounds: FloatArray, cumulative: FloatArray, q: float) -> float:
    total = cumulative[-1]
    if total <= 0:
        return math.nan
    rank = q * total
    i = int(np.searchsorted(cumulative, rank, side="left"))
    i = min(i, len(bounds) - 1)
    if math.isinf(bounds[i]):
        return float(bounds[i - 1]) if i > 0 else math.nan
    lo = 0.0 if i == 0 else float(bounds[i - 1])
    below = 0.0 if i == 0 else float(cumulative[i - 1])
    inside = float(cumulative[i]) - below
    frac = (rank - below) / inside if inside > 0 else 1.0
    return lo + (float(bounds[i]) - lo) * frac


def histogram_of(values: FloatArray, weights: FloatArray, bounds: FloatArray) -> FloatArray:
    """Cumulative counts of `values` (with `weights`) under Prometheus `le` bounds."""
    idx = np.searchsorted(bounds, values, side="left")  # le: value <= bound
    counts = np.bincount(idx, weights=weights, minlength=len(bounds))[: len(bounds)]
    return np.cumsum(counts)


@dataclass(frozen=True)
class Snapshot:
    """One scrape: per metric name, (labels, value) samples; time in s (None: not recorded)."""

    samples: dict[str, list[tuple[dict[str, str], float]]]
    time_s: float | None


@dataclass(frozen=True, eq=False)
class ScrapeRun:
    """What a `/metrics` window says: latency and token histograms, window length, engine info.

    latency: "ttft", "itl", "e2e", and each key of `INTERVAL_HISTOGRAMS` the scrape has."""

    name: str
    file: str
    window_s: float
    latency: dict[str, Histogram] = field(repr=False)
    tokens: dict[str, Histogram] = field(repr=False)
    kv_blocks: int | None = None
    block_size: int | None = None

    @property
    def requests(self) -> int:
        return round(self.latency["e2e"].count)

    def workload(self, rate: float | None = None) -> MeasuredRun:
        """The replay workload (module docstring): evenly sent at `rate` (default count/window),
        lengths at the token histograms' quantiles rescaled to their means."""
        n = self.requests
        r = rate if rate is not None else n / self.window_s
        arrival = np.arange(1, n + 1, dtype=np.float64) / r
        lens = {k: _lengths_from(h, n) for k, h in self.tokens.items()}
        return MeasuredRun(
            name=self.name,
            file=self.file,
            arrival_s=arrival,
            input_tokens=lens["input"],
            output_tokens=lens["output"],
        )


def _lengths_from(h: Histogram, n: int) -> npt.NDArray[np.int64]:
    mean = h.mean
    counts = np.diff(h.cumulative, prepend=0.0)
    if np.count_nonzero(counts) <= 1:  # one bucket: no shape to read, every request at the mean
        return np.full(n, max(1, round(mean)), dtype=np.int64)
    q = (np.arange(n) + 0.5) / n
    raw = np.array([h.quantile(float(x)) for x in q])
    raw = np.where(np.isfinite(raw) & (raw > 0), raw, mean)
    scaled = raw * (mean / raw.mean())
    lengths: npt.NDArray[np.int64] = np.maximum(1, np.round(scaled)).astype(np.int64)
    return lengths


def _parse_text(file: str, text: str, part: int) -> Snapshot:
    samples: dict[str, list[tuple[dict[str, str], float]]] = {}
    times: list[float] = []
    try:
        for family in text_string_to_metric_families(text):
            for s in family.samples:
                samples.setdefault(s.name, []).append((dict(s.labels), float(s.value)))
                if s.timestamp is not None:
                    times.append(float(s.timestamp))
    except (ValueError, TypeError, IndexError) as err:
        where = f"snapshot {part + 1}" if part else "file"
        raise TraceError(
            file, None, None, where, f"not Prometheus text format ({err})"[:160]
        ) from None
    return Snapshot(samples, max(times) if times else None)


def _range_snapshots(file: str, doc: Any) -> list[Snapshot]:
    first: dict[str, list[tuple[dict[str, str], float]]] = {}
    last: dict[str, list[tuple[dict[str, str], float]]] = {}
    t0, t1 = math.inf, -math.inf
    for i, series in enumerate(doc["data"].get("result") or []):
        metric = series.get("metric") if isinstance(series, dict) else None
        values = series.get("values") if isinstance(series, dict) else None
        if not isinstance(metric, dict) or not isinstance(values, list) or not values:
            raise TraceError(file, None, f"data.result[{i}]", None, "needs metric and values")
        labels = {k: str(v) for k, v in metric.items() if k != "__name__"}
        name = str(metric.get("__name__", ""))
        try:
            ta, va = float(values[0][0]), float(values[0][1])
            tb, vb = float(values[-1][0]), float(values[-1][1])
        except (TypeError, ValueError, IndexError):
            raise TraceError(
                file, None, f"data.result[{i}].values", None, "need [time, value]"
            ) from None
        first.setdefault(name, []).append((labels, va))
        last.setdefault(name, []).append((labels, vb))
        t0, t1 = min(t0, ta), max(t1, tb)
    if not first:
        raise TraceError(file, None, "data.result", None, "no series")
    return [Snapshot(first, t0), Snapshot(last, t1)]


def read_snapshots(path: str | Path) -> list[Snapshot]:
    """The snapshots of a scrape file (text format, `# EOF`-separated, or a range export)."""
    file = str(path)
    raw = read_bytes(path)
    if raw.lstrip()[:1] == b"{":
        doc = _load_json(path)
        if not is_prometheus_range(doc):
            raise TraceError(file, None, "data.resultType", None, "not a Prometheus range export")
        return _range_snapshots(file, doc)
    text = raw.decode("utf-8", errors="replace")
    parts = [p for p in text.split("# EOF") if p.strip()]
    if not parts:
        raise TraceError(file, None, None, None, "empty scrape")
    return [_parse_text(file, p.strip() + "\n", i) for i, p in enumerate(parts)]


def _histogram(file: str, snap: Snapshot, name: str) -> Histogram | None:
    buckets = snap.samples.get(f"{name}_bucket")
    total = snap.samples.get(f"{name}_sum")
    count = snap.samples.get(f"{name}_count")
    if buckets is None and total is None and count is None:
        return None
    if not buckets:
        raise TraceError(file, None, name, None, "histogram without buckets (_bucket lines)")
    by_le: dict[float, float] = {}
    for labels, value in buckets:  # summed over every other label (engines, models)
        le = float(labels.get("le", "nan"))
        if math.isnan(le):
            raise TraceError(file, None, f"{name}_bucket", None, "bucket without an le label")
        by_le[le] = by_le.get(le, 0.0) + value
    bounds = np.array(sorted(by_le))
    if not math.isinf(bounds[-1]):
        raise TraceError(file, None, f"{name}_bucket", None, 'no le="+Inf" bucket')
    cum = np.array([by_le[b] for b in bounds])
    s = sum(v for _, v in total or [])
    return Histogram(bounds, cum, s)


def _delta(file: str, name: str, a: Histogram | None, b: Histogram) -> Histogram:
    if a is None:
        return b
    if a.bounds.shape != b.bounds.shape or not np.array_equal(a.bounds, b.bounds):
        raise TraceError(file, None, name, None, "bucket bounds differ between snapshots")
    cum = b.cumulative - a.cumulative
    if (cum < 0).any() or b.total < a.total:
        raise TraceError(
            file, None, name, float(cum.min()), "counter went backwards (a restart in the window?)"
        )
    return Histogram(b.bounds, cum, b.total - a.total)


def _window(file: str, snaps: list[Snapshot]) -> float:
    last = snaps[-1]
    if len(snaps) > 1:
        t0, t1 = snaps[0].time_s, last.time_s
        if t0 is None or t1 is None:
            raise TraceError(file, None, None, None, "snapshots need sample timestamps")
        if t1 <= t0:
            raise TraceError(file, None, None, t1 - t0, "snapshot times must increase")
        return t1 - t0
    start = last.samples.get("process_start_time_seconds")
    if last.time_s is None or not start:
        raise TraceError(
            file,
            None,
            "process_start_time_seconds",
            None,
            "one snapshot needs sample timestamps and the process start time to know its window",
        )
    window = last.time_s - start[0][1]
    if window <= 0:
        raise TraceError(file, None, "process_start_time_seconds", window, "window must be > 0")
    return window


def scrape_run(path: str | Path) -> ScrapeRun:
    """The window of a `/metrics` scrape file (module docstring); located errors."""
    file = str(path)
    snaps = read_snapshots(path)

    def hist(names: Iterable[str]) -> Histogram | None:
        for name in names:
            b = _histogram(file, snaps[-1], name)
            if b is None:
                continue
            a = _histogram(file, snaps[0], name) if len(snaps) > 1 else None
            return _delta(file, name, a, b)
        return None

    def required(names: tuple[str, ...]) -> Histogram:
        h = hist(names)
        if h is None:
            raise TraceError(file, None, names[0], None, "missing histogram")
        return h

    latency = {k: required(v) for k, v in LATENCY_HISTOGRAMS.items()}
    for key, name in INTERVAL_HISTOGRAMS.items():
        if (h := hist((name,))) is not None:
            latency[key] = h
    tokens = {k: required((v,)) for k, v in TOKEN_HISTOGRAMS.items()}
    if latency["e2e"].count < 1:
        raise TraceError(file, None, LATENCY_HISTOGRAMS["e2e"][0], 0, "no request in the window")
    info = snaps[-1].samples.get("vllm:cache_config_info") or []
    labels = info[0][0] if info else {}
    return ScrapeRun(
        name=Path(file).stem,
        file=file,
        window_s=_window(file, snaps),
        latency=latency,
        tokens=tokens,
        kv_blocks=_int_label(labels, "num_gpu_blocks"),
        block_size=_int_label(labels, "block_size"),
    )


def _int_label(labels: dict[str, str], key: str) -> int | None:
    try:
        v = int(labels[key])
    except (KeyError, ValueError):
        return None
    return v if v > 0 else None

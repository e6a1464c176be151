"""Which reader a file needs: `read_trace(path, format=None)` with format detection."""

from __future__ import annotations

from pathlib import Path

from sim.config import TRACE_FORMATS
from sim.config.spec import TraceColumns
from sim.errors import NO_VALUE, TraceError
from sim.traces._io import base_suffix, check_path, head_bytes, read_header
from sim.traces.columns import describe_columns, mapped_trace
from sim.traces.model import RateTrace, RequestTrace
from sim.traces.otel import looks_like_otel, otel_trace
from sim.traces.prometheus import looks_like_prometheus, prometheus_trace
from sim.traces.rates import (
    RATE_COLUMNS,
    SERVEGEN_FILE,
    rate_csv_trace,
    servegen_trace,
)
from sim.traces.readers import (
    azure_trace,
    detect_request_format,
    generic_csv_trace,
    generic_jsonl_trace,
    generic_parquet_trace,
    llmservingsim_trace,
    mooncake_trace,
    vidur_trace,
    vllm_bench_trace,
)

FORMATS = TRACE_FORMATS  # one list: config validates `format` keys against the same names


def detect_format(path: str | Path) -> str:
    """The format of `path` from its name and first line (see `read_trace`)."""
    p = Path(path)
    check_path(p, folder_ok=True)
    if p.is_dir() or SERVEGEN_FILE.search(p.name):
        return "servegen"
    if not p.exists():
        raise TraceError(
            str(p), None, None, NO_VALUE, "cannot read file (No such file or directory)"
        )
    suffix = base_suffix(p)
    if suffix == ".json" and looks_like_prometheus(head_bytes(p)):
        return "prometheus"
    if suffix in (".jsonl", ".ndjson") and looks_like_otel(head_bytes(p).split(b"\n", 1)[0]):
        return "otel"
    header = None
    if suffix in (".csv", ".txt", ""):
        header = read_header(p)  # the first line only, decompressed as a stream
        if header is not None and set(RATE_COLUMNS) <= set(header):
            return "rates"
    found = detect_request_format(p, header)
    if found is None:
        # Nothing of the file is quoted: it is not recognisably a trace.
        raise TraceError(
            str(p),
            None,
            None,
            NO_VALUE,
            f"cannot tell the trace format; name one of {', '.join(FORMATS)}",
        )
    return found


def read_trace(
    path: str | Path, format: str | None = None, columns: TraceColumns | None = None
) -> RequestTrace | RateTrace:
    """Read any supported trace: `format` one of `FORMATS`, or None to detect it.

    Detection: a folder or a `chunk-<n>-trace.csv` file is ServeGen; `.json` is a Prometheus
    range-query export when it has a `resultType`, else a `vllm bench` result; `.parquet` the
    generic schema; JSON lines by the keys of their first object (OTLP spans: `otel`); a CSV by
    its header (Azure, Vidur, generic requests, generic rates). `.gz` / `.xz` are decompressed.

    `columns` maps a request log's own column names (and time unit) to a request
    (`sim.traces.columns`): the file is then read as a generic request log whatever its names.
    """
    check_path(path, folder_ok=True)
    if columns is not None:
        if format not in (None, "generic"):
            raise TraceError(
                str(path),
                None,
                None,
                describe_columns(columns),
                f'a column mapping is for request logs (format "generic"), not "{format}"',
            )
        return mapped_trace(path, columns)
    fmt = detect_format(path) if format is None else format
    match fmt:
        case "azure":
            return azure_trace(path)
        case "mooncake":
            return mooncake_trace(path)
        case "servegen":
            return servegen_trace(path)
        case "vidur":
            return vidur_trace(path)
        case "vllm-bench":
            return vllm_bench_trace(path)
        case "llmservingsim":
            return llmservingsim_trace(path)
        case "generic":
            suffix = base_suffix(path)
            if suffix == ".parquet":
                return generic_parquet_trace(path)
            if suffix in (".jsonl", ".ndjson"):
                return generic_jsonl_trace(path)
            return generic_csv_trace(path)
        case "rates":
            return rate_csv_trace(path)
        case "otel":
            return otel_trace(path)
        case "prometheus":
            return prometheus_trace(path)
        case _:
            raise TraceError(
                str(path), None, None, fmt, f"unknown trace format; one of {', '.join(FORMATS)}"
            )

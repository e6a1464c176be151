"""OpenTelemetry GenAI spans exported as JSON lines → a request trace (format `otel`).

Each line is either an OTLP/JSON export envelope (`{"resourceSpans": [{"scopeSpans": [{"spans":
[...]}]}]}`, what the OpenTelemetry Collector's file exporter writes) or one span object. A span's
start is `startTimeUnixNano` (an integer, or a string of digits, as OTLP/JSON writes int64) or
`start_time` (ISO-8601); its attributes are an OTLP list (`[{"key": …, "value": {"intValue": …}}]`)
or a plain object.

One request per GenAI inference span (semantic conventions for generative AI):
`gen_ai.usage.input_tokens` → input, `gen_ai.usage.output_tokens` → output (the deprecated
`gen_ai.usage.prompt_tokens` / `completion_tokens` are read when the new names are absent), the
span's start → arrival (rebased to the earliest span; spans are sorted by start, as exports
group them by end). Left out and counted, never silently: spans with no `gen_ai.*` attribute
(HTTP, database…), GenAI spans of other operations (`gen_ai.operation.name` not chat,
text_completion or generate_content: embeddings, tools and agent spans, whose usage would count
their model calls twice), failed calls (`error.type` set), and calls with 0 output tokens. A
GenAI inference span without token counts is an error (the instrumentation does not record
usage: nothing to read).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sim.errors import NO_VALUE, TraceError
from sim.traces._io import MAX_TOKENS, json_integer, read_bytes, text_lines
from sim.traces.model import REQUEST_SCHEMA, RequestTrace

INPUT_TOKENS = ("gen_ai.usage.input_tokens", "gen_ai.usage.prompt_tokens")
OUTPUT_TOKENS = ("gen_ai.usage.output_tokens", "gen_ai.usage.completion_tokens")
INFERENCE_OPERATIONS = ("chat", "text_completion", "generate_content")
_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)


def otel_trace(path: str | Path) -> RequestTrace:
    """GenAI spans of an OTLP/JSON-lines export as requests (module docstring)."""
    file = str(path)
    lines = text_lines(path, read_bytes(path))
    if not lines:
        raise TraceError(file, None, None, "", "file is empty")
    starts: list[int] = []
    inputs: list[int] = []
    outputs: list[int] = []
    skipped = {"no_genai": 0, "operation": 0, "error": 0, "empty": 0}
    for row, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            shown = NO_VALUE if row == 1 else line[:40]
            raise TraceError(file, row, None, shown, "not valid JSON") from None
        for where, span in _spans(file, row, obj, line):
            attrs = _attributes(file, row, where, span.get("attributes"))
            if not any(k.startswith("gen_ai.") for k in attrs):
                skipped["no_genai"] += 1
                continue
            operation = attrs.get("gen_ai.operation.name")
            if operation is not None and operation not in INFERENCE_OPERATIONS:
                skipped["operation"] += 1
                continue
            if attrs.get("error.type") not in (None, ""):
                skipped["error"] += 1
                continue
            inp = _token(file, row, where, attrs, INPUT_TOKENS)
            out = _token(file, row, where, attrs, OUTPUT_TOKENS)
            if out == 0:
                skipped["empty"] += 1
                continue
            if inp < 1:
                raise TraceError(file, row, f"{where}.{INPUT_TOKENS[0]}", inp, "must be >= 1")
            starts.append(_start_ns(file, row, where, span))
            inputs.append(inp)
            outputs.append(out)
    reasons = {
        "no_genai": "spans without gen_ai.* attributes",
        "operation": f"GenAI spans of other operations (not {', '.join(INFERENCE_OPERATIONS)})",
        "error": "failed GenAI calls (error.type set)",
        "empty": "GenAI calls with 0 output tokens",
    }
    skipped_rows = tuple((reasons[k], n) for k, n in skipped.items() if n)
    if not starts:
        raise TraceError(
            file, None, None, NO_VALUE, "no GenAI inference span with token usage in the file"
        )
    t = np.asarray(starts, dtype=np.int64)
    order = np.argsort(t, kind="stable")
    arrival = (t[order] - t[order[0]]).astype(np.float64) / 1e9
    frame = pl.DataFrame(
        {
            "arrival_s": arrival,
            "input_tokens": np.asarray(inputs, dtype=np.int64)[order],
            "output_tokens": np.asarray(outputs, dtype=np.int64)[order],
        },
        schema=REQUEST_SCHEMA,
    )
    first = _EPOCH + dt.timedelta(microseconds=int(t[order[0]]) // 1000)
    notes = (f"first span starts at {first:%Y-%m-%d %H:%M:%S} UTC",)
    return RequestTrace(file, "otel", frame, skipped=skipped_rows, notes=notes)


def looks_like_otel(first_line: bytes) -> bool:
    """Whether a JSON line is an OTLP envelope or a span (for format detection)."""
    try:
        obj = json.loads(first_line)
    except (ValueError, RecursionError):
        return False
    if not isinstance(obj, dict):
        return False
    return "resourceSpans" in obj or (
        ("startTimeUnixNano" in obj or "start_time" in obj) and "attributes" in obj
    )


def _spans(file: str, row: int, obj: object, line: str) -> Iterator[tuple[str, dict[str, Any]]]:
    """(key path, span) for every span of one line."""
    if not isinstance(obj, dict):
        raise TraceError(file, row, None, NO_VALUE if row == 1 else line[:40], "not an object")
    if "resourceSpans" not in obj:
        yield "span", obj
        return
    for i, resource in enumerate(_list(file, row, "resourceSpans", obj.get("resourceSpans"))):
        key = f"resourceSpans[{i}]"
        scopes = _list(file, row, f"{key}.scopeSpans", _get(resource, "scopeSpans"))
        for j, scope in enumerate(scopes):
            skey = f"{key}.scopeSpans[{j}]"
            for k, span in enumerate(_list(file, row, f"{skey}.spans", _get(scope, "spans"))):
                if not isinstance(span, dict):
                    raise TraceError(file, row, f"{skey}.spans[{k}]", span, "not an object")
                yield f"{skey}.spans[{k}]", span


def _get(obj: object, key: str) -> object:
    return obj.get(key, []) if isinstance(obj, dict) else obj


def _list(file: str, row: int, key: str, value: object) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise TraceError(file, row, key, type(value).__name__, "must be a list")
    return value


def _attributes(file: str, row: int, where: str, raw: object) -> dict[str, object]:
    """A span's attributes as a plain dict (OTLP's key/value list or already a dict)."""
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return {str(k): v for k, v in raw.items()}
    if not isinstance(raw, list):
        raise TraceError(file, row, f"{where}.attributes", type(raw).__name__, "must be a list")
    out: dict[str, object] = {}
    for i, item in enumerate(raw):
        if not (isinstance(item, dict) and isinstance(item.get("key"), str)):
            raise TraceError(
                file, row, f"{where}.attributes[{i}]", item, "expected {key, value} (OTLP/JSON)"
            )
        value = item.get("value")
        if isinstance(value, dict) and len(value) == 1:
            ((kind, inner),) = value.items()
            if kind in ("intValue", "stringValue", "doubleValue", "boolValue"):
                value = inner
        out[item["key"]] = value
    return out


def _token(
    file: str, row: int, where: str, attrs: dict[str, object], names: tuple[str, ...]
) -> int:
    for name in names:
        if name in attrs:
            value = attrs[name]
            n = int(value) if isinstance(value, str) and value.strip().isdigit() else value
            if json_integer(n) is None:
                raise TraceError(file, row, f"{where}.{name}", value, "not an integer")
            assert isinstance(n, int)
            if not 0 <= n <= MAX_TOKENS:
                raise TraceError(
                    file, row, f"{where}.{name}", n, f"token count must be in [0, {MAX_TOKENS:,}]"
                )
            return n
    raise TraceError(
        file,
        row,
        where,
        NO_VALUE,
        f"GenAI span without {names[0]} (does the instrumentation record token usage?)",
    )


def _start_ns(file: str, row: int, where: str, span: dict[str, Any]) -> int:
    if "startTimeUnixNano" in span:
        raw = span["startTimeUnixNano"]
        value = int(raw) if isinstance(raw, str) and raw.isdigit() else raw
        if json_integer(value) is None or not 0 < value < 2**63:
            raise TraceError(
                file, row, f"{where}.startTimeUnixNano", raw, "not a time in ns since the epoch"
            )
        assert isinstance(value, int)
        return value
    raw = span.get("start_time")
    if isinstance(raw, str):
        try:
            stamp = dt.datetime.fromisoformat(raw.strip())
        except ValueError:
            stamp = None
        if stamp is not None:
            if stamp.tzinfo is None:
                stamp = stamp.replace(tzinfo=dt.UTC)
            delta = stamp - _EPOCH
            return (delta.days * 86_400 + delta.seconds) * 10**9 + delta.microseconds * 1000
    raise TraceError(
        file, row, f"{where}.startTimeUnixNano", raw, "missing or not a time (span start)"
    )

"""Request-trace readers: every supported format → the generic request schema, or a located error.

- `azure`: Azure LLM inference trace 2023 CSV, `TIMESTAMP, ContextTokens, GeneratedTokens`;
- `mooncake`: Mooncake JSON lines, `timestamp` (ms), `input_length`, `output_length`, and
  `hash_ids` (KV-prefix block hashes, kept for prefix-cache modelling);
- `vidur`: Vidur processed-trace CSV, `[arrived_at,] num_prefill_tokens, num_decode_tokens`
  `[, num_total_tokens, pd_ratio]` (without `arrived_at`: a length-only dataset);
- `vllm-bench`: the JSON of `vllm bench serve --save-result --save-detailed`, `input_lens`,
  `output_lens`, optionally `start_times` (recent vLLM) and `errors`;
- `llmservingsim`: per-request JSON lines of a real vLLM run, `arrival_time` (unix s),
  `input_toks`, `output_toks`;
- `generic`: CSV, Parquet or JSON lines, `arrival_s, input_tokens, output_tokens[, tenant]`.

Times become `arrival_s`, seconds from the trace start: Azure and LLMServingSim are rebased to
the first row (their clocks are absolute), Mooncake's milliseconds are divided by 1000, Vidur and
generic files are taken as written (already relative; must be ≥ 0). Every format requires
non-decreasing times and token counts that are integers ≥ 1. Files ending in `.gz` or `.xz` are
decompressed in memory. The only rows ever skipped are failed requests of a `vllm bench` run
(`errors[i]` non-empty or `output_lens[i] == 0`): they are counted in `RequestTrace.skipped`.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sim.errors import NO_VALUE, TraceError
from sim.traces._io import (
    MAX_TOKENS,
    base_suffix,
    check_non_decreasing,
    check_path,
    fail_first,
    float_column,
    json_integer,
    json_number,
    read_bytes,
    read_csv_strings,
    text_lines,
    token_column,
)
from sim.traces.model import REQUEST_SCHEMA, RequestTrace

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
AZURE_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S%.f"  # e.g. 2023-11-16 18:15:46.6805900
VIDUR_COLUMNS = ("num_prefill_tokens", "num_decode_tokens")
VIDUR_OPTIONAL = ("arrived_at", "num_total_tokens", "pd_ratio")
GENERIC_COLUMNS = ("arrival_s", "input_tokens", "output_tokens")
GENERIC_OPTIONAL = ("tenant",)
MOONCAKE_FIELDS = {"timestamp": "number", "input_length": "integer", "output_length": "integer"}
LLMSERVINGSIM_FIELDS = {"arrival_time": "number", "input_toks": "integer", "output_toks": "integer"}
GENERIC_FIELDS = {"arrival_s": "number", "input_tokens": "integer", "output_tokens": "integer"}


# ----------------------------------------------------------------------------------------- CSV


def read_azure_trace(path: str | Path) -> pl.DataFrame:
    """An Azure LLM inference trace 2023 CSV as a frame `arrival_s, input_tokens, output_tokens`
    (see `azure_trace`)."""
    return azure_trace(path).frame


def azure_trace(path: str | Path) -> RequestTrace:
    """An Azure LLM inference trace 2023 CSV.

    `arrival_s` is seconds since the first row's timestamp (the files carry no timezone, so only
    differences are meaningful); `input_tokens` is `ContextTokens` and `output_tokens` is
    `GeneratedTokens`.
    """
    file = str(path)
    raw = read_csv_strings(path, AZURE_COLUMNS)
    stamps = raw["TIMESTAMP"].str.to_datetime(AZURE_TIMESTAMP_FORMAT, strict=False, time_unit="ns")
    fail_first(
        file,
        raw["TIMESTAMP"],
        stamps.is_null(),
        "not a timestamp of the form YYYY-MM-DD HH:MM:SS[.fffffff]",
    )
    arrival_s = (stamps - stamps[0]).dt.total_nanoseconds().cast(pl.Float64) / 1e9
    check_non_decreasing(file, arrival_s, raw["TIMESTAMP"])
    frame = _requests(
        arrival_s,
        token_column(file, raw["ContextTokens"]),
        token_column(file, raw["GeneratedTokens"]),
    )
    return RequestTrace(file, "azure", frame)


def vidur_trace(path: str | Path) -> RequestTrace:
    """A Vidur processed trace: `splitwise_*` (with `arrived_at`, s from the trace start) or a
    length-only dataset (`arxiv_*`, `sharegpt_*`: no arrival times).

    `num_prefill_tokens` → input, `num_decode_tokens` → output; when `num_total_tokens` is
    present it must equal their sum (a check of the file's integrity); `pd_ratio` is not read.
    """
    file = str(path)
    raw = read_csv_strings(path, VIDUR_COLUMNS, VIDUR_OPTIONAL)
    inp = token_column(file, raw["num_prefill_tokens"])
    out = token_column(file, raw["num_decode_tokens"])
    if "num_total_tokens" in raw.columns:
        total = token_column(file, raw["num_total_tokens"])
        fail_first(
            file,
            raw["num_total_tokens"],
            total != inp + out,
            "must equal num_prefill_tokens + num_decode_tokens",
        )
    if "arrived_at" not in raw.columns:
        arrival = pl.Series("arrival_s", [None] * raw.height, dtype=pl.Float64)
        frame = _requests(arrival, inp, out)
        return RequestTrace(file, "vidur", frame, has_arrivals=False)
    arrival = _relative_times(file, raw["arrived_at"])
    return RequestTrace(file, "vidur", _requests(arrival, inp, out))


def generic_csv_trace(path: str | Path) -> RequestTrace:
    """The generic CSV schema: `arrival_s` (s from the trace start, ≥ 0, non-decreasing),
    `input_tokens`, `output_tokens` (integers ≥ 1), optionally `tenant` (a non-empty string)."""
    file = str(path)
    raw = read_csv_strings(path, GENERIC_COLUMNS, GENERIC_OPTIONAL)
    frame = _requests(
        _relative_times(file, raw["arrival_s"]),
        token_column(file, raw["input_tokens"]),
        token_column(file, raw["output_tokens"]),
    )
    if "tenant" in raw.columns:
        fail_first(file, raw["tenant"], raw["tenant"].is_null(), "missing value")
        frame = frame.with_columns(raw["tenant"].alias("tenant"))
    return RequestTrace(file, "generic", frame)


def generic_parquet_trace(path: str | Path) -> RequestTrace:
    """The generic schema in Parquet: numeric `arrival_s`, integer token columns, optional
    string `tenant`. Rows are 1-based in errors."""
    file = str(path)
    check_path(path)
    try:
        frame = pl.read_parquet(path)
    except OSError as err:
        raise TraceError(file, None, None, NO_VALUE, f"cannot read file ({err.strerror})") from None
    except (pl.exceptions.PolarsError, ValueError, MemoryError):
        raise TraceError(
            file, None, None, NO_VALUE, "not a Parquet file (or a corrupt one)"
        ) from None
    for name in GENERIC_COLUMNS:
        if name not in frame.columns:
            raise TraceError(
                file, None, name, frame.columns, f"missing column; expected {list(GENERIC_COLUMNS)}"
            )
    for name in frame.columns:
        if name not in GENERIC_COLUMNS + GENERIC_OPTIONAL:
            raise TraceError(
                file,
                None,
                name,
                frame.columns,
                f"unexpected column; expected {list(GENERIC_COLUMNS)} and optional ['tenant']",
            )
    if frame.height == 0:
        raise TraceError(file, None, None, 0, "no rows")
    checks = {"arrival_s": frame["arrival_s"].dtype.is_numeric()}
    checks |= {c: frame[c].dtype.is_integer() for c in ("input_tokens", "output_tokens")}
    if "tenant" in frame.columns:
        checks["tenant"] = frame["tenant"].dtype == pl.String
    for name, ok in checks.items():
        if not ok:
            raise TraceError(file, None, name, str(frame[name].dtype), "wrong column type")
    for name in frame.columns:
        fail_first(file, frame[name], frame[name].is_null(), "missing value")
    arrival = frame["arrival_s"].cast(pl.Float64)
    fail_first(file, frame["arrival_s"], ~arrival.is_finite(), "must be a finite number")
    fail_first(file, frame["arrival_s"], arrival < 0.0, "must be >= 0 (s from the trace start)")
    check_non_decreasing(file, arrival, frame["arrival_s"])
    tokens = {}
    for name in ("input_tokens", "output_tokens"):
        raw = frame[name]
        fail_first(file, raw, raw < 1, "token count must be >= 1")
        fail_first(file, raw, raw > MAX_TOKENS, f"token count must be <= {MAX_TOKENS:,}")
        tokens[name] = raw.cast(pl.Int64)  # UInt64 and the like: in range after the check
    out = _requests(arrival, tokens["input_tokens"], tokens["output_tokens"])
    if "tenant" in frame.columns:
        out = out.with_columns(frame["tenant"])
    return RequestTrace(file, "generic", out)


# ---------------------------------------------------------------------------------- JSON lines


def mooncake_trace(path: str | Path) -> RequestTrace:
    """Mooncake JSON lines: `timestamp` (ms from the trace start), `input_length`,
    `output_length`, and `hash_ids` (KV-prefix block hashes, kept as a list column)."""
    file = str(path)
    frame = read_json_lines(path, MOONCAKE_FIELDS, lists=("hash_ids",))
    # numpy's true division is correctly rounded (polars' may multiply by 0.001 instead).
    arrival = pl.Series("arrival_s", frame["timestamp"].to_numpy() / 1000.0)
    fail_first(file, frame["timestamp"], arrival < 0.0, "must be >= 0 (ms from the trace start)")
    check_non_decreasing(file, arrival, frame["timestamp"])
    out = _requests(
        arrival, _tokens(file, frame["input_length"]), _tokens(file, frame["output_length"])
    )
    if "hash_ids" in frame.columns:
        out = out.with_columns(frame["hash_ids"])
    notes = _quantisation_note(arrival)
    return RequestTrace(file, "mooncake", out, notes=notes)


def llmservingsim_trace(path: str | Path) -> RequestTrace:
    """Per-request JSON lines of a real vLLM run (LLMServingSim's benchmark harness):
    `arrival_time` (unix seconds, rebased to the first request), `input_toks`, `output_toks`."""
    file = str(path)
    frame = read_json_lines(path, LLMSERVINGSIM_FIELDS)
    stamps = frame["arrival_time"]
    arrival = stamps - stamps[0]
    check_non_decreasing(file, arrival, stamps)
    out = _requests(
        arrival, _tokens(file, frame["input_toks"]), _tokens(file, frame["output_toks"])
    )
    return RequestTrace(file, "llmservingsim", out)


def generic_jsonl_trace(path: str | Path) -> RequestTrace:
    """The generic schema as JSON lines (`arrival_s`, `input_tokens`, `output_tokens`)."""
    file = str(path)
    frame = read_json_lines(path, GENERIC_FIELDS)
    arrival = frame["arrival_s"]
    fail_first(file, arrival, arrival < 0.0, "must be >= 0 (s from the trace start)")
    check_non_decreasing(file, arrival, arrival)
    out = _requests(
        arrival, _tokens(file, frame["input_tokens"]), _tokens(file, frame["output_tokens"])
    )
    return RequestTrace(file, "generic", out)


def read_json_lines(
    path: str | Path, fields: dict[str, str], lists: tuple[str, ...] = ()
) -> pl.DataFrame:
    """JSON lines with the required `fields` (kind "number" or "integer") and optional list-of-
    integer fields `lists`; other keys are ignored. Row = line number (1-based).

    Fast path: polars' reader with a schema. Any failure (malformed JSON, a wrong type) falls
    back to a line-by-line scan that names the first bad line, field and value.
    """
    file = str(path)
    data = read_bytes(path)
    lines = text_lines(path, data)
    if not lines:
        raise TraceError(file, None, None, "", "file is empty")
    for i, line in enumerate(lines):
        if not line.strip():
            raise TraceError(file, i + 1, None, line, "blank line")
    schema: dict[str, Any] = {
        name: pl.Float64 if kind == "number" else pl.Int64 for name, kind in fields.items()
    }
    schema |= {name: pl.List(pl.Int64) for name in lists}
    try:
        frame = pl.read_ndjson(io.BytesIO(data), schema=schema)
    except pl.exceptions.PolarsError:
        _scan_json_lines(file, lines, fields, lists)
        raise TraceError(file, None, None, NO_VALUE, "malformed JSON lines") from None
    if frame.height != len(lines):  # cannot happen without blank lines; never trust it silently
        _scan_json_lines(file, lines, fields, lists)
        raise TraceError(
            file, None, None, frame.height, f"read {frame.height} of {len(lines)} lines"
        )
    for name in fields:
        fail_first(file, frame[name], frame[name].is_null(), "missing field (or null)")
        if fields[name] == "number":
            fail_first(file, frame[name], ~frame[name].is_finite(), "must be a finite number")
    return frame


def _scan_json_lines(
    file: str, lines: list[str], fields: dict[str, str], lists: tuple[str, ...]
) -> None:
    """Raise a located TraceError at the first line that is not a valid record."""
    for i, line in enumerate(lines):
        row = i + 1
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError) as err:
            message = err.msg if isinstance(err, json.JSONDecodeError) else "nested too deeply"
            if isinstance(err, ValueError) and not isinstance(err, json.JSONDecodeError):
                message = "a number too long"
            raise TraceError(
                file, row, None, _excerpt(row, line), f"not valid JSON ({message})"
            ) from None
        if not isinstance(obj, dict):
            raise TraceError(file, row, None, _excerpt(row, line), "not a JSON object")
        for name, kind in fields.items():
            if name not in obj or obj[name] is None:
                raise TraceError(file, row, name, obj.get(name), "missing field (or null)")
            value = obj[name]
            if kind == "integer" and json_integer(value) is None:
                raise TraceError(file, row, name, value, "not an integer")
            if kind == "number" and json_number(value) is None:
                raise TraceError(file, row, name, value, "not a finite number")
            if kind == "integer" and not -(2**63) <= value < 2**63:
                raise TraceError(file, row, name, value, "integer out of range")
        for name in lists:
            value = obj.get(name)
            if value is not None and not (
                isinstance(value, list)
                and all(json_integer(v) is not None and -(2**63) <= v < 2**63 for v in value)
            ):
                raise TraceError(file, row, name, value, "must be a list of integers")


# ------------------------------------------------------------------------------ vllm bench JSON


def vllm_bench_trace(path: str | Path) -> RequestTrace:
    """The result JSON of `vllm bench serve --save-result --save-detailed`.

    Per request `i`: `input_lens[i]` → input, `output_lens[i]` → output. `start_times[i]` (when
    the client sent it; written by recent vLLM versions) → arrival, rebased to the first request;
    without it the trace is length-only. Failed requests (`errors[i]` non-empty, or 0 output
    tokens) are skipped and counted. Row = request index (1-based) in errors.
    """
    file = str(path)
    try:
        obj = json.loads(read_bytes(path))
    except (ValueError, RecursionError) as err:  # JSONDecodeError, UnicodeDecodeError, huge ints
        what = err.msg if isinstance(err, json.JSONDecodeError) else type(err).__name__
        raise TraceError(file, None, None, NO_VALUE, f"not valid JSON ({what})") from None
    if not isinstance(obj, dict):
        raise TraceError(file, None, None, type(obj).__name__, "expected a JSON object")
    arrays: dict[str, list[Any]] = {}
    for name in ("input_lens", "output_lens", "start_times", "errors"):
        value = obj.get(name)
        if value is None and name in ("input_lens", "output_lens"):
            raise TraceError(
                file, None, name, None, "missing field (run vllm bench with --save-detailed)"
            )
        if value is not None and not isinstance(value, list):
            raise TraceError(file, None, name, type(value).__name__, "must be a list")
        if value is not None:
            arrays[name] = value
    n = len(arrays["input_lens"])
    for name, values in arrays.items():
        if len(values) != n:
            raise TraceError(
                file, None, name, len(values), f"must have one entry per request ({n})"
            )
    if n == 0:
        raise TraceError(file, None, "input_lens", 0, "no requests")
    errors = arrays.get("errors", [""] * n)
    starts = arrays.get("start_times")
    keep: list[int] = []
    failed = 0
    for i in range(n):
        row = i + 1
        inp, out = arrays["input_lens"][i], arrays["output_lens"][i]
        for name, value in (("input_lens", inp), ("output_lens", out)):
            if json_integer(value) is None:
                raise TraceError(file, row, name, value, "not an integer")
            if value < 0:
                raise TraceError(file, row, name, value, "token count must be >= 0")
            if value > MAX_TOKENS:
                raise TraceError(file, row, name, value, f"token count must be <= {MAX_TOKENS:,}")
        error = errors[i]
        if error is not None and not isinstance(error, str):
            raise TraceError(file, row, "errors", error, "must be a string")
        if error or out == 0:
            failed += 1
            continue
        if inp < 1:
            raise TraceError(file, row, "input_lens", inp, "token count must be >= 1")
        if starts is not None and json_number(starts[i]) is None:
            raise TraceError(file, row, "start_times", starts[i], "not a finite number")
        keep.append(i)
    if not keep:
        raise TraceError(file, None, "errors", failed, "every request failed")
    skipped = (
        (("failed requests (errors[i] non-empty or 0 output tokens)", failed),) if failed else ()
    )
    inp_s = pl.Series("input_tokens", [arrays["input_lens"][i] for i in keep], dtype=pl.Int64)
    out_s = pl.Series("output_tokens", [arrays["output_lens"][i] for i in keep], dtype=pl.Int64)
    if starts is None:
        arrival = pl.Series("arrival_s", [None] * len(keep), dtype=pl.Float64)
        return RequestTrace(
            file,
            "vllm-bench",
            _requests(arrival, inp_s, out_s),
            has_arrivals=False,
            skipped=skipped,
        )
    raw = pl.Series("start_times", [float(starts[i]) for i in keep], dtype=pl.Float64)
    arrival = raw - raw[0]
    backwards = (arrival.diff() < 0.0).fill_null(False)
    if backwards.any():
        k = int(backwards.arg_true()[0])
        raise TraceError(
            file,
            keep[k] + 1,
            "start_times",
            raw[k],
            f"timestamps must be non-decreasing, previous request has {raw[k - 1]!r}",
        )
    return RequestTrace(file, "vllm-bench", _requests(arrival, inp_s, out_s), skipped=skipped)


# ------------------------------------------------------------------------------------- helpers


def _requests(arrival: pl.Series, inp: pl.Series, out: pl.Series) -> pl.DataFrame:
    return pl.DataFrame(
        {"arrival_s": arrival, "input_tokens": inp, "output_tokens": out}, schema=REQUEST_SCHEMA
    )


def _relative_times(file: str, raw: pl.Series) -> pl.Series:
    """A column of seconds from the trace start (strings): finite, ≥ 0, non-decreasing."""
    t = float_column(file, raw)
    fail_first(file, raw, t < 0.0, "must be >= 0 (s from the trace start)")
    check_non_decreasing(file, t, raw)
    return t


def _tokens(file: str, values: pl.Series) -> pl.Series:
    fail_first(file, values, values < 1, "token count must be >= 1")
    fail_first(file, values, values > MAX_TOKENS, f"token count must be <= {MAX_TOKENS:,}")
    return values


def _excerpt(row: int, line: str) -> object:
    """A bad JSON line to quote: nothing on line 1 (the file is not yet recognisably a trace),
    else its first 40 characters."""
    return NO_VALUE if row == 1 else line[:40]


def _quantisation_note(arrival: pl.Series) -> tuple[str, ...]:
    """A note when most inter-arrival gaps are exactly 0 (timestamps logged in batches)."""
    gaps = arrival.diff().drop_nulls()
    if gaps.len() < 10:
        return ()
    zero = float(np.mean(gaps.to_numpy() == 0.0))
    if zero < 0.5:
        return ()
    distinct = arrival.unique().len()
    return (
        f"timestamps are quantised: {zero:.0%} of inter-arrival gaps are 0 "
        f"({distinct:,} distinct timestamps for {arrival.len():,} requests)",
    )


def detect_request_format(path: str | Path, header: list[str] | None) -> str | None:
    """The request format a CSV header or JSON-lines file suggests, or None."""
    suffix = base_suffix(path)
    if suffix == ".json":
        return "vllm-bench"
    if suffix == ".parquet":
        return "generic"
    if suffix in (".jsonl", ".ndjson"):
        keys = _first_json_keys(path)
        for name, fields in (
            ("mooncake", MOONCAKE_FIELDS),
            ("llmservingsim", LLMSERVINGSIM_FIELDS),
            ("generic", GENERIC_FIELDS),
        ):
            if set(fields) <= keys:
                return name
        return None
    if header is None:
        return None
    columns = set(header)
    if set(AZURE_COLUMNS) <= columns:
        return "azure"
    if set(VIDUR_COLUMNS) <= columns:
        return "vidur"
    if set(GENERIC_COLUMNS) <= columns:
        return "generic"
    return None


def _first_json_keys(path: str | Path) -> set[str]:
    data = read_bytes(path)
    first = data.split(b"\n", 1)[0]
    try:
        obj = json.loads(first)
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, huge ints
        return set()
    return set(obj) if isinstance(obj, dict) else set()

"""Request logs with any column names: a `TraceColumns` mapping → the generic request schema.

A production log rarely says `arrival_s, input_tokens, output_tokens`. The mapping names the
file's columns (`arrival=timestamp, input=prompt_tokens, output=completion_tokens`); other
columns are ignored. The file may be CSV, Parquet or JSON lines (`.gz` / `.xz` decompressed).

Arrival times may be
- numbers (epoch or relative) in `time_unit` ("s", "ms", "us", "ns"); integers are rebased
  exactly before scaling (an epoch in ns does not fit a float's 53 bits);
- ISO-8601 timestamps, with or without a time zone (every row alike; naive ones are read as
  UTC): `2025-03-03T10:00:00Z`, `2025-03-03 10:00:00.25+01:00`;
- Parquet `Datetime` columns.
Which kind the column holds is decided by its first row. Times are rebased to the first request
and must be non-decreasing. Without an `arrival` mapping and without an `arrival_s` column the
trace is length-only.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import polars as pl

from sim.config.spec import COLUMN_KEYS, TIME_UNITS, TraceColumns
from sim.errors import NO_VALUE, TraceError
from sim.traces._io import (
    base_suffix,
    check_non_decreasing,
    check_path,
    fail_first,
    is_compressed,
    json_integer,
    json_number,
    locate_ragged_row,
    read_bytes,
    read_header,
    shown_header,
    text_lines,
    token_column,
)
from sim.traces.model import REQUEST_SCHEMA, RequestTrace

DEFAULT_NAMES = dict(zip(COLUMN_KEYS, REQUEST_SCHEMA, strict=True))


def parse_columns(text: str, time_unit: str = "s") -> TraceColumns:
    """`"arrival=timestamp,input=prompt_tokens,output=completion_tokens"` → `TraceColumns`
    (a ValueError naming the bad part: the CLI's `--columns` option)."""
    names: dict[str, str] = {}
    for part in text.split(","):
        key, sep, name = (s.strip() for s in part.partition("="))
        if not sep or not key or not name:
            raise ValueError(f"expected KEY=COLUMN, got {part.strip()[:40]!r}")
        if key not in COLUMN_KEYS:
            raise ValueError(f"unknown key {key[:40]!r}; keys are {', '.join(COLUMN_KEYS)}")
        if key in names:
            raise ValueError(f"{key} given twice")
        names[key] = name
    return make_columns(names, time_unit)


def make_columns(names: dict[str, str], time_unit: str = "s") -> TraceColumns:
    """A checked mapping (ValueError on an unknown time unit or one column named twice)."""
    if time_unit not in TIME_UNITS:
        raise ValueError(f"unknown time unit {time_unit[:20]!r}; one of {', '.join(TIME_UNITS)}")
    used = list(names.values())
    for name in used:
        if used.count(name) > 1:
            raise ValueError(f"column {name[:40]!r} mapped twice")
    return TraceColumns(names.get("arrival"), names.get("input"), names.get("output"), time_unit)


def describe_columns(columns: TraceColumns) -> str:
    """`arrival=timestamp,input=prompt_tokens,...` (for notes and messages)."""
    parts = [f"{k}={getattr(columns, k)}" for k in COLUMN_KEYS if getattr(columns, k) is not None]
    return ",".join(parts) + f" (time unit {columns.time_unit})"


def mapped_trace(path: str | Path, columns: TraceColumns) -> RequestTrace:
    """A request log read through `columns` (module docstring)."""
    file = str(path)
    check_path(path)
    names = {k: getattr(columns, k) or DEFAULT_NAMES[k] for k in COLUMN_KEYS}
    optional_arrival = columns.arrival is None
    suffix = base_suffix(path)
    if suffix == ".parquet":
        table = _parquet_columns(path, names, optional_arrival)
    elif suffix in (".jsonl", ".ndjson"):
        table = _jsonl_columns(path, names, optional_arrival)
    else:
        table = _csv_columns(path, names, optional_arrival)
    inp = _tokens(file, table[names["input"]])
    out = _tokens(file, table[names["output"]])
    notes: tuple[str, ...] = (f"columns mapped: {describe_columns(columns)}",)
    if names["arrival"] not in table:
        arrival = pl.Series("arrival_s", [None] * inp.len(), dtype=pl.Float64)
        frame = pl.DataFrame(
            {"arrival_s": arrival, "input_tokens": inp, "output_tokens": out}, schema=REQUEST_SCHEMA
        )
        return RequestTrace(
            file, "generic", frame, has_arrivals=False, notes=notes, columns=columns
        )
    raw = table[names["arrival"]]
    arrival, start = arrival_seconds(file, raw, columns.time_unit)
    if start:
        notes += (f"first request at {start}",)
    frame = pl.DataFrame(
        {"arrival_s": arrival, "input_tokens": inp, "output_tokens": out}, schema=REQUEST_SCHEMA
    )
    return RequestTrace(file, "generic", frame, notes=notes, columns=columns)


def arrival_seconds(file: str, raw: pl.Series, time_unit: str) -> tuple[pl.Series, str]:
    """Seconds from the first row (and the first row's time as text, "" when not absolute):
    `raw` holds numbers in `time_unit`, ISO-8601 strings, or datetimes."""
    if raw.dtype == pl.Datetime:
        fail_first(file, raw, raw.is_null(), "missing value")
        ns = raw.dt.epoch("ns")
        return _rebased(file, ns, raw, 1e-9), str(raw[0])
    if raw.dtype.is_numeric():
        raw = raw.cast(pl.String)
    text = raw.str.strip_chars()
    fail_first(file, raw, text.is_null() | (text == ""), "missing value")
    scale = TIME_UNITS[time_unit]
    as_int = text.cast(pl.Int64, strict=False)
    if as_int[0] is not None and as_int.is_not_null().all():
        return _rebased(file, as_int, raw, scale), ""
    as_float = text.cast(pl.Float64, strict=False)
    if as_float[0] is not None:
        fail_first(
            file,
            raw,
            as_float.is_null(),
            f"not a number (the first row's time is one, in {time_unit})",
        )
        fail_first(file, raw, ~as_float.is_finite(), "must be a finite number")
        return _rebased(file, as_float, raw, scale), ""
    try:
        stamps = text.str.to_datetime(time_unit="ns", time_zone="UTC", strict=False)
    except pl.exceptions.PolarsError:
        stamps = pl.Series([None] * text.len(), dtype=pl.Datetime("ns", "UTC"))
    fail_first(
        file,
        raw,
        stamps.is_null(),
        "not a number or an ISO-8601 timestamp like the first row's "
        "(e.g. 2025-03-03T10:00:00Z; every row with a time zone, or none)",
    )
    return _rebased(file, stamps.dt.epoch("ns"), raw, 1e-9), f"{stamps[0]:%Y-%m-%d %H:%M:%S %Z}"


def _rebased(file: str, ticks: pl.Series, raw: pl.Series, scale: float) -> pl.Series:
    """`(ticks - ticks[0]) * scale` as float seconds, checked non-decreasing."""
    delta: pl.Series = ticks - ticks[0]
    seconds = (delta.cast(pl.Float64) * scale).alias("arrival_s")
    check_non_decreasing(file, seconds, raw)
    return seconds


def _tokens(file: str, raw: pl.Series) -> pl.Series:
    if raw.dtype.is_integer():
        raw = raw.cast(pl.String)
    elif raw.dtype != pl.String:
        raise TraceError(file, None, raw.name, str(raw.dtype), "token counts must be integers")
    return token_column(file, raw)


def _missing(file: str, key: str, name: str, shown: object) -> TraceError:
    return TraceError(
        file, None, name, shown, f"missing column (mapped from {key}); check --columns / columns"
    )


def _csv_columns(
    path: str | Path, names: dict[str, str], optional_arrival: bool
) -> dict[str, pl.Series]:
    file = str(path)
    data = read_bytes(path) if is_compressed(path) else None
    header = read_header(path, data)
    if header is None:
        raise TraceError(file, None, None, "", "file is empty")
    shown = shown_header(header)
    wanted = _wanted(file, names, set(header), optional_arrival, shown)
    for name in wanted:
        if header.count(name) > 1:
            raise TraceError(file, None, name, shown, "column appears twice in the header")
    source: object = io.BytesIO(data) if data is not None else path
    try:
        frame = pl.read_csv(source, columns=wanted, infer_schema=False)  # type: ignore[arg-type]
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError):
        locate_ragged_row(path, len(header), data)
        raise TraceError(file, None, None, NO_VALUE, "malformed CSV") from None
    if frame.height == 0:
        raise TraceError(file, None, None, shown, "no data rows after the header")
    return {name: frame[name] for name in wanted}


def _wanted(
    file: str, names: dict[str, str], present: set[str], optional_arrival: bool, shown: object
) -> list[str]:
    wanted = []
    for key in COLUMN_KEYS:
        name = names[key]
        if name in present:
            wanted.append(name)
        elif not (key == "arrival" and optional_arrival):
            raise _missing(file, key, name, shown)
    return wanted


def _parquet_columns(
    path: str | Path, names: dict[str, str], optional_arrival: bool
) -> dict[str, pl.Series]:
    file = str(path)
    try:
        schema = pl.read_parquet_schema(path)
        shown = shown_header(list(schema))
        wanted = _wanted(file, names, set(schema), optional_arrival, shown)
        frame = pl.read_parquet(path, columns=wanted)
    except TraceError:
        raise
    except OSError as err:
        raise TraceError(file, None, None, NO_VALUE, f"cannot read file ({err.strerror})") from None
    except (pl.exceptions.PolarsError, ValueError, MemoryError):
        raise TraceError(
            file, None, None, NO_VALUE, "not a Parquet file (or a corrupt one)"
        ) from None
    if frame.height == 0:
        raise TraceError(file, None, None, 0, "no rows")
    return {name: frame[name] for name in wanted}


def _jsonl_columns(
    path: str | Path, names: dict[str, str], optional_arrival: bool
) -> dict[str, pl.Series]:
    """The mapped fields of every line, as strings (numbers written as JSON numbers)."""
    file = str(path)
    lines = text_lines(path, read_bytes(path))
    if not lines:
        raise TraceError(file, None, None, "", "file is empty")
    values: dict[str, list[str | None]] = {n: [] for n in names.values()}
    for i, line in enumerate(lines):
        row = i + 1
        try:
            obj = json.loads(line)
        except (ValueError, RecursionError):
            shown = NO_VALUE if row == 1 else line[:40]
            raise TraceError(file, row, None, shown, "not valid JSON") from None
        if not isinstance(obj, dict):
            raise TraceError(file, row, None, NO_VALUE if row == 1 else line[:40], "not an object")
        if row == 1:
            keys = {k for k in obj if isinstance(k, str)}
            shown = shown_header(sorted(keys))
            present = set(_wanted(file, names, keys, optional_arrival, shown))
            values = {n: [] for n in names.values() if n in present}
        for name, column in values.items():
            value = obj.get(name)
            if value is None:
                raise TraceError(file, row, name, None, "missing field (or null)")
            if isinstance(value, str):
                column.append(value)
            elif json_integer(value) is not None:
                column.append(str(value))
            elif json_number(value) is not None:
                column.append(repr(float(value)))
            else:
                raise TraceError(file, row, name, value, "not a number or a string")
    return {name: pl.Series(name, column, dtype=pl.String) for name, column in values.items()}

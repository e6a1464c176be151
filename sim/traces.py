"""Readers for real trace files -> polars frames, with located errors.

Every malformed file raises `TraceError` naming the file, the 1-based data row (header
excluded; a blank line counts as a row), the column and the offending value. Supported here:

- the Azure LLM inference trace 2023 (`TIMESTAMP,ContextTokens,GeneratedTokens`), read into
  the generic request schema `arrival_s, input_tokens, output_tokens`;
- a weekly profile (`hour_of_week,multiplier`, 168 rows for hours 0..167).
"""

from __future__ import annotations

import csv
import math
from pathlib import Path

import polars as pl

from sim.errors import TraceError
from sim.workload import HOURS_PER_WEEK, EmpiricalLengths, WeeklyProfile

AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
AZURE_TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S%.f"  # e.g. 2023-11-16 18:15:46.6805900
PROFILE_COLUMNS = ("hour_of_week", "multiplier")

REQUEST_SCHEMA = {"arrival_s": pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64}


def read_azure_trace(path: str | Path) -> pl.DataFrame:
    """An Azure LLM inference trace 2023 CSV as `arrival_s, input_tokens, output_tokens`.

    `arrival_s` (float64) is seconds since the first row's timestamp (the files carry no
    timezone, so only differences are meaningful); `input_tokens` is `ContextTokens` and
    `output_tokens` is `GeneratedTokens` (int64, each ≥ 1). Timestamps must be non-decreasing.
    """
    file = str(path)
    raw = _read_strings(path, AZURE_COLUMNS)
    stamps = raw["TIMESTAMP"].str.to_datetime(AZURE_TIMESTAMP_FORMAT, strict=False, time_unit="ns")
    _fail_first(
        file,
        raw["TIMESTAMP"],
        stamps.is_null(),
        "not a timestamp of the form YYYY-MM-DD HH:MM:SS[.fffffff]",
    )
    arrival_s = (stamps - stamps[0]).dt.total_nanoseconds().cast(pl.Float64) / 1e9
    backwards = arrival_s.diff().fill_null(0.0) < 0.0
    if backwards.any():
        row = int(backwards.arg_max() or 0)
        raise TraceError(
            file,
            row + 1,
            "TIMESTAMP",
            raw["TIMESTAMP"][row],
            f"timestamps must be non-decreasing, previous row has {raw['TIMESTAMP'][row - 1]!r}",
        )
    return pl.DataFrame(
        {
            "arrival_s": arrival_s,
            "input_tokens": _token_column(file, raw["ContextTokens"]),
            "output_tokens": _token_column(file, raw["GeneratedTokens"]),
        },
        schema=REQUEST_SCHEMA,
    )


def empirical_lengths(requests: pl.DataFrame, name: str = "") -> EmpiricalLengths:
    """The joint (input, output) token distribution of a request frame, for resampling."""
    return EmpiricalLengths(
        requests["input_tokens"].to_numpy(), requests["output_tokens"].to_numpy(), name
    )


def read_weekly_profile(path: str | Path) -> WeeklyProfile:
    """A weekly profile CSV (`hour_of_week,multiplier`, rows for hours 0..167 in order).

    Multipliers must be finite and ≥ 0, not all zero; they are normalised to mean 1 on reading
    (`WeeklyProfile.from_values`), so a file rounded to a few decimals is accepted.
    """
    file = str(path)
    raw = _read_strings(path, PROFILE_COLUMNS)
    hours = raw["hour_of_week"].cast(pl.Int64, strict=False)
    _fail_first(file, raw["hour_of_week"], hours.is_null(), "not an integer")
    out_of_order = hours != pl.Series(range(raw.height), dtype=pl.Int64)
    if out_of_order.any():
        row = int(out_of_order.arg_true()[0])
        raise TraceError(
            file,
            row + 1,
            "hour_of_week",
            raw["hour_of_week"][row],
            f"hours must be 0, 1, …, {HOURS_PER_WEEK - 1} in order: expected {row}",
        )
    if raw.height != HOURS_PER_WEEK:
        raise TraceError(
            file, None, None, raw.height, f"a weekly profile needs {HOURS_PER_WEEK} rows"
        )
    multipliers = raw["multiplier"].cast(pl.Float64, strict=False)
    _fail_first(file, raw["multiplier"], multipliers.is_null(), "not a number")
    values = multipliers.to_list()
    _fail_first(
        file,
        raw["multiplier"],
        pl.Series([not (math.isfinite(v) and v >= 0.0) for v in values]),
        "must be a finite number >= 0",
    )
    if not any(v > 0.0 for v in values):
        raise TraceError(file, None, "multiplier", 0.0, "multipliers are all zero")
    return WeeklyProfile.from_values(values)


def _read_strings(path: str | Path, columns: tuple[str, ...]) -> pl.DataFrame:
    """The file as all-string columns after checking it exists, is non-empty and has `columns`.

    Cells left empty (or missing on a short row) are reported as missing values.
    """
    file = str(path)
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            header = next(csv.reader(handle), None)
    except OSError as err:
        raise TraceError(file, None, None, file, f"cannot read file ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise TraceError(file, None, None, err.object[err.start : err.end], "not UTF-8") from None
    if header is None:
        raise TraceError(file, None, None, "", "file is empty")
    for name in columns:
        if name not in header:
            raise TraceError(file, None, name, header, f"missing column; expected {list(columns)}")
    for name in header:
        if name not in columns or header.count(name) > 1:
            raise TraceError(
                file, None, name, header, f"unexpected column; expected exactly {list(columns)}"
            )
    try:
        frame = pl.read_csv(path, schema=dict.fromkeys(header, pl.String))
    except pl.exceptions.ComputeError as err:
        _locate_ragged_row(path, len(header))
        raise TraceError(file, None, None, str(err).splitlines()[0], "malformed CSV") from None
    if frame.height == 0:
        raise TraceError(file, None, None, header, "no data rows after the header")
    for name in columns:
        _fail_first(file, frame[name], frame[name].is_null(), "missing value")
    return frame.select(columns)


def _locate_ragged_row(path: str | Path, n_fields: int) -> None:
    """Raise a located TraceError for the first data row with more than `n_fields` fields."""
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.reader(handle)
        next(reader)
        for row, fields in enumerate(reader, start=1):
            if len(fields) > n_fields:
                raise TraceError(
                    str(path), row, None, ",".join(fields), f"expected {n_fields} fields"
                )


def _token_column(file: str, raw: pl.Series) -> pl.Series:
    """A token-count column as int64, every value an integer ≥ 1."""
    tokens = raw.cast(pl.Int64, strict=False)
    _fail_first(file, raw, tokens.is_null(), "not an integer")
    _fail_first(file, raw, tokens < 1, "token count must be >= 1")
    return tokens


def _fail_first(file: str, raw: pl.Series, bad: pl.Series, message: str) -> None:
    """Raise a TraceError at the first row where `bad` holds, reporting the raw cell."""
    if bad.any():
        row = int(bad.arg_true()[0])
        raise TraceError(file, row + 1, raw.name, raw[row], message)

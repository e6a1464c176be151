"""Shared reading machinery: decompression, all-string tables, located errors.

Every problem raises `TraceError(file, row, column, value, message)`: `row` is 1-based (for a
CSV with a header, the header is row 0 and not counted; for JSON lines, the line number),
`column` the column or field name, `value` the offending raw cell as written in the file.
"""

from __future__ import annotations

import csv
import gzip
import io
import lzma
import math
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from sim.errors import TraceError

_DECOMPRESS: dict[str, Callable[[bytes], bytes]] = {
    ".gz": gzip.decompress,
    ".xz": lzma.decompress,
}
COMPRESSED_SUFFIXES = tuple(_DECOMPRESS)


def base_suffix(path: str | Path) -> str:
    """The file's format suffix without a compression suffix (`x.jsonl.xz` → `.jsonl`)."""
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in _DECOMPRESS:
        suffixes = suffixes[:-1]
    return suffixes[-1] if suffixes else ""


def is_compressed(path: str | Path) -> bool:
    return Path(path).suffix.lower() in _DECOMPRESS


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, decompressed when its name ends in .gz or .xz (in memory)."""
    file = str(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise TraceError(file, None, None, file, f"cannot read file ({err.strerror})") from None
    suffix = Path(path).suffix.lower()
    if suffix in _DECOMPRESS:
        try:
            data = _DECOMPRESS[suffix](data)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as err:
            raise TraceError(
                file, None, None, suffix, f"not a valid {suffix[1:]} file ({err})"
            ) from None
    return data


def text_lines(path: str | Path, data: bytes) -> list[str]:
    """Decoded lines (UTF-8) without their line endings; a final newline adds no line."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TraceError(
            str(path), None, None, err.object[err.start : err.end], "not UTF-8"
        ) from None
    return text.splitlines()


def read_header(path: str | Path, data: bytes | None = None) -> list[str] | None:
    """The first CSV record (the header), or None for an empty file."""
    file = str(path)
    try:
        if data is None:
            with open(path, newline="", encoding="utf-8") as handle:
                return next(csv.reader(handle), None)
        first = data.split(b"\n", 1)[0].decode("utf-8")
    except OSError as err:
        raise TraceError(file, None, None, file, f"cannot read file ({err.strerror})") from None
    except UnicodeDecodeError as err:
        raise TraceError(file, None, None, err.object[err.start : err.end], "not UTF-8") from None
    return next(csv.reader(io.StringIO(first)), None)


def read_csv_strings(
    path: str | Path,
    required: tuple[str, ...],
    optional: tuple[str, ...] = (),
    *,
    data: bytes | None = None,
    nullable: tuple[str, ...] = (),
) -> pl.DataFrame:
    """The CSV as all-string columns after checking its header: every `required` column, any
    of `optional`, nothing else, no duplicates. Returns the present columns, required first.

    Cells left empty (or missing on a short row) of a required column are reported as missing
    values, except in `nullable` columns (read as null); optional columns are not checked here.
    """
    file = str(path)
    if data is None and is_compressed(path):
        data = read_bytes(path)
    header = read_header(path, data)
    allowed = required + optional
    if header is None:
        raise TraceError(file, None, None, "", "file is empty")
    for name in required:
        if name not in header:
            raise TraceError(file, None, name, header, f"missing column; expected {list(required)}")
    for name in header:
        if name not in allowed or header.count(name) > 1:
            expected = (
                f"{list(required)}, optionally {list(optional)}"
                if optional
                else f"exactly {list(required)}"
            )
            raise TraceError(file, None, name, header, f"unexpected column; expected {expected}")
    source: Any = io.BytesIO(data) if data is not None else path
    try:
        frame = pl.read_csv(source, schema=dict.fromkeys(header, pl.String))
    except (pl.exceptions.ComputeError, pl.exceptions.NoDataError) as err:
        locate_ragged_row(path, len(header), data)
        raise TraceError(file, None, None, str(err).splitlines()[0], "malformed CSV") from None
    if frame.height == 0:
        raise TraceError(file, None, None, header, "no data rows after the header")
    for name in required:
        if name not in nullable:
            fail_first(file, frame[name], frame[name].is_null(), "missing value")
    return frame.select([c for c in allowed if c in header])


def locate_ragged_row(path: str | Path, n_fields: int, data: bytes | None = None) -> None:
    """Raise a located TraceError for the first data row with more than `n_fields` fields."""
    if data is None:
        with open(path, newline="", encoding="utf-8") as handle:
            text = handle.read()
    else:
        text = data.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    next(reader, None)
    for row, fields in enumerate(reader, start=1):
        if len(fields) > n_fields:
            raise TraceError(str(path), row, None, ",".join(fields), f"expected {n_fields} fields")


def fail_first(
    file: str, raw: pl.Series, bad: pl.Series, message: str, *, row_offset: int = 0
) -> None:
    """Raise a TraceError at the first row where `bad` holds, reporting the raw cell."""
    bad = bad.fill_null(True)
    if bad.any():
        row = int(bad.arg_true()[0])
        raise TraceError(file, row + 1 + row_offset, raw.name, raw[row], message)


def token_column(file: str, raw: pl.Series) -> pl.Series:
    """A token-count column of strings as int64, every value an integer ≥ 1."""
    tokens = raw.str.strip_chars().cast(pl.Int64, strict=False)
    fail_first(file, raw, tokens.is_null(), "not an integer")
    fail_first(file, raw, tokens < 1, "token count must be >= 1")
    return tokens.alias(raw.name)


def float_column(file: str, raw: pl.Series, what: str = "a number") -> pl.Series:
    """A column of strings as finite float64."""
    values = raw.str.strip_chars().cast(pl.Float64, strict=False)
    fail_first(file, raw, values.is_null(), f"not {what}")
    fail_first(file, raw, ~values.is_finite(), f"must be {what} (finite)")
    return values.alias(raw.name)


def check_non_decreasing(
    file: str, times: pl.Series, raw: pl.Series, *, row_offset: int = 0
) -> None:
    """Located error at the first row whose time is earlier than the previous row's."""
    backwards = (times.diff() < 0.0).fill_null(False)
    if backwards.any():
        row = int(backwards.arg_true()[0])
        raise TraceError(
            file,
            row + 1 + row_offset,
            raw.name,
            raw[row],
            f"timestamps must be non-decreasing, previous row has {raw[row - 1]!r}",
        )


def json_integer(value: object) -> int | None:
    """An int from JSON (not a bool, not a float), else None."""
    if isinstance(value, bool) or not isinstance(value, int):
        return None
    return value


def json_number(value: object) -> float | None:
    """A finite float from a JSON number (not a bool), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    f = float(value)
    return f if math.isfinite(f) else None

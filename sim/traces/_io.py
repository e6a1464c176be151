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
import re
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import polars as pl

from sim.errors import NO_VALUE, TraceError, path_refusal

SNIFF_BYTES = 64 * 1024  # a trace's header (first line) fits in this; so does the NUL sniff
MAX_TOKENS = 100_000_000  # a token count above this is a corrupt cell, not a request
_HEADER_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_ .()/-]{0,63}")

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


def check_path(path: str | Path, *, folder_ok: bool = False) -> None:
    """A located TraceError when the path policy refuses `path` (`sim.errors.path_refusal`:
    NUL bytes, /proc, /sys, /dev, devices, FIFOs and sockets)."""
    refusal = path_refusal(path, folder_ok=folder_ok)
    if refusal is not None:
        raise TraceError(str(path), None, None, NO_VALUE, refusal)


def _open_text_source(path: str | Path) -> io.BufferedIOBase:
    file = str(path)
    check_path(path)
    suffix = Path(path).suffix.lower()
    try:
        if suffix == ".gz":
            return gzip.open(path, "rb")  # type: ignore[return-value]
        if suffix == ".xz":
            return lzma.open(path, "rb")  # type: ignore[return-value]
        return open(path, "rb")
    except OSError as err:
        raise TraceError(file, None, None, NO_VALUE, f"cannot read file ({err.strerror})") from None


def head_bytes(path: str | Path, limit: int = SNIFF_BYTES) -> bytes:
    """The first `limit` bytes of the (decompressed) file, checked to be text: a NUL byte
    means a binary file (or a sparse one), refused before anything large is read."""
    file = str(path)
    suffix = Path(path).suffix.lower()
    try:
        with _open_text_source(path) as handle:
            head = handle.read(limit)
    except (EOFError, lzma.LZMAError, zlib.error, gzip.BadGzipFile) as err:
        raise TraceError(
            file, None, None, suffix, f"not a valid {suffix[1:]} file ({err})"
        ) from None
    except OSError as err:
        raise TraceError(file, None, None, NO_VALUE, f"cannot read file ({err.strerror})") from None
    nul = head.find(b"\0")
    if nul >= 0:
        raise TraceError(file, None, None, NO_VALUE, f"not a text file (a NUL byte at byte {nul})")
    return head


def read_bytes(path: str | Path) -> bytes:
    """The file's bytes, decompressed when its name ends in .gz or .xz (in memory); the first
    SNIFF_BYTES are checked first (`head_bytes`), so a binary file is refused cheaply."""
    file = str(path)
    head_bytes(path)
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise TraceError(file, None, None, NO_VALUE, f"cannot read file ({err.strerror})") from None
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
    """The first CSV record (the header), or None for an empty file. Only the first
    SNIFF_BYTES are read: a longer first line is no trace's header."""
    file = str(path)
    head = head_bytes(path) if data is None else data[:SNIFF_BYTES]
    if data is not None and b"\0" in head:
        raise TraceError(file, None, None, NO_VALUE, "not a text file (a NUL byte)")
    if not head:
        return None
    first, newline, _ = head.partition(b"\n")
    if not newline and len(head) >= SNIFF_BYTES:
        raise TraceError(
            file, None, None, NO_VALUE, f"first line longer than {SNIFF_BYTES:,} bytes: no header"
        )
    try:
        text = first.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TraceError(file, 0, None, err.object[err.start : err.end], "not UTF-8") from None
    try:
        return next(csv.reader(io.StringIO(text.rstrip("\r"))), None)
    except csv.Error as err:
        raise TraceError(file, 0, None, NO_VALUE, f"malformed CSV header ({err})") from None


def shown_header(header: list[str]) -> object:
    """The header to quote in an error, or NO_VALUE when it does not look like a table's header
    (a file that is not recognisably a trace: its first line is never echoed)."""
    if len(header) <= 16 and all(_HEADER_NAME.fullmatch(h) for h in header):
        return header
    return NO_VALUE


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
    shown = shown_header(header)
    for name in required:
        if name not in header:
            raise TraceError(file, None, name, shown, f"missing column; expected {list(required)}")
    for name in header:
        if name not in allowed or header.count(name) > 1:
            expected = (
                f"{list(required)}, optionally {list(optional)}"
                if optional
                else f"exactly {list(required)}"
            )
            raise TraceError(file, None, name, shown, f"unexpected column; expected {expected}")
    if data is None:
        head_bytes(path)  # a recognisable header, then binary junk: refused before reading it all
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
        data = Path(path).read_bytes()
    text = data.decode("utf-8", errors="replace")
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        next(reader, None)
        for row, fields in enumerate(reader, start=1):
            if len(fields) > n_fields:
                excerpt = ",".join(fields)[:40]
                raise TraceError(str(path), row, None, excerpt, f"expected {n_fields} fields")
    except csv.Error as err:
        raise TraceError(
            str(path), reader.line_num, None, NO_VALUE, f"malformed CSV ({err})"
        ) from None


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
    fail_first(file, raw, tokens > MAX_TOKENS, f"token count must be <= {MAX_TOKENS:,}")
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
    try:
        f = float(value)
    except OverflowError:  # an integer beyond any float
        return None
    return f if math.isfinite(f) else None

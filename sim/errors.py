"""Errors that reach the user as one clear line (CLI exit code 2), never as a traceback.

Every error names where the problem is: the file, the dotted key path (or row and column
for traces) and the offending value. Values are quoted with `short()`: their `repr` (so control
characters and NUL bytes are escaped), capped at `VALUE_CHARS` characters — an error message
never carries more of a file than that.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

VALUE_CHARS = 80  # the most of a value an error message quotes
NO_VALUE: object = object()  # TraceError: nothing from the file is quoted


def short(value: object, limit: int = VALUE_CHARS) -> str:
    """`repr(value)`, cut to `limit` characters with an ellipsis (never the whole of a file)."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def short_path(path: object, limit: int = 160) -> str:
    """A file name for a message: its `repr` when it holds control characters, cut in the
    middle when over `limit` characters (the start and the file name survive)."""
    text = str(path)
    if not text.isprintable():
        text = repr(text)[1:-1]
    if len(text) <= limit:
        return text
    half = (limit - 1) // 2
    return text[:half] + "…" + text[-half:]


@dataclass(frozen=True)
class Problem:
    """One located problem in a user file: `file: key.path: message, got value`."""

    file: str
    key_path: str
    message: str
    value: object = None
    has_value: bool = True

    def __str__(self) -> str:
        file = short_path(self.file)
        where = f"{file}: {self.key_path}" if self.key_path else file
        got = f", got {short(self.value)}" if self.has_value else ""
        return f"{where}: {self.message}{got}"


class SimError(Exception):
    """Base class of errors meant for the user; the CLI prints `str(err)` and exits 2."""


class ConfigError(SimError):
    """One or more problems in an experiment file, all reported at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class TraceError(SimError):
    """A malformed trace file: names the file, row (1-based, header excluded), column and value.

    `value` NO_VALUE quotes nothing (for a file not recognisably a trace: its contents are not
    echoed)."""

    def __init__(self, file: str, row: int | None, column: str | None, value: object, message: str):
        self.file, self.row, self.column, self.value = file, row, column, value
        where = short_path(file)
        if row is not None:
            where += f": row {row}"
        if column is not None:
            where += f": column {short_path(column, 40)}"
        got = "" if value is NO_VALUE else f", got {short(value)}"
        super().__init__(f"{where}: {message}{got}")


# ------------------------------------------------------------------------------ path policy
REFUSED_ROOTS = ("/proc", "/sys", "/dev")


def path_refusal(path: object, *, folder_ok: bool = False) -> str | None:
    """Why the file at `path` may not be read as user input, or None when it may.

    The policy (docs/config.md, "Paths"): relative paths are resolved against the experiment
    file's folder; absolute paths, `..` and symbolic links are allowed; refused are paths with
    a NUL byte, paths that resolve under /proc, /sys or /dev, and anything that is not a regular
    file (a device, FIFO or socket: reading one can block forever or never end). A folder is
    allowed only where a folder of files is meant (`folder_ok`). A missing file is not refused
    here (the caller says "not found").
    """
    text = str(os.fspath(path)) if isinstance(path, str | os.PathLike) else str(path)
    if "\0" in text:
        return "path contains a NUL byte"
    if any(len(part.encode("utf-8", "surrogateescape")) > 255 for part in text.split("/")):
        return "a path component is longer than 255 bytes"
    try:
        real = os.path.realpath(text)
    except (OSError, ValueError):
        return "cannot resolve the path"
    for root in REFUSED_ROOTS:
        if real == root or real.startswith(root + "/"):
            return f"refused: resolves under {root} (system files are never read)"
    try:
        mode = os.stat(real).st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or (folder_ok and stat.S_ISDIR(mode)):
        return None
    if stat.S_ISDIR(mode):
        return "is a folder, not a file"
    return "not a regular file (a device, FIFO or socket is never read)"

"""Errors that reach the user as one clear line (CLI exit code 2), never as a traceback.

Every error names where the problem is: the file, the dotted key path (or row and column
for traces) and the offending value.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One located problem in a user file: `file: key.path: message, got value`."""

    file: str
    key_path: str
    message: str
    value: object = None
    has_value: bool = True

    def __str__(self) -> str:
        where = f"{self.file}: {self.key_path}" if self.key_path else self.file
        got = f", got {self.value!r}" if self.has_value else ""
        return f"{where}: {self.message}{got}"


class SimError(Exception):
    """Base class of errors meant for the user; the CLI prints `str(err)` and exits 2."""


class ConfigError(SimError):
    """One or more problems in an experiment file, all reported at once."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(str(p) for p in self.problems))


class TraceError(SimError):
    """A malformed trace file: names the file, row (1-based, header excluded), column and value."""

    def __init__(self, file: str, row: int | None, column: str | None, value: object, message: str):
        self.file, self.row, self.column, self.value = file, row, column, value
        where = file
        if row is not None:
            where += f": row {row}"
        if column is not None:
            where += f": column {column}"
        super().__init__(f"{where}: {message}, got {value!r}")

"""What every `sim` command shares: the command group, and one located line per bad input.

Exit codes: 0 success, 1 a run finished with failed replications or was interrupted (or a check
such as `sim validate` failed), 2 bad input (the message names file, key path and value; no
traceback).
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from sim.errors import SimError, short_path

MAX_LINE = 400  # characters of one error line
MAX_LINES = 20  # error lines of one failure (then a count of the rest)

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn SimError (and a filesystem error: disk full, permission denied) into lines on
    stderr — one per problem, each at most MAX_LINE characters, at most MAX_LINES — and exit
    code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SimError as err:
            echo_errors(str(err).splitlines())
            sys.exit(2)
        except OSError as err:  # the filesystem, not the input: still one line, no traceback
            where = f"{short_path(err.filename)}: " if err.filename is not None else ""
            echo_errors([f"{where}{err.strerror or err}"])
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


def echo_errors(lines: list[str]) -> None:
    """`error: <line>` on stderr for each line, capped in length and number."""
    for line in lines[:MAX_LINES]:
        line = f"error: {line}"
        if len(line) > MAX_LINE:
            line = line[: MAX_LINE - 1] + "…"
        click.echo(line, err=True)
    if len(lines) > MAX_LINES:
        click.echo(f"error: … and {len(lines) - MAX_LINES:,} more problems", err=True)


class SafePath(click.Path):
    """`click.Path` that refuses, as a usage error (exit 2, one line), what `os.stat` would raise
    on instead of answering: a NUL byte in the path."""

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        text = value.decode(errors="replace") if isinstance(value, bytes) else str(value)
        if "\0" in text:
            self.fail("path contains a NUL byte", param, ctx)
        return super().convert(value, param, ctx)


class LazyGroup(click.Group):
    """A command group that imports a command's module only when that command runs (or help
    lists it). NOTE: `sim --version` and `sim check` no longer import the report, planning and
    calibration layers (altair, scipy.stats, …): sim --version went from 1.5 s to 0.2 s of
    imports (python -X importtime)."""

    def __init__(self, *args: Any, lazy: dict[str, str] | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.lazy = dict(lazy or {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in self.lazy and cmd_name not in self.commands:
            module, attr = self.lazy[cmd_name].split(":")
            command = getattr(importlib.import_module(module), attr)
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)


COMMANDS = {
    "check": "sim.cli.check:check",
    "run": "sim.cli.run:run",
    "trace": "sim.cli.trace:trace",
    "calibrate": "sim.cli.calibrate:calibrate",
    "validate": "sim.cli.validate:validate",
    "bench": "sim.cli.bench:bench",
    "plan": "sim.cli.plan:plan",
    "breakeven": "sim.cli.breakeven:breakeven_command",
}
"""Every `sim` command: name → "module:function" (imported when used)."""


@click.group(cls=LazyGroup, lazy=COMMANDS)
@click.version_option(package_name="sim")
def main() -> None:
    """Monte Carlo capacity planner for self-hosted LLM inference."""

"""What every `sim` command shares: the command group, and one located line per bad input.

Exit codes: 0 success, 1 a run finished with failed replications or was interrupted (or a check
such as `sim validate` failed), 2 bad input (the message names file, key path and value; no
traceback).
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

import click

from sim.errors import SimError

F = TypeVar("F", bound=Callable[..., Any])


def user_errors(func: F) -> F:
    """Turn SimError into one line on stderr and exit code 2."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except SimError as err:
            for line in str(err).splitlines():
                click.echo(f"error: {line}", err=True)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.version_option(package_name="sim")
def main() -> None:
    """Monte Carlo capacity planner for self-hosted LLM inference."""

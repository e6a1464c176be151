"""`sim check`: validate an experiment and the files it names, without running it.

Kept apart from `sim run` so that checking a file imports neither the report nor the planner.
"""

from __future__ import annotations

from pathlib import Path

import click

from sim.cli.common import SafePath, user_errors
from sim.errors import ConfigError
from sim.experiment import load_experiment
from sim.sizing import estimate_run, size_problems


@click.command()
@click.argument("file", type=SafePath(dir_okay=False, path_type=Path))
@user_errors
def check(file: Path) -> None:
    """Validate FILE (and the files it names) without running it."""
    exp = load_experiment(file)
    s = exp.spec
    problems = size_problems(exp, estimate_run(exp, s.replications, 1))
    if problems:  # what `sim run` would refuse without --force
        raise ConfigError(problems)
    click.echo(
        f"{file}: ok ({s.name}: {s.months} months, {s.replications} replications, "
        f"seed {s.seed}, {s.engine.model} on {', '.join(s.gpus_used())})"
    )
    for note in exp.notes:  # e.g. rows a trace reader skipped: reported, never silent
        click.echo(f"note: {note}")

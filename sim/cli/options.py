"""Options several commands share: `--calibration` (your step-time entries over the catalog)."""

from __future__ import annotations

from pathlib import Path

import click

from sim.cli.common import SafePath
from sim.engine.catalog import load_user_calibration
from sim.experiment import Experiment

CALIBRATION_OPTION = click.option(
    "--calibration",
    type=SafePath(dir_okay=False, path_type=Path),
    help="Your step-time entries (TOML from `sim calibrate runs --out`) over the catalog "
    "[default: the experiment's [engine] calibration].",
)


def say_calibration(exp: Experiment) -> Experiment:
    """Print which calibration file (and hash) supplies which step-time entries of `exp`
    (`--calibration` is applied when the experiment is loaded: `load_experiment(file,
    calibration)`, so pools may name the GPU types the file defines); `exp` unchanged."""
    file = exp.spec.engine.calibration
    if file is not None:
        user = load_user_calibration(file)
        used = [
            g for g, e in sorted(exp.engine.per_gpu.items()) if user.label in e.step_time.source
        ]
        click.echo(
            f"calibration: {user.label}: used for {', '.join(used) or 'no GPU type of this run'}",
            err=True,
        )
    return exp

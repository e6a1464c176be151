"""Options several commands share: `--calibration` (your step-time entries over the catalog)."""

from __future__ import annotations

import dataclasses
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


def with_calibration(exp: Experiment, calibration: Path | None) -> Experiment:
    """`exp` with `--calibration` (when given) as its `[engine] calibration`, engine resolved
    again; prints which file (and hash) supplies which step-time entries."""
    if calibration is not None:
        engine = dataclasses.replace(exp.spec.engine, calibration=str(calibration.resolve()))
        exp = exp.with_spec(dataclasses.replace(exp.spec, engine=engine))
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

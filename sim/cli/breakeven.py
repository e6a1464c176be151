"""`sim breakeven`: the monthly volume above which self-hosting beats the API."""

from __future__ import annotations

import math
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from sim.cli.common import user_errors
from sim.experiment import load_experiment
from sim.planning.breakeven import breakeven, reference_cases, volume_grid
from sim.report.breakeven import write_breakeven_report


@click.command(name="breakeven")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--naive",
    is_flag=True,
    help="No queueing, bursts or weekly profile: the practitioners' arithmetic.",
)
@click.option(
    "--low",
    type=click.FloatRange(min=1.0),
    default=1e4,
    show_default=True,
    help="Smallest monthly volume (requests/month).",
)
@click.option(
    "--high",
    type=click.FloatRange(min=1.0),
    default=1e8,
    show_default=True,
    help="Largest monthly volume (requests/month).",
)
@click.option(
    "--per-decade",
    type=click.IntRange(1, 20),
    default=2,
    show_default=True,
    help="Grid points per decade of volume.",
)
@click.option(
    "--hybrid/--no-hybrid",
    default=True,
    show_default=True,
    help="Also search plans that spill to the API (needs [api]).",
)
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder [default: reports/<experiment name>].",
)
@user_errors
def breakeven_command(
    file: Path,
    naive: bool,
    low: float,
    high: float,
    per_decade: int,
    hybrid: bool,
    jobs: int,
    out: Path | None,
) -> None:
    """Sweep monthly volume for FILE: cheapest self-hosted (and hybrid) plan vs all-API."""
    if high <= low:
        raise click.BadParameter("must be above --low", param_hint="--high")
    console = Console()
    if naive:
        t = Table(title="DESIGN §10 reference calculations (cost layer, no simulation)")
        for col in ("figure", "inputs", "computed", "published", "difference", "note"):
            t.add_column(
                col, justify="right" if col in ("computed", "published", "difference") else "left"
            )
        for c in reference_cases():
            t.add_row(
                c.name,
                c.inputs,
                f"{c.computed:,.6g} {c.unit}",
                f"{c.published:,.6g}",
                f"{c.error:+.2%}",
                c.note,
            )
        console.print(t)
    exp = load_experiment(file)
    result = breakeven(
        exp,
        volume_grid(low, high, per_decade),
        jobs=jobs,
        naive=naive,
        hybrid=hybrid,
        progress=lambda line: console.print(line, highlight=False),
    )
    table = result.table()
    t = Table(title=f"{exp.spec.name}: monthly cost by volume (vs {result.api})")
    for col in ("requests/month", "self-hosted", "$", "hybrid", "$ ", "all-API $"):
        t.add_column(col, justify="left" if col in ("self-hosted", "hybrid") else "right")
    for r in table.iter_rows(named=True):
        t.add_row(
            f"{r['requests_per_month']:,.0f}",
            r["self_hosted"],
            _usd(r["self_hosted_usd"]),
            r["hybrid"],
            _usd(r["hybrid_usd"]),
            _usd(r["all_api_usd"]),
        )
    console.print(t)
    p5, p50, p95 = result.quantiles()
    if naive:
        console.print(
            f"fixed-fleet arithmetic: self-hosting beats {result.api} above "
            f"{result.naive_crossover:,.0f} requests/month",
            highlight=False,
        )
    elif math.isnan(p50):
        console.print("no crossover inside the grid: widen --low/--high", highlight=False)
    else:
        console.print(
            f"self-hosting beats {result.api} above {p50:,.0f} requests/month "
            f"(p5–p95 {p5:,.0f}–{p95:,.0f} across replications); the fixed-fleet arithmetic "
            f"says {result.naive_crossover:,.0f}",
            highlight=False,
        )
    target = out or Path("reports") / exp.spec.name
    page = write_breakeven_report(result, target)
    console.print(f"wrote {page}", highlight=False)


def _usd(x: float) -> str:
    return "" if math.isnan(x) else f"{x:,.0f}"

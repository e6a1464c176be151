"""The `sim` command: parse → call the library → write → exit code.

Exit codes: 0 success, 1 a run finished with failed replications or was interrupted, 2 bad
input (the message names file, key path and value; no traceback).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sim.errors import SimError
from sim.experiment import load_experiment
from sim.output import write_results
from sim.runner import ReplicationOutput, Results, horizon_mode, run_experiment, version
from sim.store import PartStore, fingerprint

F = TypeVar("F", bound=Callable[..., Any])

TABLE_METRICS = (
    ("ttft_p95_s", "p95 TTFT (s)", "{:.3f}"),
    ("tpot_p95_s", "p95 TPOT (s)", "{:.4f}"),
    ("e2e_p95_s", "p95 E2E (s)", "{:.2f}"),
    ("slo_attainment", "SLO attain.", "{:.1%}"),
    ("gpu_utilisation", "GPU util.", "{:.1%}"),
    ("cost_usd", "cost ($)", "{:,.0f}"),
)


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


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@user_errors
def check(file: Path) -> None:
    """Validate FILE (and the files it names) without running it."""
    exp = load_experiment(file)
    s = exp.spec
    click.echo(
        f"{file}: ok ({s.name}: {s.months} months, {s.replications} replications, "
        f"seed {s.seed}, {s.engine.model} on {', '.join(s.gpus_used())})"
    )


@main.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--replications", "-n", type=click.IntRange(min=1), help="Override the count.")
@click.option(
    "--jobs",
    "-j",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Worker processes.",
)
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder [default: reports/<experiment name>].",
)
@click.option("--resume", is_flag=True, help="Complete an interrupted run from its parts folder.")
@click.option("--fresh", is_flag=True, help="Discard the parts of an earlier unfinished run.")
@click.option(
    "--backend",
    type=click.Choice(["local", "ray"]),
    default="local",
    show_default=True,
    help="Where replications run: local processes, or Ray (pip install 'sim[ray]').",
)
@click.option("--address", help="Ray cluster address (e.g. ray://host:10001) [default: local].")
@user_errors
def run(
    file: Path,
    replications: int | None,
    jobs: int,
    out: Path | None,
    resume: bool,
    fresh: bool,
    backend: str,
    address: str | None,
) -> None:
    """Run the experiment in FILE and write its report folder.

    Each finished replication is kept in <out>.parts/ until the report is written, so an
    interrupted run (Ctrl-C, crash, kill -9) loses nothing: run again with --resume.
    """
    if resume and fresh:
        raise click.UsageError("--resume and --fresh exclude each other")
    if address is not None and backend != "ray":
        raise click.UsageError("--address needs --backend ray")
    exp = load_experiment(file)
    total = replications or exp.spec.replications
    target = out or Path("reports") / exp.spec.name
    parts = target.with_name(target.name + ".parts")
    store = PartStore.open(parts, fingerprint(exp.spec, version()), resume=resume, fresh=fresh)
    console = Console()
    console.print(f"horizon: {horizon_mode(exp.spec)[1]}")
    started = time.perf_counter()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total} replications"),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=console,
        transient=False,
    ) as bar:
        task = bar.add_task(exp.spec.name, total=total, rate="")
        simulated = [0]

        def progress(o: ReplicationOutput, done: int, n: int) -> None:
            simulated[0] += o.requests
            rate = simulated[0] / max(time.perf_counter() - started, 1e-9)
            bar.update(task, completed=done, rate=f"{rate:,.0f} simulated req/s")

        results = run_experiment(
            exp,
            replications=total,
            jobs=jobs,
            progress=progress,
            store=store,
            backend="ray" if backend == "ray" else "local",
            address=address,
        )
    if results.interrupted:
        click.echo(
            f"interrupted: {len(results.replications_done)} finished replications kept in "
            f"{parts}/; run the same command with --resume to complete the run",
            err=True,
        )
        sys.exit(1)
    if results.replications_done:
        write_results(results, target)
    print_summary(console, results)
    if results.replications_done:
        console.print(
            f"wrote {target}/ (report.html, months.parquet, summary.parquet, "
            f"manifest.json) in {results.wall_s:.1f} s"
        )
    for k, message in sorted(results.errors.items()):
        click.echo(f"error: replication {k}: {message}", err=True)
    if results.errors:
        click.echo(
            f"failed replications can be retried with --resume (parts in {parts}/)", err=True
        )
        sys.exit(1)
    store.remove()


def print_summary(console: Console, results: Results) -> None:
    """The terminal table: per month, the median across replications and its p5–p95 range."""
    s = results.summary
    if s.is_empty():
        return
    months = sorted(s["month"].unique().to_list())
    table = Table(
        title=f"{results.spec.name}: median across {len(results.replications_done)} "
        "replications [p5–p95]",
        show_lines=True,
    )
    table.add_column("metric")
    for month in months:
        table.add_column(f"month {month}", justify="right")
    cell = {(r["metric"], r["month"]): r for r in s.iter_rows(named=True)}
    for metric, title, fmt in TABLE_METRICS:
        row = [title]
        for month in months:
            q = cell[(metric, month)]
            row.append(
                f"{fmt.format(q['p50'])}\n[dim]{fmt.format(q['p5'])}–{fmt.format(q['p95'])}[/dim]"
            )
        table.add_row(*row)
    se = [cell[("ttft_p95_se_s", m)]["p50"] for m in months]
    if not all(x != x for x in se):  # sampled horizon: the estimator's own error
        table.add_row("p95 TTFT s.e. (s)", *(f"±{x:.2g}" for x in se))
    slo = results.spec.slo.ttft_s
    table.add_row(
        f"P(p95 TTFT > {slo:g} s)",
        *(f"{cell[('p_ttft_p95_above_slo', m)]['mean']:.0%}" for m in months),
    )
    console.print(table)

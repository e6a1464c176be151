"""`sim run`: run an experiment and write its report folder (`sim check` is in `check`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

import click
import polars as pl
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sim.cli.common import SafePath, user_errors
from sim.cli.options import CALIBRATION_OPTION, say_calibration
from sim.errors import ConfigError
from sim.experiment import load_experiment
from sim.replication import ReplicationOutput
from sim.report import write_results
from sim.runner import Results, run_experiment, version
from sim.sizing import estimate_run, size_problems
from sim.store import PartStore, fingerprint

TABLE_METRICS = (
    ("ttft_p95_s", "p95 TTFT (s)", "{:.3f}"),
    ("tpot_p95_s", "p95 TPOT (s)", "{:.4f}"),
    ("e2e_p95_s", "p95 E2E (s)", "{:.2f}"),
    ("slo_attainment", "SLO attain.", "{:.1%}"),
    ("gpu_utilisation", "GPU busy", "{:.1%}"),
    ("token_utilisation", "token util.", "{:.1%}"),
    ("replicas", "replicas", "{:.0f}"),
    ("cost_usd", "cost ($)", "{:,.0f}"),
    ("usd_per_million_tokens", "$/M tokens", "{:,.2f}"),
)
# Rows shown only when some plan has spot pools / an API (medians across replications).
HYBRID_METRICS = (
    ("spot_preemptions", "spot reclaims", "{:,.0f}"),
    ("requeued", "re-queued", "{:,.0f}"),
    ("api_requests", "API requests", "{:,.0f}"),
    ("api_dropped", "API dropped", "{:,.0f}"),
    ("gpu_cost_spot_usd", "spot GPU ($)", "{:,.0f}"),
    ("api_cost_usd", "API ($)", "{:,.0f}"),
    ("savings_vs_all_api_usd", "vs all-API ($)", "{:+,.0f}"),
)


@click.command()
@click.argument("file", type=SafePath(dir_okay=False, path_type=Path))
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
    type=SafePath(file_okay=False, path_type=Path),
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
@click.option(
    "--force", is_flag=True, help="Run even when the size estimate says it cannot finish."
)
@CALIBRATION_OPTION
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
    force: bool,
    calibration: Path | None,
) -> None:
    """Run the experiment in FILE and write its report folder.

    Each finished replication is kept in <out>.parts/ until the report is written, so an
    interrupted run (Ctrl-C, crash, kill -9) loses nothing: run again with --resume.
    """
    if resume and fresh:
        raise click.UsageError("--resume and --fresh exclude each other")
    if address is not None and backend != "ray":
        raise click.UsageError("--address needs --backend ray")
    exp = say_calibration(load_experiment(file, calibration))
    total = replications or exp.spec.replications
    size = estimate_run(exp, total, jobs)
    problems = size_problems(exp, size)
    if problems and not force:
        raise ConfigError(problems)
    target = out or Path("reports") / exp.spec.name
    parts = target.with_name(target.name + ".parts")
    store = PartStore.open(
        parts, fingerprint(exp.spec, exp.engine, version()), resume=resume, fresh=fresh
    )
    for line in store.healed:
        click.echo(f"note: {line}", err=True)
    console = Console()
    console.print(f"horizon: {exp.horizon()[1]}")
    console.print(size.describe())
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
    """Terminal tables: per plan and month, the median across replications [p5–p95]; with
    several plans, then each plan's paired difference from the first."""
    s = results.summary
    if s.is_empty():
        return
    spec = results.spec
    hybrid = spec.spot is not None or spec.api is not None
    plans = [p.name for p in spec.all_plans() if p.name in set(s["plan"].to_list())]
    months = sorted(s["month"].unique().to_list())
    for plan in plans:
        title = f"{spec.name}: median across {len(results.replications_done)} replications"
        if len(plans) > 1:
            title = f"{spec.name} — plan {plan}: median across "
            title += f"{len(results.replications_done)} replications"
        table = Table(title=f"{title} [p5–p95]", show_lines=True)
        table.add_column("metric")
        for month in months:
            table.add_column(f"month {month}", justify="right")
        cell = {
            (r["metric"], r["month"]): r
            for r in s.filter(pl.col("plan") == plan).iter_rows(named=True)
        }
        for metric, name, fmt in TABLE_METRICS + (HYBRID_METRICS if hybrid else ()):
            row = [name]
            for month in months:
                q = cell[(metric, month)]
                lo, mid, hi = (_fmt(fmt, q[k]) for k in ("p5", "p50", "p95"))
                row.append(f"{mid}\n[dim]{lo}–{hi}[/dim]")
            table.add_row(*row)
        se = [cell[("ttft_p95_se_s", m)]["p50"] for m in months]
        if not all(x is None or x != x for x in se):  # sampled horizon: the estimator's error
            table.add_row("p95 TTFT s.e. (s)", *(_fmt("±{:.2g}", x) for x in se))
        risk = {
            r["month"]: r for r in results.risk.filter(pl.col("plan") == plan).iter_rows(named=True)
        }
        for key, label in (
            ("miss", "P(miss SLO)"),
            ("ttft", f"P(p95 TTFT > {spec.slo.ttft_s:g} s)"),
            ("tpot", f"P(p95 TPOT > {spec.slo.tpot_s:g} s)"),
        ):
            table.add_row(label, *(_probability(risk.get(m), key) for m in months))
        console.print(table)
    uncalibrated = [g for g, p in results.engine.provenance().items() if p == "uncalibrated"]
    for gpu in uncalibrated:
        console.print(
            f"note: {spec.engine.model} on {gpu}: step times from the roofline of the GPU's "
            "specs (uncalibrated); latencies and capacity are rough",
            highlight=False,
        )
    for gpu, c in sorted(results.capacities.items()):
        console.print(
            f"capacity at the SLO, one {gpu} replica: {c.requests_per_s:.3g} requests/s, "
            f"{c.tokens_per_s:,.0f} tokens/s (token utilisation = tokens served ÷ this)",
            highlight=False,
        )
    if len(plans) > 1 and not results.paired.is_empty():
        _print_paired(console, results, months)


def _probability(row: dict[str, object] | None, key: str) -> str:
    """ "5% (1/20)\n[0–25%]": the share of replications, k/n, its 95 % interval."""
    if row is None:
        return "–"
    p, lo, hi = (float(row[f"p_{key}{s}"]) for s in ("", "_lo", "_hi"))  # type: ignore[arg-type]
    return f"{p:.0%} ({row[f'k_{key}']}/{row['n']})\n[dim]{lo:.0%}–{hi:.0%}[/dim]"


def _fmt(fmt: str, value: object) -> str:
    """A summary cell; "–" where there is no value (a month without a single request)."""
    return "–" if value is None else fmt.format(value)


PAIRED_ROWS = (
    ("cost_usd", "Δ cost ($)", "{:+,.0f}"),
    ("ttft_p95_s", "Δ p95 TTFT (s)", "{:+.3f}"),
    ("slo_attainment", "Δ SLO attain. (pp)", "{:+.2%}"),
    ("ttft_p95_above_slo", "Δ P(p95 TTFT > SLO)", "{:+.0%}"),
)


def _print_paired(console: Console, results: Results, months: list[int]) -> None:
    p = results.paired
    base = p["baseline"][0]
    table = Table(
        title=f"paired differences vs {base} (same traffic, reclaims, API latency): "
        "mean [p5–p95] across replications",
        show_lines=True,
    )
    table.add_column("plan / metric")
    for month in months:
        table.add_column(f"month {month}", justify="right")
    cell = {(r["plan"], r["metric"], r["month"]): r for r in p.iter_rows(named=True)}
    for plan in p["plan"].unique(maintain_order=True).to_list():
        for metric, name, fmt in PAIRED_ROWS:
            row = [f"{plan}: {name}"]
            for month in months:
                q = cell.get((plan, metric, month))
                if q is None:
                    row.append("")
                    continue
                row.append(
                    f"{_fmt(fmt, q['mean'])}\n[dim]{_fmt(fmt, q['p5'])}–{_fmt(fmt, q['p95'])}[/dim]"
                )
            table.add_row(*row)
    console.print(table)

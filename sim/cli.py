"""The `sim` command: parse → call the library → write → exit code.

Exit codes: 0 success, 1 a run finished with failed replications or was interrupted, 2 bad
input (the message names file, key path and value; no traceback).
"""

from __future__ import annotations

import dataclasses
import math
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

from sim.config import TRACE_FORMATS, parse_workload_file
from sim.errors import SimError, TraceError
from sim.experiment import load_experiment
from sim.output import write_results
from sim.rng import Stream, stream
from sim.runner import ReplicationOutput, Results, horizon_mode, run_experiment, version
from sim.store import PartStore, fingerprint
from sim.trace_report import write_trace_report
from sim.traces import (
    RateTrace,
    RequestTrace,
    read_trace,
    superposed_interarrival_cv,
    write_weekly_profile,
)
from sim.traces.build import load_workload, make_traffic
from sim.traces.compare import acceptance, generate_like
from sim.traces.fit import FIT_ARRIVALS, fit_workload, workload_toml
from sim.traces.stats import TraceStats, describe
from sim.workload import SECONDS_PER_MONTH, WorkloadModel

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
    for note in exp.notes:  # e.g. rows a trace reader skipped: reported, never silent
        click.echo(f"note: {note}")


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
    console.print(f"horizon: {horizon_mode(exp)[1]}")
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


# ------------------------------------------------------------------------------ sim trace


@main.group()
def trace() -> None:
    """Real traces: inspect one, fit a generated workload to it, compare the two."""


FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(TRACE_FORMATS),
    help="Trace format [default: detected from the file].",
)


def _trace_notes(t: RequestTrace | RateTrace) -> list[str]:
    notes = [
        f"{t.file}: {t.format}, {t.size:,} {'requests' if t.kind == 'requests' else 'windows'}"
    ]
    notes += [f"skipped {n:,} rows: {why}" for why, n in t.skipped]
    return notes + list(t.notes)


def _print_stats(console: Console, stats: list[TraceStats]) -> None:
    table = Table(show_lines=False)
    table.add_column("statistic")
    for s in stats:
        table.add_column(s.name, justify="right")
    if len(stats) == 2:
        table.add_column("difference", justify="right")
    rows = [s.rows() for s in stats]
    for i, (label, first) in enumerate(rows[0]):
        cells = [_cell(r[i][1]) for r in rows]
        if len(stats) == 2:
            other = rows[1][i][1]
            ok = first is not None and first != 0 and math.isfinite(first) and other is not None
            cells.append(f"{other / first - 1:+.1%}" if ok and other is not None and first else "")
        table.add_row(label, *cells)
    console.print(table)


def _cell(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "—"
    if math.isinf(value):
        return "∞"
    return f"{value:,.0f}" if abs(value) >= 1000 else f"{value:.4g}"


@trace.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@FORMAT_OPTION
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.html and the PNGs [default: reports/trace-<name>].",
)
@click.option("--no-png", is_flag=True, help="Write report.html only.")
@user_errors
def inspect(file: Path, fmt: str | None, out: Path | None, no_png: bool) -> None:
    """Print and plot FILE's profile: rates, bursts, hour-of-week shape, token lengths."""
    t = read_trace(file, fmt)
    stats = describe(t, name=file.name)
    if t.kind == "rates":
        rng = stream(Stream.TRACE_SAMPLE, 0, 0, 2**31)  # its own sub-key
        sim_cv = superposed_interarrival_cv(t, rng)  # type: ignore[arg-type]
        if sim_cv is not None:
            stats = dataclasses.replace(stats, superposed_cv=sim_cv)
    console = Console()
    notes = _trace_notes(t)
    for note in notes:
        console.print(note, highlight=False)
    _print_stats(console, [stats])
    target = out or Path("reports") / f"trace-{_stem(file)}"
    page = write_trace_report(target, f"Trace {file.name}", [stats], notes, pngs=not no_png)
    console.print(f"wrote {page}")


@trace.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="The workload file to write (its weekly profile goes beside it, <stem>.profile.csv).",
)
@FORMAT_OPTION
@click.option(
    "--lengths",
    type=click.Path(exists=True, path_type=Path),
    help="A request trace to take (input, output) lengths from (required for a rate trace).",
)
@click.option(
    "--smoothing",
    type=click.FloatRange(0.0, 2.0),
    default=0.0,
    show_default=True,
    help="Log-sd of the multiplicative jitter on resampled lengths (0 = plain bootstrap).",
)
@click.option("--seed", type=click.IntRange(min=0), default=0, show_default=True)
@click.option(
    "--samples",
    type=click.IntRange(min=1000),
    default=FIT_ARRIVALS,
    show_default=True,
    help="Arrivals drawn per loss evaluation (fewer: faster, noisier fit).",
)
@user_errors
def fit(
    file: Path,
    out: Path,
    fmt: str | None,
    lengths: Path | None,
    smoothing: float,
    seed: int,
    samples: int,
) -> None:
    """Fit a generated workload (profile, bursts, lengths) to FILE; write it to --out."""
    t = read_trace(file, fmt)
    if t.kind == "requests" and not t.has_arrivals:
        raise TraceError(
            str(file), None, None, t.format, "has no arrival times to fit (lengths only)"
        )
    if lengths is None and t.kind == "rates":
        raise TraceError(
            str(file), None, None, t.format, "has no token lengths: give --lengths FILE"
        )
    console = Console()
    started = time.perf_counter()
    with console.status("fitting (profile, then burst families)…"):
        result = fit_workload(
            t,
            seed=seed,
            smoothing_log_sd=smoothing,
            lengths_file=None if lengths is None else str(lengths),
            samples=samples,
        )
    profile_path = out.with_name(out.stem + ".profile.csv")
    out.parent.mkdir(parents=True, exist_ok=True)
    write_weekly_profile(result.profile, profile_path)
    out.write_text(workload_toml(result, out, profile_path, version=version()), encoding="utf-8")
    b = result.burst
    console.print(
        f"{file}: {result.target.requests:,.0f} requests over {result.target.span_s / 3600:.3g} h "
        f"→ {result.base_requests_per_day:,.0f} requests/day, profile {result.profile_kind}",
        highlight=False,
    )
    for name, loss, held in b.candidates:
        mark = "→" if name == b.family else " "
        console.print(f" {mark} {name:<14} loss {loss:.4g}  held out {held:.4g}", highlight=False)
    console.print(f"chosen: {b.burst}", highlight=False)
    console.print(
        f"wrote {out} and {profile_path} in {time.perf_counter() - started:.1f} s", highlight=False
    )


@trace.command()
@click.argument("file", type=click.Path(exists=True, path_type=Path))
@click.argument("workload", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@FORMAT_OPTION
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.html and the PNGs [default: reports/compare-<name>].",
)
@click.option("--seed", type=click.IntRange(min=0), default=1, show_default=True)
@click.option(
    "--windows",
    type=click.IntRange(min=1),
    help="Generated copies of the trace's span [default: ~2M arrivals, or a year of windows].",
)
@click.option("--strict", is_flag=True, help="Exit 1 if an acceptance check fails.")
@click.option("--no-png", is_flag=True, help="Write report.html only.")
@user_errors
def compare(
    file: Path,
    workload: Path,
    fmt: str | None,
    out: Path | None,
    seed: int,
    windows: int | None,
    strict: bool,
    no_png: bool,
) -> None:
    """Real (FILE) vs generated (the WORKLOAD file): statistics and charts side by side."""
    t = read_trace(file, fmt)
    spec = parse_workload_file(workload)
    if spec.replay is not None:
        raise SimError(f'{workload}: compare needs a generated workload, not kind = "replay"')
    loaded = load_workload(spec, str(workload), float(SECONDS_PER_MONTH))
    model = make_traffic(spec, loaded)
    assert isinstance(model, WorkloadModel)
    real = describe(t, name=f"real: {file.name}")
    generated = generate_like(real, model, seed, windows, name=f"generated: {workload.name}")
    checks = acceptance(real, generated)
    console = Console()
    notes = [
        *_trace_notes(t),
        f"generated: {generated.windows} independent copies of the trace's span from {workload}"
        f" (seed {seed}); every statistic is per window, averaged over windows",
    ]
    for note in notes:
        console.print(note, highlight=False)
    _print_stats(console, [real, generated])
    table = Table(title="acceptance (issue #4 tolerances)")
    for col in ("check", "real", "generated", "difference", "tolerance", "verdict"):
        table.add_column(col, justify="left" if col in ("check", "tolerance") else "right")
    for c in checks:
        verdict = "n/a" if c.ok is None else ("pass" if c.ok else "[red]FAIL[/red]")
        rel = "" if c.relative_error is None else f"{c.relative_error:+.1%}"
        table.add_row(c.statistic, _cell(c.real), _cell(c.generated), rel, c.tolerance, verdict)
    console.print(table)
    target = out or Path("reports") / f"compare-{_stem(file)}"
    page = write_trace_report(
        target,
        f"{file.name} vs {workload.name}",
        [real, generated],
        notes,
        checks,
        pngs=not no_png,
    )
    console.print(f"wrote {page}")
    if strict and any(c.ok is False for c in checks):
        sys.exit(1)


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".gz", ".xz"):
        name = name.removesuffix(suffix)
    return Path(name).stem or "trace"

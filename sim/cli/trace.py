"""`sim trace inspect|fit|compare`: real traces, generated workloads fitted to them, and the two
side by side (docs/traces.md)."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from sim.cli.common import user_errors
from sim.config import TRACE_FORMATS, parse_workload_file
from sim.config.spec import TIME_UNITS
from sim.errors import SimError, TraceError
from sim.experiment import load_workload
from sim.report import write_trace_report
from sim.runner import version
from sim.traces import RateTrace, RequestTrace, Trace, read_trace, write_weekly_profile
from sim.traces.columns import parse_columns
from sim.traces.compare import acceptance, generate_like
from sim.traces.fit import FIT_ARRIVALS, fit_workload, workload_toml
from sim.traces.stats import TraceStats, describe, inspect_stats
from sim.units import SECONDS_PER_MONTH
from sim.workload import WorkloadModel
from sim.workload.from_spec import make_traffic


@click.group()
def trace() -> None:
    """Real traces: inspect one, fit a generated workload to it, compare the two."""


FORMAT_OPTION = click.option(
    "--format",
    "fmt",
    type=click.Choice(TRACE_FORMATS),
    help="Trace format [default: detected from the file].",
)


def _columns_option(fn: Callable[..., None]) -> Callable[..., None]:
    """`--columns arrival=COL,input=COL,output=COL` and `--time-unit`, parsed into one
    `TraceColumns` passed to the command as `columns`."""

    fn = click.option(
        "--time-unit",
        type=click.Choice(tuple(TIME_UNITS)),
        help="Unit of numeric arrival times with --columns (epoch or relative) [default: s].",
    )(fn)
    return click.option(
        "--columns",
        metavar="arrival=COL,input=COL,output=COL",
        help="Read a request log through its own column names (CSV, Parquet or JSON lines; "
        "times: numbers in --time-unit, or ISO-8601).",
    )(fn)


def _read(file: Path, fmt: str | None, columns: str | None, time_unit: str | None) -> Trace:
    if columns is None:
        if time_unit is not None:
            raise click.BadParameter("only with --columns", param_hint="--time-unit")
        return read_trace(file, fmt)
    try:
        mapping = parse_columns(columns, time_unit or "s")
    except ValueError as err:
        raise click.BadParameter(str(err), param_hint="--columns") from None
    return read_trace(file, fmt, mapping)


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
@_columns_option
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Folder for report.html and the PNGs [default: reports/trace-<name>].",
)
@click.option("--no-png", is_flag=True, help="Write report.html only.")
@user_errors
def inspect(
    file: Path,
    fmt: str | None,
    columns: str | None,
    time_unit: str | None,
    out: Path | None,
    no_png: bool,
) -> None:
    """Print and plot FILE's profile: rates, bursts, hour-of-week shape, token lengths."""
    t = _read(file, fmt, columns, time_unit)
    stats = inspect_stats(t, name=file.name)
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
@_columns_option
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
    columns: str | None,
    time_unit: str | None,
    lengths: Path | None,
    smoothing: float,
    seed: int,
    samples: int,
) -> None:
    """Fit a generated workload (profile, bursts, lengths) to FILE; write it to --out."""
    t = _read(file, fmt, columns, time_unit)
    if t.kind == "requests" and not t.has_arrivals:
        raise TraceError(
            str(file), None, None, t.format, "has no arrival times to fit (lengths only)"
        )
    if lengths is None and t.kind == "rates":
        raise TraceError(
            str(file), None, None, t.format, "has no token lengths: give --lengths FILE"
        )
    console = Console()
    for note in _trace_notes(t):
        console.print(note, highlight=False)
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
@_columns_option
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
    columns: str | None,
    time_unit: str | None,
    out: Path | None,
    seed: int,
    windows: int | None,
    strict: bool,
    no_png: bool,
) -> None:
    """Real (FILE) vs generated (the WORKLOAD file): statistics and charts side by side."""
    t = _read(file, fmt, columns, time_unit)
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

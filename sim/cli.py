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
import polars as pl
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from sim.config import TRACE_FORMATS, parse_workload_file
from sim.errors import SimError, TraceError
from sim.experiment import load_experiment, load_workload
from sim.replication import ReplicationOutput
from sim.report import write_results, write_trace_report
from sim.rng import Stream, stream
from sim.runner import Results, run_experiment, version
from sim.store import PartStore, fingerprint
from sim.traces import (
    RateTrace,
    RequestTrace,
    read_trace,
    superposed_interarrival_cv,
    write_weekly_profile,
)
from sim.traces.compare import acceptance, generate_like
from sim.traces.fit import FIT_ARRIVALS, fit_workload, workload_toml
from sim.traces.stats import TraceStats, describe
from sim.units import SECONDS_PER_MONTH
from sim.workload import WorkloadModel
from sim.workload.from_spec import make_traffic

F = TypeVar("F", bound=Callable[..., Any])

TABLE_METRICS = (
    ("ttft_p95_s", "p95 TTFT (s)", "{:.3f}"),
    ("tpot_p95_s", "p95 TPOT (s)", "{:.4f}"),
    ("e2e_p95_s", "p95 E2E (s)", "{:.2f}"),
    ("slo_attainment", "SLO attain.", "{:.1%}"),
    ("gpu_utilisation", "GPU util.", "{:.1%}"),
    ("cost_usd", "cost ($)", "{:,.0f}"),
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
    store = PartStore.open(
        parts, fingerprint(exp.spec, exp.engine, version()), resume=resume, fresh=fresh
    )
    console = Console()
    console.print(f"horizon: {exp.horizon()[1]}")
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
                lo, mid, hi = (fmt.format(q[k]) for k in ("p5", "p50", "p95"))
                row.append(f"{mid}\n[dim]{lo}–{hi}[/dim]")
            table.add_row(*row)
        se = [cell[("ttft_p95_se_s", m)]["p50"] for m in months]
        if not all(x != x for x in se):  # sampled horizon: the estimator's own error
            table.add_row("p95 TTFT s.e. (s)", *(f"±{x:.2g}" for x in se))
        table.add_row(
            f"P(p95 TTFT > {spec.slo.ttft_s:g} s)",
            *(f"{cell[('p_ttft_p95_above_slo', m)]['mean']:.0%}" for m in months),
        )
        console.print(table)
    if len(plans) > 1 and not results.paired.is_empty():
        _print_paired(console, results, months)


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
                    f"{fmt.format(q['mean'])}\n[dim]{fmt.format(q['p5'])}–{fmt.format(q['p95'])}[/dim]"
                )
            table.add_row(*row)
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


# ------------------------------------------------------------------ calibrate and validate
# (sim/calibrate_profiles.py, sim/calibrate_runs.py, sim/validate.py; docs/validation.md)


def _catalog_key(text: str, option: str) -> tuple[str, str, int, str]:
    parts = text.split("/")
    if len(parts) != 4 or not parts[2].isdigit():
        raise click.BadParameter(f"need model/gpu/tp/dtype, got {text!r}", param_hint=option)
    return (parts[0], parts[1], int(parts[2]), parts[3])


def _write_entries(out: Path | None, entries: list[Any], header: str) -> None:
    from sim.calibrate_profiles import render_entries

    text = render_entries(entries, header)
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    click.echo(f"wrote {out}", err=True)


@main.group()
def calibrate() -> None:
    """Fit step-time catalog entries from operator profiles or from measured vLLM runs."""


@calibrate.command()
@click.argument("source", type=click.Choice(["vidur", "llmservingsim", "splitwise", "distserve"]))
@click.argument("path", type=click.Path(path_type=Path))
@click.option(
    "--model", help="vidur: org/name; splitwise: llama2-70b; distserve: facebook/opt-13b."
)
@click.option(
    "--gpu", help="vidur: a100|h100|a40; splitwise: a100-80gb|h100-80gb; else catalog GPU."
)
@click.option("--tp", type=click.IntRange(min=1), default=1, show_default=True)
@click.option(
    "--layers", type=click.IntRange(min=1), help="llmservingsim: layers [default: catalog]."
)
@click.option("--base", help="Entry model/gpu/tp/dtype for missing terms [default: closest].")
@click.option("--dtype", default="fp16", show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="TOML [default: stdout]"
)
@user_errors
def profiles(
    source: str,
    path: Path,
    model: str | None,
    gpu: str | None,
    tp: int,
    layers: int | None,
    base: str | None,
    dtype: str,
    out: Path | None,
) -> None:
    """Refit one step-time entry from an operator profile PATH; print its held-out error."""
    from sim.calibrate_profiles import (
        StepSamples,
        base_entry_for,
        catalog_model_name,
        distserve_samples,
        fit_profile,
        llmservingsim_samples,
        splitwise_samples,
        vidur_samples,
    )
    from sim.catalog import load_step_time_catalog
    from sim.hardware import models

    def need(value: str | None, option: str) -> str:
        if value is None:
            raise click.UsageError(f"{source} needs {option}")
        return value

    samples: StepSamples
    match source:
        case "vidur":
            samples = vidur_samples(path, need(gpu, "--gpu"), need(model, "--model"), tp)
        case "llmservingsim":
            name = catalog_model_name(path.parent.parent.name)
            n_layers = layers or (models()[name].layers if name in models() else None)
            if n_layers is None:
                raise click.UsageError(f"{name} is not in the model catalog: pass --layers")
            samples = llmservingsim_samples(path, n_layers, gpu or "h100-80gb")
        case "splitwise":
            samples = splitwise_samples(path, need(model, "--model"), need(gpu, "--gpu"), tp)
        case _:
            samples = distserve_samples(path, need(model, "--model"), tp)
    catalog = load_step_time_catalog()
    key = (samples.model, samples.gpu, samples.tp, dtype)
    base_entry = catalog.get(_catalog_key(base, "--base")) if base else base_entry_for(catalog, key)
    if base and base_entry is None:
        raise click.BadParameter(f"{base} is not in the catalog", param_hint="--base")
    try:
        result = fit_profile(samples, base_entry, dtype)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    f = result.fit
    click.echo(
        f"{source}: {samples.model} on {samples.gpu} tp{samples.tp}: held-out MAPE "
        f"{f.heldout_mape:.2%} (max {f.heldout_max_ape:.1%}) on {f.n_heldout} of "
        f"{f.n_train + f.n_heldout} samples; training MAPE {f.train_mape:.2%}",
        err=True,
    )
    _write_entries(out, [result.entry], f"Fitted by `sim calibrate profiles {source}` from {path}")


@calibrate.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--model", required=True, help="Catalog model name of the runs, e.g. llama-3.1-8b.")
@click.option("--gpu", required=True, help="GPU name of the runs, e.g. rtx-4090.")
@click.option("--tp", type=click.IntRange(min=1), help="[default: from the run, else 1]")
@click.option("--dtype", default="fp16", show_default=True)
@click.option("--base", help="Starting entry model/gpu/tp/dtype [default: the runs' own key].")
@click.option("--max-num-seqs", type=click.IntRange(min=1), help="[default: from the run]")
@click.option("--max-num-batched-tokens", type=click.IntRange(min=1), help="[default: the run's]")
@click.option("--max-model-len", type=click.IntRange(min=1), help="[default: from the run]")
@click.option(
    "--kv-blocks", type=click.IntRange(min=1), help="[default: the run's, else estimated]"
)
@click.option("--replicas", type=click.IntRange(min=1), help="Data-parallel engines [default: 1].")
@click.option("--fit", "fit_terms", default="overhead,linear,attention", show_default=True)
@click.option(
    "--out", type=click.Path(dir_okay=False, path_type=Path), help="TOML [default: stdout]"
)
@user_errors
def runs(
    files: tuple[Path, ...],
    model: str,
    gpu: str,
    tp: int | None,
    dtype: str,
    base: str | None,
    max_num_seqs: int | None,
    max_num_batched_tokens: int | None,
    max_model_len: int | None,
    kv_blocks: int | None,
    replicas: int | None,
    fit_terms: str,
    out: Path | None,
) -> None:
    """Fit overhead/linear/attention scale factors to measured runs FILES by replay."""
    from sim.calibrate_runs import FACTOR_NAMES, RunCase, fit_runs, read_measured_run
    from sim.catalog import load_step_time_catalog
    from sim.validate import EngineSetup

    terms = tuple(t.strip() for t in fit_terms.split(",") if t.strip())
    if not terms or set(terms) - set(FACTOR_NAMES):
        raise click.BadParameter(f"choose from {', '.join(FACTOR_NAMES)}", param_hint="--fit")
    cases = []
    for file in files:
        run, hints = read_measured_run(file)
        seqs = max_num_seqs or hints.max_num_seqs
        budget = max_num_batched_tokens or hints.max_num_batched_tokens
        if seqs is None or budget is None:
            raise TraceError(
                str(file),
                None,
                None,
                None,
                "engine limits not recorded: pass --max-num-seqs and --max-num-batched-tokens",
            )
        longest = int((run.input_tokens + run.output_tokens).max())
        engine = EngineSetup(
            model=model,
            gpu=gpu,
            tp=tp or hints.tp or 1,
            dtype=dtype,
            max_num_seqs=seqs,
            max_num_batched_tokens=budget,
            max_model_len=max_model_len or hints.max_model_len or longest,
            kv_blocks=kv_blocks or hints.kv_blocks,
            gpu_memory_utilization=hints.gpu_memory_utilization or 0.9,
        )
        cases.append(RunCase(run, engine, replicas or hints.replicas or 1))
    key = (model, gpu, cases[0].engine.tp, dtype)
    catalog = load_step_time_catalog()
    start = catalog.get(_catalog_key(base, "--base") if base else key)
    if start is None:
        have = ", ".join("/".join(map(str, k)) for k in sorted(catalog))
        raise click.UsageError(
            f"no catalog entry {'/'.join(map(str, key))} to start from: pass --base (one of {have})"
        )
    names = ", ".join(str(f) for f in files)
    result = fit_runs(
        start,
        cases,
        fit=terms,
        model=model,
        gpu=gpu,
        tp=key[2],
        dtype=dtype,
        source=f"sim calibrate runs: scale factors of {'/'.join(map(str, start.key))} fitted "
        f"to TTFT/TPOT/E2E p50/p95 of {names}; heldout_mape here is the in-sample mean |error|.",
    )
    table = Table(title="percentile error before → after (simulated / measured − 1)")
    for col in ("run", "metric", "measured (s)", "before", "after"):
        table.add_column(col, justify="left" if col in ("run", "metric") else "right")
    joined = result.before.join(result.after, on=["run", "metric"], suffix="_after")
    for row in joined.iter_rows(named=True):
        table.add_row(
            row["run"],
            row["metric"],
            f"{row['measured_s']:.4g}",
            f"{row['error']:+.1%}",
            f"{row['error_after']:+.1%}",
        )
    console = Console(stderr=True)
    console.print(table)
    factors = ", ".join(f"{n} ×{v:.3f}" for n, v in zip(FACTOR_NAMES, result.factors, strict=True))
    console.print(f"factors: {factors} ({result.evaluations} replays)", highlight=False)
    _write_entries(out, [result.entry], f"Fitted by `sim calibrate runs` from {names}")


@main.command()
@click.option("--all", "show_all", is_flag=True, help="Also list published numbers not reproduced.")
@click.option("--case", "names", multiple=True, help="Only these cases (repeatable).")
@click.option(
    "--catalog",
    "catalog_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Extra step-time entries (TOML, e.g. from `sim calibrate`) over the packaged catalog.",
)
@user_errors
def validate(show_all: bool, names: tuple[str, ...], catalog_file: Path | None) -> None:
    """Replay the packaged validation cases; exit 1 if a gated case misses its target."""
    import tomllib

    from sim.catalog import load_step_time_catalog, parse_step_time_catalog
    from sim.validate import GATE_MAX_LOAD, load_cases, load_unreproduced, validate_all

    catalog = dict(load_step_time_catalog())
    if catalog_file is not None:
        try:
            doc = tomllib.loads(catalog_file.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
            message = str(err).splitlines()[0][:80] if str(err) else type(err).__name__
            raise TraceError(str(catalog_file), None, None, message, "cannot read TOML") from None
        catalog.update(parse_step_time_catalog(doc, str(catalog_file)))
    cases = load_cases()
    if names:
        known = {c.name for c in cases}
        for n in names:
            if n not in known:
                raise click.BadParameter(f"unknown case {n!r}; cases: {', '.join(sorted(known))}")
        cases = tuple(c for c in cases if c.name in names)
    results = validate_all(cases, catalog)
    console = Console(width=max(Console().width, 130))
    table = Table(title=f"validation (targets gated at load <= {GATE_MAX_LOAD:.0%})")
    for col in ("case", "load", "metric", "measured", "simulated", "error", "target", "verdict"):
        table.add_column(col, justify="left" if col in ("case", "metric") else "right")
    for r in results:
        for row in r.rows.iter_rows(named=True):
            ok = row["ok"]
            verdict = "report" if ok is None else ("pass" if ok else "[red]FAIL[/red]")
            target = "" if row["target"] is None else f"±{row['target']:.0%}"
            table.add_row(
                row["case"],
                f"{row['load']:.0%}",
                row["metric"].removesuffix("_s"),
                f"{row['measured_s'] * 1e3:,.1f} ms",
                f"{row['simulated_s'] * 1e3:,.1f} ms",
                f"{row['error']:+.1%}",
                target,
                verdict,
            )
    console.print(table)
    for r in results:
        if r.skipped:
            console.print(f"not replayed: {r.case.name}: {r.skipped}", highlight=False)
        elif not r.case.gate:
            console.print(f"not gated: {r.case.name}: {r.case.note}", highlight=False)
        elif not r.gated:
            console.print(f"not gated: {r.case.name}: load {r.load:.0%} > 85%", highlight=False)
    if show_all:
        for item in load_unreproduced():
            console.print(f"not reproducible: {item.name}: {item.reason}", highlight=False)
    failed = [r.case.name for r in results if not r.passed]
    if failed:
        console.print(f"[red]missed targets:[/red] {', '.join(failed)}")
        sys.exit(1)

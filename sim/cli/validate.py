"""`sim validate`: the packaged per-request cases and the published vLLM runs against what the
simulator predicts (sim/calibration/validate.py, sim/calibration/public_runs.py;
docs/validation.md). Exit 1 when a gated case misses a target or fewer than issue #12's share of
the published runs' gated values are within theirs."""

from __future__ import annotations

import sys
from pathlib import Path

import click
import polars as pl
from rich import box
from rich.console import Console
from rich.table import Table

from sim.calibration.public_runs import FAMILIES, read_runs, replay_all
from sim.calibration.validate import (
    GATE_MAX_LOAD,
    GATE_MIN_SHARE,
    PUBLIC_TARGETS,
    CaseResult,
    PublicSummary,
    catalog_with,
    judge_public,
    load_cases,
    load_unreproduced,
    summarise_public,
    validate_all,
)
from sim.cli.common import user_errors


def _cases_table(results: list[CaseResult]) -> Table:
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
    return table


WORKLOADS = {
    "offline_burst": "burst",
    "online_constant_rate": "rate",
    "online_poisson": "poisson",
    "closed_loop_concurrency": "closed",
}
"""runs.csv's workload kinds, in a word each (the published-runs table fits 80 columns)."""


HEADERS = {
    "tpot_p50": "TPOT50",
    "tpot_p95": "TPOT95",
    "e2e_p95": "E2E95",
    "ttft_p95": "TTFT95",
    "throughput": "tput",
}
"""The gated metrics' column headers, short (the title spells the targets out)."""


def _runs_meta() -> dict[str, tuple[str, ...]]:
    """Row id → (model, GPU × TP, workload) as the published table names them, short."""
    runs = read_runs()
    out: dict[str, tuple[str, ...]] = {}
    for r in runs.iter_rows(named=True):
        model = r["model"].split(" ")[0].split("/")[-1].removesuffix("-Instruct")
        gpu = r["gpu_type"].split(" ")[0].split("-")[0]
        tp = r["tensor_parallel"]
        gpus = gpu if tp in ("", "1") else f"{gpu}x{tp}"
        kind = WORKLOADS.get(r["workload_type"], r["workload_type"])
        out[r["row_id"]] = (model, gpus, kind)
    return out


def _error_cell(error: float | None, target: float | None) -> str:
    if error is None:
        return ""
    text = f"{error:+.0%}" if abs(error) < 10 else f"{1 + error:.0f}x"  # +33351% is 334x
    if target is None:
        return f"[dim]{text}[/dim]"
    return text if abs(error) <= target else f"[red]{text}✗[/red]"


def _public_table(judged: pl.DataFrame, every: bool) -> Table:
    """One line per published run: the error of each metric with a target (red ✗: a gated
    miss; dim: not gated); only runs with a gated value unless `every`. It fits 80 columns."""
    meta = _runs_meta()
    title = (
        "published vLLM runs, simulated / measured - 1; ✗ misses its target ("
        + ", ".join(f"{m} ±{t:.0%}" for m, t in PUBLIC_TARGETS.items())
        + f"; gated: vLLM >= 0.8 at load <= {GATE_MAX_LOAD:.0%})"
    )
    table = Table(title=title, box=box.SIMPLE_HEAD, pad_edge=False, padding=(0, 1, 0, 0))
    for col in ("run", "model", "gpus", "vLLM", "load", *PUBLIC_TARGETS):
        left = col in ("run", "model", "gpus")
        table.add_column(
            HEADERS.get(col, col),
            justify="left" if left else "right",
            max_width=13 if col == "model" else None,
            overflow="ellipsis",
            no_wrap=True,
        )
    simulated = judged.filter(pl.col("metric") != "")
    for (row,), part in simulated.group_by("row", maintain_order=True):
        if not every and part["target"].is_null().all():
            continue
        cells = {m: (e, t) for m, e, t in part.select("metric", "error", "target").iter_rows()}
        model, gpus, kind = meta.get(str(row), ("", "", ""))
        load = part["load"][0]
        table.add_row(
            str(row),
            model,
            gpus,
            part["version"][0],
            f"{load:.0%}" if load < 1 or kind != "burst" else "burst",
            *(_error_cell(*cells.get(m, (None, None))) for m in PUBLIC_TARGETS),
        )
    return table


def _print_public(console: Console, judged: pl.DataFrame, summary: PublicSummary) -> None:
    skipped = judged.filter(pl.col("metric") == "")
    for (reason,), part in skipped.group_by("note", maintain_order=True):
        rows = ", ".join(part["row"].to_list())
        console.print(f"not replayed ({part.height}): {reason}: {rows}", highlight=False)
    console.print(
        f"published runs: {summary.replayed} of {summary.runs} replayed; {summary.gated} gated "
        f"values on {summary.gated_runs} runs, {summary.within} within target "
        f"({summary.share:.0%}; needs {GATE_MIN_SHARE:.0%})",
        highlight=False,
    )
    medians = ", ".join(f"{f} {summary.medians[f]:.0%}" for f in FAMILIES)
    console.print(
        f"median |error| at load <= {GATE_MAX_LOAD:.0%} (every replayed run): {medians}",
        highlight=False,
    )


def _public_row_table(judged: pl.DataFrame) -> Table:
    """Every compared metric of the selected published runs (`--case P096`)."""
    table = Table(title="published vLLM runs, every metric")
    for col in ("run", "load", "metric", "measured", "simulated", "error", "target", "verdict"):
        table.add_column(col, justify="left" if col in ("run", "metric") else "right")
    for row in judged.filter(pl.col("metric") != "").iter_rows(named=True):
        unit = "tok/s" if row["metric"] == "throughput" else "ms"
        ok, target = row["ok"], row["target"]
        table.add_row(
            row["row"],
            f"{row['load']:.0%}",
            row["metric"],
            f"{row['measured']:,.1f} {unit}",
            f"{row['simulated']:,.1f} {unit}",
            f"{row['error']:+.1%}",
            "" if target is None else f"±{target:.0%}",
            "report" if ok is None else ("pass" if ok else "[red]FAIL[/red]"),
        )
    return table


def _validate_cases(console: Console, results: list[CaseResult]) -> list[str]:
    """Print the per-request cases' table and notes; the names of those that miss a target."""
    console.print(_cases_table(results))
    for r in results:
        if r.skipped:
            console.print(f"not replayed: {r.case.name}: {r.skipped}", highlight=False)
            continue
        if r.note:
            console.print(f"replayed with: {r.case.name}: {r.note}", highlight=False)
        if r.step_time_source.startswith("uncalibrated"):
            e = r.case.engine
            console.print(
                f"uncalibrated: {r.case.name}: {e.model} on {e.gpu} tp{e.tp} {e.dtype} runs "
                "on the roofline of the specs (no fitted step-time entry)",
                highlight=False,
            )
        if not r.case.gate:
            console.print(f"not gated: {r.case.name}: {r.case.note}", highlight=False)
        elif not r.gated:
            console.print(f"not gated: {r.case.name}: load {r.load:.0%} > 85%", highlight=False)
    return [r.case.name for r in results if not r.passed]


def _validate_public(
    console: Console, rows: set[str] | None, every: bool, calibration: str | None
) -> list[str]:
    """Replay and judge the published runs (`rows`: the named ones, every metric each; None:
    all of them, one line each, and the summary); what misses: the named runs that miss a
    target, or the whole set when under issue #12's share."""
    judged = judge_public(replay_all(rows=rows, calibration=calibration))
    if rows is not None:
        console.print(_public_row_table(judged))
        missed = judged.filter(pl.col("ok").not_() & pl.col("ok").is_not_null())
        return sorted(missed["row"].unique().to_list())
    console.print(_public_table(judged, every))
    summary = summarise_public(judged)
    _print_public(console, judged, summary)
    return [] if summary.passed else [f"published runs ({summary.share:.0%} within target)"]


@click.command()
@click.option(
    "--all",
    "show_all",
    is_flag=True,
    help="Also every published run that is not gated, and published numbers not reproduced.",
)
@click.option(
    "--case", "names", multiple=True, help="Only these cases or published runs (P096; repeatable)."
)
@click.option(
    "--catalog",
    "catalog_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Extra step-time entries (TOML, e.g. from `sim calibrate`) over the packaged catalog.",
)
@user_errors
def validate(show_all: bool, names: tuple[str, ...], catalog_file: Path | None) -> None:
    """Replay the packaged validation cases and the published vLLM runs; exit 1 if a gated
    case misses its target or too few published values are within theirs."""
    catalog = catalog_with(catalog_file)
    cases = load_cases()
    runs = set(read_runs()["row_id"].to_list())
    if names:
        known = {c.name for c in cases}
        for n in names:
            if n not in known and n not in runs:
                raise click.BadParameter(
                    f"unknown case {n!r}; cases: {', '.join(sorted(known))}, or a published run "
                    f"P001-P{len(runs):03d}",
                    param_hint="--case",
                )
        cases = tuple(c for c in cases if c.name in names)
        runs = {n for n in names if n in runs}
    console = Console(width=max(Console().width, 150))
    failed: list[str] = []
    if cases:
        failed += _validate_cases(console, validate_all(cases, catalog))
    if show_all:
        for item in load_unreproduced():
            console.print(f"not reproducible: {item.name}: {item.reason}", highlight=False)
    if runs:
        calibration = None if catalog_file is None else str(catalog_file)
        failed += _validate_public(console, runs if names else None, show_all, calibration)
    if failed:
        console.print(f"[red]missed targets:[/red] {', '.join(failed)}")
        sys.exit(1)

"""`sim calibrate profiles|runs` (sim/calibration/; docs/calibration.md)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.table import Table

from sim.calibration.profiles import PROFILE_SOURCES, base_entry_for, fit_profile, render_entries
from sim.calibration.profiles import profile_samples as read_profile
from sim.calibration.runs import (
    FACTOR_NAMES,
    LOG_FACTOR_BOUND,
    EngineHints,
    fit_runs,
    fit_warnings,
    run_case,
    start_entry,
)
from sim.cli.common import user_errors
from sim.engine.catalog import load_step_time_catalog


def _catalog_key(text: str, option: str) -> tuple[str, str, int, str]:
    parts = text.split("/")
    if len(parts) != 4 or not parts[2].isdigit():
        raise click.BadParameter(f"need model/gpu/tp/dtype, got {text!r}", param_hint=option)
    return (parts[0], parts[1], int(parts[2]), parts[3])


def _write_entries(out: Path | None, entries: list[Any], header: str) -> None:
    text = render_entries(entries, header)
    if out is None:
        click.echo(text, nl=False)
        return
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(out)
    click.echo(f"wrote {out}", err=True)


@click.group()
def calibrate() -> None:
    """Fit step-time catalog entries from operator profiles or from measured vLLM runs."""


@calibrate.command()
@click.argument("source", type=click.Choice(PROFILE_SOURCES))
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
    try:
        samples = read_profile(source, path, model=model, gpu=gpu, tp=tp, layers=layers)
    except ValueError as err:
        raise click.UsageError(str(err)) from None
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
@click.option(
    "--request-rate",
    type=click.FloatRange(min=0, min_open=True),
    help="A /metrics scrape's send rate, req/s [default: requests / window].",
)
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
    request_rate: float | None,
    fit_terms: str,
    out: Path | None,
) -> None:
    """Fit overhead/linear/attention scale factors to measured runs FILES by replay.

    FILES: `vllm bench serve --save-result` JSON, with or without --save-detailed (or `sim
    bench`'s), GuideLLM report JSON, a vLLM /metrics scrape (.prom/.txt, or a Prometheus range
    export .json), LLMServingSim requests.jsonl, or a per-request CSV
    (docs/calibrate-your-stack.md)."""
    terms = tuple(t.strip() for t in fit_terms.split(",") if t.strip())
    if not terms or set(terms) - set(FACTOR_NAMES):
        raise click.BadParameter(f"choose from {', '.join(FACTOR_NAMES)}", param_hint="--fit")
    given = EngineHints(
        max_num_seqs=max_num_seqs,
        max_num_batched_tokens=max_num_batched_tokens,
        max_model_len=max_model_len,
        kv_blocks=kv_blocks,
        tp=tp,
        replicas=replicas,
    )
    cases = [
        run_case(f, model=model, gpu=gpu, dtype=dtype, given=given, request_rate=request_rate)
        for f in files
    ]
    key = (model, gpu, cases[0].engine.tp, dtype)
    catalog = load_step_time_catalog()
    if base:
        start = catalog.get(_catalog_key(base, "--base"))
        if start is None:
            have = ", ".join("/".join(map(str, k)) for k in sorted(catalog))
            raise click.BadParameter(f"{base} is not in the catalog ({have})", param_hint="--base")
    else:
        start = start_entry(catalog, key)
    console = Console(stderr=True)
    for c in cases:
        for note in c.notes:
            console.print(f"note: {note}", highlight=False)
    if start.key not in catalog:
        console.print(
            f"note: no fitted entry {'/'.join(map(str, key))}: starting from the roofline",
            highlight=False,
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
        f"to {names} (per-request runs: TTFT/TPOT/E2E p50/p95; /metrics scrapes: the "
        "histograms' exact means); heldout_mape here is the in-sample mean |error|.",
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
    console.print(table)
    factors = ", ".join(
        f"{n} ×{v:.3f}{_se_text(se)}"
        for n, v, se in zip(FACTOR_NAMES, result.factors, result.se_log, strict=True)
    )
    console.print(
        f"factors: {factors} ({result.evaluations} replays; ± one standard error)", highlight=False
    )
    for warning in fit_warnings(result, cases):
        console.print(f"warning: {warning}", highlight=False)
    _write_entries(out, [result.entry], f"Fitted by `sim calibrate runs` from {names}")


def _se_text(se: float | None) -> str:
    """ " (±2.1 %)" for a fitted factor's standard error (log scale), " (not identified)" when
    it is wider than the fit's whole search range (a factor within e^±LOG_FACTOR_BOUND: the
    runs cannot pin it; a Qwen3.5 rate sweep gave one past exp's range), "" when the factor was
    not fitted."""
    if se is None:
        return ""
    if not se <= LOG_FACTOR_BOUND:
        return " (not identified)"
    return f" (±{math.expm1(se):.1%})"

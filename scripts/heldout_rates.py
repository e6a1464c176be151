"""Fit on one rate, predict another (issue #13): held-out errors of a calibration fitted to one
published vLLM run and used by `sim bench` at the other loads of the same configuration.

Groups: rows of `sim/data/validation/public_runs.csv` (the packaged copy of
shared/data/vllm-public-runs) that differ only in their load (request rate, concurrency or burst
size): same source, model, GPU, TP, engine settings, workload kind, dataset and client. For
each group, as a user would:

1. each row becomes the JSON `vllm bench serve --save-result` writes without `--save-detailed`
   (`row_json`: only the keys the row publishes, under vLLM's names);
2. `sim calibrate runs ROW.json --model M --gpu G [engine limits] --out fitted.toml` is run on
   one row, and its refusal printed as a gap (today it needs the per-request `input_lens`,
   `ttfts`, `itls` of `--save-detailed`). The fit used is what that command would fit, made
   with the library under it (`sim.calibration.runs.fit_runs`): the row's published TTFT/TPOT/
   E2E mean, p50 and p95 as the measured statistics of the workload `sim bench` sends for the
   row (send times and lengths of `run_bench`); the entry is written with the command's own
   writer (`render_entries`). Two fits per row: the command's default (overhead, linear,
   attention) and `--fit linear` (one factor);
3. every other row of the group is predicted with `sim bench … --calibration fitted.toml --save-
   result` (run in-process through click's CliRunner: the user-facing command itself), and with
   the same command without `--calibration` (the catalog entry, or the roofline where the
   catalog has none).

Errors are simulated / measured − 1. A TPOT the row's own means show to time stream chunks is
neither fitted nor compared, and the throughput of ignore_eos rows counts the client's
re-tokenised output (`sim.calibration.public_runs.case_of`, the rules of docs/validation.md).
Groups that cannot be replayed are listed with the reason. Deterministic (seed 0, fixed
Nelder–Mead simplex); about 9 minutes on one core (the BLIS rows replay their whole runs,
3,000-12,000 requests). Run from the repository root:

    python scripts/heldout_rates.py [--rows] [--keep DIR] [--csv OUT.csv]
"""

from __future__ import annotations

import argparse
import json
import math
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from click.testing import CliRunner

from sim.calibration.bench import BenchSpec, run_bench
from sim.calibration.measured import MeasuredRun
from sim.calibration.profiles import render_entries
from sim.calibration.public_runs import PublicCase, case_of
from sim.calibration.runs import (
    FACTOR_NAMES,
    LOG_FACTOR_BOUND,
    RunCase,
    fit_runs,
    start_entry,
)
from sim.cli import main as sim_cli
from sim.engine.catalog import load_step_time_catalog

RUNS = Path(__file__).resolve().parent.parent / "sim/data/validation/public_runs.csv"
GROUP_KEY = (
    *("source_id", "engine", "engine_version", "model", "precision", "quantization"),
    *("kv_cache_dtype", "gpu_type", "num_gpus", "tensor_parallel", "pipeline_parallel"),
    *("replicas", "max_num_seqs", "max_num_batched_tokens", "max_model_len", "chunked_prefill"),
    *("num_scheduler_steps", "gpu_memory_utilization", "prefix_caching", "server_flags"),
    *("workload_type", "dataset", "input_len_tokens", "output_len_tokens", "client_tool"),
)
"""Columns a group shares: everything but the load (rate, concurrency, burst size) and results."""
LOADS = (("request_rate_qps", "req/s"), ("concurrency", "concurrent"), ("num_requests", "burst"))
VARIANTS = {"3 factors": FACTOR_NAMES, "linear": ("linear",)}
"""The fits made on each row: `sim calibrate runs`' default and `--fit linear`."""

STATS = (("mean", "mean"), ("p50", "median"), ("p90", "p90"), ("p95", "p95"), ("p99", "p99"))
"""runs.csv statistic suffix → vLLM's result-key prefix (`median_ttft_ms`, `p99_ttft_ms`)."""
METRICS = (("ttft", "ttft"), ("tpot", "tpot"), ("itl", "itl"), ("e2e", "e2el"))
"""runs.csv metric → vLLM's metric name (`--percentile-metrics ttft,tpot,itl,e2el`)."""
COMPARED = (
    *(f"{m}_{s}" for m in ("ttft", "tpot", "e2e") for s in ("mean", "p50", "p99")),
    "throughput",
)
SHOWN = ("ttft_mean", "ttft_p99", "tpot_mean", "tpot_p99", "e2e_mean", "e2e_p99", "throughput")
FAMILIES = ("ttft", "tpot", "e2e", "throughput")
CLOSED_LOOP = (
    "closed loop (--max-concurrency): `sim calibrate runs` replays requests at fixed send times, "
    "and a closed loop's send times depend on the step times being fitted"
)


# ------------------------------------------------------------------------------ rows → JSON


def _number(text: str) -> float | None:
    try:
        value = float(text.split()[0])
    except (ValueError, IndexError):
        return None
    return value if math.isfinite(value) or value == math.inf else None


def _count(text: str) -> int | None:
    value = _number(text)
    return int(value) if value is not None and math.isfinite(value) else None


def row_json(r: dict[str, str]) -> dict[str, Any]:
    """What `vllm bench serve --save-result` (no `--save-detailed`) writes for a runs.csv row:
    only the keys the row publishes, under vLLM's names (vllm/benchmarks/serve.py: the traffic
    keys, then `calculate_metrics`' totals, throughputs and `{mean,median,p<N>}_<metric>_ms`;
    `std_*` is not published, nor are the per-request lists). Unpublished cells are left out."""
    doc: dict[str, Any] = {"model_id": r["model"].split()[0]}
    if (n := _count(r["num_requests"])) is not None:
        doc["num_prompts"] = n
    rate = _number(r["request_rate_qps"])
    if rate is not None:
        doc["request_rate"] = "inf" if math.isinf(rate) else rate
    if (burst := _number(r["burstiness"])) is not None and math.isfinite(burst):
        doc["burstiness"] = burst
    if (conc := _count(r["concurrency"])) is not None:
        doc["max_concurrency"] = conc
    for key, col, kind in (
        ("duration", "benchmark_duration_s", float),
        ("completed", "completed_requests", int),
        ("failed", "failed_requests", int),
        ("total_input_tokens", "total_input_tokens", int),
        ("total_output_tokens", "total_output_tokens", int),
        ("request_throughput", "request_throughput_req_per_s", float),
        ("output_throughput", "output_throughput_tok_per_s", float),
        ("total_token_throughput", "total_throughput_tok_per_s", float),
    ):
        if (v := _number(r[col])) is not None:
            doc[key] = kind(v)
    for metric, name in METRICS:
        for stat, prefix in STATS:
            if (v := _number(r[f"{metric}_{stat}_ms"])) is not None:
                doc[f"{prefix}_{name}_ms"] = v
    return doc


def published_stats(doc: dict[str, Any], with_tpot: bool) -> dict[str, float]:
    """The result JSON's latency statistics as `MeasuredRun.published` (metric → seconds)."""
    out = {}
    for metric, name in METRICS:
        if metric == "itl" or (metric == "tpot" and not with_tpot):
            continue
        for stat, prefix in STATS:
            if stat != "p90" and (v := doc.get(f"{prefix}_{name}_ms")) is not None:
                out[f"{metric}_{stat}_s"] = float(v) / 1e3
    return out


def measured_metrics(doc: dict[str, Any], case: PublicCase) -> dict[str, float]:
    """The compared metrics (`COMPARED`, ms and tok/s) of a result JSON; TPOT only where
    `case_of` keeps it."""
    with_tpot = any(k.startswith("tpot") for k in case.measured)
    names = {"mean": "mean", "p50": "median", "p99": "p99"}
    out = {}
    for key in COMPARED:
        if key == "throughput":
            v = doc.get("output_throughput")
        else:
            metric, stat = key.split("_")
            name = "e2el" if metric == "e2e" else metric
            v = doc.get(f"{names[stat]}_{name}_ms")
            if metric == "tpot" and not with_tpot:
                v = None
        if v is not None and float(v) > 0:
            out[key] = float(v)
    return out


# ------------------------------------------------------------------------------ groups


@dataclass(frozen=True)
class Group:
    """Rows of one configuration at several loads (`load` names the column that varies)."""

    name: str
    rows: tuple[dict[str, str], ...]
    load: str
    cases: tuple[PublicCase, ...]
    reason: str = ""  # why the group is not fitted, or ""

    def label(self, r: dict[str, str]) -> str:
        unit = dict(LOADS)[self.load]
        v = r[self.load]
        return f"{unit} {v}" if unit == "burst" else f"{v} {unit}"


def load_groups(path: str | Path = RUNS) -> list[Group]:
    """Every group of >= 2 rows differing only in load, ordered by source and name."""
    runs = pl.read_csv(path, infer_schema_length=0).fill_null("")
    out = []
    for _, frame in runs.group_by(GROUP_KEY, maintain_order=True):
        if frame.height < 2:
            continue
        rows = frame.to_dicts()
        varying = [c for c, _ in LOADS if len({r[c] for r in rows}) > 1]
        load = varying[0] if varying else "request_rate_qps"
        rows.sort(key=lambda r: _number(r[load]) or 0.0)
        cases = tuple(case_of(r, versioned=False) for r in rows)
        sweep = rows[0]["sweep_id"] or (
            f"{rows[0]['source_id']} {rows[0]['model'].split()[0].split('/')[-1]} "
            f"{rows[0]['gpu_type'].split()[0]}"
        )
        reason = next((c.reason for c in cases if c.reason), "")
        if not reason and rows[0]["workload_type"] == "closed_loop_concurrency":
            reason = CLOSED_LOOP
        out.append(Group(sweep, tuple(rows), load, cases, reason))
    return sorted(out, key=lambda g: (g.rows[0]["source_id"], g.name))


# ------------------------------------------------------------------------------ commands


def _given(flag: str, value: object) -> list[str]:
    """`[flag, value]` when the row states the value, else nothing (the command's default)."""
    return [] if value is None else [flag, str(value)]


def _engine_flags(spec: BenchSpec) -> list[str]:
    """The engine limits the row states, as `sim bench` and `sim calibrate runs` spell them."""
    return [
        *_given("--max-num-seqs", spec.max_num_seqs),
        *_given("--max-num-batched-tokens", spec.max_num_batched_tokens),
        *_given("--max-model-len", spec.max_model_len),
        *_given("--kv-blocks", spec.kv_blocks),
    ]


def bench_args(spec: BenchSpec, calibration: Path | None, out: Path) -> list[str]:
    """The `sim bench` command line replaying `spec` (what `case_of` built for the row)."""
    rate = "inf" if math.isinf(spec.request_rate) else f"{spec.request_rate:g}"
    args = [
        *("bench", "--model", spec.model, "--gpu", spec.gpu, "--tp", str(spec.tp)),
        *("--dtype", spec.dtype, "--kv-cache-dtype", spec.kv_cache_dtype or "auto"),
        *("--input-len", str(spec.input_len), "--output-len", str(spec.output_len)),
        *("--request-rate", rate, "--burstiness", f"{spec.burstiness:g}"),
        *("--num-prompts", str(spec.num_prompts)),
    ]
    if spec.prompts_per_prefix:  # inference-perf's shared prefix (`case_of`)
        args += [
            *("--dataset", "shared_prefix", "--shared-prefix-num-groups", str(spec.num_prefixes)),
            *("--shared-prefix-prompts-per-group", str(spec.prompts_per_prefix)),
            *("--shared-prefix-system-len", str(spec.prefix_len)),
            *(["--prefix-cache-warm"] if spec.prefix_cache_warm else []),
        ]
    args += _engine_flags(spec) + _given("--max-concurrency", spec.max_concurrency)
    args += ["--percentile-metrics", "ttft,tpot,itl,e2el", "--metric-percentiles", "95,99"]
    if calibration is not None:
        args += ["--calibration", str(calibration)]
    return [*args, "--save-result", str(out)]


def bench_gaps(spec: BenchSpec) -> list[str]:
    """What the row needs that `sim bench`'s options cannot say."""
    if spec.kv_blocks is None and spec.gpu_memory_utilization != 0.9:
        return [
            f"sim bench: no --gpu-memory-utilization (the row set "
            f"{spec.gpu_memory_utilization:g}; BenchSpec has the field)"
        ]
    return []


def calibrate_args(json_path: Path, spec: BenchSpec, out: Path) -> list[str]:
    """`sim calibrate runs` on the row's result JSON with the engine settings the row states."""
    args = [
        *("calibrate", "runs", str(json_path), "--model", spec.model, "--gpu", spec.gpu),
        *("--tp", str(spec.tp), "--dtype", "fp16"),
    ]
    return [*args, *_engine_flags(spec), "--out", str(out)]


def run_cli(args: Sequence[str]) -> tuple[int, str]:
    """Exit code and output (stdout and stderr) of one `sim` command, in-process."""
    result = CliRunner().invoke(sim_cli, list(args), catch_exceptions=False)
    return result.exit_code, result.output


def error_line(output: str) -> str:
    return next((ln for ln in output.splitlines() if ln.startswith("error")), output.strip())


def simulated_metrics(path: Path, counted: float) -> dict[str, float]:
    """The compared metrics of a `sim bench --save-result` JSON (throughput at the client's
    count of output tokens)."""
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = {}
    names = {"mean": "mean", "p50": "median", "p99": "p99"}
    for key in COMPARED:
        if key == "throughput":
            out[key] = float(doc["output_throughput"]) * counted
            continue
        metric, stat = key.split("_")
        name = "e2el" if metric == "e2e" else metric
        out[key] = float(doc[f"{names[stat]}_{name}_ms"])
    return out


# ------------------------------------------------------------------------------ fit, predict


@dataclass(frozen=True)
class Fit:
    row: str
    variant: str
    factors: tuple[float, float, float]
    path: Path
    in_sample: float  # mean |error| of the fitted metrics after the fit
    start: str  # "catalog" or "roofline": the entry the fit scaled (and `sim bench` uses without)


def fit_summary(row_id: str, doc: dict[str, Any], case: PublicCase, variant: str, out: Path) -> Fit:
    """What `sim calibrate runs ROW.json [--fit linear]` would fit if it read a summary: the
    row's statistics as measured on the workload `sim bench` sends for it; the entry written
    with the command's writer."""
    spec = case.spec
    assert spec is not None
    sent = run_bench(spec)  # the workload (send times, lengths) and the engine it runs on
    run = MeasuredRun(
        name=row_id,
        file=row_id,
        arrival_s=sent.start_times_s,
        input_tokens=sent.input_lens,
        output_tokens=sent.output_lens,
        published=published_stats(doc, any(k.startswith("tpot") for k in case.measured)),
        cached_tokens=sent.cached_tokens,  # the row's prompt set, as `sim bench` replays it
    )
    setup = sent.engine
    catalog = load_step_time_catalog()
    start = start_entry(catalog, setup.key)
    fit = fit_runs(
        start,
        [RunCase(run, setup)],
        fit=VARIANTS[variant],
        source=f"scripts/heldout_rates.py: {variant} of {'/'.join(map(str, start.key))} fitted "
        f"to the published summary of runs.csv {row_id}",
    )
    out.write_text(render_entries([fit.entry], f"heldout_rates.py fit of {row_id}"), "utf-8")
    err = np.abs(fit.after.filter(pl.col("fitted"))["error"].to_numpy())
    in_sample = float(err.mean()) if err.size else math.nan
    origin = "catalog" if start.key in catalog else "roofline"
    return Fit(row_id, variant, fit.factors, out, in_sample, origin)


def predict(case: PublicCase, calibration: Path | None, out: Path) -> dict[str, float]:
    """`sim bench` for the row's workload (with the fitted entry when given)."""
    assert case.spec is not None
    code, output = run_cli(bench_args(case.spec, calibration, out))
    if code != 0:
        raise RuntimeError(f"sim bench failed: {error_line(output)}")
    return simulated_metrics(out, case.counted)


def errors(measured: dict[str, float], simulated: dict[str, float]) -> dict[str, float]:
    return {k: simulated[k] / m - 1.0 for k, m in measured.items() if k in simulated}


SCHEMA = {
    "group": pl.String,
    "variant": pl.String,
    "fit_row": pl.String,
    "fit_load": pl.String,
    "row": pl.String,
    "load": pl.String,
    "in_sample": pl.Boolean,
    "direction": pl.String,
    "metric": pl.String,
    "measured": pl.Float64,
    "calibrated": pl.Float64,
    "start": pl.Float64,
}
"""The long table: one row per fit × predicted row × metric (errors sim / measured − 1)."""


@dataclass
class GroupRun:
    """One group's files and the measured and uncalibrated metrics of each row."""

    group: Group
    folder: Path
    docs: dict[str, dict[str, Any]]
    measured: dict[str, dict[str, float]]
    start: dict[str, dict[str, float]]

    @property
    def rows_by_id(self) -> dict[str, dict[str, str]]:
        return {r["row_id"]: r for r in self.group.rows}


def prepare(group: Group, folder: Path) -> GroupRun:
    """Write each row's result JSON; predict each row with the starting entry (`sim bench`)."""
    folder.mkdir(parents=True, exist_ok=True)
    run = GroupRun(group, folder, {}, {}, {})
    for r, case in zip(group.rows, group.cases, strict=True):
        rid = r["row_id"]
        run.docs[rid] = doc = row_json(r)
        (folder / f"{rid}.json").write_text(json.dumps(doc, indent=1), "utf-8")
        run.measured[rid] = measured_metrics(doc, case)
        run.start[rid] = predict(case, None, folder / f"{rid}-start.json")
    return run


def predictions(run: GroupRun, fit: Fit, fit_label: str) -> list[tuple[Any, ...]]:
    """Every row of the group predicted with the fitted entry (`sim bench --calibration`)."""
    g, out = run.group, []
    tag = fit.variant.replace(" ", "")
    for r, case in zip(g.rows, g.cases, strict=True):
        pid = r["row_id"]
        sim = predict(case, fit.path, run.folder / f"{pid}-from-{fit.row}-{tag}.json")
        cal, start = errors(run.measured[pid], sim), errors(run.measured[pid], run.start[pid])
        up = (_number(r[g.load]) or 0.0) > (_number(run.rows_by_id[fit.row][g.load]) or 0.0)
        direction = "in-sample" if pid == fit.row else ("up" if up else "down")
        head = (g.name, fit.variant, fit.row, fit_label, pid, g.label(r), pid == fit.row, direction)
        out += [(*head, k, run.measured[pid][k], cal[k], start[k]) for k in COMPARED if k in cal]
    return out


def heldout(work: Path, groups: Sequence[Group]) -> tuple[pl.DataFrame, list[str], list[Fit]]:
    """(the long table `SCHEMA`, the gaps met in the user-facing commands, the fits)."""
    rows: list[tuple[Any, ...]] = []
    gaps: dict[str, None] = {}  # ordered set
    fits: list[Fit] = []
    for g in groups:
        if g.reason:
            continue
        run = prepare(g, work / g.name)
        for r, case in zip(g.rows, g.cases, strict=True):
            rid, spec = r["row_id"], case.spec
            assert spec is not None
            gaps.update(dict.fromkeys(bench_gaps(spec)))
            row_file = run.folder / f"{rid}.json"
            code, output = run_cli(calibrate_args(row_file, spec, run.folder / f"{rid}-cli.toml"))
            if code != 0:
                line = error_line(output).replace(str(row_file), "ROW.json")
                gaps[f"sim calibrate runs ROW.json (summary only) → {line}"] = None
            for variant in VARIANTS:
                out = run.folder / f"{rid}-{variant.replace(' ', '')}.toml"
                fit = fit_summary(rid, run.docs[rid], case, variant, out)
                fits.append(fit)
                rows += predictions(run, fit, g.label(r))
    return pl.DataFrame(rows, schema=SCHEMA, orient="row"), list(gaps), fits


# ------------------------------------------------------------------------------ printing


def _pct(v: float | None) -> str:
    return "" if v is None or not math.isfinite(v) else f"{v:+.0%}"


def _factors(fit: Fit) -> str:
    """Fitted factors; * marks one at its search bound (the data cannot identify it)."""
    out = []
    for name, v in zip(FACTOR_NAMES, fit.factors, strict=True):
        if name in VARIANTS[fit.variant]:
            bound = abs(math.log(v)) >= LOG_FACTOR_BOUND - 1e-6
            out.append(f"{v:.3g}{'*' if bound else ''}")
        else:
            out.append("-")
    return " ".join(out)


def _family(frame: pl.DataFrame) -> pl.DataFrame:
    return frame.with_columns(pl.col("metric").str.extract(r"^([a-z0-9]+)").alias("family"))


def fit_table(frame: pl.DataFrame, fits: Sequence[Fit]) -> list[str]:
    """One line per fit: factors, in-sample error, then per family the median |error| on the
    group's other rows with the fitted entry / with the starting entry."""
    by_fit = {(f.row, f.variant): f for f in fits}
    held = _family(frame.filter(~pl.col("in_sample")))
    head = (
        f"{'group':36} {'fit on':>16} {'fit':9} {'start':8} {'factors (o l a)':20} "
        f"{'in-sample':>9} | " + " ".join(f"{f + ' cal/start':>18}" for f in FAMILIES)
    )
    lines = [head]
    keys = ("group", "fit_row", "fit_load", "variant")
    for (group, fit_row, fit_load, variant), part in held.group_by(keys, maintain_order=True):
        fit = by_fit[(str(fit_row), str(variant))]
        cells = []
        for fam in FAMILIES:
            v = part.filter(pl.col("family") == fam)
            if v.height == 0:
                cells.append(f"{'':>18}")
                continue
            cal = float(np.median(np.abs(v["calibrated"].to_numpy())))
            cat = float(np.median(np.abs(v["start"].to_numpy())))
            cells.append(f"{f'{cal:.0%} / {cat:.0%}':>18}")
        lines.append(
            f"{group!s:36.36} {f'{fit_row} {fit_load}':>16} {variant!s:9} {fit.start:8} "
            f"{_factors(fit):20} "
            f"{fit.in_sample:>9.0%} | " + " ".join(cells)
        )
    return lines


def row_table(frame: pl.DataFrame) -> list[str]:
    """Every prediction: signed error with the fitted entry / with the starting entry."""
    head = f"{'group':36} {'fit':9} {'fit on':>16} → {'predicted':>16} | "
    lines = [head + " ".join(f"{m:>15}" for m in SHOWN)]
    keys = ("group", "variant", "fit_row", "fit_load", "row", "load", "in_sample")
    for key, part in frame.group_by(keys, maintain_order=True):
        g, variant, fit_row, fit_load, row, load, own = key
        errs = {r["metric"]: (r["calibrated"], r["start"]) for r in part.iter_rows(named=True)}
        cells = []
        for m in SHOWN:
            cal, cat = errs.get(m, (None, None))
            cells.append(f"{_pct(cal) + ' / ' + _pct(cat) if cal is not None else '':>15}")
        fit_on = f"{fit_row} {fit_load}"
        target = f"{row} {load}" + (" (in)" if own else "")
        lines.append(f"{g!s:36.36} {variant!s:9} {fit_on:>16} → {target:>16} | " + " ".join(cells))
    return lines


def family_summary(frame: pl.DataFrame) -> pl.DataFrame:
    """Median |held-out error| per source, direction (predicting a higher load than the fit's:
    up; a lower one: down) and family, for each fit variant and for the starting entry on the
    same predictions; `n`: predictions."""
    held = _family(frame.filter(~pl.col("in_sample"))).with_columns(
        pl.col("group").str.extract(r"^([A-Z]+)").alias("source")
    )
    keys = ["source", "direction", "variant"]
    cal = held.group_by(*keys, "family").agg(pl.col("calibrated").abs().median().alias("error"))
    start = (
        held.filter(pl.col("variant") == next(iter(VARIANTS)))
        .with_columns(pl.lit("start (uncalibrated)").alias("variant"))
        .group_by(*keys, "family")
        .agg(pl.col("start").abs().median().alias("error"))
    )
    first = held.filter(pl.col("variant") == next(iter(VARIANTS)))
    n = first.group_by("source", "direction").agg(pl.struct("fit_row", "row").n_unique().alias("n"))
    wide = pl.concat([cal, start.select(cal.columns)]).pivot(
        on="family", index=keys, values="error"
    )
    wide = wide.join(n, on=["source", "direction"], how="left")
    return wide.select(*keys, "n", *(f for f in FAMILIES if f in wide.columns)).sort(
        "source", "direction", "variant"
    )


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--keep", type=Path, help="keep the JSON and TOML files in this folder")
    ap.add_argument("--csv", type=Path, help="also write the long table to this CSV")
    ap.add_argument("--rows", action="store_true", help="also print every prediction, signed")
    args = ap.parse_args(argv)
    groups = load_groups(RUNS)
    with tempfile.TemporaryDirectory() as tmp:
        work = args.keep or Path(tmp)
        frame, gaps, fits = heldout(work, groups)
    print("\n".join(fit_table(frame, fits)))
    if args.rows:
        print()
        print("\n".join(row_table(frame)))
    print()
    with pl.Config(tbl_rows=-1, tbl_cols=-1, float_precision=3):
        print("median |held-out error| (excluding the fit row):")
        print(family_summary(frame))
    print("\ngroups not fitted:")
    for g in groups:
        if g.reason:
            rows = ", ".join(r["row_id"] for r in g.rows)
            print(f"  {g.name} ({rows}): {g.reason}")
    print("\ngaps in the user-facing commands:")
    for gap in gaps:
        print(f"  {gap}")
    if args.csv is not None:
        frame.write_csv(args.csv)
    return 0 if np.isfinite(frame["calibrated"].to_numpy()).all() else 1


if __name__ == "__main__":
    raise SystemExit(main())

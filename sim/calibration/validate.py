"""`sim validate`: replay the packaged validation cases and compare with what real vLLM measured.

A case (`sim/data/validation/cases.toml`) names a measured run (`sim.calibration.measured`), the
engine it ran on and its source; `validate_case` replays it with the step-time catalog entry of
its (model, GPU, TP, dtype) and puts measured and simulated statistics side by side. A case is
*gated* — held to `TARGETS` — when it says so and its peak load is at most `GATE_MAX_LOAD` of
the engine's concurrency capacity. `docs/validation.md` lists the cases and their errors.

The published vLLM runs (`sim.calibration.public_runs`: summary statistics, replayed through
`sim bench`'s code) are judged by `judge_public`: a value is gated when its run used vLLM >= 0.8
at <= GATE_MAX_LOAD and its metric has an issue-#12 target (`PUBLIC_TARGETS`); the published
runs pass when at least GATE_MIN_SHARE of the gated values are within target.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sim.calibration.measured import (
    METRICS,
    EngineSetup,
    MeasuredRun,
    read_validation_csv,
    replay,
    step_time_model,
)
from sim.calibration.public_runs import family_medians
from sim.config.vllm import cpu_family, parse_version
from sim.data import packaged, read_toml, read_toml_file
from sim.engine.catalog import (
    CatalogKey,
    StepTimeEntry,
    load_step_time_catalog,
    parse_step_time_catalog,
    resolve_step_time,
)
from sim.engine.versions import CLIENT_PATH_S, with_version_cpu
from sim.errors import ConfigError, Problem

CASES_FILE = "validation/cases.toml"
"""The packaged cases, under `sim/data/`."""

# Targets of issue #3, as fractions, for cases at <= GATE_MAX_LOAD of capacity.
TARGETS: dict[str, float] = {
    "tpot_p50_s": 0.05,
    "tpot_p95_s": 0.05,
    "e2e_p95_s": 0.10,
    "ttft_p95_s": 0.15,
}
GATE_MAX_LOAD = 0.85


# ------------------------------------------------------------------------------ cases


@dataclass(frozen=True)
class ValidationCase:
    """One packaged validation case (`sim/data/validation/cases.toml`).

    replicas: independent engines behind one router (vLLM data parallelism).
    gate: whether the issue-#3 targets apply (also needs load <= GATE_MAX_LOAD).
    skip: why the case cannot be replayed (listed by `sim validate --all`), or "".
    note: what the measurement includes and why a target may be missed.
    timing: "engine" (engine timestamps) or "client" (a client-side benchmark: the replayed
        TTFT and E2E carry the client path, `sim.engine.versions.CLIENT_PATH_S`, as `sim bench
        --timing client` does).
    """

    name: str
    data: str
    engine: EngineSetup
    source: str
    replicas: int = 1
    gate: bool = True
    skip: str = ""
    note: str = ""
    published: Mapping[str, float] = field(default_factory=dict)
    timing: str = "engine"

    def run(self) -> MeasuredRun:
        path = packaged("validation", self.data)
        with resources.as_file(path) as p:
            base = read_validation_csv(p, self.name)
        return MeasuredRun(
            name=base.name,
            file=base.file,
            arrival_s=base.arrival_s,
            input_tokens=base.input_tokens,
            output_tokens=base.output_tokens,
            ttft_s=base.ttft_s,
            e2e_s=base.e2e_s,
            published=dict(self.published),
        )


_ENGINE_KEYS = {
    "model": str,
    "gpu": str,
    "tp": int,
    "dtype": str,
    "max_num_seqs": int,
    "max_num_batched_tokens": int,
    "max_model_len": int,
    "kv_blocks": int,
    "gpu_memory_utilization": float,
    "weight_dtype": str,
    "vllm_version": str,
    "scheduler": str,
    "num_scheduler_steps": int,
}
_CASE_KEYS = {"name", "data", "source", "replicas", "gate", "skip", "note", "published"}
_CASE_KEYS |= {"engine", "timing"}
TIMINGS = ("engine", "client")


def parse_cases(
    doc: dict[str, Any], file: str = f"sim/data/{CASES_FILE}"
) -> tuple[ValidationCase, ...]:
    """Validate a parsed cases document (`[[case]]` tables); all problems raised at once."""
    problems: list[Problem] = []
    for k in sorted(set(doc) - {"case", "not_reproducible"}):
        problems.append(Problem(file, k, "unknown top-level key", has_value=False))
    out: list[ValidationCase] = []
    for i, raw in enumerate(doc.get("case", [])):
        path = f"case[{i}]"
        for k in sorted(set(raw) - _CASE_KEYS):
            problems.append(Problem(file, f"{path}.{k}", "unknown key", has_value=False))
        eng = raw.get("engine", {})
        for k in sorted(set(eng) - set(_ENGINE_KEYS)):
            problems.append(Problem(file, f"{path}.engine.{k}", "unknown key", has_value=False))
        for k in ("name", "data", "source", "engine"):
            if k not in raw:
                problems.append(Problem(file, f"{path}.{k}", "missing", has_value=False))
        for k, kind in _ENGINE_KEYS.items():
            if k in eng and not isinstance(eng[k], kind if kind is not float else (int, float)):
                problems.append(
                    Problem(file, f"{path}.engine.{k}", f"must be {kind.__name__}", eng[k])
                )
        required = ("model", "gpu", "tp", "dtype", "max_num_seqs", "max_num_batched_tokens")
        for k in (*required, "max_model_len"):
            if k not in eng:
                problems.append(Problem(file, f"{path}.engine.{k}", "missing", has_value=False))
        if raw.get("timing", "engine") not in TIMINGS:
            problems.append(
                Problem(file, f"{path}.timing", "must be engine or client", raw["timing"])
            )
        published = raw.get("published", {})
        for k, v in published.items():
            if k not in METRICS or isinstance(v, bool) or not isinstance(v, (int, float)):
                problems.append(
                    Problem(file, f"{path}.published.{k}", "unknown metric or not a number", v)
                )
        if problems:
            continue
        out.append(
            ValidationCase(
                name=raw["name"],
                data=raw["data"],
                source=raw["source"],
                replicas=int(raw.get("replicas", 1)),
                gate=bool(raw.get("gate", True)),
                skip=str(raw.get("skip", "")),
                note=str(raw.get("note", "")),
                published={k: float(v) for k, v in published.items()},
                engine=EngineSetup(**eng),
                timing=str(raw.get("timing", "engine")),
            )
        )
    if problems:
        raise ConfigError(problems)
    return tuple(out)


def _cases_doc() -> dict[str, Any]:
    return read_toml(CASES_FILE)


def load_cases() -> tuple[ValidationCase, ...]:
    """The packaged validation cases, in file order."""
    return parse_cases(_cases_doc(), f"sim/data/{CASES_FILE}")


@dataclass(frozen=True)
class Unreproduced:
    """Published numbers that cannot be replayed, and why (`[[not_reproducible]]`)."""

    name: str
    reason: str


def load_unreproduced() -> tuple[Unreproduced, ...]:
    """The packaged list of published results that are not validation cases, with reasons."""
    return tuple(
        Unreproduced(str(item["name"]), str(item["reason"]))
        for item in _cases_doc().get("not_reproducible", [])
    )


@dataclass(frozen=True)
class CaseResult:
    """The outcome of one case: `rows` has one row per compared metric (see `compare`)."""

    case: ValidationCase
    load: float
    rows: pl.DataFrame
    step_time_source: str
    skipped: str = ""
    note: str = ""  # how the replay departs from the case's stated engine, when it must

    @property
    def gated(self) -> bool:
        return self.case.gate and not self.skipped and self.load <= GATE_MAX_LOAD

    @property
    def passed(self) -> bool:
        """Whether every gated metric is within its target (True for ungated cases)."""
        if not self.gated:
            return True
        return bool(self.rows.filter(pl.col("target").is_not_null())["ok"].all())


COMPARE_SCHEMA = {
    "case": pl.String,
    "load": pl.Float64,
    "metric": pl.String,
    "measured_s": pl.Float64,
    "simulated_s": pl.Float64,
    "error": pl.Float64,
    "target": pl.Float64,
    "ok": pl.Boolean,
}


def compare(
    name: str,
    measured: Mapping[str, float],
    simulated: Mapping[str, float],
    load: float,
    gated: bool,
) -> pl.DataFrame:
    """One row per metric known on both sides: error = simulated / measured − 1.

    `target` is the issue-#3 tolerance when the case is gated, else null; `ok` is
    |error| <= target (null when ungated).
    """
    rows = []
    for metric in METRICS:
        if metric not in measured or metric not in simulated:
            continue
        m, s = measured[metric], simulated[metric]
        err = s / m - 1.0 if m > 0 else math.nan
        target = TARGETS.get(metric) if gated else None
        ok = None if target is None else bool(abs(err) <= target)
        rows.append((name, load, metric, m, s, err, target, ok))
    return pl.DataFrame(rows, schema=COMPARE_SCHEMA, orient="row")


def validate_case(
    case: ValidationCase, catalog: Mapping[tuple[str, str, int, str], StepTimeEntry] | None = None
) -> CaseResult:
    """Replay one case with the catalog entry for its (model, gpu, tp, dtype)."""
    cat = load_step_time_catalog() if catalog is None else catalog
    empty = pl.DataFrame(schema=COMPARE_SCHEMA)
    if case.skip:
        return CaseResult(case, math.nan, empty, "", skipped=case.skip)
    e = case.engine
    entry = cat.get(e.key)
    user_entry = entry is not None and entry is not load_step_time_catalog().get(e.key)
    if entry is not None:
        step, source = step_time_model(entry), entry.source
    else:  # as `sim bench` and `sim run` do: the roofline of the specs, said so
        try:
            resolved = resolve_step_time(e.model, e.gpu, e.tp, e.dtype, e.weight_dtype)
        except KeyError as exc:
            return CaseResult(case, math.nan, empty, "", skipped=f"not in the catalogs: {exc}")
        step, source = resolved.step, f"uncalibrated: {resolved.source}"
    if e.vllm_version is not None and not user_entry:  # the version's CPU time, as `sim bench`
        step = with_version_cpu(step, cpu_family(parse_version(e.vllm_version)))
    run = case.run()
    engine, note = case.engine, ""
    try:
        limits = engine.limits()
    except ValueError as exc:  # the case's settings make no valid engine: listed, not fatal
        # vLLM served this case, so its KV cache held one request of max_model_len: where the
        # estimate (sim.engine.kv) falls short, replay at the longest context it holds beside
        # one state, when every request of the case fits in it (as the published runs do)
        held = engine.longest_context()
        longest = int(np.max(run.input_tokens + run.output_tokens))
        if not longest <= held < engine.max_model_len:
            return CaseResult(case, math.nan, empty, source, skipped=f"engine does not fit: {exc}")
        engine = replace(engine, max_model_len=held)
        limits = engine.limits()
        note = (
            f"max_model_len {held:,}: the KV estimate's (sim.engine.kv), short of the"
            f" {case.engine.max_model_len:,} that vLLM served; the longest request is {longest:,}"
        )
    mean_tokens = float(np.mean(run.input_tokens + run.output_tokens))
    capacity = engine.concurrency_capacity(mean_tokens) * case.replicas
    load = run.peak_in_system() / capacity
    sim = replay(run, limits, step, case.replicas)
    if case.timing == "client":  # the client's clock: HTTP, tokenisation, the first chunk
        sim = replace(sim, ttft_s=sim.ttft_s + CLIENT_PATH_S, e2e_s=sim.e2e_s + CLIENT_PATH_S)
    gated = case.gate and load <= GATE_MAX_LOAD
    rows = compare(case.name, run.measured_metrics(), sim.metrics(run.output_tokens), load, gated)
    return CaseResult(case, load, rows, source, note=note)


def validate_all(
    cases: Sequence[ValidationCase] | None = None,
    catalog: Mapping[tuple[str, str, int, str], StepTimeEntry] | None = None,
) -> list[CaseResult]:
    """Every case (default: the packaged ones), in order."""
    return [validate_case(c, catalog) for c in (load_cases() if cases is None else cases)]


def catalog_with(extra_file: str | Path | None) -> dict[CatalogKey, StepTimeEntry]:
    """The packaged step-time catalog, with the entries of a user's file (e.g. written by
    `sim calibrate`) over it; a located ConfigError when that file is unreadable or invalid."""
    catalog = dict(load_step_time_catalog())
    if extra_file is not None:
        catalog.update(parse_step_time_catalog(read_toml_file(extra_file), str(extra_file)))
    return catalog


# ------------------------------------------------------------------------ published runs

PUBLIC_TARGETS: dict[str, float] = {k.removesuffix("_s"): v for k, v in TARGETS.items()} | {
    "throughput": 0.05
}
"""Issue #12's targets on the published runs (`sim.calibration.public_runs`'s metric names):
TPOT p50 and p95 within 5 %, E2E p95 within 10 %, TTFT p95 within 15 %, output throughput
within 5 %."""
GATE_MIN_SHARE = 0.80
"""Issue #12: at least this share of the gated values within their targets."""


def _v1(version: str) -> bool:
    """Whether a runs.csv version (e.g. "0.11") is vLLM >= 0.8 (the V1 engine); False when
    the version is not stated."""
    try:
        return parse_version(version).family == "v1"
    except ValueError:
        return False


def judge_public(replayed: pl.DataFrame) -> pl.DataFrame:
    """`public_runs.replay_all`'s rows with `target` (the metric's issue-#12 tolerance when the
    value is gated: vLLM >= 0.8, load <= GATE_MAX_LOAD, a metric with a target; else null)
    and `ok` (|error| <= target; null when not gated)."""
    gate = pl.Series([_v1(v) for v in replayed["version"]], dtype=pl.Boolean) & replayed["load"].le(
        GATE_MAX_LOAD
    ).fill_null(False)
    target = replayed["metric"].replace_strict(
        PUBLIC_TARGETS, default=None, return_dtype=pl.Float64
    )
    out = replayed.with_columns(
        target=pl.when(gate & replayed["error"].is_not_nan()).then(target).otherwise(None)
    )
    return out.with_columns(ok=pl.col("error").abs() <= pl.col("target"))


@dataclass(frozen=True)
class PublicSummary:
    """What `sim validate` concludes on the published runs.

    runs: rows in the file; replayed: rows simulated; gated_runs: rows with a gated value;
    gated / within: gated values, and those within their target; medians: median |error| per
    family over every replayed value at load <= GATE_MAX_LOAD (any version)."""

    runs: int
    replayed: int
    gated_runs: int
    gated: int
    within: int
    medians: Mapping[str, float]

    @property
    def share(self) -> float:
        return self.within / self.gated if self.gated else math.nan

    @property
    def passed(self) -> bool:
        """Issue #12's criterion: at least GATE_MIN_SHARE of the gated values within target."""
        return self.gated > 0 and self.share >= GATE_MIN_SHARE


def summarise_public(judged: pl.DataFrame) -> PublicSummary:
    """The summary of `judge_public`'s rows."""
    sim_rows = judged.filter(pl.col("metric") != "")
    gated = judged.filter(pl.col("target").is_not_null())
    return PublicSummary(
        runs=judged["row"].n_unique(),
        replayed=sim_rows["row"].n_unique(),
        gated_runs=gated["row"].n_unique(),
        gated=gated.height,
        within=int(gated["ok"].sum()),
        medians=family_medians(judged, GATE_MAX_LOAD),
    )

"""End-to-end calibration from measured vLLM runs (`sim calibrate runs`).

Users already have runs of their own stack: `vllm bench serve --save-result --save-detailed`
JSON, or per-request logs with arrival, first-token and last-token timestamps. This module
replays such a run's workload (real arrival times and lengths) through the simulator and
chooses three scale factors of a starting catalog entry that minimise the error of the
latency percentiles:

    overhead_s                                  × s_overhead
    flat_s, per_token_s, expert_read_s          × s_linear       (knee_tokens unchanged)
    decode_attn_s_per_token, prefill_attn_s_per_pair × s_attention

The objective is the mean squared log ratio simulated/measured over TTFT, TPOT and E2E mean, p50
and p95 (`FIT_METRICS`) of every per-request run, and over the exact histogram means of every
`/metrics` scrape (`SCRAPE_UNFITTED` says which are left out, and why); it is minimised over log
factors in [−3, 3] (factors e^±3 ≈ 0.05..20) by Nelder–Mead, which needs no gradient (the replay
is piecewise constant in the coefficients at fine scale). Three factors, not six coefficients:
a few hundred requests pin down how fast the engine is overall, at small and at large batch,
and how attention grows with context, but not a six-parameter curve.

The run files are read by `sim.calibration.run_files` (`read_measured_run`).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
from scipy.optimize import minimize

from sim.calibration.bench import vllm_default_limits
from sim.calibration.measured import (
    EngineSetup,
    MeasuredRun,
    Replay,
    replay,
    step_time_model,
)
from sim.calibration.run_files import NO_HINTS, EngineHints, read_measured_run
from sim.calibration.sources import (
    ScrapeRun,
    bucket_quantile,
    histogram_of,
)
from sim.data import gpus, models
from sim.engine.catalog import StepTimeEntry, resolve_step_time
from sim.errors import TraceError

__all__ = [
    "FACTOR_NAMES",
    "EngineHints",
    "RunCase",
    "RunFit",
    "fit_runs",
    "read_measured_run",
    "run_case",
    "run_errors",
    "scaled_entry",
    "start_entry",
]

FIT_METRICS = (
    "ttft_mean_s",
    "ttft_p50_s",
    "ttft_p95_s",
    "tpot_mean_s",
    "tpot_p50_s",
    "tpot_p95_s",
    "e2e_mean_s",
    "e2e_p50_s",
    "e2e_p95_s",
)
SCRAPE_QUANTILES = ("ttft", "itl", "e2e")
"""Histograms of a scrape whose bucket-interpolated p50 and p95 are reported (not fitted)."""
SCRAPE_UNFITTED = ("queue",)
"""Scrape histograms whose means are reported, not fitted; TTFT joins them when the scrape has
the prefill histogram. What a fit matches of a scrape is the exact mean (`_sum / _count`) of
every other histogram. Not fitted, with the reasons measured on the three-run round trip of
tests/test_user_calibration.py:

* bucket p50/p95: the simulated quantile only moves when a simulated latency crosses a bucket
  bound, so the objective is flat in steps and Nelder–Mead stops on a step (overhead −6.4 %,
  at an objective 13x the truth's);
* queue time, and TTFT = queue + prefill: at light load the queue is the wait for the running
  step to end, which jumps with where each arrival falls in a step; its log ratio is noise that
  the fit chases (with queue: overhead −17 %; with TTFT beside prefill: −0.9 to −1.8 %). E2E
  still carries queueing where it matters (heavy load), and prefill the TTFT's engine time.
"""
FACTOR_NAMES = ("overhead", "linear", "attention")
LOG_FACTOR_BOUND = 3.0

# ------------------------------------------------------------------------------ fitting


def scaled_entry(base: StepTimeEntry, factors: Sequence[float], **changes: Any) -> StepTimeEntry:
    """`base` with (overhead, linear, attention) multiplied by `factors` (see module doc)."""
    s_over, s_lin, s_att = (float(f) for f in factors)
    b = base.step
    step = dataclasses.replace(
        b,
        overhead_s=b.overhead_s * s_over,
        flat_s=b.flat_s * s_lin,
        per_token_s=b.per_token_s * s_lin,
        expert_read_s=b.expert_read_s * s_lin,
        decode_attn_s_per_token=b.decode_attn_s_per_token * s_att,
        prefill_attn_s_per_pair=b.prefill_attn_s_per_pair * s_att,
    )
    return dataclasses.replace(base, step=step, **changes)


@dataclass(frozen=True)
class RunCase:
    """One measured run with the engine it ran on and its data-parallel replica count.

    scrape: for a `/metrics` window, its histograms (the run is then the replay workload of
    `ScrapeRun.workload`, without per-request latencies). notes: each default taken, with its
    source (printed by the CLI)."""

    run: MeasuredRun
    engine: EngineSetup
    replicas: int = 1
    scrape: ScrapeRun | None = None
    notes: tuple[str, ...] = ()


def run_case(
    file: str | Path,
    *,
    model: str,
    gpu: str,
    dtype: str = "fp16",
    given: EngineHints = NO_HINTS,
    request_rate: float | None = None,
) -> RunCase:
    """One measured run as a calibration case. Each engine setting is the one `given` (e.g. on
    the command line), else the one the file records, else a default: vLLM V1's OpenAI-server
    scheduler limits for the GPU (`sim.calibration.bench.vllm_default_limits`, the source named
    in the case's notes), tp 1, one replica, gpu_memory_utilization 0.9 (vLLM's `EngineArgs`
    default), the longest request for max_model_len. `request_rate`: a scrape's send rate
    (default: its request count / window)."""
    for what, name, known in (("model", model, models()), ("gpu", gpu, gpus())):
        if name not in known:
            raise TraceError(
                str(file), None, None, name, f"--{what}: not in the {what} catalog (sim/data)"
            )
    run, recorded = read_measured_run(file)
    scrape = run if isinstance(run, ScrapeRun) else None
    measured = scrape.workload(request_rate) if scrape is not None else run
    assert isinstance(measured, MeasuredRun)

    def pick(name: str) -> Any:
        value = getattr(given, name)
        return getattr(recorded, name) if value is None else value

    notes = []
    seqs, budget = pick("max_num_seqs"), pick("max_num_batched_tokens")
    if seqs is None or budget is None:
        d_seqs, d_budget, why = vllm_default_limits(gpu)
        seqs, budget = seqs or d_seqs, budget or d_budget
        notes.append(
            f"{Path(file).name}: engine limits not recorded: max_num_seqs {seqs}, "
            f"max_num_batched_tokens {budget} ({why}; pass --max-num-seqs and "
            "--max-num-batched-tokens if your server set them)"
        )
    if measured.ttft_s is None and measured.published:
        fitted = [m for m in FIT_METRICS if m in measured.published]
        missing = "" if any(m.startswith("e2e") for m in fitted) else " (no E2E statistic"
        if not any(m.endswith("p95_s") for m in fitted):
            missing += " and no p95" if missing else " (no p95"
        if missing:
            missing += ": `vllm bench serve --percentile-metrics ttft,tpot,itl,e2el "
            "--metric-percentiles 95,99` publishes them)"
        notes.append(
            f"{Path(file).name}: a summary without per-request data (no --save-detailed): "
            f"replayed as {measured.size} requests of its mean lengths "
            f"({int(measured.input_tokens[0])} in, {int(measured.output_tokens[0])} out) at its "
            f"send rate; fitted to {', '.join(fitted) or 'none'} of its published statistics"
            f"{missing} — lengths that varied make its percentiles less reliable than a "
            "detailed run's"
        )
    if scrape is not None:
        notes.append(
            f"{Path(file).name}: {scrape.requests} requests in a {scrape.window_s:.1f} s window, "
            f"replayed evenly at {measured.size / float(measured.arrival_s[-1]):.3g} req/s"
        )
    longest = int((measured.input_tokens + measured.output_tokens).max())
    engine = EngineSetup(
        model=model,
        gpu=gpu,
        tp=pick("tp") or 1,
        dtype=dtype,
        max_num_seqs=seqs,
        max_num_batched_tokens=budget,
        max_model_len=pick("max_model_len") or longest,
        kv_blocks=pick("kv_blocks"),
        gpu_memory_utilization=pick("gpu_memory_utilization") or 0.9,
    )
    return RunCase(measured, engine, pick("replicas") or 1, scrape, tuple(notes))


def start_entry(
    catalog: dict[tuple[str, str, int, str], StepTimeEntry], key: tuple[str, str, int, str]
) -> StepTimeEntry:
    """The catalog entry of `key`, else the roofline of the specs as an entry (so that any
    catalog model on any catalog GPU can be calibrated without naming a base)."""
    if key in catalog:
        return catalog[key]
    model, gpu, tp, dtype = key
    r = resolve_step_time(model, gpu, tp, dtype)
    return StepTimeEntry(model, gpu, tp, dtype, r.step, 0.0, r.residual_sd_log, r.source)


def _scrape_rows(
    name: str, scrape: ScrapeRun, sim: Replay, out: np.ndarray
) -> list[tuple[str, str, float, float, float, bool]]:
    """Each histogram's mean (exact: _sum / _count; fitted unless in `SCRAPE_UNFITTED`) and the
    p50/p95 of `SCRAPE_QUANTILES` (interpolated in the same buckets for the measured and the
    simulated histogram; reported), simulated with vLLM's definitions (`INTERVAL_HISTOGRAMS`)."""
    ok = np.isfinite(sim.e2e_s)
    ttft, e2e, queue, n = sim.ttft_s[ok], sim.e2e_s[ok], sim.queue_s[ok], out[ok]
    multi = n > 1
    decode = e2e - ttft
    tpot = np.where(multi, decode / np.maximum(n - 1, 1), 0.0)
    ones = np.ones(ttft.size)
    values = {
        "ttft": (ttft, ones),
        "itl": (tpot[multi], n[multi] - 1),
        "e2e": (e2e, ones),
        "queue": (queue, ones),
        "prefill": (ttft - queue, ones),
        "decode": (decode, ones),
        "inference": (e2e - queue, ones),
        "tpot": (tpot, ones),
    }
    unfitted = SCRAPE_UNFITTED + (("ttft",) if "prefill" in scrape.latency else ())
    rows = []
    for key, h in scrape.latency.items():
        v, w = values[key]
        if not h.mean > 0 or w.sum() <= 0:  # empty, or all zero (one-token outputs' TPOT)
            continue
        mean = float(np.dot(v, w) / w.sum())
        rows.append((name, f"{key}_mean_s", h.mean, mean, key not in unfitted))
        if key not in SCRAPE_QUANTILES:
            continue
        cum = histogram_of(v, w, h.bounds)
        for q in (50, 95):
            m = h.quantile(q / 100)
            sq = bucket_quantile(h.bounds, cum, q / 100)
            if math.isfinite(m) and m > 0:
                rows.append((name, f"{key}_p{q}_s", m, sq, False))
    return [(r, k, m, sv, sv / m - 1.0, f) for r, k, m, sv, f in rows]


def run_errors(entry: StepTimeEntry, cases: Sequence[RunCase]) -> pl.DataFrame:
    """Per run and metric: measured, simulated (s), error sim/meas − 1, and whether the fit
    matches it (`fitted`). Per-request runs: `FIT_METRICS`, all fitted; scrapes: their
    histograms' means and bucket-interpolated p50/p95 (`_scrape_rows`)."""
    rows = []
    model = step_time_model(entry)
    for c in cases:
        sim = replay(c.run, c.engine.limits(), model, c.replicas)
        if c.scrape is not None:
            rows += _scrape_rows(c.run.name, c.scrape, sim, c.run.output_tokens.astype(float))
            continue
        measured = c.run.measured_metrics()
        simulated = sim.metrics(c.run.output_tokens)
        for metric in FIT_METRICS:
            if metric in measured and metric in simulated:
                m, s = measured[metric], simulated[metric]
                rows.append((c.run.name, metric, m, s, s / m - 1.0, True))
    return pl.DataFrame(
        rows,
        schema={
            "run": pl.String,
            "metric": pl.String,
            "measured_s": pl.Float64,
            "simulated_s": pl.Float64,
            "error": pl.Float64,
            "fitted": pl.Boolean,
        },
        orient="row",
    )


def _residuals(entry: StepTimeEntry, cases: Sequence[RunCase]) -> np.ndarray:
    """log(simulated / measured) of every fitted metric (10 where a request never finished)."""
    err = run_errors(entry, cases).filter(pl.col("fitted"))["error"].to_numpy()
    if err.size == 0:
        raise ValueError("no metric to fit: runs need TTFT and E2E per request")
    with np.errstate(divide="ignore", invalid="ignore"):
        logs = np.log1p(err)
    return np.where(np.isfinite(logs), logs, 10.0)  # a request never finished: heavy penalty


def _objective(entry: StepTimeEntry, cases: Sequence[RunCase]) -> float:
    return float(np.mean(_residuals(entry, cases) ** 2))


UNCERTAINTY_STEP_LOG = 0.05
"""Central-difference step of the factors' standard errors, in log-factor units (±5 %): the
replay is piecewise constant at fine scale, so the step must span many of its plateaus."""


def factor_standard_errors(
    base: StepTimeEntry, cases: Sequence[RunCase], logs: Sequence[float], free: Sequence[int]
) -> list[float]:
    """Standard errors of the fitted log-factors `logs[free]` (one per free factor; inf where
    the data cannot identify it): nonlinear least squares' s^2 (J'J)^-1, with J the
    central-difference Jacobian of the log-errors (`_residuals`) and s^2 their mean square over
    m - p degrees of freedom (m fitted metrics, p free factors). 2p extra replays."""
    x0 = np.asarray(logs, dtype=np.float64)

    def r(x: np.ndarray) -> np.ndarray:
        return _residuals(scaled_entry(base, [float(v) for v in np.exp(x)]), cases)

    r0 = r(x0)
    m, p = r0.size, len(free)
    if m <= p:
        return [math.inf] * p
    jac = np.empty((m, p))
    for j, k in enumerate(free):
        step = np.zeros(3)
        step[k] = UNCERTAINTY_STEP_LOG
        jac[:, j] = (r(x0 + step) - r(x0 - step)) / (2 * UNCERTAINTY_STEP_LOG)
    s2 = float(r0 @ r0) / (m - p)
    info = jac.T @ jac
    if not np.all(np.isfinite(info)) or np.linalg.cond(info) > 1e10:
        return [math.inf] * p
    cov = s2 * np.linalg.inv(info)
    return [float(math.sqrt(max(v, 0.0))) for v in np.diag(cov)]


@dataclass(frozen=True)
class RunFit:
    """The fitted entry, its factors (overhead, linear, attention), and errors before/after."""

    entry: StepTimeEntry
    factors: tuple[float, float, float]
    before: pl.DataFrame
    after: pl.DataFrame
    evaluations: int
    # standard error of each log-factor (None: not fitted; inf: not identified by the data);
    # exp(±se) brackets the factor (`factor_standard_errors`)
    se_log: tuple[float | None, float | None, float | None] = (None, None, None)


PLAUSIBLE_FACTORS = (0.33, 3.0)
"""A fitted factor outside [1/3, 3] of its starting entry is flagged: the catalog's entries are
held-out within ~5-20 % of profiles (docs/calibration.md) and the roofline within ~40 % of
fitted entries, so a factor beyond 3x means the run measured something else (client time,
another engine version, a mislabelled GPU) or the data cannot identify it."""


WIDE_SE_LOG = math.log(1.5)
"""A factor whose standard error exceeds x/÷1.5 is flagged as poorly identified."""


def fit_warnings(fit: RunFit, cases: Sequence[RunCase]) -> list[str]:
    """Implausible factors, factors at their bound, and terms the runs cannot identify."""
    out = []
    lo, hi = PLAUSIBLE_FACTORS
    for name, v, se in zip(FACTOR_NAMES, fit.factors, fit.se_log, strict=True):
        if abs(math.log(v)) >= LOG_FACTOR_BOUND - 1e-6:
            out.append(f"{name} x{v:.3g} is at the search bound: the data cannot identify it")
        elif not lo <= v <= hi:
            out.append(f"{name} x{v:.3g} is implausible (outside [{lo:g}, {hi:g}] of the start)")
        elif se is not None and se > WIDE_SE_LOG:
            out.append(
                f"{name} x{v:.3g} is poorly identified: its standard error is "
                f"{'unbounded' if math.isinf(se) else f'x/÷{math.exp(se):.2f}'} (too few or "
                "too similar statistics for the factors fitted)"
            )
    preempted = any(
        replay(c.run, c.engine.limits(), fit.entry.step, c.replicas).preemptions > 0 for c in cases
    )
    if not preempted:
        out.append("no run filled the KV cache: the fit says nothing about the KV limit")
    return out


def fit_runs(
    base: StepTimeEntry,
    cases: Sequence[RunCase],
    *,
    fit: Sequence[str] = FACTOR_NAMES,
    max_evaluations: int = 300,
    **entry_changes: Any,
) -> RunFit:
    """Fit the scale factors named in `fit` (others stay 1) to `cases`, starting from `base`.

    `entry_changes` (e.g. model=, gpu=, source=) are applied to the returned entry.
    Deterministic: Nelder–Mead from factors 1 with a fixed initial simplex.
    """
    unknown = set(fit) - set(FACTOR_NAMES)
    if unknown or not fit:
        raise ValueError(f"fit: choose from {FACTOR_NAMES}, got {tuple(fit)}")
    free = [FACTOR_NAMES.index(name) for name in fit]

    def factors_of(x: np.ndarray) -> list[float]:
        logs = np.zeros(3)
        logs[free] = np.clip(x, -LOG_FACTOR_BOUND, LOG_FACTOR_BOUND)
        return [float(v) for v in np.exp(logs)]

    count = 0

    def f(x: np.ndarray) -> float:
        nonlocal count
        count += 1
        return _objective(scaled_entry(base, factors_of(x)), cases)

    # Nelder–Mead restarted from its own optimum with a smaller simplex (up to 4 rounds): the
    # replay is piecewise constant at fine scale, and one run often stops on a plateau.
    # NOTE: on the three-run round trip of tests/test_user_calibration.py one run stopped with
    # the overhead factor 4.8 % off (109 replays); with restarts every factor is within 0.1 %
    # (833 replays, 7.7 s on one core).
    x = np.zeros(len(free))
    best = f(x)
    step = 0.5
    for _ in range(4):
        simplex = np.vstack([x, *(x + step * np.eye(len(free)))])
        res = minimize(
            f,
            x,
            method="Nelder-Mead",
            options={
                "initial_simplex": simplex,
                "maxfev": max_evaluations,
                "xatol": 1e-4,
                "fatol": 1e-10,
            },
        )
        improved = float(res.fun) < best - 1e-12
        if float(res.fun) <= best:
            x, best = np.asarray(res.x), float(res.fun)
        if not improved and step < 0.5:
            break
        step = max(step / 4, 0.01)
    factors = factors_of(x)
    se = factor_standard_errors(base, cases, [math.log(v) for v in factors], free)
    standard_errors: list[float | None] = [None, None, None]
    for k, v in zip(free, se, strict=True):
        standard_errors[k] = v
    fitted = scaled_entry(base, factors)
    after = run_errors(fitted, cases)
    changes = dict(entry_changes)
    err_after = after["error"].to_numpy()
    changes.setdefault("heldout_mape", float(np.mean(np.abs(err_after))))
    changes.setdefault("residual_sd_log", float(np.std(np.log1p(err_after))))
    fitted = dataclasses.replace(fitted, **changes)
    return RunFit(
        entry=fitted,
        factors=(factors[0], factors[1], factors[2]),
        before=run_errors(base, cases),
        after=after,
        evaluations=count,
        se_log=(standard_errors[0], standard_errors[1], standard_errors[2]),
    )

"""Fitting a generated workload to a trace: weekly profile, burst model, lengths.

- **Volume**: the base rate is set so that the fitted model's expected arrivals over the trace's
  span equal the trace's count (`n / ∫ profile dt`).
- **Profile** (`fit_profile`): a trace covering a week gives the 168 hour-of-week means of its
  hourly counts (trace time 0 = Monday 00:00; several weeks are averaged); one covering a day
  gives the 24 hour-of-day means, repeated for each day; a shorter one gives a flat profile.
- **Burst** (`fit_burst`): the method of simulated moments. Candidate families — none, a
  log-normal OU log-rate (`ou`: σ, τ), a two-state Markov modulation (`markov`: calm, burst,
  ratio) and, for request traces, the products `ou × markov` and `markov × markov` (a slow
  and a fast layer) — are scored by how well the statistics of samples drawn from the model
  the way the trace was observed (`compare.generate_like`, fixed seeds: common random numbers,
  so the score is a deterministic function of the parameters) match the trace's:

      loss = Σ (log f_gen − log f_real)² + ½ (ac1_gen − ac1_real)²

  over f = inter-arrival CV (request traces) and the per-bin rate p50, p95, p99 (each computed
  per window, then averaged: the one-window estimator of the trace; the sample's rates are at
  the trace's volume, `compare.at_volume`, which removes their noisiest part), each
  with one request per bin added so idle bins stay finite; ac1 = lag-1 autocorrelation of
  per-bin counts. Each family starts from a grid; Nelder–Mead polishes the best grid points
  in log-parameter space. Time scales are bounded by the trace's span (a longer one only moves
  whole windows up or down, which one trace cannot tell). The family with the lowest loss
  + 0.001 × (number of parameters) *on fresh seeds with four times the samples*
  (`holdout_loss`) wins: choosing on the fitting seeds would reward a family for fitting their
  noise (common random numbers make that easy with many parameters).
- **Lengths**: the trace's own (input, output) pairs, resampled jointly (optionally smoothed).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy.optimize import minimize

from sim.config.spec import TraceColumns
from sim.traces.compare import default_windows, generate_like
from sim.traces.model import RateTrace, RequestTrace
from sim.traces.stats import TraceStats, describe
from sim.units import HOURS_PER_WEEK, SECONDS_PER_HOUR
from sim.workload import (
    BurstProcess,
    EmpiricalLengths,
    LogNormalOU,
    MarkovBurst,
    NoBurst,
    ProductBurst,
    WeeklyProfile,
    WorkloadModel,
)

COMPLEXITY_PENALTY = 0.001  # per parameter (on the held-out loss): parameters must earn their keep
FIT_ARRIVALS = 150_000  # arrivals per loss evaluation (about), request traces
STARTS_POLISHED = 3  # the best grid points of a family that Nelder–Mead polishes
_DUMMY_LENGTHS = EmpiricalLengths.from_arrays([1], [1], "unused while fitting arrivals")


@dataclass(frozen=True)
class BurstFit:
    """The chosen burst model, its family and loss, and every family's loss."""

    burst: BurstProcess
    family: str
    loss: float
    holdout_loss: float
    candidates: tuple[tuple[str, float, float], ...]  # (family, loss, held-out loss)


@dataclass(frozen=True)
class WorkloadFit:
    """A generated workload fitted to a trace (`workload_toml` writes it)."""

    trace_file: str
    trace_format: str
    base_requests_per_day: float
    profile: WeeklyProfile
    profile_kind: str  # "weekly" | "daily" | "flat"
    burst: BurstFit
    target: TraceStats
    lengths_file: str | None
    lengths_format: str | None
    smoothing_log_sd: float
    lengths_columns: TraceColumns | None = None


def fit_profile(trace: RequestTrace | RateTrace) -> tuple[WeeklyProfile, str]:
    """The weekly profile of a trace and how it was made ("weekly", "daily" or "flat")."""
    per_hour = _hourly_counts(trace)
    if per_hour is None or per_hour.size < 24 or per_hour.sum() <= 0:
        return WeeklyProfile.flat(), "flat"
    hours = per_hour.size
    if hours >= HOURS_PER_WEEK:
        slots = np.arange(hours) % HOURS_PER_WEEK
        values = np.bincount(slots, weights=per_hour) / np.bincount(slots)
        return WeeklyProfile.from_values(values), "weekly"
    slots = np.arange(hours) % 24
    daily = np.bincount(slots, weights=per_hour, minlength=24) / np.bincount(slots, minlength=24)
    return WeeklyProfile.from_values(np.tile(daily, 7)), "daily"


def _hourly_counts(trace: RequestTrace | RateTrace) -> np.ndarray | None:
    if isinstance(trace, RateTrace):
        w = trace.window_s
        if w > SECONDS_PER_HOUR or SECONDS_PER_HOUR % w:
            return None
        k = int(SECONDS_PER_HOUR // w)
        rates = trace.frame["rate_per_s"].to_numpy()
        hours = rates.size // k
        hourly: np.ndarray = rates[: hours * k].reshape(hours, k).sum(axis=1) * w
        return hourly
    if not trace.has_arrivals:
        return None
    t = trace.arrival_s()
    hours = int(t[-1] // SECONDS_PER_HOUR)
    if hours < 1:
        return None
    return np.bincount((t // SECONDS_PER_HOUR).astype(np.int64), minlength=hours)[:hours].astype(
        np.float64
    )


def fit_workload(
    trace: RequestTrace | RateTrace,
    *,
    seed: int = 0,
    smoothing_log_sd: float = 0.0,
    lengths_file: str | None = None,
    lengths_format: str | None = None,
    samples: int = FIT_ARRIVALS,
    lengths_columns: TraceColumns | None = None,
) -> WorkloadFit:
    """Fit profile, volume, burst model and lengths to `trace` (see the module docstring).

    A rate trace carries no lengths: `lengths_file` names a request trace to take them from
    (also allowed for a request trace, to replace its own). `samples`: arrivals drawn per loss
    evaluation of a request trace (fewer is faster and noisier).
    """
    target = describe(trace)
    profile, kind = fit_profile(trace)
    base = target.requests / profile.integral_s(0.0, target.span_s)
    burst = fit_burst(target, profile, base, seed=seed, samples=samples)
    if lengths_file is None and isinstance(trace, RequestTrace):
        lengths_file, lengths_format = trace.file, trace.format
        lengths_columns = trace.columns
    return WorkloadFit(
        trace.file,
        trace.format,
        base * 86_400.0,
        profile,
        kind,
        burst,
        target,
        lengths_file,
        lengths_format,
        smoothing_log_sd,
        lengths_columns,
    )


# ------------------------------------------------------------------------------------ bursts


def _features(stats: TraceStats, with_cv: bool, mean_rate_per_s: float) -> tuple[np.ndarray, float]:
    # Per-window quantiles (the estimator of the one real window); a generated sample's are
    # already at the trace's volume (`compare.at_volume`).
    one = 60.0 / stats.bin_s  # one request per bin, so idle bins stay finite
    mean = mean_rate_per_s * 60.0
    feats = list(np.log((np.array(stats.rate_per_min) + one) / (mean + one)))
    if with_cv:
        cv = stats.interarrival_cv
        feats.insert(0, math.log(cv) if cv and cv > 0 else 0.0)
    return np.array(feats), stats.rate_ac1


def _loss(gen: TraceStats, real: TraceStats, with_cv: bool) -> float:
    fg, ag = _features(gen, with_cv, real.mean_rate_per_s)
    fr, ar = _features(real, with_cv, real.mean_rate_per_s)
    value = float(np.sum((fg - fr) ** 2))
    if math.isfinite(ag) and math.isfinite(ar):
        value += 0.5 * (ag - ar) ** 2
    return value


@dataclass(frozen=True)
class _Family:
    name: str
    bounds: tuple[tuple[float, float], ...]  # per parameter, natural units
    build: Callable[[np.ndarray], BurstProcess]


def _families(target: TraceStats) -> list[_Family]:
    span, bin_s = target.span_s, target.bin_s
    # Time scales longer than the trace are not identifiable from it (they only move whole
    # windows up or down): bound them by its span.
    t_lo, t_hi = 0.5, span

    def ou(p: np.ndarray) -> LogNormalOU:
        sigma, tau = float(p[0]), float(p[1])
        return LogNormalOU(sigma, tau, float(min(bin_s, max(1.0, tau / 5.0))))

    def markov(p: np.ndarray) -> MarkovBurst:
        return MarkovBurst(float(p[0]), float(p[1]), 1.0 + float(p[2]))

    ou_b = ((0.01, 3.0), (max(1.0, bin_s / 10.0), t_hi))
    mk_b = ((t_lo, t_hi), (t_lo, t_hi), (0.01, 1e5))
    families = [
        _Family("ou", ou_b, ou),
        _Family("markov", mk_b, markov),
    ]
    if target.kind == "requests":
        families += [
            _Family("ou×markov", ou_b + mk_b, lambda p: ProductBurst((ou(p[:2]), markov(p[2:])))),
            _Family(
                "markov×markov",
                mk_b + mk_b,
                lambda p: ProductBurst((markov(p[:3]), markov(p[3:]))),
            ),
        ]
    return families


def fit_burst(
    target: TraceStats,
    profile: WeeklyProfile,
    base_rate_per_s: float,
    *,
    seed: int = 0,
    samples: int = FIT_ARRIVALS,
) -> BurstFit:
    """The burst model whose sampled statistics best match `target` (module docstring)."""
    with_cv = target.kind == "requests" and target.interarrival_cv is not None
    if target.kind == "rates":
        windows = max(2, default_windows(target) // 4)
    else:
        windows = int(min(40, max(4, math.ceil(samples / max(target.requests, 1.0)))))

    def score(burst: BurstProcess, s: int = seed, k: int = windows) -> float:
        model = WorkloadModel(base_rate_per_s, profile, burst, _DUMMY_LENGTHS)
        return _loss(generate_like(target, model, s, k, detail=False), target, with_cv)

    results: dict[str, tuple[float, BurstProcess, int]] = {"none": (score(NoBurst()), NoBurst(), 0)}
    best_params: dict[str, np.ndarray] = {}
    found: dict[str, tuple[_Family, np.ndarray, np.ndarray, np.ndarray]] = {}
    for fam in _families(target):
        lo = np.log([b[0] for b in fam.bounds])
        hi = np.log([b[1] for b in fam.bounds])

        def objective(
            x: np.ndarray, fam: _Family = fam, lo: np.ndarray = lo, hi: np.ndarray = hi
        ) -> float:
            return score(fam.build(np.exp(np.clip(x, lo, hi))))

        starts = _starts(fam.name, target, best_params)
        scored = sorted((objective(x), i) for i, x in enumerate(starts))
        best_fun, best_x = math.inf, starts[scored[0][1]]
        for _, i in scored[:STARTS_POLISHED]:
            x0 = starts[i]
            # The initial simplex steps by ×e^0.5 per parameter (scipy's default of 5% of the
            # value, 0.00025 for a zero log-parameter, would barely leave the grid point).
            simplex = np.vstack([x0, x0 + 0.5 * np.eye(len(x0))])
            res = minimize(
                objective,
                x0,
                method="Nelder-Mead",
                options={
                    "maxfev": 30 + 20 * len(x0),
                    "xatol": 0.02,
                    "fatol": 1e-4,
                    "initial_simplex": simplex,
                },
            )
            if res.fun < best_fun:
                best_fun, best_x = float(res.fun), res.x
        x = np.clip(best_x, lo, hi)
        best_params[fam.name] = np.exp(x)
        results[fam.name] = (best_fun, fam.build(np.exp(x)), len(x))
        found[fam.name] = (fam, x, lo, hi)
    # Choose on fresh seeds and more samples: the in-sample loss flatters a family that fits
    # the fixed seeds' noise (common random numbers make that easy with many parameters).
    held_out_windows = 4 * windows
    holdout = {
        name: score(burst, seed + 1, held_out_windows) for name, (_, burst, _) in results.items()
    }
    family = min(results, key=lambda n: holdout[n] + COMPLEXITY_PENALTY * results[n][2])
    loss, burst, _ = results[family]
    if family in found:
        # Polish the winner on the larger sample (a short Nelder–Mead from where it is), then
        # report its loss on seeds it has never seen.
        fam, x, lo, hi = found[family]

        def big(x: np.ndarray) -> float:
            return score(fam.build(np.exp(np.clip(x, lo, hi))), seed + 1, held_out_windows)

        res = minimize(
            big,
            x,
            method="Nelder-Mead",
            options={
                "maxfev": 15 + 10 * len(x),
                "xatol": 0.02,
                "fatol": 1e-4,
                "initial_simplex": np.vstack([x, x + 0.2 * np.eye(len(x))]),
            },
        )
        if res.fun < holdout[family]:
            burst = fam.build(np.exp(np.clip(res.x, lo, hi)))
            loss = float(res.fun)
    final = score(burst, seed + 2, held_out_windows)
    return BurstFit(
        burst,
        family,
        loss,
        final,
        tuple((name, v[0], holdout[name]) for name, v in results.items()),
    )


def _starts(name: str, target: TraceStats, best: dict[str, np.ndarray]) -> list[np.ndarray]:
    """Grid starting points of a family, in log-parameter space."""
    span, bin_s = target.span_s, target.bin_s
    taus = np.geomspace(max(1.0, bin_s / 20.0), span / 2.0, 5)
    if name == "ou":
        return [np.log([s, t]) for s in (0.15, 0.4, 1.0) for t in taus]
    if name == "markov":
        return [np.log([c, b, r]) for c in taus for b in taus for r in (1.0, 10.0, 1000.0)]
    fast = [np.array([5.0, 2.0, 20.0]), np.array([2.0, 1.0, 5.0]), np.array([30.0, 5.0, 1000.0])]
    slow = best["ou"] if name == "ou×markov" else best["markov"]
    starts = [np.log(np.concatenate((slow, f))) for f in fast]
    if name == "ou×markov":
        starts.append(np.log(np.concatenate(([0.05, span / 2.0], best["markov"]))))
    return starts


# ------------------------------------------------------------------------------------ output


def _num(x: float) -> str:
    """A TOML float with 6 significant digits."""
    text = f"{float(x):.6g}"
    return text if any(c in text for c in ".en") else text + ".0"


def _burst_lines(burst: BurstProcess, table: str) -> list[str]:
    if isinstance(burst, MarkovBurst):
        return [
            'kind = "markov"',
            f"mean_calm_s = {_num(burst.mean_calm_s)}",
            f"mean_burst_s = {_num(burst.mean_burst_s)}",
            f"burst_ratio = {_num(burst.burst_ratio)}",
        ]
    if isinstance(burst, LogNormalOU):
        return [
            'kind = "ou"',
            f"sigma = {_num(burst.sigma)}",
            f"correlation_time_s = {_num(burst.correlation_time_s)}",
            f"step_s = {_num(burst.step_s)}",
        ]
    if isinstance(burst, ProductBurst):
        lines = ['kind = "product"']
        for layer in burst.layers:
            lines += ["", f"[[{table}.layers]]", *_burst_lines(layer, table)]
        return lines
    return ['kind = "none"']


def workload_toml(
    fit: WorkloadFit, toml_path: str | Path, profile_path: str | Path, *, version: str = ""
) -> str:
    """The `[workload]` section of `fit`, with paths relative to `toml_path`'s folder.

    The file is a valid workload file on its own (`sim trace compare`) and for `include` in an
    experiment, which then gives `[workload.growth]` (and may override the volume).
    """
    base = Path(toml_path).resolve().parent

    def rel(path: str | Path) -> str:
        return Path(os.path.relpath(Path(path).resolve(), base)).as_posix()

    t, b = fit.target, fit.burst
    sources = ", ".join(f"{name} {loss:.4g} / {held:.4g}" for name, loss, held in b.candidates)
    lines = [
        f"# Workload fitted by `sim trace fit`{f' (sim {version})' if version else ''} to",
        f"# {rel(fit.trace_file)} ({fit.trace_format}: {t.requests:,.0f} requests over "
        f"{t.span_s / 3600:.3g} h).",
        f"# Profile: {fit.profile_kind}. Burst: {b.family}, loss {b.loss:.4g} "
        f"(held out {b.holdout_loss:.4g}).",
        f"# Every family, loss / held-out loss: {sources}.",
        "# Use: `sim trace compare TRACE THIS_FILE`, or in an experiment",
        '#   [workload]  include = "THIS_FILE"  (+ base_requests_per_day, [workload.growth]).',
        "",
        "[workload]",
        'kind = "generated"',
        f"base_requests_per_day = {_num(fit.base_requests_per_day)}"
        "  # the trace's volume; an experiment including this file sets its own",
        f'weekly_profile = "{rel(profile_path)}"',
    ]
    if fit.lengths_file is not None:
        lines += ["", "[workload.lengths]", f'file = "{rel(fit.lengths_file)}"']
        if fit.lengths_format is not None:
            lines.append(f'format = "{fit.lengths_format}"')
        if fit.smoothing_log_sd:
            lines.append(f"smoothing_log_sd = {_num(fit.smoothing_log_sd)}")
        c = fit.lengths_columns
        if c is not None:
            names = {k: getattr(c, k) for k in ("arrival", "input", "output")}
            pairs = ", ".join(f"{k} = {json.dumps(v)}" for k, v in names.items() if v)
            lines += [f"columns = {{{pairs}}}", f'time_unit = "{c.time_unit}"']
    lines += ["", "[workload.burst]", *_burst_lines(b.burst, "workload.burst")]
    return "\n".join(lines) + "\n"

"""Fitting the step-time model's coefficients to measured profiles.

The replica's step-time model (see `docs/calibration.md`) is a sum of terms that are each linear
in their coefficients once the "knee" of the linear-ops curve is fixed:

    step_time_s = overhead_s
                + flat_s + per_token_s * max(0, T - knee_tokens)
                + decode_attn_s_per_token * sum(decode context tokens)
                + prefill_attn_s_per_pair * sum(c * p + c * (c + 1) / 2)

This module holds the pure fitting pieces: non-negative least squares on *relative* error (so a
1 ms row and a 100 ms row count alike), a continuous two-piece linear fit with a free knee, and
the error metrics used to report held-out accuracy. Inputs are plain arrays in SI units (seconds,
tokens); nothing here reads files or knows about a particular profile format.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.optimize import minimize_scalar, nnls

FloatArray = npt.NDArray[np.float64]
ArrayLike = npt.ArrayLike


class PiecewiseLinear(NamedTuple):
    """A continuous "flat, then linear" curve: `flat_s + per_token_s * max(0, T - knee_tokens)`.

    flat_s: time in seconds while the step is bound by reading weights (T <= knee).
    knee_tokens: tokens per step where the curve starts to rise (may be fractional, >= 0).
    per_token_s: seconds added per token beyond the knee (>= 0).
    """

    flat_s: float
    knee_tokens: float
    per_token_s: float


class Affine(NamedTuple):
    """`intercept + slope * x`, both coefficients >= 0 (units depend on the caller)."""

    intercept: float
    slope: float


def _as_float_array(values: ArrayLike, name: str) -> FloatArray:
    out = np.asarray(values, dtype=np.float64).ravel()
    if out.size == 0:
        raise ValueError(f"{name}: need at least one value")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{name}: values must be finite")
    return out


def _check_pair(x: ArrayLike, y: ArrayLike) -> tuple[FloatArray, FloatArray]:
    xa = _as_float_array(x, "x")
    ya = _as_float_array(y, "y")
    if xa.shape != ya.shape:
        raise ValueError(f"x and y differ in length: {xa.size} != {ya.size}")
    if np.any(ya <= 0):
        raise ValueError("y: relative-error fits need strictly positive observations")
    return xa, ya


def _row_weights(weights: ArrayLike | None, n: int) -> FloatArray:
    if weights is None:
        return np.ones(n, dtype=np.float64)
    w = _as_float_array(weights, "weights")
    if w.size != n or np.any(w < 0) or not np.any(w > 0):
        raise ValueError(f"weights: need {n} values >= 0, not all zero")
    return w


def nnls_relative(
    design: ArrayLike, observed: ArrayLike, weights: ArrayLike | None = None
) -> tuple[FloatArray, float]:
    """Non-negative least squares on relative error.

    Minimises `sum(weights * ((design @ coef - observed) / observed) ** 2)` subject to
    `coef >= 0`. `weights` (default all 1) lets a caller balance unevenly sampled ranges.

    Returns (coefficients, weighted sum of squared relative residuals). `observed` must be > 0.
    """
    a = np.asarray(design, dtype=np.float64)
    y = _as_float_array(observed, "observed")
    if a.ndim != 2 or a.shape[0] != y.size:
        raise ValueError(f"design must be (n, k) with n = {y.size}, got shape {a.shape}")
    if np.any(y <= 0):
        raise ValueError("observed: relative-error fits need strictly positive observations")
    sw = np.sqrt(_row_weights(weights, y.size))
    aw = a * (sw / y)[:, None]
    # Scale columns so NNLS is well conditioned (coefficients span ~1e-10 .. 1e-2 in SI units).
    scale = np.linalg.norm(aw, axis=0)
    scale[scale == 0] = 1.0
    coef_scaled, _ = nnls(aw / scale, sw)
    coef = coef_scaled / scale
    resid = sw * (a @ coef - y) / y
    return coef.astype(np.float64), float(resid @ resid)


def fit_through_origin(x: ArrayLike, y: ArrayLike, offset: float = 0.0) -> float:
    """Slope `b >= 0` of `y ≈ offset + b * x` minimising the squared relative error.

    `offset` is a known, fixed intercept (0 by default: a line through the origin).
    Closed form with r = x / y: b = sum(r * (1 - offset / y)) / sum(r ** 2).
    Units: y-units per x-unit.
    """
    xa, ya = _check_pair(x, y)
    r = xa / ya
    denom = float(r @ r)
    if denom == 0.0:
        raise ValueError("x: all zero, slope undefined")
    return max(0.0, float(r @ (1.0 - offset / ya)) / denom)


def fit_affine(x: ArrayLike, y: ArrayLike) -> Affine:
    """`y ≈ intercept + slope * x` with both >= 0, minimising squared relative error."""
    xa, ya = _check_pair(x, y)
    design = np.column_stack([np.ones_like(xa), xa])
    coef, _ = nnls_relative(design, ya)
    return Affine(float(coef[0]), float(coef[1]))


def piecewise_linear(
    tokens: ArrayLike, flat_s: float, knee_tokens: float, per_token_s: float
) -> FloatArray:
    """Evaluate `flat_s + per_token_s * max(0, tokens - knee_tokens)` (seconds)."""
    t = np.asarray(tokens, dtype=np.float64)
    return flat_s + per_token_s * np.maximum(0.0, t - knee_tokens)


def _fit_given_knee(
    t: FloatArray, y: FloatArray, w: FloatArray, knee: float
) -> tuple[FloatArray, float]:
    design = np.column_stack([np.ones_like(t), np.maximum(0.0, t - knee)])
    return nnls_relative(design, y, w)


def fit_piecewise_linear(
    tokens: ArrayLike, times_s: ArrayLike, weights: ArrayLike | None = None
) -> PiecewiseLinear:
    """Fit `flat_s + per_token_s * max(0, T - knee_tokens)` by least squares on relative error.

    The knee is free in [0, max(tokens)]: for a fixed knee the problem is a two-coefficient
    non-negative least squares, so the knee is found by a grid over every distinct token count
    (and midpoints), then refined by a bounded scalar search between the grid neighbours.

    tokens: tokens batched in the step (>= 0). times_s: measured step times in seconds (> 0).
    weights: optional per-row weights on the squared relative residuals (default all 1).
    """
    t, y = _check_pair(tokens, times_s)
    if np.any(t < 0):
        raise ValueError("tokens: must be >= 0")
    w = _row_weights(weights, t.size)
    uniq = np.unique(t)
    grid = np.unique(np.concatenate([[0.0], uniq, (uniq[:-1] + uniq[1:]) / 2.0]))
    sse = np.array([_fit_given_knee(t, y, w, float(k))[1] for k in grid])
    i = int(np.argmin(sse))
    lo = float(grid[max(i - 1, 0)])
    hi = float(grid[min(i + 1, grid.size - 1)])
    best_knee, best_sse = float(grid[i]), float(sse[i])
    if hi > lo:
        res = minimize_scalar(
            lambda k: _fit_given_knee(t, y, w, float(k))[1],
            bounds=(lo, hi),
            method="bounded",
            options={"xatol": 1e-3},
        )
        if float(res.fun) < best_sse:
            best_knee = float(res.x)
    coef, _ = _fit_given_knee(t, y, w, best_knee)
    return PiecewiseLinear(float(coef[0]), best_knee, float(coef[1]))


def causal_pairs(chunk_tokens: ArrayLike, cached_tokens: ArrayLike) -> FloatArray:
    """Query-key pairs a causal prefill chunk attends over: `c * p + c * (c + 1) / 2`.

    chunk_tokens (c): tokens in the chunk; cached_tokens (p): tokens already in the KV cache.
    """
    c = np.asarray(chunk_tokens, dtype=np.float64)
    p = np.asarray(cached_tokens, dtype=np.float64)
    return c * p + c * (c + 1.0) / 2.0


def _ape(predicted: ArrayLike, observed: ArrayLike) -> FloatArray:
    pred = _as_float_array(predicted, "predicted")
    obs = _as_float_array(observed, "observed")
    if pred.shape != obs.shape:
        raise ValueError(f"predicted and observed differ in length: {pred.size} != {obs.size}")
    if np.any(obs <= 0):
        raise ValueError("observed: must be > 0 for percentage errors")
    return np.abs(pred - obs) / obs


def mape(predicted: ArrayLike, observed: ArrayLike) -> float:
    """Mean absolute percentage error as a fraction (0.05 = 5 %)."""
    return float(np.mean(_ape(predicted, observed)))


def max_ape(predicted: ArrayLike, observed: ArrayLike) -> float:
    """Largest absolute percentage error as a fraction."""
    return float(np.max(_ape(predicted, observed)))


def wape(predicted: ArrayLike, observed: ArrayLike) -> float:
    """Weighted absolute percentage error, `sum|pred - obs| / sum(obs)`, as a fraction.

    Unlike MAPE it weights rows by their size, so tiny rows cannot dominate: it is the error
    in the *total* time over the rows.
    """
    pred = _as_float_array(predicted, "predicted")
    obs = _as_float_array(observed, "observed")
    if pred.shape != obs.shape:
        raise ValueError(f"predicted and observed differ in length: {pred.size} != {obs.size}")
    return float(np.sum(np.abs(pred - obs)) / np.sum(obs))


def holdout_mask(keys: ArrayLike, every: int = 5, offset: int = 2) -> npt.NDArray[np.bool_]:
    """Rows to hold out: those whose key is every `every`-th distinct key value.

    Distinct key values are sorted; value number i is held out when `i % every == offset`,
    except the smallest and largest, which always stay in training so the held-out rows test
    interpolation, not extrapolation. All rows sharing a key land on the same side.
    """
    if every < 2 or not 0 <= offset < every:
        raise ValueError(f"need every >= 2 and 0 <= offset < every, got {every}, {offset}")
    k = _as_float_array(keys, "keys")
    uniq = np.unique(k)
    idx = np.searchsorted(uniq, k)
    held = (idx % every == offset) & (idx > 0) & (idx < uniq.size - 1)
    return np.asarray(held, dtype=np.bool_)


# ------------------------------------------------------------------ whole step-time model


class StepTimeFit(NamedTuple):
    """Coefficients fitted to step samples, with held-out errors (fractions).

    flat_s, knee_tokens, per_token_s, decode_attn_s_per_token, prefill_attn_s_per_pair: as in
    the module docstring; a term whose regressor is zero in every sample is not identified and
    is NaN (the caller takes it from elsewhere). heldout_mape, heldout_max_ape: errors of the
    whole-step prediction on the held-out samples; heldout_sd_log the standard deviation of
    log(measured / predicted) there; train_mape on the others.
    """

    flat_s: float
    knee_tokens: float
    per_token_s: float
    decode_attn_s_per_token: float
    prefill_attn_s_per_pair: float
    heldout_mape: float
    heldout_max_ape: float
    heldout_sd_log: float
    train_mape: float
    n_train: int
    n_heldout: int


def fit_step_time(
    tokens: ArrayLike,
    decode_context_tokens: ArrayLike,
    prefill_pairs: ArrayLike,
    times_s: ArrayLike,
    heldout: npt.NDArray[np.bool_],
) -> StepTimeFit:
    """Fit `flat + per_token·max(0, T − knee) + d·ctx + p·pairs` to step samples.

    One sample per measured step (or per operator-profile row summed to a whole step):
    `tokens` T batched in the step, `decode_context_tokens` Σ context of its decoding
    sequences, `prefill_pairs` Σ causal query-key pairs of its prefill chunks, `times_s` its
    duration. Rows where `heldout` is true are left out of the fit and scored after it.

    Non-negative least squares on relative error; the knee is a grid search over the distinct
    token counts (and midpoints) refined by a bounded scalar search, as `fit_piecewise_linear`.
    """
    t = _as_float_array(tokens, "tokens")
    ctx = _as_float_array(decode_context_tokens, "decode_context_tokens")
    pairs = _as_float_array(prefill_pairs, "prefill_pairs")
    y = _as_float_array(times_s, "times_s")
    held = np.asarray(heldout, dtype=np.bool_).ravel()
    if not t.size == ctx.size == pairs.size == y.size == held.size:
        raise ValueError("tokens, contexts, pairs, times and heldout differ in length")
    if np.any(y <= 0) or np.any(t < 0) or np.any(ctx < 0) or np.any(pairs < 0):
        raise ValueError("times must be > 0 and regressors >= 0")
    train = ~held
    if train.sum() < 4:
        raise ValueError("need at least 4 training samples")
    extra = [col for col in (ctx, pairs) if np.any(col[train] > 0)]
    has = [bool(np.any(ctx[train] > 0)), bool(np.any(pairs[train] > 0))]

    def design(knee: float, rows: npt.NDArray[np.bool_]) -> FloatArray:
        cols = [np.ones(int(rows.sum())), np.maximum(0.0, t[rows] - knee)]
        cols += [col[rows] for col in extra]
        return np.column_stack(cols)

    def sse(knee: float) -> float:
        return nnls_relative(design(knee, train), y[train])[1]

    uniq = np.unique(t[train])
    grid = np.unique(np.concatenate([[0.0], uniq, (uniq[:-1] + uniq[1:]) / 2.0]))
    if grid.size > 400:  # NOTE: bounds the grid search at ~0.1 s for 10^4-row profiles
        grid = np.unique(np.quantile(grid, np.linspace(0.0, 1.0, 400)))
    errs = np.array([sse(float(k)) for k in grid])
    i = int(np.argmin(errs))
    knee = float(grid[i])
    lo, hi = float(grid[max(i - 1, 0)]), float(grid[min(i + 1, grid.size - 1)])
    if hi > lo:
        res = minimize_scalar(sse, bounds=(lo, hi), method="bounded", options={"xatol": 1e-3})
        if float(res.fun) < errs[i]:
            knee = float(res.x)
    coef, _ = nnls_relative(design(knee, train), y[train])
    pred = design(knee, np.ones_like(train)) @ coef
    it = iter(coef[2:])
    d = float(next(it)) if has[0] else math.nan
    p = float(next(it)) if has[1] else math.nan
    ape = np.abs(pred - y) / y
    return StepTimeFit(
        flat_s=float(coef[0]),
        knee_tokens=knee,
        per_token_s=float(coef[1]),
        decode_attn_s_per_token=d,
        prefill_attn_s_per_pair=p,
        heldout_mape=float(ape[held].mean()) if held.any() else math.nan,
        heldout_max_ape=float(ape[held].max()) if held.any() else math.nan,
        heldout_sd_log=float(np.std(np.log(y[held] / pred[held]))) if held.any() else math.nan,
        train_mape=float(ape[train].mean()),
        n_train=int(train.sum()),
        n_heldout=int(held.sum()),
    )

"""Fit the weight-only GEMMs' compute efficiency on the published vLLM runs.

`[roofline] weight_only_flop_efficiency` (sim/data/step_time.toml) is the share of the GPU's
fp16 peak that weight-only quantised GEMMs reach at large batch: vLLM's Marlin kernels, which
dequantise int4 AWQ/GPTQ weights, or FP8 weights on a GPU without FP8 tensor cores, to fp16
inside the GEMM (`sim.engine.roofline.weight_only`). At small batch those GEMMs read a half or a
quarter of the bytes and run at the memory roofline; at large batch the dequantisation is in
the inner loop and they fall behind cuBLAS's fp16 GEMM, whose efficiency (`flop_efficiency`,
measured on Vidur's fp16 profiles) the roofline had given them.

Fitted here by replaying, through `sim bench` (`sim.calibration.public_runs.replay_all`), the
rows of `sim/data/validation/public_runs.csv` whose model is dense (no experts, no linear
attention: their step times carry other, known errors) and whose weights run weight-only on
their GPU, and choosing the value on a grid that minimises Σ |log(simulated / measured)| of
their output throughput. Printed beside: the same rows at the fp16 GEMMs' efficiency, and, not
fitted, the MoE rows that run weight-only (gpt-oss's MXFP4, FP8 Qwen3-235B on A100), whose
median |throughput error| the fitted value must not make worse. Run from the repository root
(about a minute):

    python scripts/fit_weight_only.py
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sim.calibration.public_runs import case_of, replay_all
from sim.data import gpus, models
from sim.engine.roofline import load_roofline_factors, roofline_factors_override, weight_only

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS = REPO_ROOT / "sim/data/validation/public_runs.csv"
GRID = tuple(round(0.30 + 0.01 * i, 2) for i in range(41))  # 0.30 .. 0.70


def weight_only_rows() -> tuple[set[str], set[str]]:
    """(dense rows, MoE or hybrid rows) that replay and run weight-only GEMMs on their GPU."""
    runs = pl.read_csv(RUNS, infer_schema_length=0).fill_null("")
    dense, other = set(), set()
    for r in runs.iter_rows(named=True):
        c = case_of(r)
        if c.spec is None or not weight_only(gpus()[c.spec.gpu], c.spec.dtype):
            continue
        shape = models()[c.spec.model]
        (other if shape.is_moe or shape.linear_attention_layers else dense).add(c.row)
    return dense, other


def throughput_log_errors(rows: set[str], efficiency: float) -> dict[str, float]:
    """Per row: log(simulated / measured) output throughput at `efficiency`."""
    f = dataclasses.replace(load_roofline_factors(), weight_only_flop_efficiency=efficiency)
    with roofline_factors_override(f):
        df = replay_all(RUNS, rows=rows)
    df = df.filter((pl.col("metric") == "throughput") & pl.col("error").is_not_nan())
    return {row: float(np.log1p(e)) for row, e in df.select("row", "error").iter_rows()}


@dataclass(frozen=True)
class Fit:
    """The grid's losses, the fitted value, and the rows before and after."""

    grid: dict[float, float]  # efficiency -> Σ |log error| over the dense rows
    fitted: float
    dense_fp16: dict[str, float]  # dense rows' log errors at flop_efficiency
    dense_fitted: dict[str, float]
    moe_fp16: dict[str, float]  # MoE / hybrid rows (not fitted)
    moe_fitted: dict[str, float]


def fit() -> Fit:
    dense, other = weight_only_rows()
    errors = {e: throughput_log_errors(dense, e) for e in GRID}
    grid = {e: sum(abs(v) for v in errs.values()) for e, errs in errors.items()}
    fitted = min(grid, key=lambda e: grid[e])
    fp16 = load_roofline_factors().flop_efficiency
    return Fit(
        grid,
        fitted,
        throughput_log_errors(dense, fp16),
        errors[fitted],
        throughput_log_errors(other, fp16),
        throughput_log_errors(other, fitted),
    )


def _median_abs_pct(errors: dict[str, float]) -> float:
    return float(np.median(np.abs(np.expm1(list(errors.values()))))) * 100


def main() -> int:
    f = fit()
    for e, loss in f.grid.items():
        print(f"weight-only efficiency {e:.2f}: Σ|log error| {loss:.3f}")
    fp16 = load_roofline_factors().flop_efficiency
    shipped = load_roofline_factors().weight_only_flop_efficiency
    print(f"\nfitted on {len(f.dense_fitted)} dense rows: {f.fitted:.2f} (fp16 GEMMs: {fp16:.3f})")
    print(f"(shipped: [roofline] weight_only_flop_efficiency = {shipped:g})")
    for row in sorted(f.dense_fitted):
        before, after = np.expm1(f.dense_fp16[row]), np.expm1(f.dense_fitted[row])
        print(f"  {row}: throughput {before:+.0%} at the fp16 efficiency -> {after:+.0%}")
    print(
        f"MoE / hybrid rows running weight-only (not fitted, {len(f.moe_fitted)}): median"
        f" |throughput error| {_median_abs_pct(f.moe_fp16):.0f} % -> "
        f"{_median_abs_pct(f.moe_fitted):.0f} %"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

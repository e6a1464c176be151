"""Fit the synchronous V1 engine core's CPU time per sequence, and the client path a
client-side benchmark adds to TTFT, on the published vLLM runs.

`sim.engine.versions.V1_CPU_PER_SEQ_S` is the CPU seconds per sequence per step of vLLM
0.8-0.13 without async scheduling (the "v1" CPU family; module docstring there). It is fitted
here by replaying, through `sim bench` (`sim.calibration.public_runs.replay_all`), the rows of
`sim/data/validation/public_runs.csv` (the packaged copy of shared/data/vllm-public-runs) that
run that engine, and choosing the value on a grid that minimises the loss:

    loss = Σ over (source, metric family) of median |log(simulated / measured)|

shaped as the fidelity score is: latencies (TTFT, TPOT, E2E) on the rows at <= 85 % load,
throughput on every row, all from rows of dense models with exact lengths or at <= 85 % load
(no approximation in the case's note: a burst with guessed lengths measures the guess). A
`random` run whose outputs stopped at EOS replays its realised mean output length: a measured
mean, not a guess (1,000-1,024 of a 1,024 cap on the A100 Qwen2-7B bursts), so it is fitted;
leaving those bursts out had left 4 of their 20 rows, at batch 1 and 10, to pin the term. MoE
rows are left out: their step time misses the MoE kernels' small-batch floor
(docs/validation.md), an error a CPU term must not absorb. So are the hybrid linear-attention
rows (Qwen3.5, Qwen3-Next): their step time is an uncalibrated roofline of an architecture no
fitted entry covers, and on Qwen3.5-9B the simulated TTFT is a third short (docs/validation.md).
Each source weighs the same whatever its row count. Held-out error: leave one source out (the value
fitted on the other
sources predicts the held-out one), printed beside the loss of the Vidur-era constant overhead
(1.84 ms per step, no per-sequence term). The rows that run async scheduling (0.14+, or
`--async-scheduling`) take no fitted term (a step is GPU time) and are printed as a check, not
fitted.

The client path (`sim.engine.versions.CLIENT_S`): what a client-side benchmark's TTFT holds that
the engine's does not (HTTP, the API server's chat template and tokenisation, the first SSE
chunk's trip). Replayed with none, every dense row at <= 85 % load leaves a gap, measured −
simulated mean TTFT; its median per source is that source's client path plus whatever its
deployment puts in front of vLLM (GPUStack's rows carry ~50 ms, flat across prompt sizes). The
shipped value is the smallest source median: the path with nothing in front, which every
client-side benchmark pays. Run from the repository root (about two minutes):

    python scripts/fit_v1_cpu.py
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from sim.calibration.public_runs import EOS_MEAN_NOTE, case_of, replay_all
from sim.data import models
from sim.engine import versions

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS = REPO_ROOT / "sim/data/validation/public_runs.csv"
GRID_S = tuple(x * 1e-6 for x in (0, 10, 20, 30, 40, 50, 60, 70, 80, 90, 100, 120, 150, 200))
MAX_LOAD = 0.85
VIDUR_OVERHEAD_S = 0.00183904  # the catalog's per-step overhead (sim/data/step_time.toml)


@contextmanager
def terms(cpu_per_seq_s: float, overhead_s: float | None = 0.0) -> Iterator[None]:
    """Replays inside the block charge the "v1" family `cpu_per_seq_s` per sequence and
    `overhead_s` per step (None: the entry's own overhead)."""
    cpu, over = dict(versions.CPU_PER_SEQ_S), dict(versions.STEP_OVERHEAD_S)
    versions.CPU_PER_SEQ_S["v1"] = cpu_per_seq_s
    versions.STEP_OVERHEAD_S["v1"] = overhead_s
    try:
        yield
    finally:
        versions.CPU_PER_SEQ_S.update(cpu)
        versions.STEP_OVERHEAD_S.update(over)


def rows_by_family() -> tuple[pl.DataFrame, dict[str, set[str]]]:
    """The runs table and the replayable row ids of each CPU family, of dense softmax-attention
    models only (module docstring)."""
    runs = pl.read_csv(RUNS, infer_schema_length=0).fill_null("")
    fams: dict[str, set[str]] = {}
    for r in runs.iter_rows(named=True):
        c = case_of(r)
        if c.spec is None:
            continue
        shape = models()[c.spec.model]
        if shape.is_moe or shape.linear_attention_layers:
            continue
        if c.spec.cpu_family is not None:
            fams.setdefault(c.spec.cpu_family, set()).add(c.row)
    return runs, fams


def replay(rows: set[str], runs: pl.DataFrame) -> pl.DataFrame:
    """The fitting rows' errors with their source and metric family."""
    sources = runs.select(pl.col("row_id").alias("row"), pl.col("source_id").alias("source"))
    return (
        replay_all(RUNS, rows=rows)
        .join(sources, on="row")
        .filter(pl.col("error").is_not_nan())
        .filter((pl.col("load") <= MAX_LOAD) | pl.col("note").is_in(["", EOS_MEAN_NOTE]))
        .with_columns(pl.col("metric").str.extract(r"^([a-z0-9]+)").alias("family"))
        .filter((pl.col("load") <= MAX_LOAD) | (pl.col("family") == "throughput"))
    )


def losses(df: pl.DataFrame) -> dict[str, float]:
    """Per source: Σ over metric families of median |log(simulated / measured)|."""
    out = {}
    for (source,), part in df.group_by("source"):
        total = 0.0
        for (_,), fam in part.group_by("family"):
            total += float(np.median(np.abs(np.log1p(fam["error"].to_numpy()))))
        out[str(source)] = total
    return out


@contextmanager
def no_client() -> Iterator[None]:
    """Replays inside the block add no client time to TTFT and E2E."""
    saved = dict(versions.CLIENT_S)
    versions.CLIENT_S.update({k: 0.0 for k in saved})
    try:
        yield
    finally:
        versions.CLIENT_S.update(saved)


def client_gaps() -> dict[str, float]:
    """Per source: the median over its dense rows at <= 85 % load of measured − simulated mean
    TTFT (s), replayed with no client time (module docstring)."""
    runs, fams = rows_by_family()
    with no_client():
        df = replay(set().union(*fams.values()), runs)
    ttft = df.filter((pl.col("metric") == "ttft_mean") & (pl.col("load") <= MAX_LOAD))
    gaps = ttft.with_columns(((pl.col("measured") - pl.col("simulated")) / 1e3).alias("gap_s"))
    return {str(s): float(g["gap_s"].median()) for (s,), g in gaps.group_by("source")}


@dataclass(frozen=True)
class Fit:
    """The grid, its losses per source, the fitted value and the held-out check."""

    grid: dict[float, dict[str, float]]  # cpu s/seq -> source -> loss
    vidur: dict[str, float]  # source -> loss with the 1.84 ms overhead and no per-seq term
    fitted_s: float  # argmin of the summed loss
    held_out: dict[str, tuple[float, float]]  # source -> (value fitted without it, its loss)
    async_after: dict[str, float]  # async rows: loss as shipped (GPU time only)
    async_before: dict[str, float]  # async rows: loss with the 1.84 ms overhead
    rows: int


def fit() -> Fit:
    """Replay the grid (about a minute) and fit (module docstring)."""
    runs, fams = rows_by_family()
    sync = fams.get("v1", set())
    with terms(0.0, None):
        vidur = losses(replay(sync, runs))
    grid = {}
    for c in GRID_S:
        with terms(c):
            grid[c] = losses(replay(sync, runs))
    fitted = min(grid, key=lambda c: sum(grid[c].values()))
    held = {}
    for s in sorted(vidur):
        c = min(grid, key=lambda c: sum(v for t, v in grid[c].items() if t != s))
        held[s] = (c, grid[c][s])
    asyn = fams.get("v1-async", set())
    after = losses(replay(asyn, runs))
    saved = versions.STEP_OVERHEAD_S["v1-async"]
    versions.STEP_OVERHEAD_S["v1-async"] = None  # the entry's (Vidur-era) overhead
    try:
        before = losses(replay(asyn, runs))
    finally:
        versions.STEP_OVERHEAD_S["v1-async"] = saved
    return Fit(grid, vidur, fitted, held, after, before, len(sync))


def main() -> int:
    f = fit()
    for c, per in f.grid.items():
        print(f"cpu {c * 1e6:5.1f} us/seq: " + ", ".join(f"{s} {v:.3f}" for s, v in per.items()))
    print(f"\nfitted on all {f.rows} synchronous V1 rows: {f.fitted_s * 1e6:.0f} us per sequence")
    shipped = versions.V1_CPU_PER_SEQ_S * 1e6
    print(f"(shipped: sim.engine.versions.V1_CPU_PER_SEQ_S = {shipped:g} us)")
    print(f"{'held-out source':<28} {'fit (us)':>8} {'held-out':>9} {'Vidur 1.84 ms':>14}")
    for s, (c, loss) in f.held_out.items():
        print(f"{s:<28} {c * 1e6:8.0f} {loss:9.3f} {f.vidur[s]:14.3f}")
    print("\nasync-scheduling rows (not fitted; a step is GPU time):")
    for s in sorted(f.async_after):
        print(f"{s:<28} loss {f.async_after[s]:.3f} (1.84 ms overhead: {f.async_before[s]:.3f})")
    gaps = client_gaps()
    print(
        "\nmedian measured - simulated mean TTFT with no client time, dense rows at <= 85 % load:"
    )
    for s, gap in sorted(gaps.items()):
        print(f"{s:<28} {gap * 1e3:6.1f} ms")
    print(f"client path fitted (smallest source median): {min(gaps.values()) * 1e3:.1f} ms")
    print(f"(shipped: sim.engine.versions.CLIENT_S = {versions.CLIENT_S['v1'] * 1e3:g} ms)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

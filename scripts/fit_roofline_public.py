"""Fit the roofline's serving terms end to end on the published vLLM runs, with held-out error.

The roofline's GPU-side constants (memory and FLOP efficiencies, per-layer floor, attention,
knee, all-reduce) are measured on Vidur's operator profiles by `scripts/fit_vidur_step_time.py`.
What those profiles cannot show is how vLLM V1 as served runs around the kernels. Three terms
are fitted here, by replaying the rows of `shared/data/vllm-public-runs/runs.csv` through
`sim bench` (`sim.calibration.public_runs`):

* `serving_overhead_s` ([roofline] in sim/data/step_time.toml): the fixed time per step;
* `CPU_PER_SEQ_S["v1"]` (sim/engine/versions.py): CPU time per running sequence per step;
* `CLIENT_S["v1"]` (sim/engine/versions.py): client-side time added to TTFT and E2E.

Loss: the sum over metric families (TTFT, TPOT, E2E, throughput) of the median
|log(simulated / measured)|, on rows at <= 85 % load plus half of it on the loaded rows (bursts
carry the throughput and per-sequence signal). Held-out error: leave one model out (every row
of a model is predicted by terms fitted without that model), median |error| per family at
<= 85 % load. Run from the repository root:

    python scripts/fit_roofline_public.py [--write]

`--write` stores `serving_overhead_s` in sim/data/step_time.toml's [roofline]; the two
version terms are printed for sim/engine/versions.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import polars as pl
from scipy.optimize import minimize

from sim.calibration.public_runs import family_medians, replay_all
from sim.engine import versions
from sim.engine.roofline import load_roofline_factors, roofline_factors_override

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS = REPO_ROOT / "../shared/data/vllm-public-runs/runs.csv"
FAMILIES = ("ttft", "tpot", "e2e", "throughput")
MAX_LOAD = 0.85
START = (1.839e-3, 1e-6, 0.010)  # serving overhead s, CPU s per sequence, client s
"""Start of the search: the Vidur-era overhead, ~0 per-sequence CPU, 10 ms of client time."""


@contextmanager
def terms(x: Sequence[float] | np.ndarray) -> Iterator[None]:
    """Replays inside the block use serving overhead x[0], CPU per seq x[1], client time x[2]."""
    f = dataclasses.replace(load_roofline_factors(), serving_overhead_s=float(x[0]))
    cpu, client = dict(versions.CPU_PER_SEQ_S), dict(versions.CLIENT_S)
    versions.CPU_PER_SEQ_S["v1"], versions.CLIENT_S["v1"] = float(x[1]), float(x[2])
    try:
        with roofline_factors_override(f):
            yield
    finally:
        versions.CPU_PER_SEQ_S.update(cpu)
        versions.CLIENT_S.update(client)


def model_of(runs: pl.DataFrame) -> dict[str, str]:
    """row id -> checkpoint name (the leave-one-out group)."""
    return {r: m.split()[0] for r, m in zip(runs["row_id"], runs["model"], strict=True)}


def replay(x: Sequence[float] | np.ndarray, rows: set[str]) -> pl.DataFrame:
    with terms(x):
        out = replay_all(RUNS, rows=rows)
    return out.filter(pl.col("metric") != "")


def loss(df: pl.DataFrame) -> float:
    lg = df.with_columns((pl.col("simulated") / pl.col("measured")).log().abs().alias("a"))
    total = 0.0
    for fam in FAMILIES:
        f = lg.filter(pl.col("metric").str.starts_with(fam))
        for sel, w in ((pl.col("load") <= MAX_LOAD, 1.0), (pl.col("load") > MAX_LOAD, 0.5)):
            v = f.filter(sel)["a"].to_numpy()
            total += w * float(np.median(v)) if v.size else 0.0
    return total


def fit(rows: set[str]) -> np.ndarray:
    """Terms minimising `loss` on `rows` (Nelder-Mead on log terms)."""

    def obj(z: np.ndarray) -> float:
        return loss(replay(np.exp(z), rows))

    res = minimize(
        obj,
        np.log(START),
        method="Nelder-Mead",
        options={"maxfev": 45, "xatol": 0.05, "fatol": 1e-3},
    )
    return np.asarray(np.exp(res.x))


def leave_one_model_out(usable: set[str], verbose: bool = False) -> pl.DataFrame:
    """Every usable row replayed with terms fitted on the rows of the other models."""
    runs = pl.read_csv(RUNS, infer_schema_length=0).fill_null("")
    groups = model_of(runs)
    by_model: dict[str, set[str]] = {}
    for r in sorted(usable):
        by_model.setdefault(groups[r], set()).add(r)
    held = []
    for m, rows in sorted(by_model.items()):
        x = fit(usable - rows)
        held.append(replay(x, rows))
        if verbose:
            print(
                f"  held out {m:45} overhead {x[0] * 1e3:.3f} ms, cpu {x[1] * 1e6:.1f} us/seq,"
                f" client {x[2] * 1e3:.1f} ms"
            )
    return pl.concat(held)


def held_out_medians() -> dict[str, float]:
    """Median |error| per family at <= 85 % load, leave one model out (several minutes)."""
    usable = set(replay_all(RUNS).filter(pl.col("metric") != "")["row"].unique().to_list())
    return family_medians(leave_one_model_out(usable))


def show(label: str, med: dict[str, float]) -> str:
    return f"{label:34} " + "  ".join(f"{k} {med[k]:6.1%}" for k in FAMILIES)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="store serving_overhead_s")
    args = ap.parse_args(argv)
    before = replay_all(RUNS).filter(pl.col("metric") != "")
    usable = set(before["row"].unique().to_list())
    print(show("shipped terms (in-sample)", family_medians(before)))
    heldout = leave_one_model_out(usable, verbose=True)
    print(show("leave-one-model-out", family_medians(heldout)))
    x = fit(usable)
    after = replay(x, usable)
    print(show("after, fitted on all (in-sample)", family_medians(after)))
    print(
        f"fitted on all {len(usable)} rows: serving_overhead_s = {x[0]:.6g},"
        f' CPU_PER_SEQ_S["v1"] = {x[1]:.6g}, CLIENT_S["v1"] = {x[2]:.6g}'
    )
    low = heldout.filter(pl.col("load") <= MAX_LOAD)
    print(f"held-out rows at <= {MAX_LOAD:.0%} load: {low['row'].n_unique()}")
    if args.write:
        path = REPO_ROOT / "sim/data/step_time.toml"
        text = path.read_text()
        new, n = re.subn(
            r"^serving_overhead_s = .*$", f"serving_overhead_s = {x[0]:.6g}", text, flags=re.M
        )
        if n != 1 or not math.isfinite(x[0]):
            raise SystemExit("no single serving_overhead_s line in [roofline]")
        path.write_text(new)
        print(f"wrote serving_overhead_s to {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""Rate-trace readers: ServeGen per-client 10-minute files (aggregated) and a generic rate CSV.

**ServeGen** (github.com/alibaba/ServeGen, `data/<category>/<model>/chunk-<client>-trace.csv`):
one headerless CSV per client, one row per window, `t_seconds, rate, cv, pattern, arg1, arg2`:
`rate` is the client's mean req/s in the window, `cv` the coefficient of variation of its
inter-arrival times there, `pattern` the distribution ServeGen fitted to them (`Gamma` with
`arg1` = shape, `arg2` = scale, so that `cv = 1/√shape`; `Weibull` with `arg1` = shape,
`arg2` = scale), empty with rate 0 for an idle client. A folder of such files (or one file) is
read as one model's traffic: every client must cover the same contiguous windows; the
aggregate rate of a window is the sum over clients, `active_clients` counts clients with rate
> 0 and `rate_weighted_cv` is Σ rate·cv / Σ rate. `t_seconds` is rebased to the first window
(ServeGen's t = 0 is midnight of day 0; timezone not published).

**Generic rate CSV**: `start_s, rate_per_s` (optionally `active_clients`, `rate_weighted_cv`),
rows of equally spaced windows (the spacing is the window length), rates finite and ≥ 0.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np
import polars as pl
from scipy.special import gamma as gamma_fn

from sim.errors import TraceError
from sim.traces._io import check_path, fail_first, float_column, read_bytes, read_csv_strings
from sim.traces.model import RateTrace

SERVEGEN_COLUMNS = ("t_seconds", "rate", "cv", "pattern", "arg1", "arg2")
SERVEGEN_PATTERNS = ("Gamma", "Weibull", "Exponential")
SERVEGEN_FILE = re.compile(r"chunk-(\d+)-trace\.csv$")
RATE_COLUMNS = ("start_s", "rate_per_s")
RATE_OPTIONAL = ("active_clients", "rate_weighted_cv")
MAX_RATE_PER_S = 1e9  # beyond, a corrupt cell (the profile of such rates overflows)


def servegen_files(path: str | Path) -> list[Path]:
    """The client files a ServeGen path names: the file itself, or every `chunk-<n>-trace.csv`
    in the folder, by client number."""
    p = Path(path)
    check_path(p, folder_ok=True)
    if p.is_dir():
        files = [f for f in p.iterdir() if SERVEGEN_FILE.search(f.name) and f.is_file()]
        if not files:
            raise TraceError(str(p), None, None, str(p), "no chunk-<client>-trace.csv files here")
        return sorted(files, key=lambda f: int(SERVEGEN_FILE.search(f.name).group(1)))  # type: ignore[union-attr]
    return [p]


def servegen_trace(path: str | Path) -> RateTrace:
    """A ServeGen model's traffic (a folder of client files, or one file) as a rate trace."""
    files = servegen_files(path)
    frames: list[pl.DataFrame] = []
    grid: np.ndarray | None = None
    for number, file in enumerate(files):
        match = SERVEGEN_FILE.search(file.name)
        client = int(match.group(1)) if match else number
        frame = _servegen_client(file)
        t = frame["t_seconds"].to_numpy()
        if grid is None:
            grid = t
        elif not np.array_equal(t, grid):
            row = _first_difference(t, grid)
            raise TraceError(
                str(file),
                row + 1 if row < t.size else None,
                "t_seconds",
                int(t[row]) if row < t.size else t.size,
                f"windows differ from {files[0].name}'s (every client must cover the same "
                f"windows; {files[0].name} has {grid.size} from {int(grid[0])} s)",
            )
        frames.append(frame.with_columns(pl.lit(client, dtype=pl.Int64).alias("client")))
    assert grid is not None
    window_s = float(grid[1] - grid[0]) if grid.size > 1 else 600.0
    clients = pl.concat(frames).select(
        "client",
        (pl.col("t_seconds") - int(grid[0])).cast(pl.Float64).alias("start_s"),
        pl.col("rate").alias("rate_per_s"),
        "cv",
        "pattern",
        pl.col("arg1").alias("shape"),
        pl.col("arg2").alias("scale"),
    )
    aggregate = (
        clients.group_by("start_s", maintain_order=True)
        .agg(
            pl.col("rate_per_s").sum(),
            (pl.col("rate_per_s") > 0).sum().cast(pl.Int64).alias("active_clients"),
            (pl.col("rate_per_s") * pl.col("cv")).sum().alias("_rcv"),
        )
        .sort("start_s")
        .select(
            "start_s",
            "rate_per_s",
            "active_clients",
            pl.when(pl.col("rate_per_s") > 0)
            .then(pl.col("_rcv") / pl.col("rate_per_s"))
            .otherwise(None)
            .alias("rate_weighted_cv"),
        )
    )
    if not np.any(aggregate["rate_per_s"].to_numpy() > 0.0):
        raise TraceError(str(path), None, "rate", 0, "every client is idle in every window")
    notes = (
        f"{len(files)} client files aggregated; {aggregate.height} windows of {window_s:g} s "
        f"({aggregate.height * window_s / 86_400:g} days)",
    )
    return RateTrace(str(path), "servegen", window_s, aggregate, clients, notes=notes)


def _servegen_client(file: Path) -> pl.DataFrame:
    """One client file, validated (row = line number; the files have no header)."""
    name = str(file)
    data = read_bytes(file)
    header = ",".join(SERVEGEN_COLUMNS).encode() + b"\n"
    raw = read_csv_strings(file, SERVEGEN_COLUMNS, data=header + data, nullable=("pattern",))
    # Empty pattern cells are read as missing: only legal for idle windows (checked below).
    t = raw["t_seconds"].str.strip_chars().cast(pl.Int64, strict=False)
    fail_first(name, raw["t_seconds"], t.is_null(), "not an integer")
    fail_first(name, raw["t_seconds"], t < 0, "must be >= 0")
    step = int(t[1] - t[0]) if t.len() > 1 else 600
    if step <= 0:
        raise TraceError(name, 2, "t_seconds", raw["t_seconds"][1], "windows must be increasing")
    expected = pl.Series(int(t[0]) + step * np.arange(t.len()), dtype=pl.Int64)
    fail_first(
        name,
        raw["t_seconds"],
        t != expected,
        f"windows must be contiguous: expected t_seconds = {int(t[0])} + k × {step}",
    )
    rate = float_column(name, raw["rate"])
    cv = float_column(name, raw["cv"])
    arg1 = float_column(name, raw["arg1"])
    arg2 = float_column(name, raw["arg2"])
    fail_first(name, raw["rate"], rate < 0.0, "must be >= 0 (req/s)")
    fail_first(name, raw["rate"], rate > MAX_RATE_PER_S, f"must be <= {MAX_RATE_PER_S:g} (req/s)")
    fail_first(name, raw["cv"], cv < 0.0, "must be >= 0")
    pattern = raw["pattern"].fill_null("")
    fail_first(
        name,
        raw["pattern"],
        ~pattern.is_in(("", *SERVEGEN_PATTERNS)),
        f"must be one of {', '.join(SERVEGEN_PATTERNS)} (or empty for an idle window)",
    )
    active = rate > 0.0
    fail_first(name, raw["pattern"], active & (pattern == ""), "missing for a window with rate > 0")
    fail_first(name, raw["pattern"], ~active & (pattern != ""), "given for a window with rate 0")
    for col, values in (("arg1", arg1), ("arg2", arg2)):
        needs = active & (pattern != "Exponential")
        fail_first(name, raw[col], needs & (values <= 0.0), "must be > 0 for a fitted window")
        fail_first(name, raw[col], values < 0.0, "must be >= 0")
    return pl.DataFrame(
        {
            "t_seconds": t,
            "rate": rate,
            "cv": cv,
            "pattern": pattern,
            "arg1": arg1,
            "arg2": arg2,
        }
    )


def rate_csv_trace(path: str | Path) -> RateTrace:
    """The generic rate CSV (`start_s, rate_per_s`, equally spaced windows)."""
    file = str(path)
    raw = read_csv_strings(path, RATE_COLUMNS, RATE_OPTIONAL)
    start = float_column(file, raw["start_s"])
    rate = float_column(file, raw["rate_per_s"])
    fail_first(file, raw["rate_per_s"], rate < 0.0, "must be >= 0 (req/s)")
    fail_first(
        file, raw["rate_per_s"], rate > MAX_RATE_PER_S, f"must be <= {MAX_RATE_PER_S:g} (req/s)"
    )
    if raw.height < 2:
        raise TraceError(file, None, "start_s", raw.height, "need at least 2 windows (the spacing)")
    window = float(start[1] - start[0])
    if not window > 0.0:
        raise TraceError(file, 2, "start_s", raw["start_s"][1], "windows must be increasing")
    expected = float(start[0]) + window * np.arange(raw.height)
    off = (start - pl.Series(expected)).abs() > 1e-6 * max(1.0, window)
    fail_first(file, raw["start_s"], off, f"windows must be equally spaced ({window:g} s apart)")
    if not np.any(rate.to_numpy() > 0.0):
        raise TraceError(file, None, "rate_per_s", 0, "every window has rate 0")
    frame = pl.DataFrame({"start_s": start - start[0], "rate_per_s": rate})
    if "active_clients" in raw.columns:
        clients = raw["active_clients"].str.strip_chars().cast(pl.Int64, strict=False)
        fail_first(
            file, raw["active_clients"], clients.is_null() | (clients < 0), "not an integer >= 0"
        )
        frame = frame.with_columns(clients.alias("active_clients"))
    if "rate_weighted_cv" in raw.columns:
        cvs = raw["rate_weighted_cv"].str.strip_chars().cast(pl.Float64, strict=False)
        empty = raw["rate_weighted_cv"].is_null()
        fail_first(
            file, raw["rate_weighted_cv"], ~empty & (cvs.is_null() | (cvs < 0)), "not a number >= 0"
        )
        frame = frame.with_columns(cvs.alias("rate_weighted_cv"))
    return RateTrace(file, "rates", window, frame)


def write_rate_csv(trace: RateTrace, path: str | Path) -> None:
    """Write a rate trace in the generic rate CSV schema (6 decimals for rates)."""
    columns = [c for c in ("start_s", "rate_per_s", *RATE_OPTIONAL) if c in trace.frame.columns]
    trace.frame.select(columns).with_columns(pl.col(pl.Float64).round(6)).write_csv(path)


def superposed_interarrival_cv(
    trace: RateTrace, rng: np.random.Generator, windows: int = 24, keep: float = 1.0
) -> float | None:
    """Inter-arrival CV of all clients' arrivals together, from ServeGen's per-client fits.

    In `windows` evenly spaced windows with traffic, each active client's arrivals are a renewal
    process with the fitted shape (Gamma or Weibull; Exponential has CV 1) and the window's rate
    (scale set so that the mean gap is 1 / rate), started one window earlier so it is near
    stationarity; all clients' arrivals are merged, each kept with probability `keep` (thinning:
    the same traffic at a smaller volume); the CV of each window's gaps is averaged over the
    windows (pooling gaps of windows with different rates would add their spread of rates).
    Simulated (seeded by `rng`), not observed: ServeGen publishes fits, not arrival times.
    None without client data.
    """
    if trace.clients is None:
        return None
    busy = trace.frame.filter(pl.col("rate_per_s") > 0)["start_s"].to_numpy()
    if busy.size == 0:
        return None
    picks = busy[np.unique(np.linspace(0, busy.size - 1, min(windows, busy.size)).astype(int))]
    w = trace.window_s
    cvs: list[float] = []
    for start in picks.tolist():
        rows = trace.clients.filter((pl.col("start_s") == start) & (pl.col("rate_per_s") > 0))
        times: list[np.ndarray] = []
        for rate, pattern, shape in rows.select("rate_per_s", "pattern", "shape").iter_rows():
            lam = rate
            n = int(2 * w * lam + 10 * math.sqrt(2 * w * lam + 1) + 20)
            t = np.cumsum(_renewal_gaps(rng, pattern, shape, lam, n)) - w  # burn-in: one window
            while t[-1] < w:  # rare: a heavy tail ran short; draw more
                t = np.concatenate(
                    (t, t[-1] + np.cumsum(_renewal_gaps(rng, pattern, shape, lam, n)))
                )
            times.append(t[(t >= 0.0) & (t < w)])
        merged = np.sort(np.concatenate(times)) if times else np.empty(0)
        if keep < 1.0:
            merged = merged[rng.random(merged.size) < keep]
        if merged.size > 2:
            g = np.diff(merged)
            cvs.append(float(g.std() / g.mean()))
    return float(np.mean(cvs)) if cvs else None


def _renewal_gaps(
    rng: np.random.Generator, pattern: str, shape: float, rate: float, n: int
) -> np.ndarray:
    """`n` inter-arrival gaps with mean 1 / rate and the fitted distribution's shape."""
    if pattern == "Gamma":
        gaps = rng.gamma(shape, 1.0 / (shape * rate), n)
    elif pattern == "Weibull":
        gaps = rng.weibull(shape, n) / (float(gamma_fn(1.0 + 1.0 / shape)) * rate)
    else:
        gaps = rng.exponential(1.0 / rate, n)
    return np.asarray(gaps, dtype=np.float64)


def _first_difference(a: np.ndarray, b: np.ndarray) -> int:
    n = min(a.size, b.size)
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if diff.size else n

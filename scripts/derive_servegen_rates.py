"""Derive traces/servegen_m_large_rates.csv: ServeGen m-large's 162 clients, summed per window.

Source: ServeGen (alibaba/ServeGen @ f891d1189eb32b3868dfc443800c4150548c282a, Apache-2.0),
`data/language/m-large/chunk-<client>-trace.csv`, read unmodified from
/work/shared/data/servegen-alibaba/trace/language/m-large/ by `sim.traces.read_trace` (format
"servegen": every client's windows validated, then per 600-s window the sum of the client
rates, the number of active clients and the rate-weighted mean of the client CVs). Written in
the generic rate CSV schema (`start_s, rate_per_s, active_clients, rate_weighted_cv`, rates to 6
decimals), 2,016 rows = 14 days, so the shipped file is 1/200 of the per-client data's size.

Run from the repository root: `python scripts/derive_servegen_rates.py [SOURCE_DIR] [OUT_CSV]`.
It prints the statistics quoted in traces/SOURCE.md and checks the file reads back.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from sim.traces import RateTrace, read_trace, superposed_interarrival_cv, write_rate_csv

SOURCE_DIR = Path("/work/shared/data/servegen-alibaba/trace/language/m-large")
OUT_CSV = Path("traces/servegen_m_large_rates.csv")


def main(source_dir: Path = SOURCE_DIR, out_csv: Path = OUT_CSV) -> None:
    trace = read_trace(source_dir, "servegen")
    assert isinstance(trace, RateTrace)
    write_rate_csv(trace, out_csv)
    back = read_trace(out_csv)
    assert isinstance(back, RateTrace)
    rates = back.frame["rate_per_s"].to_numpy()
    exact = trace.frame["rate_per_s"].to_numpy()
    print(f"{trace.notes[0]}; wrote {out_csv} ({out_csv.stat().st_size:,} bytes)")
    print(f"max |rounded - exact| rate: {np.abs(rates - exact).max():.2e} req/s")
    print(
        f"rate req/s min/median/mean/max: {rates.min():.1f} / {np.median(rates):.1f} / "
        f"{rates.mean():.1f} / {rates.max():.1f}; "
        f"requests in 14 days: {back.expected_requests():,.0f}"
    )
    clients = trace.frame["active_clients"].to_numpy()
    print(
        "active clients per window min/median/max: "
        f"{clients.min()} / {np.median(clients):.0f} / {clients.max()}"
    )
    for keep in (1.0, 0.1, 0.01):
        cv = superposed_interarrival_cv(trace, np.random.default_rng(0), keep=keep)
        print(f"superposed per-client renewal CV, thinned to {keep:g} (24 windows): {cv:.3f}")


if __name__ == "__main__":
    main(*(Path(a) for a in sys.argv[1:3]))

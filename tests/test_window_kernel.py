"""A window's measurements in one compiled pass (`sim.stats._window`, read by
`sampled.window_result`) against the numpy definitions of `kpi.request_kpis` and `kpi.api_use`,
bit for bit: rejected and unfinished requests, one-token outputs, TTFT and TPOT exactly at
their SLOs, API spills, drops and throttles."""

from __future__ import annotations

import numpy as np

from sim.config import SloSpec
from sim.horizon import Window
from sim.records import Outcomes
from sim.stats.kpi import api_use, request_kpis
from sim.stats.sampled import window_result


def random_outcomes(g: np.random.Generator, n: int, slo: SloSpec) -> Outcomes:
    arrival = np.sort(g.uniform(0, 600, n))
    out = g.choice([1, 2, 5, 200], n).astype(np.int64)
    ttft = g.choice([slo.ttft_s, g.uniform(0, 3)], n)  # some exactly at the SLO
    first = arrival + ttft
    tpot = g.choice([slo.tpot_s, 0.01, 0.3], n)
    finish = first + tpot * (out - 1)
    finish[g.random(n) < 0.1] = np.nan  # in flight
    first[np.isnan(finish) & (g.random(n) < 0.5)] = np.nan
    api = g.random(n) < 0.2
    return Outcomes(
        arrival_s=arrival,
        first_token_s=first,
        finish_s=finish,
        input_tokens=g.integers(1, 4000, n),
        output_tokens=out,
        rejected=g.random(n) < 0.05,
        preemptions=g.integers(0, 3, n),
        evictions=g.integers(0, 2, n),
        api=api,
        dropped=api & (g.random(n) < 0.3),
        throttled=api & (g.random(n) < 0.3),
    )


def test_window_measures_equal_request_kpis_and_api_use() -> None:
    g = np.random.default_rng(7)
    window = Window(month=1, start_s=0.0, length_s=600.0, hour_of_week=0, stratum=0, weight=1.0)
    for case in range(300):
        slo = SloSpec(ttft_s=float(g.uniform(0.1, 2)), tpot_s=float(g.uniform(0.01, 0.2)))
        o = random_outcomes(g, int(g.integers(0, 300)), slo)
        got = window_result(window, o, slo, busy_s=1.0, replicas=1)
        r = request_kpis(o, slo)
        every = np.ones(o.arrival_s.size, dtype=bool)
        assert got.ttft_s.tobytes() == r.ttft_s[r.served].tobytes(), case
        assert got.tpot_s.tobytes() == r.tpot_s[r.served & r.multi].tobytes(), case
        assert got.e2e_s.tobytes() == r.e2e_s[r.served].tobytes(), case
        assert got.met == int(r.met.sum()), case
        assert got.requests == o.arrival_s.size
        assert got.rejected == int(o.rejected.sum())
        assert got.input_tokens == int(o.input_tokens[r.served].sum())
        assert got.output_tokens == int(o.output_tokens[r.served].sum())
        assert got.preemptions == int(o.preemptions.sum())
        assert got.requeued == int(o.evictions.sum())
        assert got.api == api_use(o, every), case

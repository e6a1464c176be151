"""The per-request KPIs in one compiled pass (`sim.stats._window`, read through
`kpi.request_set_kpis` by `sampled.window_result` and `kpi.full_month_rows`) against their
definitions written in numpy (`numpy_kpis`, `numpy_api_use`: the code they replaced), bit for
bit: rejected and unfinished requests, one-token outputs, TTFT and TPOT exactly at their SLOs,
API spills, drops and throttles, all requests or a selection of them."""

from __future__ import annotations

import numpy as np

from sim.config import SloSpec
from sim.cost import ApiUse
from sim.horizon import Window
from sim.records import Outcomes
from sim.stats.kpi import request_set_kpis
from sim.stats.sampled import window_result


def numpy_kpis(o: Outcomes, slo: SloSpec) -> dict[str, np.ndarray]:
    """TTFT, TPOT, E2E, served and SLO-met of every request (the kpi module's definitions)."""
    arrival = o.arrival_s
    ttft = o.first_token_s - arrival
    e2e = o.finish_s - arrival
    multi = o.output_tokens > 1
    tpot = np.full(arrival.shape, np.nan)
    tpot[multi] = (o.finish_s[multi] - o.first_token_s[multi]) / (o.output_tokens[multi] - 1)
    served = ~o.rejected & ~np.isnan(o.finish_s)
    met = served & (ttft <= slo.ttft_s) & (~multi | (tpot <= slo.tpot_s))
    return {"ttft": ttft, "tpot": tpot, "e2e": e2e, "multi": multi, "served": served, "met": met}


def numpy_api_use(o: Outcomes, sel: np.ndarray) -> ApiUse:
    on_api = sel & o.api
    dropped = on_api & o.dropped
    served = on_api & ~dropped
    return ApiUse(
        requests=int(on_api.sum()),
        dropped=int(dropped.sum()),
        throttled=int((on_api & o.throttled).sum()),
        input_tokens=int(o.input_tokens[served].sum()),
        output_tokens=int(o.output_tokens[served].sum()),
    )


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


def test_request_set_kpis_equal_the_numpy_definitions() -> None:
    g = np.random.default_rng(7)
    window = Window(month=1, start_s=0.0, length_s=600.0, hour_of_week=0, stratum=0, weight=1.0)
    for case in range(300):
        slo = SloSpec(ttft_s=float(g.uniform(0.1, 2)), tpot_s=float(g.uniform(0.01, 0.2)))
        o = random_outcomes(g, int(g.integers(0, 300)), slo)
        r = numpy_kpis(o, slo)
        every = np.ones(o.arrival_s.size, dtype=bool)
        some = g.random(o.arrival_s.size) < 0.6
        whole = window_result(window, o, slo, busy_s=1.0, replicas=1)
        for got, sel in ((whole, every), (request_set_kpis(o, slo, some), some)):
            served = sel & r["served"]
            assert got.ttft_s.tobytes() == r["ttft"][served].tobytes(), case
            assert got.tpot_s.tobytes() == r["tpot"][served & r["multi"]].tobytes(), case
            assert got.e2e_s.tobytes() == r["e2e"][served].tobytes(), case
            assert got.met == int((sel & r["met"]).sum()), case
            assert got.requests == int(sel.sum())
            assert got.rejected == int((sel & o.rejected).sum())
            assert got.input_tokens == int(o.input_tokens[served].sum())
            assert got.output_tokens == int(o.output_tokens[served].sum())
            assert got.preemptions == int(o.preemptions[sel].sum())
            assert got.requeued == int(o.evictions[sel].sum())
            assert got.api == numpy_api_use(o, sel), case

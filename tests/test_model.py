"""The SimPy model's one dispatch path: input checks, phases, rejection, draining.

Every engine ("fast" = "compiled" here, "lazy", "reference") runs these; engine equality on
random workloads is in tests/test_engine.py, tests/test_compiled.py and
tests/test_hybrid_model.py; queueing theory in tests/test_queueing.py.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from sim.engine import EngineLimits, RequestLog, StepTimeModel
from sim.model import ENGINES, FleetPhase, ReplicaSpec, simulate

LIMITS = EngineLimits(max_num_seqs=8, max_num_batched_tokens=128, kv_blocks=100, max_model_len=400)
STEP = StepTimeModel(0.01, 0.02, 32, 1e-4, 1e-6, 1e-8)
SPEC = ReplicaSpec("p", "g", LIMITS, STEP)


def _log(n: int = 40, gap_s: float = 0.5) -> RequestLog:
    return RequestLog([i * gap_s for i in range(n)], [50] * n, [20] * n)


@pytest.mark.parametrize(
    ("phases", "message"),
    [
        ([], "first fleet phase"),
        ([FleetPhase(1.0, (0,))], "first fleet phase"),
        ([FleetPhase(0.0, ())], "has no replica"),
    ],
)
def test_bad_phases_are_refused(phases: list[FleetPhase], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        simulate(_log(), [SPEC], phases)


def test_unsorted_arrivals_and_unknown_engines_are_refused() -> None:
    with pytest.raises(ValueError, match="sorted"):
        simulate(RequestLog([1.0, 0.5], [1, 1], [1, 1]), [SPEC], [FleetPhase(0.0, (0,))])
    with pytest.raises(ValueError, match="unknown engine"):
        simulate(_log(), [SPEC], [FleetPhase(0.0, (0,))], "vidur")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="unknown routing"):
        simulate(_log(), [SPEC], [FleetPhase(0.0, (0,))], routing="random")  # type: ignore[arg-type]


@pytest.mark.parametrize("engine", ENGINES)
def test_too_long_requests_are_rejected_the_rest_served(engine: str) -> None:
    log = RequestLog([0.0, 1.0, 2.0], [50, 390, 50], [20, 20, 20])  # 410 > max_model_len
    res = simulate(log, [SPEC], [FleetPhase(0.0, (0,))], engine)  # type: ignore[arg-type]
    assert log.rejected == [False, True, False]
    assert math.isnan(log.finish_s[1]) and not math.isnan(log.finish_s[2])
    assert res.routed == 2


@pytest.mark.parametrize("engine", ENGINES)
def test_a_later_phase_routes_only_to_its_replicas_and_the_dropped_one_drains(engine: str) -> None:
    log = _log(60, 0.2)
    phases = [FleetPhase(0.0, (0, 1)), FleetPhase(6.0, (1,))]
    res = simulate(log, [SPEC, SPEC], phases, engine)  # type: ignore[arg-type]
    arrival, replica = np.asarray(log.arrival_s), np.asarray(log.replica)
    assert set(replica[arrival >= 6.0].tolist()) == {1}
    assert {0, 1} <= set(replica[arrival < 6.0].tolist())
    assert not np.isnan(np.asarray(log.finish_s)).any()  # replica 0 finished what it held
    assert res.busy_periods[0] and res.busy_periods[0][-1][1] > 6.0 - 1e-9

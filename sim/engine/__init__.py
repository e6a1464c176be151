"""The GPU replica model: step time, scheduler limits, and two exact engines.

`FastReplica` (event skipping, used in production) and `ReferenceReplica` (one step at a time,
kept for tests and benchmarks) implement the same vLLM V1 continuous-batching semantics and
produce identical per-request timestamps. Neither imports SimPy: `sim.model` wires them.
"""

from sim.engine.fast import FastReplica
from sim.engine.log import RequestLog
from sim.engine.reference import ReferenceReplica
from sim.engine.steptime import EngineLimits, StepTimeModel, prefill_pairs

__all__ = [
    "EngineLimits",
    "FastReplica",
    "ReferenceReplica",
    "RequestLog",
    "StepTimeModel",
    "prefill_pairs",
]

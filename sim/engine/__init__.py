"""The GPU replica model: step time, scheduler limits, KV capacity, and two exact engines.

`FastReplica` (event skipping, pure Python), the compiled data plane `sim.engine.compiled`
(the same event skipping and the router over arrays, numba; imported lazily, only by the runs
that use it) and `ReferenceReplica` (one step at a time, kept for tests and benchmarks)
implement the same vLLM V1 continuous-batching semantics and produce identical per-request
timestamps. None imports SimPy: `sim.model` wires them.

- `steptime`: `StepTimeModel`, the one type of the six step-time coefficients; `EngineLimits`.
- `catalog`: the fitted entries (`sim/data/step_time.toml`) and `resolve_step_time`.
- `roofline`: step times from a GPU's specs, for pairs without a fitted entry.
- `kv`: weight bytes and KV-cache capacity (vLLM's memory accounting; `kv_cache` is the one
  KV-capacity function).
- `resolve`: `resolve_engine`, the `[engine]` settings on each GPU type.
"""

from sim.engine.catalog import (
    CatalogKey,
    ResolvedStepTime,
    StepTimeEntry,
    load_step_time_catalog,
    parse_step_time_catalog,
    resolve_step_time,
)
from sim.engine.fast import FastReplica
from sim.engine.kv import (
    KvCache,
    activation_reserve_bytes,
    kv_cache,
    kv_capacity_tokens,
    kv_shortfall,
    weight_bytes_per_gpu,
)
from sim.engine.log import RequestLog, busy_seconds_inside
from sim.engine.reference import ReferenceReplica
from sim.engine.resolve import GpuEngine, ModelDoesNotFit, ResolvedEngine, resolve_engine
from sim.engine.roofline import (
    RooflineFactors,
    load_roofline_factors,
    parse_roofline_factors,
    roofline_step_time,
)
from sim.engine.steptime import COEFFICIENTS, EngineLimits, StepTimeModel, prefill_pairs

__all__ = [
    "COEFFICIENTS",
    "CatalogKey",
    "EngineLimits",
    "FastReplica",
    "GpuEngine",
    "KvCache",
    "ModelDoesNotFit",
    "ReferenceReplica",
    "RequestLog",
    "ResolvedEngine",
    "ResolvedStepTime",
    "RooflineFactors",
    "StepTimeEntry",
    "StepTimeModel",
    "activation_reserve_bytes",
    "busy_seconds_inside",
    "kv_cache",
    "kv_capacity_tokens",
    "kv_shortfall",
    "load_roofline_factors",
    "load_step_time_catalog",
    "parse_roofline_factors",
    "parse_step_time_catalog",
    "prefill_pairs",
    "resolve_engine",
    "resolve_step_time",
    "roofline_step_time",
    "weight_bytes_per_gpu",
]

"""vLLM versions: which scheduler a version runs, and the CPU time per sequence per step of its
family (DESIGN §13).

* V1 (vLLM >= 0.8; V1 became the default engine in 0.8.0 and V0 was removed in 0.11): chunked
  prefill always, running requests first (`EngineLimits.scheduler = "v1"`), defaults by GPU
  class (`sim.calibration.bench.vllm_default_limits`).
* V0 (0.5-0.7): prefill-first, chunked prefill off unless enabled (with it on, V0 schedules
  decodes before prefill chunks as V1 does, so it runs the V1 scheduler here), and
  `num_scheduler_steps` multi-step decoding (0.6+). V0's OpenAI-server defaults: max_num_seqs
  256; max_num_batched_tokens max(max_model_len, 2048) without chunked prefill
  (vllm/config.py `SchedulerConfig.__post_init__`, `_DEFAULT_MAX_NUM_BATCHED_TOKENS = 2048`).

CPU time of a step, by *CPU family* (`cpu_family`), applied only when a run names a version:

* "v0": the catalog's `overhead_s` (1.84 ms per step, measured on the V0-era Sarathi stack that
  Vidur profiled) and no per-sequence term; with `num_scheduler_steps` > 1 a decode group pays
  it once, at its first step (`sim.engine.reference`: multi-step scheduling amortises it).
* "v1" (0.8-0.13, synchronous engine core): V1 keeps a persistent batch and prepares only what
  changed, so no fixed per-step overhead (`STEP_OVERHEAD_S`); what remains grows with the
  sequences in the step (sampling, output processing, serialising outputs to the API server):
  `CPU_PER_SEQ_S["v1"]`, fitted on the published runs of vLLM 0.10-0.11 without async
  scheduling (`scripts/fit_v1_cpu.py`; docs/validation.md gives the held-out error).
* "v1-async" (0.14 and later, or `--async-scheduling` on 0.10-0.13): the engine core schedules
  step N+1 and processes step N-1's outputs while the GPU runs step N (vLLM v0.14.0 release
  notes: "Async scheduling is now enabled by default", vllm-project/vllm#27614; #23569 "Fully
  overlap model execution"), so the step is GPU time only: no CPU term at all. The model
  assumes the CPU work of a step fits inside its GPU time.

`CLIENT_S` is the time a client-side benchmark adds to TTFT and E2E (HTTP, tokenisation, the
first chunk's trip): `CLIENT_PATH_S`, fitted on the published runs (docs/validation.md).
"""

from __future__ import annotations

from dataclasses import replace

from sim.config.vllm import (
    ASYNC_DEFAULT_FIRST,
    V1_FIRST,
    VllmVersion,
    cpu_family,
    parse_version,
)
from sim.engine.steptime import StepTimeModel

__all__ = [
    "ASYNC_DEFAULT_FIRST",
    "CLIENT_S",
    "CPU_PER_SEQ_S",
    "STEP_OVERHEAD_S",
    "V0_DEFAULT_BATCHED_TOKENS",
    "V0_DEFAULT_MAX_NUM_SEQS",
    "V1_CPU_PER_SEQ_S",
    "V1_FIRST",
    "VllmVersion",
    "cpu_family",
    "describe",
    "parse_version",
    "with_version_cpu",
]

V0_DEFAULT_MAX_NUM_SEQS = 256  # vllm/config.py SchedulerConfig (V0), OpenAI server
V0_DEFAULT_BATCHED_TOKENS = 2048  # vllm/config.py _DEFAULT_MAX_NUM_BATCHED_TOKENS (V0)

V1_CPU_PER_SEQ_S = 50e-6
"""CPU seconds per sequence per step of the synchronous V1 engine core: fitted by
`scripts/fit_v1_cpu.py` on the published runs of vLLM 0.10-0.11 without async scheduling
(shared/data/vllm-public-runs; docs/calibration.md gives the fit and its held-out error). It was
120 us until the replay gave ShareGPT runs ShareGPT's lengths instead of their mean lengths, then
150 us while the fit left out the A100 Qwen2-7B bursts whose outputs stopped at EOS (their
realised mean, 1,000-1,024 of 1,024 tokens, replays): 16 of those 20 rows, at batch 20 to 1,000,
measured TPOT growing 0.13 ms per sequence where 150 us made it 0.26 ms; then 40 us while the
step times of the roofline (every row of the fit) carried a layer floor inflated by NCCL's
all-reduce time (16.6 rather than 11.6 us per layer: docs/catalog.md, "Which all-reduce")."""

CPU_PER_SEQ_S: dict[str, float] = {"v0": 0.0, "v1": V1_CPU_PER_SEQ_S, "v1-async": 0.0}
"""Seconds of CPU per sequence per step, by CPU family (see module docstring)."""

STEP_OVERHEAD_S: dict[str, float | None] = {"v0": None, "v1": 0.0, "v1-async": 0.0}
"""Fixed seconds per step by CPU family; None = the step-time entry's own `overhead_s`."""

CLIENT_PATH_S = 5.2e-3
"""Seconds a client-side benchmark adds to each request's TTFT and E2E (HTTP, the API server's
chat template and tokenisation, the first SSE chunk's trip): fitted by `scripts/fit_v1_cpu.py`
as the smallest per-source median of measured − simulated mean TTFT on the dense published runs
at <= 85 % load replayed without it: BLIS's inference-perf runs of vLLM 0.15.1 (5.17 ms over 14
runs; GPUStack's rows leave 52.5 ms, their deployment's front end). vLLM's own client/server
comparison on a laptop GPU under WSL2 found 8-12 ms between `vllm bench serve`'s TTFT and the
server's `vllm:time_to_first_token_seconds` (vllm-project/vllm#54628)."""

CLIENT_S: dict[str, float] = {"v0": CLIENT_PATH_S, "v1": CLIENT_PATH_S, "v1-async": CLIENT_PATH_S}
"""Seconds a client-side benchmark adds to each request's TTFT and E2E, by CPU family (one
client path for all: it is the HTTP side's, not the engine's)."""


def with_version_cpu(step: StepTimeModel, family: str) -> StepTimeModel:
    """`step` with the CPU time of CPU family `family` ("v0", "v1", "v1-async"): the family's
    per-step overhead in place of the entry's (V0 keeps the entry's) and its CPU time per
    sequence. Only for packaged step times: a user's calibrated entry keeps its own."""
    overhead = STEP_OVERHEAD_S[family]
    out = step if overhead is None else replace(step, overhead_s=overhead)
    return out.with_cpu(CPU_PER_SEQ_S[family])


def describe(version: VllmVersion, family: str) -> str:
    """One line on the CPU time a version's steps carry (for notes and manifests)."""
    overhead = STEP_OVERHEAD_S[family]
    how = {"v0": "V0 engine", "v1": "synchronous engine", "v1-async": "async scheduling"}[family]
    step = "the catalog's per-step overhead"
    if overhead is not None:
        step = f"per-step overhead {overhead * 1e3:g} ms"
    later = "; a request arriving during a step joins the step after next" * (family == "v1-async")
    return (
        f"vLLM {version.text}: {version.family.upper()} family, {how}: {step}, "
        f"CPU {CPU_PER_SEQ_S[family] * 1e6:.1f} us per sequence per step{later}"
        " (sim.engine.versions)"
    )

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
  Vidur profiled) and no per-sequence term.
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
first chunk's trip), 0: no fit on the public runs separated it from prefill time
(docs/validation.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

V1_FIRST = (0, 8)
"""First version whose default engine is V1 (vLLM 0.8.0 release notes: "V1 is now the default")."""

ASYNC_DEFAULT_FIRST = (0, 14)
"""First version with async scheduling on by default (vLLM v0.14.0 release notes, #27614).
It is off there for pipeline parallelism and some speculative decoding, which `sim` does not
model anyway."""

V0_DEFAULT_MAX_NUM_SEQS = 256  # vllm/config.py SchedulerConfig (V0), OpenAI server
V0_DEFAULT_BATCHED_TOKENS = 2048  # vllm/config.py _DEFAULT_MAX_NUM_BATCHED_TOKENS (V0)

V1_CPU_PER_SEQ_S = 120e-6
"""CPU seconds per sequence per step of the synchronous V1 engine core: fitted by
`scripts/fit_v1_cpu.py` on the published runs of vLLM 0.10-0.11 without async scheduling
(shared/data/vllm-public-runs; docs/validation.md gives the fit and its held-out error)."""

CPU_PER_SEQ_S: dict[str, float] = {"v0": 0.0, "v1": V1_CPU_PER_SEQ_S, "v1-async": 0.0}
"""Seconds of CPU per sequence per step, by CPU family (see module docstring)."""

STEP_OVERHEAD_S: dict[str, float | None] = {"v0": None, "v1": 0.0, "v1-async": 0.0}
"""Fixed seconds per step by CPU family; None = the step-time entry's own `overhead_s`."""

CLIENT_S: dict[str, float] = {"v0": 0.0, "v1": 0.0, "v1-async": 0.0}
"""Seconds a client-side benchmark adds to each request's TTFT and E2E, by CPU family."""


@dataclass(frozen=True)
class VllmVersion:
    """A vLLM version as a user writes it ("0.10.1", "0.6.3.post1", "v0.9.2")."""

    text: str
    major: int
    minor: int

    @property
    def family(self) -> str:
        """ "v1" (>= 0.8) or "v0"."""
        return "v1" if (self.major, self.minor) >= V1_FIRST else "v0"

    @property
    def async_by_default(self) -> bool:
        """Whether this version schedules asynchronously unless told not to (>= 0.14)."""
        return (self.major, self.minor) >= ASYNC_DEFAULT_FIRST


def cpu_family(version: VllmVersion, async_scheduling: bool | None = None) -> str:
    """ "v0", "v1" or "v1-async" (module docstring): the version's family, with async
    scheduling as given (`--async-scheduling` / `--no-async-scheduling`) or its default.
    V0 has no async scheduling: the flag is ignored there."""
    if version.family == "v0":
        return "v0"
    on = version.async_by_default if async_scheduling is None else async_scheduling
    return "v1-async" if on else "v1"


def parse_version(text: str) -> VllmVersion:
    """Parse a vLLM version; ValueError when it does not start with MAJOR.MINOR."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)", text)
    if m is None:
        raise ValueError(f"not a vLLM version (MAJOR.MINOR...): {text!r}")
    return VllmVersion(text.strip(), int(m.group(1)), int(m.group(2)))

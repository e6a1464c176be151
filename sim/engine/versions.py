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

`CPU_PER_SEQ_S` is the per-sequence CPU cost of one step (scheduling, sampling,
detokenisation, output streaming) by family; `CLIENT_S` is the time a client-side benchmark
adds to TTFT and E2E (HTTP, tokenisation, the first chunk's trip). Both are fitted on the
public vLLM runs (`sim.calibration.validate.fit_cpu`, docs/validation.md: rows, held-out
error), and are 0 until a run names a version or client timing.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

V1_FIRST = (0, 8)
"""First version whose default engine is V1 (vLLM 0.8.0 release notes: "V1 is now the default")."""

V0_DEFAULT_MAX_NUM_SEQS = 256  # vllm/config.py SchedulerConfig (V0), OpenAI server
V0_DEFAULT_BATCHED_TOKENS = 2048  # vllm/config.py _DEFAULT_MAX_NUM_BATCHED_TOKENS (V0)

CPU_PER_SEQ_S: dict[str, float] = {"v0": 0.0, "v1": 0.0}
"""Seconds of CPU per sequence per step, by family (fitted; see module docstring)."""

CLIENT_S: dict[str, float] = {"v0": 0.0, "v1": 0.0}
"""Seconds a client-side benchmark adds to each request's TTFT and E2E, by family (fitted)."""


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


def parse_version(text: str) -> VllmVersion:
    """Parse a vLLM version; ValueError when it does not start with MAJOR.MINOR."""
    m = re.match(r"^\s*v?(\d+)\.(\d+)", text)
    if m is None:
        raise ValueError(f"not a vLLM version (MAJOR.MINOR...): {text!r}")
    return VllmVersion(text.strip(), int(m.group(1)), int(m.group(2)))

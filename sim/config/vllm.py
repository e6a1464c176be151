"""vLLM versions as an experiment or a benchmark names them: which engine family a version
runs and whether it schedules asynchronously by default. The CPU time each family's steps
carry is in `sim.engine.versions` (this module is an input type, below the engine)."""

from __future__ import annotations

import re
from dataclasses import dataclass

V1_FIRST = (0, 8)
"""First version whose default engine is V1 (vLLM 0.8.0 release notes: "V1 is now the default")."""

ASYNC_DEFAULT_FIRST = (0, 14)
"""First version with async scheduling on by default (vLLM v0.14.0 release notes, #27614).
It is off there for pipeline parallelism and some speculative decoding, which `sim` does not
model anyway."""


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
    """ "v0", "v1" or "v1-async" (`sim.engine.versions`): the version's family, with async
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

"""Request lengths: (input_tokens, output_tokens) pairs resampled jointly from real data.

Optionally smoothed: each resampled pair is multiplied by one log-normal factor
`exp(h·Z − h²/2)` (`h = smoothing_log_sd`, `Z` standard normal, the same factor for input and
output so their ratio is kept), then rounded to the nearest integer with a floor of 1 token.
The factor has mean 1, so the means are the data's up to the rounding and the floor (an explicit
truncation: it only lifts values that would round to 0). A kernel density estimate on the log
scale, in effect: it fills the gaps between observed lengths without moving the bulk.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from sim.workload.clock import IntArray


@dataclass(frozen=True, eq=False)
class EmpiricalLengths:
    """The empirical joint distribution of (input, output) token counts of a real dataset.

    `sample` draws rows with replacement (a bootstrap), keeping each request's input and output
    together, so their correlation and both marginals (including the tails) are the data's.
    Both arrays are stored as read-only int64 copies; every count must be ≥ 1.
    `name` says where the pairs came from (e.g. a trace path), for reports.
    `smoothing_log_sd` (≥ 0, default 0 = plain bootstrap) smooths as the module docstring says.
    """

    input_tokens: IntArray = field(repr=False)
    output_tokens: IntArray = field(repr=False)
    name: str = ""
    smoothing_log_sd: float = 0.0

    def __post_init__(self) -> None:
        inp = _as_counts(self.input_tokens, "input_tokens")
        out = _as_counts(self.output_tokens, "output_tokens")
        if inp.size != out.size:
            raise ValueError(
                f"input_tokens and output_tokens differ in length: {inp.size} vs {out.size}"
            )
        if inp.size == 0:
            raise ValueError("empirical lengths need at least one (input, output) pair")
        h = self.smoothing_log_sd
        if not (math.isfinite(h) and 0.0 <= h <= 2.0):
            raise ValueError(f"smoothing_log_sd must be a finite number in [0, 2], got {h!r}")
        object.__setattr__(self, "input_tokens", inp)
        object.__setattr__(self, "output_tokens", out)

    @classmethod
    def from_arrays(
        cls,
        input_tokens: npt.ArrayLike,
        output_tokens: npt.ArrayLike,
        name: str = "",
        smoothing_log_sd: float = 0.0,
    ) -> EmpiricalLengths:
        """Lengths from two equally long integer sequences (copied, validated)."""
        return cls(np.asarray(input_tokens), np.asarray(output_tokens), name, smoothing_log_sd)

    def __reduce__(
        self,
    ) -> tuple[type[EmpiricalLengths], tuple[IntArray, IntArray, str, float]]:
        # Rebuild through the constructor so an unpickled copy is validated and read-only.
        return (
            type(self),
            (self.input_tokens, self.output_tokens, self.name, self.smoothing_log_sd),
        )

    def __repr__(self) -> str:
        smooth = f", smoothing_log_sd={self.smoothing_log_sd}" if self.smoothing_log_sd else ""
        return f"EmpiricalLengths(name={self.name!r}, pairs={self.size}{smooth})"

    @property
    def size(self) -> int:
        """Number of (input, output) pairs in the dataset."""
        return int(self.input_tokens.size)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[IntArray, IntArray]:
        """`n` jointly resampled pairs as `(input_tokens, output_tokens)` int64 arrays."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rows = rng.integers(0, self.size, size=n)
        inp, out = self.input_tokens[rows], self.output_tokens[rows]
        h = self.smoothing_log_sd
        if h == 0.0:  # plain bootstrap; draws nothing more
            return inp, out
        factor = np.exp(h * rng.standard_normal(n) - h * h / 2.0)
        return _smoothed(inp, factor), _smoothed(out, factor)

    def mean_input(self) -> float:
        """Mean input (prompt) tokens per request."""
        return float(self.input_tokens.mean())

    def mean_output(self) -> float:
        """Mean output (generated) tokens per request."""
        return float(self.output_tokens.mean())


def _smoothed(counts: IntArray, factor: npt.NDArray[np.float64]) -> IntArray:
    return np.maximum(np.rint(counts * factor), 1.0).astype(np.int64)


def _as_counts(values: npt.ArrayLike, name: str) -> IntArray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {array.shape}")
    if array.size and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{name} must hold integers, got dtype {array.dtype}")
    counts = array.astype(np.int64, copy=True)
    if counts.size and counts.min() < 1:
        bad = int(np.argmax(counts < 1))
        raise ValueError(f"{name}[{bad}] must be >= 1 token, got {int(counts[bad])}")
    counts.flags.writeable = False
    return counts

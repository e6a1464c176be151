"""Request lengths: (input_tokens, output_tokens) pairs resampled jointly from real data."""

from __future__ import annotations

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
    """

    input_tokens: IntArray = field(repr=False)
    output_tokens: IntArray = field(repr=False)
    name: str = ""

    def __post_init__(self) -> None:
        inp = _as_counts(self.input_tokens, "input_tokens")
        out = _as_counts(self.output_tokens, "output_tokens")
        if inp.size != out.size:
            raise ValueError(
                f"input_tokens and output_tokens differ in length: {inp.size} vs {out.size}"
            )
        if inp.size == 0:
            raise ValueError("empirical lengths need at least one (input, output) pair")
        object.__setattr__(self, "input_tokens", inp)
        object.__setattr__(self, "output_tokens", out)

    @classmethod
    def from_arrays(
        cls, input_tokens: npt.ArrayLike, output_tokens: npt.ArrayLike, name: str = ""
    ) -> EmpiricalLengths:
        """Lengths from two equally long integer sequences (copied, validated)."""
        return cls(np.asarray(input_tokens), np.asarray(output_tokens), name)

    def __reduce__(self) -> tuple[type[EmpiricalLengths], tuple[IntArray, IntArray, str]]:
        # Rebuild through the constructor so an unpickled copy is validated and read-only.
        return (type(self), (self.input_tokens, self.output_tokens, self.name))

    def __repr__(self) -> str:
        return f"EmpiricalLengths(name={self.name!r}, pairs={self.size})"

    @property
    def size(self) -> int:
        """Number of (input, output) pairs in the dataset."""
        return int(self.input_tokens.size)

    def sample(self, rng: np.random.Generator, n: int) -> tuple[IntArray, IntArray]:
        """`n` jointly resampled pairs as `(input_tokens, output_tokens)` int64 arrays."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        rows = rng.integers(0, self.size, size=n)
        return self.input_tokens[rows], self.output_tokens[rows]

    def mean_input(self) -> float:
        """Mean input (prompt) tokens per request."""
        return float(self.input_tokens.mean())

    def mean_output(self) -> float:
        """Mean output (generated) tokens per request."""
        return float(self.output_tokens.mean())


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

"""Named random streams: no global randomness anywhere in sim.

A stream is identified by (stream id, replication, root seed, sub-keys…) and is the generator
`numpy.random.default_rng([stream_id, replication, seed, *sub_keys])` gives (numpy's
SeedSequence entropy pooling, SPEC 7; `stream` runs a compiled copy of that pooling, 4×
faster). The plan is deliberately not part of any key: replication k of every plan sees the
same traffic and the same preemptions (common random numbers), so plan comparisons are paired.

`Streams(seed, replication)` is built once per replication (desmod's run owns its generator)
and passed down; each named stream is one method, and every sub-key convention lives here.
The tables below are append-only: changing an id or a sub-key changes every result that used it.
"""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from enum import IntEnum
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from numpy.random.bit_generator import ISeedSequence


class Stream(IntEnum):
    """Stream ids. Append new ids at the end; never renumber."""

    GROWTH = 1  # monthly growth factors
    ARRIVALS = 2  # arrival times (per month)
    BURSTS = 3  # burst modulation path (per month)
    LENGTHS = 4  # request (input, output) token lengths (per month)
    CALIBRATION = 5  # step-time calibration multiplier (per GPU name)
    SPOT = 6  # spot preemptions and prices (sub-keyed by `_SpotPart`)
    API = 7  # API latency (per simulated request set)
    HORIZON = 8  # which hours a sampled horizon simulates, and its bootstrap (per month)
    WINDOW = 9  # the traffic of one sampled window (per month and window)
    TRACE_SAMPLE = 10  # `sim trace fit/compare/inspect` samples
    CAPACITY = 11  # the probe workload of `sim.planning.capacity` (part: 0 lengths, 1 arrivals)


class _SpotPart(IntEnum):
    """Sub-keys of the SPOT stream."""

    WAVES = 0  # a trace market's bootstrapped reclaim waves (per market name)
    HAZARD = 1  # one slot's reclaim instants (per pool name and slot)
    DELAYS = 2  # one slot's replacement delays (per pool name and slot)
    PRICE = 3  # one GPU type's spot price path (per GPU name)


TIMELINE_WINDOW = 1_000_000
"""Window sub-key of the risk page's reclaim timeline (no sampled window has this index)."""
WEEK_WINDOW = 1_000_001
"""Window sub-key of the report's week of a moving fleet (`sim.week`)."""
_BOOTSTRAP = 1  # HORIZON sub-key of a month's bootstrap resamples
_INSPECT = 2**31  # TRACE_SAMPLE sub-key of `sim trace inspect` (apart from fit/compare copies)


def name_key(name: str) -> int:
    """A stable 32-bit sub-key for a name (zlib.crc32 is the same in every process)."""
    return zlib.crc32(name.encode("utf-8"))


def stream(stream_id: Stream, replication: int, seed: int, *extra: int) -> np.random.Generator:
    """The generator of one named stream of one replication (optionally sub-keyed): the one
    `np.random.default_rng([stream_id, replication, seed, *extra])` gives, bit for bit."""
    words: list[int] = []
    for x in (int(stream_id), replication, seed, *extra):
        if x < 0:
            raise ValueError(f"stream keys must be >= 0, got {x}")
        words.append(x & _MASK32)
        x >>= 32
        while x:
            words.append(x & _MASK32)
            x >>= 32
    state = _pcg64_state()(np.array(words, dtype=np.uint64))
    # (numpy takes any ISeedSequence; its stubs name only SeedSequence)
    return np.random.Generator(np.random.PCG64(_State(state)))  # type: ignore[arg-type]


# NOTE: `default_rng(key)` spends ~17 µs in SeedSequence's entropy pooling and its
# `generate_state` (numpy's Python-level wrappers, an `errstate` each); a growth20pct
# replication builds ~500 streams (3 per sampled window). The same arithmetic compiled, and a
# PCG64 seeded from its output, takes ~4 µs; tests/test_rng.py checks it against numpy's
# SeedSequence on thousands of keys.
_MASK32 = 0xFFFFFFFF
_U = np.uint64
# numpy/random/bit_generator.pyx (SeedSequence, pool size 4, 32-bit words)
_INIT_A, _MULT_A, _INIT_B, _MULT_B = _U(0x43B0D7E5), _U(0x931E8875), _U(0x8B51F9DD), _U(0x58F38DED)
_MIX_L, _MIX_R, _M32, _SHIFT, _ZERO = _U(0xCA01F9DD), _U(0x4973F715), _U(_MASK32), _U(16), _U(0)


def _pcg64_state_py(words: npt.NDArray[np.uint64]) -> npt.NDArray[np.uint64]:
    """SeedSequence(words).generate_state(4, np.uint64) for 32-bit entropy `words`: mix the
    words into a pool of four (hashmix / mix), then hash the pool into eight 32-bit words,
    paired little-endian into the four 64-bit words PCG64 seeds from."""
    pool = np.zeros(4, dtype=np.uint64)
    h = _INIT_A
    for i in range(4):
        v = words[i] if i < words.size else _ZERO
        v ^= h
        h = (h * _MULT_A) & _M32
        v = (v * h) & _M32
        pool[i] = v ^ (v >> _SHIFT)
    for src in range(4 + max(words.size - 4, 0)):
        for dst in range(4):
            if src < 4 and src == dst:
                continue
            v = pool[src] if src < 4 else words[src]
            v ^= h
            h = (h * _MULT_A) & _M32
            v = (v * h) & _M32
            v ^= v >> _SHIFT
            r = (_MIX_L * pool[dst] - _MIX_R * v) & _M32
            pool[dst] = r ^ (r >> _SHIFT)
    out = np.zeros(4, dtype=np.uint64)
    h = _INIT_B
    for i in range(8):
        v = pool[i % 4] ^ h
        h = (h * _MULT_B) & _M32
        v = (v * h) & _M32
        v ^= v >> _SHIFT
        out[i // 2] |= v << (_SHIFT + _SHIFT) if i % 2 else v
    return out


@functools.cache
def _pcg64_state() -> Callable[[npt.NDArray[np.uint64]], npt.NDArray[np.uint64]]:
    """`_pcg64_state_py` compiled (numba, on first use: `sim --version` imports no numba)."""
    from numba import njit

    compiled: Callable[[npt.NDArray[np.uint64]], npt.NDArray[np.uint64]]
    compiled = njit(cache=True)(_pcg64_state_py)
    return compiled


class _State(ISeedSequence):
    """A seed sequence whose state is already computed: PCG64 asks it for 4 uint64 words."""

    __slots__ = ("state",)

    def __init__(self, state: npt.NDArray[np.uint64]) -> None:
        self.state = state

    def generate_state(
        self, n_words: int, dtype: npt.DTypeLike = np.uint32
    ) -> npt.NDArray[np.uint64]:
        if n_words != 4 or np.dtype(dtype) != np.uint64:
            raise ValueError("only PCG64's request (4 uint64 words) is precomputed")
        return self.state


class MonthRngs(NamedTuple):
    """The three generators one month (or one window) of workload draws from."""

    arrivals: np.random.Generator
    bursts: np.random.Generator
    lengths: np.random.Generator


class Streams:
    """Every random stream of one replication of one experiment (root `seed`).

    Workers receive (seed, replication) integers and build this themselves, so results do not
    depend on where a replication ran.
    """

    __slots__ = ("replication", "seed")

    def __init__(self, seed: int, replication: int) -> None:
        if replication < 0 or seed < 0:
            raise ValueError(f"replication and seed must be >= 0, got {replication}, {seed}")
        self.seed = seed
        self.replication = replication

    def _rng(self, stream_id: Stream, *extra: int) -> np.random.Generator:
        return stream(stream_id, self.replication, self.seed, *(int(x) for x in extra))

    def growth(self) -> np.random.Generator:
        """The monthly growth factors of the horizon."""
        return self._rng(Stream.GROWTH)

    def month(self, month: int) -> MonthRngs:
        """Arrivals, bursts and lengths of 1-based `month` (a month is the same whether or not
        earlier months were simulated)."""
        return MonthRngs(
            self._rng(Stream.ARRIVALS, month),
            self._rng(Stream.BURSTS, month),
            self._rng(Stream.LENGTHS, month),
        )

    def window(self, month: int, window: int) -> MonthRngs:
        """The traffic of sampled window `window` of `month` (`TIMELINE_WINDOW`: the timeline's)."""
        if window in (TIMELINE_WINDOW, WEEK_WINDOW):
            return MonthRngs(*(self._rng(Stream.WINDOW, month, window, j) for j in range(3)))
        return MonthRngs(*(self._rng(Stream.WINDOW, month, 3 * window + j) for j in range(3)))

    def horizon(self, month: int) -> np.random.Generator:
        """Which windows of `month` a sampled horizon simulates."""
        return self._rng(Stream.HORIZON, month)

    def horizon_bootstrap(self, month: int) -> np.random.Generator:
        """The bootstrap resamples of `month`'s window estimates."""
        return self._rng(Stream.HORIZON, month, _BOOTSTRAP)

    def calibration(self, gpu: str) -> np.random.Generator:
        """The step-time scale of GPU type `gpu` (one draw per type, same for every plan)."""
        return self._rng(Stream.CALIBRATION, name_key(gpu))

    def spot_waves(self, market: str) -> np.random.Generator:
        """A trace market's bootstrapped reclaim waves (shared by every pool on it)."""
        return self._rng(Stream.SPOT, _SpotPart.WAVES, name_key(market))

    def spot_hazard(self, pool: str, slot: int) -> np.random.Generator:
        """When slot `slot` of pool `pool` is reclaimed."""
        return self._rng(Stream.SPOT, _SpotPart.HAZARD, name_key(pool), slot)

    def spot_delays(self, pool: str, slot: int) -> np.random.Generator:
        """How long slot `slot` of pool `pool` waits for a replacement."""
        return self._rng(Stream.SPOT, _SpotPart.DELAYS, name_key(pool), slot)

    def spot_price(self, gpu: str) -> np.random.Generator:
        """The hourly spot price path of GPU type `gpu`."""
        return self._rng(Stream.SPOT, _SpotPart.PRICE, name_key(gpu))

    def api(self, month: int | None = None, window: int | None = None) -> np.random.Generator:
        """API latency draws of one simulated request set: the whole horizon, or a window."""
        if month is None or window is None:
            return self._rng(Stream.API)
        return self._rng(Stream.API, month, window)


def trace_sample_rngs(seed: int, copy: int) -> MonthRngs:
    """`sim trace fit/compare`: the streams of sampled copy `copy` of a trace's span."""
    return MonthRngs(*(stream(Stream.TRACE_SAMPLE, 0, seed, copy, j) for j in range(3)))


def trace_inspect_rng() -> np.random.Generator:
    """`sim trace inspect`'s own generator (superposition CVs), apart from fit/compare."""
    return stream(Stream.TRACE_SAMPLE, 0, 0, _INSPECT)


def capacity_rng(part: int) -> np.random.Generator:
    """The saturation probe's generator (`sim.planning.capacity`): part 0 draws the lengths,
    part 1 the arrivals; fixed, so a GPU's capacity is a property of the experiment."""
    return stream(Stream.CAPACITY, 0, 0, part)


_VERIFY = 0x5EED_0F_7E57
"""Key that turns an experiment's seed into the independent seed of a plan's verification."""


def verification_seed(seed: int) -> int:
    """A root seed independent of `seed` (SeedSequence of [seed, _VERIFY]): `sim plan` checks
    its recommendation on replications that the search never saw."""
    return int(np.random.SeedSequence([seed, _VERIFY]).generate_state(1, np.uint64)[0] >> 1)

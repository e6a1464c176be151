"""Named streams: every sub-key convention lives in `Streams`, and the keys are what results
were recorded with (changing one would change every table: tests/test_golden.py)."""

from __future__ import annotations

import zlib

import numpy as np
import pytest

from sim.rng import TIMELINE_WINDOW, Stream, Streams, name_key, stream, trace_sample_rngs


def draws(rng: np.random.Generator) -> list[float]:
    return rng.random(4).tolist()


def test_same_seed_and_replication_same_draws() -> None:
    a, b = Streams(7, 3), Streams(7, 3)
    assert draws(a.growth()) == draws(b.growth())
    assert draws(a.month(2).arrivals) == draws(b.month(2).arrivals)
    assert draws(a.spot_hazard("spot", 1)) == draws(b.spot_hazard("spot", 1))


def test_every_key_part_matters() -> None:
    base = draws(Streams(7, 3).month(2).arrivals)
    assert draws(Streams(8, 3).month(2).arrivals) != base
    assert draws(Streams(7, 4).month(2).arrivals) != base
    assert draws(Streams(7, 3).month(3).arrivals) != base
    s = Streams(7, 3)
    assert draws(s.spot_hazard("a", 0)) != draws(s.spot_hazard("b", 0))
    assert draws(s.spot_hazard("a", 0)) != draws(s.spot_hazard("a", 1))
    assert draws(s.spot_hazard("a", 0)) != draws(s.spot_delays("a", 0))
    assert draws(s.calibration("a100-80gb")) != draws(s.calibration("h100-80gb"))
    assert draws(s.api()) != draws(s.api(1, 0))
    assert draws(s.horizon(1)) != draws(s.horizon_bootstrap(1))


def test_the_three_parts_of_a_month_and_of_a_window_are_distinct_streams() -> None:
    s = Streams(1, 0)
    month = s.month(1)
    assert len({tuple(draws(g)) for g in month}) == 3
    windows = [s.window(1, i) for i in range(3)] + [s.window(1, TIMELINE_WINDOW)]
    parts = {tuple(draws(g)) for w in windows for g in w}
    assert len(parts) == 12  # no window shares a generator with another, nor with the timeline


def test_keys_are_the_recorded_ones() -> None:
    """The sub-key layout of each stream (append-only: results depend on it)."""
    s = Streams(5, 2)
    pairs = [
        (s.growth(), stream(Stream.GROWTH, 2, 5)),
        (s.month(3).lengths, stream(Stream.LENGTHS, 2, 5, 3)),
        (s.window(3, 4).bursts, stream(Stream.WINDOW, 2, 5, 3, 13)),
        (s.window(3, TIMELINE_WINDOW).lengths, stream(Stream.WINDOW, 2, 5, 3, TIMELINE_WINDOW, 2)),
        (s.horizon_bootstrap(3), stream(Stream.HORIZON, 2, 5, 3, 1)),
        (s.calibration("g"), stream(Stream.CALIBRATION, 2, 5, name_key("g"))),
        (s.spot_waves("m"), stream(Stream.SPOT, 2, 5, 0, name_key("m"))),
        (s.spot_price("g"), stream(Stream.SPOT, 2, 5, 3, name_key("g"))),
        (s.api(3, 4), stream(Stream.API, 2, 5, 3, 4)),
        (trace_sample_rngs(9, 2).bursts, stream(Stream.TRACE_SAMPLE, 0, 9, 2, 1)),
    ]
    for ours, expected in pairs:
        assert draws(ours) == draws(expected)


def test_negative_keys_are_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        Streams(-1, 0)
    with pytest.raises(ValueError, match=">= 0"):
        stream(Stream.GROWTH, -1, 0)


def test_name_key_is_stable_across_processes() -> None:
    # zlib.crc32, not Python's salted hash(): the same in every worker process
    assert name_key("a100-80gb") == zlib.crc32(b"a100-80gb") == 3922350890


def test_a_stream_is_numpys_default_rng_of_its_key() -> None:
    """`stream` seeds PCG64 from its own compiled copy of SeedSequence's pooling: the same
    generator as `np.random.default_rng(key)`, for keys of every length and size (words above
    2**32 split into two), and the Python form of the arithmetic is numpy's too."""
    from sim.rng import _pcg64_state_py

    g = np.random.default_rng(5)
    for trial in range(2000):
        extra = [int(x) for x in g.integers(0, 2**32, size=int(g.integers(0, 6)))]
        big = int(g.integers(0, 2**62)) if trial % 4 == 0 else int(g.integers(0, 2**31))
        key = [int(g.integers(0, 12)), int(g.integers(0, 5000)), big, *extra]
        ours, numpys = stream(key[0], key[1], key[2], *key[3:]), np.random.default_rng(key)
        assert ours.integers(0, 2**63, 3).tolist() == numpys.integers(0, 2**63, 3).tolist()
        if trial < 200:
            words = [w for x in key for w in ([x & 0xFFFFFFFF] + ([x >> 32] if x >> 32 else []))]
            with np.errstate(over="ignore"):
                state = _pcg64_state_py(np.array(words, dtype=np.uint64))
            assert (
                state.tolist() == np.random.SeedSequence(key).generate_state(4, np.uint64).tolist()
            )
    with pytest.raises(ValueError, match=">= 0"):
        stream(Stream.GROWTH, 0, 0, -3)

"""Named random streams: no global randomness anywhere in sim.

A stream is identified by (stream id, replication, root seed) and built with
`numpy.random.default_rng([stream_id, replication, seed])` (numpy's SeedSequence
entropy pooling, SPEC 7). The plan is deliberately not part of the key: replication k of
every plan sees the same traffic and the same preemptions (common random numbers), so
plan comparisons are paired.

The table below is append-only: changing an id changes every result that used it.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Stream(IntEnum):
    """Stream ids. Append new ids at the end; never renumber."""

    GROWTH = 1  # monthly growth factors
    ARRIVALS = 2  # arrival times (per month, see `month_stream`)
    BURSTS = 3  # burst modulation path
    LENGTHS = 4  # request (input, output) token lengths
    CALIBRATION = 5  # step-time calibration multiplier
    SPOT = 6  # spot preemptions
    API = 7  # API latency
    HORIZON = 8  # which hours a sampled horizon simulates (per month)
    WINDOW = 9  # the traffic of one sampled window (sub-keyed by month and window)
    TRACE_SAMPLE = 10  # `sim trace fit/compare` samples (sub-keyed: copy of the span, part)


def stream(stream_id: Stream, replication: int, seed: int, *extra: int) -> np.random.Generator:
    """The generator of one named stream of one replication (optionally sub-keyed: month)."""
    if replication < 0 or seed < 0:
        raise ValueError(f"replication and seed must be >= 0, got {replication}, {seed}")
    return np.random.default_rng([int(stream_id), replication, seed, *extra])

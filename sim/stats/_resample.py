"""Compiled kernel of the stratified bootstrap: the weighted quantile of many window resamples.

`resampled_quantile_blocks` does for each resample (a row of window picks, in draw order, with
repeats) what `np.argsort(keys, kind="stable")`, `np.cumsum` and `np.searchsorted` do over
the resample's concatenated tie-block keys (`sim.stats.sampled._Pooled`), by a counting sort
over the blocks: the same elements in the same order (block, then draw position, then place
inside the window), and the same left-to-right float sums, so the same bits.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from numba import njit

from sim.records import FloatArray

IntArray = npt.NDArray[np.int64]


@njit(cache=True)  # type: ignore[misc]
def resampled_quantile_blocks(
    keys: IntArray,
    bounds: IntArray,
    n_blocks: int,
    picks: IntArray,
    w: FloatArray,
    q: float,
) -> IntArray:
    """The tie block of the weighted `q` quantile of each row of `picks` (-1: no values).

    `keys[bounds[j]:bounds[j + 1]]` are window j's values as block numbers (0..n_blocks - 1),
    ascending; every value of window j weighs `w[j]`. A row's quantile is the smallest block
    whose cumulative weight, summed element by element in stable sorted order, reaches
    `q` × the row's total (`_quantile`'s inverted weighted CDF).
    """
    rows, m = picks.shape
    out = np.full(rows, -1, dtype=np.int64)
    count = np.zeros(n_blocks + 1, dtype=np.int64)
    weight = np.empty(0, dtype=np.float64)
    block = np.empty(0, dtype=np.int64)
    for r in range(rows):
        count[:] = 0
        n = 0
        for i in range(m):
            j = picks[r, i]
            for e in range(bounds[j], bounds[j + 1]):
                count[keys[e] + 1] += 1
            n += bounds[j + 1] - bounds[j]
        if n == 0:
            continue
        if weight.size < n:
            weight = np.empty(n, dtype=np.float64)
            block = np.empty(n, dtype=np.int64)
        for b in range(n_blocks):  # count[b] becomes the first slot of block b
            count[b + 1] += count[b]
        for i in range(m):  # stable: draw order, then the window's own (ascending) order
            j = picks[r, i]
            wj = w[j]
            for e in range(bounds[j], bounds[j + 1]):
                k = keys[e]
                slot = count[k]
                weight[slot] = wj
                block[slot] = k
                count[k] = slot + 1
        total = 0.0
        for s in range(n):
            total += weight[s]
        target = q * total
        cum = 0.0
        idx = n - 1
        for s in range(n):
            cum += weight[s]
            if cum >= target:
                idx = s
                break
        out[r] = block[idx]
    return out

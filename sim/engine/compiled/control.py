"""Kernels the control plane calls at its own instants: a spot reclaim's eviction, an
autoscaler tick's reading of its pool (`pool_total`), and a window's busy time (`busy_within`).

`evict` is `FastReplica.evict` over `layout.State`: the instance is gone at `t`; steps ending
by `t` are applied (in a decode run, every whole step done by `t`), the step under way is lost,
and every unfinished request is handed back with the output tokens it has already streamed —
the running sequences in admission order, then the waiting queue in order — leaving the
replica idle and empty (KV freed), ready for its replacement.
"""

from __future__ import annotations

import numpy as np

from sim.engine.compiled._jit import kernel
from sim.engine.compiled.layout import (
    F_A,
    F_B,
    F_BUSY,
    F_S0,
    F_T,
    I_BS,
    I_G,
    I_HSIZE,
    I_K,
    I_NDEC,
    I_NENT,
    I_NRUN,
    I_NWAIT,
    I_OUT,
    I_QPT,
    I_RHEAD,
    I_RTAIL,
    I_STATE,
    I_STATEBLK,
    I_STEPDEC,
    I_SUMOFF,
    I_TAIL,
    I_TAILC,
    I_USED,
    I_WHEAD,
    I_WTAIL,
    IDLE,
    Q_GEN,
    Q_GOFF,
    Q_HPOS,
    Q_RNEXT,
    Q_RUNNING,
    Q_WNEXT,
    RUN,
    Arr,
)
from sim.engine.compiled.replica import _end_run, advance_to, decode_steps_within

# the signals of `sim.config.AUTOSCALE_SIGNALS`, in its order
QUEUE_DEPTH, RUNNING, KV_USAGE, PREDICTED_TTFT = 0, 1, 2, 3


@kernel()
def pool_total(
    ri: Arr,
    rf: Arr,
    q: Arr,
    qf: Arr,
    needs: Arr,
    heap: Arr,
    ent: Arr,
    busy: Arr,
    nbusy: Arr,
    serving: Arr,
    t: float,
    signal: int,
    kv_capacity_tokens: Arr,
    prefill_tokens_per_s: Arr,
) -> float:
    """Σ over the replicas `serving` (in order), each brought up to `t`, of one replica's
    `signal` (`sim.fleet.autoscale.replica_signal`, the same expressions): requests waiting,
    sequences running, KV tokens held (`FastReplica.cached_tokens_at`, plus each running
    sequence's state blocks in tokens) ÷
    `kv_capacity_tokens[r]`, or queued prompt tokens ÷ `prefill_tokens_per_s[r]`. Summed left to
    right from 0.0, as `pool_signal` adds them."""
    total = 0.0
    for m in range(len(serving)):
        r = serving[m]
        advance_to(ri, rf, q, qf, needs, heap, ent, busy, nbusy, r, t)
        if signal == QUEUE_DEPTH:
            total += ri[r, I_NWAIT]
        elif signal == RUNNING:
            total += ri[r, I_NRUN]
        elif signal == KV_USAGE:
            g = ri[r, I_G]
            if ri[r, I_STATE] == RUN and t > rf[r, F_S0]:
                g += decode_steps_within(rf[r, F_A], rf[r, F_B], t - rf[r, F_S0])
            tail = ri[r, I_TAILC] if ri[r, I_TAIL] >= 0 else 0
            states = ri[r, I_NRUN] * ri[r, I_STATEBLK] * ri[r, I_BS]  # hybrid: state pages
            total += (ri[r, I_SUMOFF] + ri[r, I_NDEC] * g + tail + states) / kv_capacity_tokens[r]
        else:
            total += ri[r, I_QPT] / prefill_tokens_per_s[r]
    return total


@kernel()
def evict(
    ri: Arr,
    rf: Arr,
    q: Arr,
    qf: Arr,
    needs: Arr,
    heap: Arr,
    ent: Arr,
    busy: Arr,
    nbusy: Arr,
    r: int,
    t: float,
    out: Arr,
) -> int:
    """Evict replica `r` at `t` (module docstring); (rid, generated) rows go to `out`
    (at least running + waiting rows), and their count is returned."""
    advance_to(ri, rf, q, qf, needs, heap, ent, busy, nbusy, r, t)
    if ri[r, I_STATE] == RUN and t > rf[r, F_S0]:
        a, b = rf[r, F_A], rf[r, F_B]
        k = decode_steps_within(a, b, t - rf[r, F_S0])
        if k > 0:
            ri[r, I_K] = k
            rf[r, F_T] = rf[r, F_S0] + k * (a + b * (k - 1) * 0.5)
            _end_run(ri, rf, q, qf, needs, heap, r)
    g = ri[r, I_G]
    n = 0
    rid = ri[r, I_RHEAD]
    while rid >= 0:  # decode members, else the tail or admitted by the lost step
        pos = q[rid, Q_HPOS]
        member = pos < ri[r, I_HSIZE] and heap[r, pos, 1] == rid
        out[n, 0] = rid
        out[n, 1] = q[rid, Q_GOFF] + g if member else q[rid, Q_GEN]
        n += 1
        q[rid, Q_RUNNING] = 0
        rid = q[rid, Q_RNEXT]
    rid = ri[r, I_WHEAD]
    while rid >= 0:
        out[n, 0] = rid
        out[n, 1] = q[rid, Q_GEN]
        n += 1
        rid = q[rid, Q_WNEXT]
    if ri[r, I_STATE] != IDLE:
        b = nbusy[0]
        busy[b, 0] = r
        busy[b, 1] = rf[r, F_BUSY]
        busy[b, 2] = t
        nbusy[0] = b + 1
    for col in (I_WHEAD, I_WTAIL, I_RHEAD, I_RTAIL, I_TAIL):
        ri[r, col] = -1
    for col in (I_NWAIT, I_NRUN, I_HSIZE, I_SUMOFF, I_NDEC, I_TAILC, I_USED, I_OUT, I_QPT):
        ri[r, col] = 0
    ri[r, I_NENT] = 0
    ri[r, I_STEPDEC] = 0
    needs[r, :] = 0
    ri[r, I_STATE] = IDLE
    rf[r, F_T] = t
    return n


@kernel(allocates=True)
def busy_within(busy: Arr, nbusy: Arr, position: Arr, start_s: float, end_s: float) -> float:
    """Σ over the busy-period rows (replica, start, end) of replicas with `position[replica]`
    ≥ 0, taken position by position and in row (time) order within one, of each period's
    overlap with [start_s, end_s): `sim.engine.log.busy_seconds_inside` of the rows in that
    order (a stable counting sort by position), added left to right as its `cumsum` does."""
    rows = nbusy[0]
    n_pos = 0
    for r in range(position.size):
        n_pos = max(n_pos, position[r] + 1)
    first = np.zeros(n_pos + 1, dtype=np.int64)
    for i in range(rows):
        p = position[int(busy[i, 0])]
        if p >= 0:
            first[p + 1] += 1
    for p in range(n_pos):
        first[p + 1] += first[p]
    order = np.empty(first[n_pos], dtype=np.int64)
    for i in range(rows):
        p = position[int(busy[i, 0])]
        if p >= 0:
            order[first[p]] = i
            first[p] += 1
    total = 0.0
    for i in order:
        inside = min(busy[i, 2], end_s) - max(busy[i, 1], start_s)
        total += max(inside, 0.0)
    return 0.0 + total

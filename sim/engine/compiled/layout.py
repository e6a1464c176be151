"""The compiled replicas' state as arrays, and the queue and heap operations on it.

* per-replica scalars live in one row of `State.ri` (integers) and `State.rf` (floats), indexed
  by the `I_*` / `F_*` column constants below;
* per-request fields live in one row of `State.q` (integers) and `State.qf` (times, seconds);
* the waiting queue (FCFS, with `appendleft` for preempted requests) is a singly linked list
  through `q[:, Q_WNEXT]`; the running set (admission order, newest removed on preemption,
  any member removed when it finishes) a doubly linked list through `Q_RNEXT` / `Q_RPREV`;
* the decode group's finish steps are an indexed binary min-heap per replica (`State.heap`,
  positions in `Q_HPOS`), so a preempted member is removed at once instead of lazily;
* `I_QPT` keeps the waiting queue's prompt tokens (`FastReplica.queued_prompt_tokens`) for
  the spill rules, updated by the three queue operations below;
* the mixed step's prefill entries are a per-replica table `State.ent` of (rid, new, computed).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from sim.engine.compiled._jit import kernel

# Replica states (as in sim.engine.fast).
IDLE, RUN, STEP, PENDING = 0, 1, 2, 3

# State.ri columns: per-replica integers.
I_STATE = 0
I_G = 1  # steps executed
I_K = 2  # length of the decode run under way, in steps
I_N = 3  # sequences in the decode run under way
I_NDEC = 4  # decode-group members
I_SUMOFF = 5  # Σ off over the decode group
I_TAIL = 6  # the running sequence part-way through its prefill, or -1
I_TAILC = 7  # tokens the tail has computed
I_USED = 8  # KV blocks in use
I_OUT = 9  # outstanding tokens (the router's load before the run under way is subtracted)
I_NENT = 10  # prefill entries of the mixed step under way
I_STEPDEC = 11  # decode tokens of the mixed step under way
I_WHEAD = 12
I_WTAIL = 13
I_NWAIT = 14
I_RHEAD = 15
I_RTAIL = 16
I_NRUN = 17
I_HSIZE = 18
I_SEGS = 19  # segments (decode runs + mixed steps) simulated
I_BS = 20  # limits: block size, max_num_seqs, max_num_batched_tokens, kv_blocks
I_MAXSEQS = 21
I_BUDGET = 22
I_KV = 23
I_QPT = 24  # prompt tokens the waiting queue must prefill (Σ input + generated), for spill
I_ASYNC = 25  # 1: async scheduling (EngineLimits.async_scheduling)
I_STATEBLK = 26  # blocks of a running sequence's state (EngineLimits.state_blocks)
N_RI = 27

# State.rf columns: per-replica floats (times in s; step-time coefficients as StepTimeModel).
F_S0 = 0  # start of the decode run under way
F_T = 1  # end of the segment under way / time of the pending decision
F_A = 2  # the run's first step time, s
F_B = 3  # the run's step-time growth per step, s
F_BUSY = 4  # start of the busy period under way
F_OV = 5
F_D = 6
F_FLAT = 7
F_KNEE = 8
F_PT = 9
F_P = 10
F_CPU = 11  # per_seq_s: cpu_per_seq_s + state_s_per_seq
F_VIS = 12  # async scheduling: start of the step that ends next (inf while idle)
F_EXP = 13  # expert_read_s (MoE; 0 for a dense model)
F_MISS = 14  # 1 - expert_share: the chance one token leaves a given routed expert unread
N_RF = 15

# State.q columns: per-request integers.
Q_IN = 0
Q_OUT = 1
Q_GEN = 2  # tokens generated (waiting and tail sequences)
Q_OFF = 3  # decode group: computed − G
Q_GOFF = 4  # decode group: generated − G
Q_WNEXT = 5
Q_RNEXT = 6
Q_RPREV = 7
Q_HPOS = 8
Q_RUNNING = 9  # 1 while in a running set
Q_PRE = 10  # preemptions
Q_REP = 11  # replica, -1 before routing
Q_REJ = 12  # 1 if rejected (longer than max_model_len)
Q_HIT = 13  # prompt tokens found in the prefix cache (`RequestLog.cached_tokens`)
N_Q = 14

# State.qf columns: per-request times, s (NaN: has not happened).
X_ARR = 0
X_SCHED = 1
X_FIRST = 2
X_FIN = 3
X_SUB = 4  # when the request was queued on its replica (async scheduling's visibility)
N_QF = 5


class State(NamedTuple):
    """Every array of a compiled fleet (see the module docstring for the layout).

    NOTE: kernels take these arrays one by one, never the tuple: numba increments and
    decrements the reference count of every member each time a tuple of arrays is passed or
    read (~170 ns per kernel call, measured); passing the arrays took `route` on the Vidur
    scenario from 2.0 to 1.03 µs per request.
    """

    ri: np.ndarray  # (replicas, N_RI) int64
    rf: np.ndarray  # (replicas, N_RF) float64
    q: np.ndarray  # (requests, N_Q) int64
    qf: np.ndarray  # (requests, N_QF) float64
    needs: np.ndarray  # (replicas, 2 · max block size) int64: the decode group's KV needs
    heap: np.ndarray  # (replicas, max_num_seqs, 2) int64: (finish step, rid)
    ent: np.ndarray  # (replicas, max_num_seqs + 1, 3) int64: (rid, new tokens, computed)
    busy: np.ndarray  # (requests + replicas + 1, 3) float64: (replica, start s, end s)
    nbusy: np.ndarray  # (1,) int64: rows of `busy` written


Arr = np.ndarray


@kernel(inline=True)
def cdiv(a: int, b: int) -> int:
    return -((-a) // b)


# ---------------------------------------------------------------------- the decode-group heap
@kernel(inline=True)
def _heap_place(ri: Arr, q: Arr, heap: Arr, r: int, i: int, step: int, rid: int) -> None:
    """Sift the entry (step, rid) from position i up or down to its place."""
    h = heap[r]
    while i > 0:
        p = (i - 1) >> 1
        if h[p, 0] <= step:
            break
        h[i, 0] = h[p, 0]
        h[i, 1] = h[p, 1]
        q[h[i, 1], Q_HPOS] = i
        i = p
    size = ri[r, I_HSIZE]
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and h[c + 1, 0] < h[c, 0]:
            c += 1
        if h[c, 0] >= step:
            break
        h[i, 0] = h[c, 0]
        h[i, 1] = h[c, 1]
        q[h[i, 1], Q_HPOS] = i
        i = c
    h[i, 0] = step
    h[i, 1] = rid
    q[rid, Q_HPOS] = i


@kernel(inline=True)
def heap_push(ri: Arr, q: Arr, heap: Arr, r: int, step: int, rid: int) -> None:
    i = ri[r, I_HSIZE]
    ri[r, I_HSIZE] = i + 1
    _heap_place(ri, q, heap, r, i, step, rid)


@kernel(inline=True)
def heap_remove(ri: Arr, q: Arr, heap: Arr, r: int, i: int) -> None:
    last = ri[r, I_HSIZE] - 1
    ri[r, I_HSIZE] = last
    if i != last:
        _heap_place(ri, q, heap, r, i, heap[r, last, 0], heap[r, last, 1])


# ---------------------------------------------------------------------- queues
@kernel(inline=True)
def run_remove(ri: Arr, q: Arr, r: int, rid: int) -> None:
    prev, nxt = q[rid, Q_RPREV], q[rid, Q_RNEXT]
    if prev >= 0:
        q[prev, Q_RNEXT] = nxt
    else:
        ri[r, I_RHEAD] = nxt
    if nxt >= 0:
        q[nxt, Q_RPREV] = prev
    else:
        ri[r, I_RTAIL] = prev
    q[rid, Q_RUNNING] = 0
    ri[r, I_NRUN] -= 1


@kernel(inline=True)
def run_append(ri: Arr, q: Arr, r: int, rid: int) -> None:
    last = ri[r, I_RTAIL]
    q[rid, Q_RPREV] = last
    q[rid, Q_RNEXT] = -1
    if last >= 0:
        q[last, Q_RNEXT] = rid
    else:
        ri[r, I_RHEAD] = rid
    ri[r, I_RTAIL] = rid
    q[rid, Q_RUNNING] = 1
    ri[r, I_NRUN] += 1


@kernel(inline=True)
def wait_append(ri: Arr, q: Arr, r: int, rid: int) -> None:
    q[rid, Q_WNEXT] = -1
    last = ri[r, I_WTAIL]
    if last >= 0:
        q[last, Q_WNEXT] = rid
    else:
        ri[r, I_WHEAD] = rid
    ri[r, I_WTAIL] = rid
    ri[r, I_NWAIT] += 1
    ri[r, I_QPT] += q[rid, Q_IN] + q[rid, Q_GEN] - q[rid, Q_HIT]


@kernel(inline=True)
def wait_appendleft(ri: Arr, q: Arr, r: int, rid: int) -> None:
    q[rid, Q_WNEXT] = ri[r, I_WHEAD]
    ri[r, I_WHEAD] = rid
    if ri[r, I_WTAIL] < 0:
        ri[r, I_WTAIL] = rid
    ri[r, I_NWAIT] += 1
    ri[r, I_QPT] += q[rid, Q_IN] + q[rid, Q_GEN] - q[rid, Q_HIT]


@kernel(inline=True)
def wait_popleft(ri: Arr, q: Arr, r: int) -> int:
    rid = ri[r, I_WHEAD]
    nxt = q[rid, Q_WNEXT]
    ri[r, I_WHEAD] = nxt
    if nxt < 0:
        ri[r, I_WTAIL] = -1
    ri[r, I_NWAIT] -= 1
    ri[r, I_QPT] -= q[rid, Q_IN] + q[rid, Q_GEN] - q[rid, Q_HIT]
    return int(rid)

"""Routing and dispatch of a run of arrivals over a fixed pool of compiled replicas.

`route` is the data plane between two control instants: it takes the arrivals with indices
[i0, i1) (times ascending), rejects those longer than the pool's `max_model_len`, and sends each
other one to the replica its policy picks among `pool` (replica indices in the fleet phase's
order), exactly as `sim.model`'s dispatch path does with `sim.fleet.routing`'s plain functions:

* `JSQ` (join the shortest queue in tokens, `least_outstanding_tokens`): the replica with the
  least outstanding work at the arrival instant, ties to the first in pool order;
* `ROUND_ROBIN`: pool position `dispatched % len(pool)`, counting every request routed;
* `P2C` (power of two choices): two distinct pool positions drawn from the request's two
  uniforms, the one with less outstanding work (ties: the first in pool order).

**JSQ without recomputing every load.** A replica's outstanding work changes only when a
request is submitted to it or a step ends (a mixed step, or a step boundary of a decode run,
which `remaining_at` counts in closed form). Each pool member therefore carries the time its
load may next change (`nxt`), and only the members whose `nxt` has come are brought up to
date at an arrival — about (steps per request per replica) of them, whatever the fleet size R.
`nxt` may be early (a spurious recompute is harmless), never late: within a decode run the next
step boundary is taken a microsecond early, so that rounding of `t − s0` cannot hide it.
Pools of up to `JSQ_SCAN_MAX` members (every fleet the shipped experiments and searches
simulate) then find those members and the least load by one scan of two small arrays; larger
ones by a min-heap over `nxt` and a tournament tree over (load, pool position): O(log R) per
changed member, slower than the scan below ~700 members (`JSQ_SCAN_MAX`'s NOTE).

NOTE: measured on bench/engine.py's sweep (70% load per replica): 2.3 load changes per
arrival at 4 replicas, 4.8 at 16, 5.8 at 64, 5.9 at 200 (a member's load changes at each of
its step boundaries, ~6 per arrival to it, whatever R), 2.6 of them a segment's end. With the
heap and the tree each cost ~150 ns, and routing (the core's time minus a replay of the same
choices without a router) was ~0.3–0.4 µs per request at 4 replicas, ~0.6 at 16, ~0.9–1.0 at
200, against ~0.2 µs for the data plane itself, flat in R; the scan takes 0.21, 0.36–0.55 and
0.60. (The heap and tree were kept in nodes of packed keys; two lazier variants
were measured and rejected: (1) lower bounds (the load at the end of each decode run): at
200 replicas ~42 members per arrival have a bound below the minimum (JSQ keeps the bottom of
the fleet ~20 tokens apart, less than one decode step); (2) exact loads only for the members
at or below a threshold, the others woken when their run (or a bound over the steps after
it) could take them below it: the same choices, 3–4 refreshes per arrival instead of 6
(segment ends and the threshold's O(R) rebuilds remain): route at 200 replicas 0.93 against
1.11 µs per request, no gain at 16 or fewer: not worth a second mechanism. A timing wheel in
place of the change heap was slower (1.44 against 1.09 µs at 200 replicas).) The scan wins
below ~700 members because per changed member it only stores a key and a time, and a pass
over R keys and times in cache is cheaper than the heap's and the tree's log R dependent steps.
Also measured and rejected: caching each scanned member's decode run (start, step-time terms,
steps done, end) so that a step boundary inside it is counted on from the last one, without
the square root or the replica's arrays: route + flush at 200 replicas 1.03-1.21 against
0.93-0.97 µs per request (three pairs alternated, 200,000 requests): the cost of a change is
not its arithmetic.

NOTE (what a change costs, measured later with `route` copied beside the shipped one and the
two alternated in one process, best of 8-10 runs of 100,000 requests, route + flush): calling
a replica kernel costs ~30 ns even when it does nothing (`advance_to` takes nine arrays,
~80 words of arguments), and ~65 ns from a kernel compiled with numba's reference counting,
as `route` was while it allocated its scratch: a second no-op `advance_to` per refreshed
member added 0.16 µs per request at 200 replicas. So `route` now takes its scratch from the
caller and runs without reference counting (200 replicas 0.82 → 0.69 µs per request, same
run), no longer re-advances the member JSQ or P2C picked (its load was read at `t`, so it is
current), calls `np.nextafter` (a libm call, ~12 ns) only where it is needed, and counts a
decode run's steps on from the last count (`load_and_next_change`): 0.85-0.88 → 0.69-0.73
µs per request at 200 replicas, 0.53-0.54 → 0.47-0.49 at 16; at 1 replica (no routing)
0.21 → 0.22. Tried and not kept: inlining `advance_to` into `route` (numba IR inlining) took
200 replicas to 0.57 µs but a cold compile from 32 s to 127-257 s; a two-level scan (blocks
of 16 or 32 members with their least key and next change) and a branch-free list of the
changed members were slower than the plain scan at 200 replicas (blocks 0.68-0.78 against
0.60-0.62 µs per request; the list 0.87 against 0.77; each beside its own baseline).
"""

from __future__ import annotations

import math

import numpy as np

from sim.engine.compiled._jit import kernel
from sim.engine.compiled.layout import (
    F_A,
    F_B,
    F_S0,
    F_T,
    I_N,
    I_NWAIT,
    I_OUT,
    I_QPT,
    I_STATE,
    IDLE,
    Q_HIT,
    Q_IN,
    Q_OUT,
    Q_REJ,
    RUN,
    STEP,
    X_ARR,
    Arr,
)
from sim.engine.compiled.replica import advance_to, decode_steps_within, remaining_at, submit

JSQ, ROUND_ROBIN, P2C = 0, 1, 2

JSQ_SCAN_MAX = 512
"""Pools up to this size pick JSQ's member by a scan (module docstring); larger ones by the
tournament tree. NOTE: measured on bench/engine.py's sweep workload (70 % load per replica,
200,000 requests, routing = route + flush − a replay of the same choices, µs per request,
two interleaved runs each), scan against tree: 0.21 against 0.27–0.41 at 4 replicas;
0.36–0.55 against 0.60–0.67 at 16; 0.58 (once 1.00, in a run noisy throughout) against
0.84–0.93 at 128; 0.60–0.61 against 0.88–1.02 at 256; 0.81–0.83 against 1.00–1.02 at 512;
1.23 against 1.09–1.15 at 1,024."""

# NOTE: 1 µs of slack before a decode-run step boundary: times here are < 2e7 s (8 months),
# where one ulp is < 4e-9 s, so `fl(t − s0)` cannot reach the boundary earlier than this.
_EARLY_S = 1e-6


@kernel(inline=True)
def load_and_next_change(
    ri: Arr, rf: Arr, r: int, t: float, run_s0: Arr, run_k: Arr, m: int
) -> tuple[int, float]:
    """Replica r's outstanding work at `t` (`remaining_at`) and the earliest time after `t` at
    which it may change (at or before the true one); call after `advance_to(t)`. `run_s0[m]`
    and `run_k[m]` keep the start of the decode run seen last and its steps done by then: in
    the same run the count goes on from there (checked to fit still) instead of from the
    square root of `decode_steps_within`, whose while loops it repeats: the count is the
    same, the most steps whose time fits in `t - s0`.
    NOTE: 0.59 → 0.55 µs per request at 200 replicas on bench/engine.py's sweep workload (two
    variants of `route` alternated in one process)."""
    state = ri[r, I_STATE]
    out = ri[r, I_OUT]
    if state == IDLE:
        return out, math.inf
    end = rf[r, F_T]
    if state == STEP:
        return out, end  # > t: a step ending by t has been applied
    if state == RUN:
        s0 = rf[r, F_S0]
        a, b = rf[r, F_A], rf[r, F_B]
        delta = t - s0
        k = run_k[m] if run_s0[m] == s0 else -1
        if delta <= 0.0:
            k = 0
        elif k < 0 or k * (a + b * (k - 1) * 0.5) > delta:
            k = decode_steps_within(a, b, delta)
        else:  # the steps done by t are the most whose time fits in delta: count on
            while (k + 1) * (a + b * k * 0.5) <= delta:
                k += 1
        run_s0[m] = s0
        run_k[m] = k
        boundary = s0 + (k + 1) * (a + b * k * 0.5) - _EARLY_S
        # the load at t already counts what happens at t, so its next change is after t
        # (`np.nextafter` is a libm call, ~12 ns: made only where the early boundary is not)
        after = boundary if boundary > t else np.nextafter(t, math.inf)
        return out - ri[r, I_N] * k, min(after, end)
    return out, np.nextafter(t, math.inf)  # a decision pending at t: nothing it starts ends at t


@kernel(inline=True)
def _tree_fix(tree: Arr, leaf: int, key: int) -> None:
    """Set `leaf`'s key (load << shift | pool position) in the tournament tree and replay the
    matches above it, up to the first node whose winner's key is unchanged: above it nothing
    changed. A key orders members by (load, position), so the lower position wins ties.

    NOTE: stopping early took the 200-replica sweep from 2.66 to 1.96 µs per request: most
    updates are a replica that is not the least loaded doing one more decode step. Keeping
    the packed keys in the nodes (instead of member indices looked up in a load array) saved
    another ~0.2 µs per request at 200 replicas (bench/engine.py's sweep, ~6 fixes per
    arrival): each level is two adjacent loads and a min, without an indirection."""
    tree[leaf] = key
    i = leaf >> 1
    while i >= 1:
        a = tree[2 * i]
        b = tree[2 * i + 1]
        w = a if a < b else b
        if w == tree[i]:
            return
        tree[i] = w
        i >>= 1


@kernel(inline=True)
def _heap_sift(hk: Arr, hv: Arr, pos: Arr, i: int, size: int) -> None:
    """Move the change-heap entry at i (key hk, pool position hv) up or down to its place."""
    key = hk[i]
    val = hv[i]
    while i > 0:
        p = (i - 1) >> 1
        if hk[p] <= key:
            break
        hk[i] = hk[p]
        hv[i] = hv[p]
        pos[hv[i]] = i
        i = p
    while True:
        c = 2 * i + 1
        if c >= size:
            break
        if c + 1 < size and hk[c + 1] < hk[c]:
            c += 1
        if hk[c] >= key:
            break
        hk[i] = hk[c]
        hv[i] = hv[c]
        pos[hv[i]] = i
        i = c
    hk[i] = key
    hv[i] = val
    pos[val] = i


@kernel()
def route(
    ri: Arr,
    rf: Arr,
    q: Arr,
    qf: Arr,
    needs: Arr,
    heap: Arr,
    ent: Arr,
    busy: Arr,
    nbusy: Arr,
    i0: int,
    i1: int,
    rids: Arr,
    gens: Arr,
    at: float,
    pool: Arr,
    policy: int,
    scan_max: int,
    max_model_len: int,
    uniforms: Arr,
    counters: Arr,
    spill: bool,
    queue_over: int,
    max_wait_s: float,
    rate: Arr,
    spilled: Arr,
    keys: Arr,
    hk: Arr,
    hv: Arr,
    hpos: Arr,
    tree: Arr,
    run_s0: Arr,
    run_k: Arr,
) -> None:
    """Dispatch arrivals [i0, i1) over `pool` (module docstring); the first nine arguments are
    `layout.State`'s arrays. `uniforms` (requests, 2) are P2C's draws; `counters` = [requests
    dispatched so far (round robin's turn), requests spilled by this call]. The last seven
    are JSQ's scratch, each at least as long as `pool` (`tree`: twice the next power of two),
    set here: the caller allocates them once (`CompiledFleet`), so that `route` allocates
    nothing and runs without numba's reference counting (`_jit.kernel`).

    With `rids` not empty, dispatch instead the requests `rids[i0:i1]`, all at time `at`, with
    `gens[k]` output tokens already sent (re-queued after an eviction, or waiting at the
    router), and reject none. With `spill`, `sim.fleet.spill.must_spill`'s rules are applied
    to the replica the policy picks (`queue_over` < 0 and `max_wait_s` NaN: rule off; `rate`:
    each replica's full-budget prefill rate): a request they send to the API is not submitted
    but written to `spilled[counters[1]]`, in order, for the control plane's API client."""
    size = len(pool)
    width = 1
    shift = 0
    while width < size:
        width *= 2
        shift += 1
    # JSQ's keys: member m's is (load << shift | m), so the least key is the least load, ties
    # to the lower position; a load fits while it is under 2**(63 - shift) tokens. Up to
    # `scan_max` members they sit in `keys` and `hk` holds each one's next change, both
    # scanned per arrival; above it, a tournament tree (leaf `width + m`) and a change heap
    linear = size <= scan_max
    for m in range(size):  # (`keys[m]` is set when member m is first looked at)
        hk[m] = -math.inf  # JSQ: every member is looked at on the first arrival
        hv[m] = m
        hpos[m] = m
        run_s0[m] = math.nan
    if not linear:
        tree[: 2 * width] = np.iinfo(np.int64).max
    explicit = len(rids) > 0
    read = policy != ROUND_ROBIN and size > 1  # the pick's load is read (below) at t
    for k in range(i0, i1):
        if explicit:
            i = rids[k]
            gen = gens[k]
            t = at
        else:
            i = k
            gen = 0
            t = qf[i, X_ARR]
            p, o = q[i, Q_IN], q[i, Q_OUT]
            if not (p >= 1 and o >= 1 and p + o <= max_model_len):
                q[i, Q_REJ] = 1
                continue
        jsq = False
        best_load = -1
        if size == 1:
            j = 0
        elif policy == ROUND_ROBIN:
            j = counters[0] % size
        elif policy == P2C:
            j1 = int(uniforms[i, 0] * size)
            j2 = int(uniforms[i, 1] * (size - 1))
            if j2 >= j1:
                j2 += 1
            lo, hi = min(j1, j2), max(j1, j2)
            # the two loads, each brought up to t
            advance_to(ri, rf, q, qf, needs, heap, ent, busy, nbusy, pool[lo], t)
            load0 = remaining_at(ri, rf, pool[lo], t)
            advance_to(ri, rf, q, qf, needs, heap, ent, busy, nbusy, pool[hi], t)
            load1 = remaining_at(ri, rf, pool[hi], t)
            j = hi if load1 < load0 else lo
            best_load = load1 if load1 < load0 else load0
        elif linear:  # JSQ over a few members: scan for the changed ones, then the least
            # NOTE: the refresh (advance if a step ended, then the load) is written out here
            # and in the heap loop below: one inline helper for both measured 3x slower
            # routing at 4 replicas (0.64–0.68 against 0.21–0.23 µs a request, interleaved)
            jsq = True
            least = np.iinfo(np.int64).max
            for m in range(size):
                if hk[m] <= t:
                    r = pool[m]
                    if ri[r, I_STATE] != IDLE and rf[r, F_T] <= t:
                        advance_to(ri, rf, q, qf, needs, heap, ent, busy, nbusy, r, t)
                    now, hk[m] = load_and_next_change(ri, rf, r, t, run_s0, run_k, m)
                    keys[m] = (now << shift) | m
                if keys[m] < least:
                    least = keys[m]
            j = least & (width - 1)
            best_load = least >> shift
        else:  # JSQ: bring the members whose load may have changed up to date
            jsq = True
            while hk[0] <= t:
                m = hv[0]
                r = pool[m]
                if ri[r, I_STATE] != IDLE and rf[r, F_T] <= t:
                    advance_to(ri, rf, q, qf, needs, heap, ent, busy, nbusy, r, t)
                now, hk[0] = load_and_next_change(ri, rf, r, t, run_s0, run_k, m)
                _tree_fix(tree, width + m, (now << shift) | m)
                _heap_sift(hk, hv, hpos, 0, size)
            j = tree[1] & (width - 1)
            best_load = tree[1] >> shift
        r = pool[j]
        if not read:  # JSQ's and P2C's loads were read on replicas brought up to t
            advance_to(ri, rf, q, qf, needs, heap, ent, busy, nbusy, r, t)
        if spill:
            if best_load < 0:
                best_load = remaining_at(ri, rf, r, t)
            if _must_spill(
                ri,
                rf,
                q,
                qf,
                needs,
                heap,
                ent,
                busy,
                nbusy,
                pool,
                r,
                best_load,
                q[i, Q_IN] + gen - q[i, Q_HIT],
                t,
                queue_over,
                max_wait_s,
                rate,
            ):
                spilled[counters[1]] = i
                counters[1] += 1
                continue
        submit(ri, rf, q, qf, needs, r, i, t, gen)
        counters[0] += 1
        if jsq and linear:
            now, hk[j] = load_and_next_change(ri, rf, r, t, run_s0, run_k, j)
            keys[j] = (now << shift) | j
        elif jsq:
            now, hk[hpos[j]] = load_and_next_change(ri, rf, r, t, run_s0, run_k, j)
            _tree_fix(tree, width + j, (now << shift) | j)
            _heap_sift(hk, hv, hpos, hpos[j], size)


@kernel(inline=True)
def _must_spill(
    ri: Arr,
    rf: Arr,
    q: Arr,
    qf: Arr,
    needs: Arr,
    heap: Arr,
    ent: Arr,
    busy: Arr,
    nbusy: Arr,
    pool: Arr,
    best: int,
    best_load: int,
    prompt_tokens: int,
    t: float,
    queue_over: int,
    max_wait_s: float,
    rate: Arr,
) -> bool:
    """`sim.fleet.spill.must_spill` on replica `best` (advanced to `t`) of `pool`.

    NOTE: `queue_over` brings every member up to `t` before counting its queue (a no-op for
    JSQ's members, whose state is current; needed for round robin and P2C)."""
    if queue_over >= 0:
        every = True
        for m in range(len(pool)):
            advance_to(ri, rf, q, qf, needs, heap, ent, busy, nbusy, pool[m], t)
            if ri[pool[m], I_NWAIT] <= queue_over:
                every = False
                break
        if every:
            return True
    if max_wait_s == max_wait_s:
        if best_load <= 0:
            return False
        queued = ri[best, I_QPT] + prompt_tokens
        return bool(queued / rate[best] > max_wait_s)
    return False


@kernel()
def flush(
    ri: Arr,
    rf: Arr,
    q: Arr,
    qf: Arr,
    needs: Arr,
    heap: Arr,
    ent: Arr,
    busy: Arr,
    nbusy: Arr,
) -> None:
    """Run every replica until all it holds has finished."""
    for r in range(ri.shape[0]):
        advance_to(ri, rf, q, qf, needs, heap, ent, busy, nbusy, r, math.inf)

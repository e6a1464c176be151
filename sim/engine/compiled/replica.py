"""The event-skipping replica of `sim.engine.fast`, compiled: kernels over `layout.State`.

This is `FastReplica` line for line (read its docstring for the decode runs, mixed steps, the
tail invariant and the tie rule), with every Python container replaced by the arrays of
`sim.engine.compiled.layout` so that numba can compile it. Floating-point expressions keep
`FastReplica`'s operand order, so both engines give the same bits (numba neither reassociates
nor fuses multiply-adds without `fastmath`); tests/test_compiled.py holds them to it.
"""

from __future__ import annotations

import math

from sim.engine.compiled._jit import kernel
from sim.engine.compiled.layout import (
    F_A,
    F_B,
    F_BUSY,
    F_CPU,
    F_D,
    F_EXP,
    F_FLAT,
    F_KNEE,
    F_MISS,
    F_OV,
    F_P,
    F_PT,
    F_S0,
    F_T,
    F_VIS,
    I_ASYNC,
    I_BS,
    I_BUDGET,
    I_G,
    I_HSIZE,
    I_K,
    I_KV,
    I_MAXSEQS,
    I_N,
    I_NDEC,
    I_NENT,
    I_NRUN,
    I_NWAIT,
    I_OUT,
    I_RHEAD,
    I_RTAIL,
    I_SEGS,
    I_STATE,
    I_STATEBLK,
    I_STEPDEC,
    I_SUMOFF,
    I_TAIL,
    I_TAILC,
    I_USED,
    I_WHEAD,
    IDLE,
    PENDING,
    Q_GEN,
    Q_GOFF,
    Q_HIT,
    Q_HPOS,
    Q_IN,
    Q_OFF,
    Q_OUT,
    Q_PRE,
    Q_REP,
    Q_RNEXT,
    Q_RUNNING,
    RUN,
    STEP,
    X_FIN,
    X_FIRST,
    X_SCHED,
    X_SUB,
    Arr,
    cdiv,
    heap_push,
    heap_remove,
    run_append,
    run_remove,
    wait_append,
    wait_appendleft,
    wait_popleft,
)


@kernel(inline=True)
def expert_read_s(rf: Arr, r: int, tokens: int) -> float:
    """Replica r's MoE expert read for a step of `tokens` tokens: `StepTimeModel.linear_s`'s
    term, with `sim.engine.steptime.power`'s multiplications (bit for bit the same).
    NOTE: a libm `pow` call here, even on a branch dense models never take, made route + flush
    of the Vidur scenario ~0.025 µs per request slower (0.215-0.221 against 0.188-0.193, the
    session's start alternated); this loop is not measurably slower than no branch at all."""
    x: float = rf[r, F_MISS]
    p = 1.0
    e = tokens
    while e > 0:
        if e & 1:
            p *= x
        x *= x
        e >>= 1
    read: float = rf[r, F_EXP]
    return read * (1.0 - p)


@kernel(inline=True)
def decode_steps_within(a: float, b: float, delta_s: float) -> int:
    """`sim.engine.steptime.decode_steps_within`, compiled (same expressions)."""
    if b == 0.0:
        k = int(delta_s / a)
    else:
        h = a - 0.5 * b
        k = int((-h + math.sqrt(h * h + 2.0 * b * delta_s)) / b)
    while k > 0 and k * (a + b * (k - 1) * 0.5) > delta_s:
        k -= 1
    while (k + 1) * (a + b * k * 0.5) <= delta_s:
        k += 1
    return k


# ---------------------------------------------------------------------- public kernels
@kernel()
def submit(
    ri: Arr, rf: Arr, q: Arr, qf: Arr, needs: Arr, r: int, rid: int, t: float, gen: int
) -> None:
    """`FastReplica.submit`: queue `rid` on replica `r` at `t` (after `advance_to(t)`), with
    `gen` output tokens already generated."""
    q[rid, Q_REP] = r
    ri[r, I_OUT] += q[rid, Q_IN] - q[rid, Q_HIT] + q[rid, Q_OUT] - 1
    q[rid, Q_GEN] = gen
    qf[rid, X_SUB] = t
    was_empty = ri[r, I_NWAIT] == 0
    wait_append(ri, q, r, rid)
    state = ri[r, I_STATE]
    if state == IDLE:
        ri[r, I_STATE] = PENDING
        rf[r, F_T] = t
        rf[r, F_VIS] = math.inf
        rf[r, F_BUSY] = t
    elif state == RUN and was_empty and rf[r, F_T] > t:
        _maybe_cut_run(ri, rf, q, needs, r, rid, t)


@kernel()
def advance_to(
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
) -> None:
    """`FastReplica.advance_to`: apply every step that ends by `t`, decide those starting before."""
    while ri[r, I_STATE] != IDLE and rf[r, F_T] < t:
        state = ri[r, I_STATE]
        if state == RUN:
            _end_run(ri, rf, q, qf, needs, heap, r)
        elif state == STEP:
            _end_step(ri, rf, q, qf, needs, heap, ent, r)
        s = rf[r, F_T]
        if not _decide(ri, rf, q, qf, needs, heap, ent, r, s):
            b = nbusy[0]
            busy[b, 0] = r
            busy[b, 1] = rf[r, F_BUSY]
            busy[b, 2] = s
            nbusy[0] = b + 1
    if rf[r, F_T] == t:
        state = ri[r, I_STATE]
        if state == RUN:
            _end_run(ri, rf, q, qf, needs, heap, r)
            ri[r, I_STATE] = PENDING
        elif state == STEP:
            _end_step(ri, rf, q, qf, needs, heap, ent, r)
            ri[r, I_STATE] = PENDING


@kernel()
def remaining_at(ri: Arr, rf: Arr, r: int, t: float) -> int:
    """Outstanding tokens after the steps ended by `t` (call after `advance_to(t)`)."""
    if ri[r, I_STATE] == RUN and t > rf[r, F_S0]:
        k = decode_steps_within(rf[r, F_A], rf[r, F_B], t - rf[r, F_S0])
        return int(ri[r, I_OUT] - ri[r, I_N] * k)
    return int(ri[r, I_OUT])


# ---------------------------------------------------------------------- decisions
@kernel(inline=True)
def _head_fits(ri: Arr, q: Arr, r: int, rid: int, free_after: int, n_running: int) -> bool:
    if n_running >= ri[r, I_MAXSEQS]:
        return False
    left = ri[r, I_BUDGET] - n_running
    if left <= 0:
        return False
    h = q[rid, Q_HIT]
    new = min(q[rid, Q_IN] + q[rid, Q_GEN] - h, left)
    need: int = cdiv(h + new, ri[r, I_BS]) + ri[r, I_STATEBLK]
    return need <= free_after


@kernel(inline=True)
def _decide(
    ri: Arr, rf: Arr, q: Arr, qf: Arr, needs: Arr, heap: Arr, ent: Arr, r: int, s: float
) -> bool:
    """Choose what runs from `s`: a decode run, one mixed step, or nothing (False: idle)."""
    g = ri[r, I_G]
    n = ri[r, I_NDEC]
    bs = ri[r, I_BS]
    free = ri[r, I_KV] - ri[r, I_USED]
    need = needs[r, g % bs] if n else 0
    # async scheduling: only what was queued by the start of the step that just ended
    vis = math.inf
    if ri[r, I_ASYNC] and (n > 0 or ri[r, I_TAIL] >= 0):
        vis = rf[r, F_VIS]
    head = ri[r, I_WHEAD]
    seen = ri[r, I_NWAIT] > 0 and qf[head, X_SUB] <= vis
    if (
        ri[r, I_TAIL] < 0
        and need <= free
        and not (seen and _head_fits(ri, q, r, head, free - need, n))
    ):
        if n == 0:
            if ri[r, I_NWAIT] > 0:
                raise RuntimeError("replica idle with an unadmittable queue head")
            ri[r, I_STATE] = IDLE
            return False
        _plan_run(ri, rf, needs, heap, r, s, free)
        if ri[r, I_NWAIT] > 0 and not seen:  # the head is seen when the run's first step ends
            _cut_run(ri, rf, q, needs, r, head, 1)
        return True
    _mixed_step(ri, rf, q, qf, needs, heap, ent, r, s, vis)
    return True


@kernel(inline=True)
def _plan_run(ri: Arr, rf: Arr, needs: Arr, heap: Arr, r: int, s: float, free: int) -> None:
    g = ri[r, I_G]
    k = heap[r, 0, 0] - g + 1
    n = ri[r, I_NDEC]
    bs = ri[r, I_BS]
    if n * cdiv(k, bs) > free:  # the KV cache may run out within the run
        full = free // n
        j = full * bs
        total = full * n
        start = (g + j) % bs
        for i in range(bs):
            total += needs[r, start + i]
            if total > free:
                j += i
                break
        k = min(k, j)
    extra = n - rf[r, F_KNEE]
    linear = rf[r, F_FLAT] + rf[r, F_PT] * extra if extra > 0.0 else rf[r, F_FLAT]
    if rf[r, F_EXP] > 0.0:  # MoE: the experts n tokens touch (StepTimeModel.linear_s)
        linear += expert_read_s(rf, r, n)
    d = rf[r, F_D]
    a = rf[r, F_OV] + rf[r, F_CPU] * n + linear + d * (ri[r, I_SUMOFF] + n * (g + 1))
    b = d * n
    rf[r, F_A] = a
    rf[r, F_B] = b
    ri[r, I_N] = n
    rf[r, F_S0] = s
    ri[r, I_K] = k
    rf[r, F_T] = s + k * (a + b * (k - 1) * 0.5)
    ri[r, I_STATE] = RUN
    ri[r, I_SEGS] += 1


@kernel(inline=True)
def _cum_need(ri: Arr, needs: Arr, r: int, g0: int, k: int) -> int:
    """KV blocks the decode group needs over the k steps g0 .. g0+k-1."""
    if k <= 0:
        return 0
    bs = ri[r, I_BS]
    full, rem = divmod(k, bs)
    total = full * ri[r, I_NDEC]
    s = g0 % bs
    for i in range(rem):
        total += needs[r, s + i]
    return int(total)


@kernel(inline=True)
def _maybe_cut_run(ri: Arr, rf: Arr, q: Arr, needs: Arr, r: int, rid: int, t: float) -> None:
    """End the run at the first boundary at or after `t` (async scheduling: the one after,
    when the scheduler has seen `rid`) if `rid` could be admitted there."""
    a, b = rf[r, F_A], rf[r, F_B]
    delta = t - rf[r, F_S0]
    if b == 0.0:
        k = math.ceil(delta / a)
    else:
        h = a - 0.5 * b
        k = math.ceil((-h + math.sqrt(h * h + 2.0 * b * delta)) / b)
    k = max(k, 0)
    while k > 0 and (k - 1) * (a + b * (k - 2) * 0.5) >= delta:
        k -= 1
    while k * (a + b * (k - 1) * 0.5) < delta:
        k += 1
    _cut_run(ri, rf, q, needs, r, rid, k + 1 if ri[r, I_ASYNC] else k)


@kernel(inline=True)
def _cut_run(ri: Arr, rf: Arr, q: Arr, needs: Arr, r: int, rid: int, k: int) -> None:
    """End the run at its `k`-th step boundary if `rid` could be admitted there."""
    if k >= ri[r, I_K]:
        return
    a, b = rf[r, F_A], rf[r, F_B]
    free = ri[r, I_KV] - ri[r, I_USED]
    n = ri[r, I_N]
    if _head_fits(ri, q, r, rid, free - n * cdiv(k + 1, ri[r, I_BS]), n) or _head_fits(
        ri, q, r, rid, free - _cum_need(ri, needs, r, ri[r, I_G], k + 1), n
    ):
        ri[r, I_K] = k
        rf[r, F_T] = rf[r, F_S0] + k * (a + b * (k - 1) * 0.5)


@kernel(inline=True)
def _end_run(ri: Arr, rf: Arr, q: Arr, qf: Arr, needs: Arr, heap: Arr, r: int) -> None:
    k = ri[r, I_K]
    g0 = ri[r, I_G]
    n = ri[r, I_N]
    ri[r, I_USED] += _cum_need(ri, needs, r, g0, k)
    ri[r, I_OUT] -= n * k
    ri[r, I_G] = g0 + k
    a, b = rf[r, F_A], rf[r, F_B]
    rf[r, F_VIS] = rf[r, F_S0] + (k - 1) * (a + b * (k - 2) * 0.5)  # its last step's start
    _finish_decodes(ri, q, qf, needs, heap, r, g0 + k - 1, rf[r, F_T])


@kernel(inline=True)
def _finish_decodes(
    ri: Arr, q: Arr, qf: Arr, needs: Arr, heap: Arr, r: int, last_step: int, end: float
) -> None:
    """Retire decode-group members whose final token was sampled in step `last_step`."""
    bs = ri[r, I_BS]
    g = ri[r, I_G]
    while ri[r, I_HSIZE] > 0 and heap[r, 0, 0] <= last_step:
        rid = heap[r, 0, 1]
        heap_remove(ri, q, heap, r, 0)
        off = q[rid, Q_OFF]
        run_remove(ri, q, r, rid)
        j = (-off) % bs
        needs[r, j] -= 1
        needs[r, j + bs] -= 1
        ri[r, I_SUMOFF] -= off
        ri[r, I_NDEC] -= 1
        ri[r, I_USED] -= cdiv(off + g, bs) + ri[r, I_STATEBLK]
        qf[rid, X_FIN] = end


@kernel(inline=True)
def _join_decodes(
    ri: Arr, q: Arr, needs: Arr, heap: Arr, r: int, rid: int, computed: int, generated: int
) -> None:
    g = ri[r, I_G]
    off = computed - g
    goff = generated - g
    q[rid, Q_OFF] = off
    q[rid, Q_GOFF] = goff
    heap_push(ri, q, heap, r, q[rid, Q_OUT] - 1 - goff, rid)
    bs = ri[r, I_BS]
    j = (-off) % bs
    needs[r, j] += 1
    needs[r, j + bs] += 1
    ri[r, I_SUMOFF] += off
    ri[r, I_NDEC] += 1


@kernel(inline=True)
def _preempt_newest(ri: Arr, q: Arr, needs: Arr, heap: Arr, r: int) -> int:
    """Preempt the newest running sequence (recompute): free its KV, requeue it at the head."""
    rid = ri[r, I_RTAIL]
    run_remove(ri, q, r, rid)
    bs = ri[r, I_BS]
    if rid == ri[r, I_TAIL]:
        computed = ri[r, I_TAILC]
        ri[r, I_TAIL] = -1
    else:
        g = ri[r, I_G]
        off = q[rid, Q_OFF]
        heap_remove(ri, q, heap, r, q[rid, Q_HPOS])
        j = (-off) % bs
        needs[r, j] -= 1
        needs[r, j + bs] -= 1
        ri[r, I_SUMOFF] -= off
        ri[r, I_NDEC] -= 1
        computed = off + g
        q[rid, Q_GEN] = q[rid, Q_GOFF] + g
    ri[r, I_USED] -= cdiv(computed, bs) + ri[r, I_STATEBLK]
    ri[r, I_OUT] += computed - q[rid, Q_HIT]
    q[rid, Q_PRE] += 1
    wait_appendleft(ri, q, r, rid)
    return int(rid)


@kernel(inline=True)
def _mixed_step(
    ri: Arr,
    rf: Arr,
    q: Arr,
    qf: Arr,
    needs: Arr,
    heap: Arr,
    ent: Arr,
    r: int,
    s: float,
    vis: float,
) -> None:
    """Schedule one step exactly as the reference does, on aggregates; requests queued
    after `vis` are not admitted (async scheduling)."""
    bs = ri[r, I_BS]
    kv = ri[r, I_KV]
    g = ri[r, I_G]
    preempted = False
    need = needs[r, g % bs] if ri[r, I_NDEC] else 0
    if need <= kv - ri[r, I_USED]:
        ri[r, I_USED] += need
    else:  # rare: KV exhausted by decodes; replay V1's allocation order member by member
        preempted = True
        rid = ri[r, I_RHEAD]
        while rid >= 0 and rid != ri[r, I_TAIL]:
            if (q[rid, Q_OFF] + g) % bs == 0:
                while kv - ri[r, I_USED] < 1:
                    if _preempt_newest(ri, q, needs, heap, r) == rid:
                        break
                if q[rid, Q_RUNNING] == 0:
                    break
                ri[r, I_USED] += 1
            rid = q[rid, Q_RNEXT]
    n_dec = ri[r, I_NDEC]
    budget = ri[r, I_BUDGET] - n_dec
    ne = 0
    tail = ri[r, I_TAIL]
    if tail >= 0:
        c = ri[r, I_TAILC]
        new = min(q[tail, Q_IN] + q[tail, Q_GEN] - c, budget)
        extra = cdiv(c + new, bs) - cdiv(c, bs)
        if extra <= kv - ri[r, I_USED]:
            ri[r, I_USED] += extra
            ent[r, 0, 0] = tail
            ent[r, 0, 1] = new
            ent[r, 0, 2] = c
            ne = 1
            budget -= new
        else:
            _preempt_newest(ri, q, needs, heap, r)  # the tail is the newest: preempts itself
            preempted = True
    if not preempted:
        free = kv - ri[r, I_USED]
        max_seqs = ri[r, I_MAXSEQS]
        while ri[r, I_NWAIT] > 0 and budget > 0 and ri[r, I_NRUN] < max_seqs:
            rid = ri[r, I_WHEAD]
            if qf[rid, X_SUB] > vis:
                break
            h = q[rid, Q_HIT]
            new = min(q[rid, Q_IN] + q[rid, Q_GEN] - h, budget)
            blocks = cdiv(h + new, bs) + ri[r, I_STATEBLK]
            if blocks > free:
                break
            wait_popleft(ri, q, r)
            free -= blocks
            run_append(ri, q, r, rid)
            if qf[rid, X_SCHED] != qf[rid, X_SCHED]:
                qf[rid, X_SCHED] = s
            ent[r, ne, 0] = rid
            ent[r, ne, 1] = new
            ent[r, ne, 2] = h
            ne += 1
            budget -= new
        ri[r, I_USED] = kv - free
    tokens = n_dec
    ctx = ri[r, I_SUMOFF] + n_dec * (g + 1)
    pairs = 0
    for e in range(ne):
        new = ent[r, e, 1]
        c = ent[r, e, 2]
        tokens += new
        if new == 1:
            ctx += c + 1
        else:
            pairs += new * c + new * (new + 1) // 2
    ri[r, I_NENT] = ne
    ri[r, I_STEPDEC] = n_dec
    over = tokens - rf[r, F_KNEE]
    linear = rf[r, F_FLAT] + rf[r, F_PT] * over if over > 0.0 else rf[r, F_FLAT]
    if rf[r, F_EXP] > 0.0:  # MoE
        linear += expert_read_s(rf, r, tokens)
    cpu = rf[r, F_CPU] * (n_dec + ne)
    rf[r, F_T] = s + (rf[r, F_OV] + cpu + linear + rf[r, F_D] * ctx + rf[r, F_P] * pairs)
    rf[r, F_VIS] = s
    ri[r, I_STATE] = STEP
    ri[r, I_SEGS] += 1


@kernel(inline=True)
def _end_step(ri: Arr, rf: Arr, q: Arr, qf: Arr, needs: Arr, heap: Arr, ent: Arr, r: int) -> None:
    end = rf[r, F_T]
    g = ri[r, I_G]
    ri[r, I_G] = g + 1
    done = ri[r, I_STEPDEC]
    if ri[r, I_NDEC]:
        _finish_decodes(ri, q, qf, needs, heap, r, g, end)
    ri[r, I_TAIL] = -1
    for e in range(ri[r, I_NENT]):
        rid = ent[r, e, 0]
        new = ent[r, e, 1]
        c = ent[r, e, 2] + new
        done += new
        gen = q[rid, Q_GEN]
        if c == q[rid, Q_IN] + gen:
            gen += 1
            if gen == 1:
                qf[rid, X_FIRST] = end
            if gen == q[rid, Q_OUT]:
                qf[rid, X_FIN] = end
                ri[r, I_USED] -= cdiv(c, ri[r, I_BS]) + ri[r, I_STATEBLK]
                run_remove(ri, q, r, rid)
            else:
                q[rid, Q_GEN] = gen
                _join_decodes(ri, q, needs, heap, r, rid, c, gen)
        else:
            ri[r, I_TAIL] = rid
            ri[r, I_TAILC] = c
    ri[r, I_OUT] -= done
    ri[r, I_NENT] = 0

"""The event-skipping replica: exact vLLM V1 continuous batching without one event per step.

Same scheduler as `sim.engine.reference` (read it first), evaluated lazily: the owner calls
`advance_to(t)` before looking at the replica at `t` and `submit(rid, t)` to queue a request;
the replica schedules no event. In closed form, between two *batch-changing* moments:

* A **decode run**: steps with a fixed batch (each running sequence decodes one token, no
  admission, no finish before the last step). With `n` sequences step `i` takes `a + b·i` s
  (`b`: decode attention of the `n` tokens the contexts grow by), `k` steps take
  `k·a + b·k(k−1)/2`. It ends at the first finish (a heap of finish steps), before a step
  whose KV allocation would fail (a sequence needs a block every `block_size` steps), or at the
  step boundary after an admissible arrival (the quadratic, solved by `submit`).
* Every other step (prefill chunks, admissions, preemptions) is one **mixed step**, computed
  exactly like the reference but on aggregates, so a step costs O(1) in the batch size.

Invariant behind the aggregates (from V1's rules, see tests): at a step's start every running
sequence has one uncomputed token (decoding) except maybe the newest (*tail*, mid-prefill).

With async scheduling (`EngineLimits.async_scheduling`) a decision admits only requests queued
by the start of the step that just ended (`_vis`), so an arrival ends a decode run one
boundary later than without it.

Decode groups are kept by `off = computed − G` (`G`: steps executed): a member needs a new KV
block at step `G` iff `(off + G) % block_size == 0`; a hybrid model's state blocks
(`EngineLimits.state_blocks`) are taken at admission and freed at the finish or a preemption,
so a decode run's block boundaries are the tokens' alone. Tie rule, as the reference: at one instant
step ends apply first, then arrivals are routed, then the next step is decided. NOTE: ~2
closed-form segments per request instead of ~200 steps (`bench/engine.py` measures it).
"""

from __future__ import annotations

import heapq
import math
from collections import deque

from sim.engine.log import RequestLog
from sim.engine.steptime import EngineLimits, StepTimeModel, decode_steps_within, power

_IDLE, _RUN, _STEP, _PENDING = 0, 1, 2, 3


class FastReplica:
    """One replica's scheduler state, evaluated lazily between batch-changing moments."""

    def __init__(
        self, index: int, limits: EngineLimits, step_time: StepTimeModel, log: RequestLog
    ) -> None:
        self.index = index
        self.limits = limits
        self.step_time = step_time
        self.log = log
        self._bs = limits.block_size
        self._max_seqs = limits.max_num_seqs
        self._budget = limits.max_num_batched_tokens
        self._kv_blocks = limits.kv_blocks
        self._state_blocks = limits.state_blocks  # a running sequence's state (EngineLimits)
        self._async = limits.async_scheduling
        self._ov = step_time.overhead_s
        self._cpu = step_time.per_seq_s
        self._d = step_time.decode_attn_s_per_token
        self._flat = step_time.flat_s
        self._knee = step_time.knee_tokens
        self._per_token = step_time.per_token_s
        self._experts = step_time.expert_read_s
        self._miss = 1.0 - step_time.expert_share
        self._p = step_time.prefill_attn_s_per_pair
        self._key = 0
        self.steps = 0  # G: steps executed
        self._s0 = 0.0
        self._k = 0  # run length in steps
        self._a = 0.0
        self._b = 0.0
        self._n = 0
        self.busy_since = 0.0
        self.busy_periods: list[tuple[float, float]] = []
        self.segments = 0
        self._empty(0.0)

    def _empty(self, t: float) -> None:
        """No request on the replica, KV cache free, idle from `t` (a new or evicted replica)."""
        # Queues.
        self.waiting: deque[int] = deque()
        self.running: dict[int, None] = {}  # admission order; popitem() yields the newest
        self._gen: dict[int, int] = {}  # tokens generated, for waiting and tail sequences
        self._sub: dict[int, float] = {}  # when each request was queued here
        # async scheduling: the start of the step that ends next (what the scheduler has seen
        # when it decides the step after it); inf while idle (EngineLimits.async_scheduling)
        self._vis = math.inf
        # Decode group (every running sequence but the tail).
        self._off: dict[int, int] = {}
        self._goff: dict[int, int] = {}
        self._fin_key: dict[int, int] = {}
        self._heap: list[tuple[int, int, int]] = []  # (finish step, key, rid), lazily deleted
        # _need[j] = members needing a new KV block in a step whose counter ≡ j (mod block
        # size); stored twice over so that a window of steps is one slice.
        self._need = [0] * (2 * self._bs)
        self._sum_off = 0
        self._n_dec = 0
        # The tail: a running sequence part-way through its prefill (at most one), or -1.
        self._tail = -1
        self._tail_computed = 0
        self._used = 0
        self.outstanding_tokens = 0
        self._entries: list[tuple[int, int, int]] = []  # mixed step prefill entries (rid, new, c)
        self._step_dec = 0  # decode tokens in the mixed step
        # Segment under way: _RUN (decode run), _STEP (one mixed step), _PENDING (a decision
        # due at self._t), _IDLE.
        self._state = _IDLE
        self._t = t  # end of the segment under way / time of the pending decision

    # ------------------------------------------------------------------ public face
    def has_work(self) -> bool:
        return self._state != _IDLE

    def submit(self, rid: int, t: float, generated: int = 0) -> None:
        """Queue request `rid` at time `t` (after `advance_to(t)`; `limits.accepts` checked).

        `generated` > 0 resubmits a request evicted from another replica with that many output
        tokens already sent: its prompt and those tokens are prefilled again (recomputed), then
        it decodes the rest. Either way the replica computes input + output − 1 tokens for it.
        """
        log = self.log
        p = log.input_tokens[rid] - log.cached_tokens[rid]
        log.replica[rid] = self.index
        self.outstanding_tokens += p + log.output_tokens[rid] - 1
        self._gen[rid] = generated
        self._sub[rid] = t
        was_empty = not self.waiting
        self.waiting.append(rid)
        state = self._state
        if state == _IDLE:
            self._state = _PENDING
            self._t = t
            self._vis = math.inf
            self.busy_since = t
        elif state == _RUN and was_empty and self._t > t:
            self._maybe_cut_run(rid, t)

    def queued_prompt_tokens(self) -> int:
        """Tokens the waiting queue must prefill before its requests decode (call after advance)."""
        inputs = self.log.input_tokens
        cached = self.log.cached_tokens
        gen = self._gen
        return sum(inputs[r] + gen[r] - cached[r] for r in self.waiting)

    def load_at(self, t: float) -> int:
        """`advance_to(t)`, then `remaining_tokens_at(t)`: the router's one call per replica."""
        # NOTE: fused and inlined because routing calls it for every replica on every arrival;
        # it made the 4-replica benchmark ~15% faster than two method calls.
        state = self._state
        if state != _IDLE and self._t <= t:
            self.advance_to(t)
            state = self._state
        if state == _RUN and t > self._s0:
            return self.outstanding_tokens - self._n * decode_steps_within(
                self._a, self._b, t - self._s0
            )
        return self.outstanding_tokens

    def remaining_tokens_at(self, t: float) -> int:
        """Tokens still to compute for this replica's requests after the steps ended by `t`."""
        if self._state == _RUN and t > self._s0:
            return self.outstanding_tokens - self._n * decode_steps_within(
                self._a, self._b, t - self._s0
            )
        return self.outstanding_tokens

    def cached_tokens_at(self, t: float) -> int:
        """Tokens the running sequences hold in the KV cache after the steps ended by `t`
        (call after `advance_to(t)`): the decode group's computed tokens and the tail's."""
        g = self.steps
        if self._state == _RUN and t > self._s0:
            g += decode_steps_within(self._a, self._b, t - self._s0)
        tail = self._tail_computed if self._tail >= 0 else 0
        return self._sum_off + self._n_dec * g + tail

    def advance_to(self, t: float) -> None:
        """Apply every step that ends at or before `t`; decide every step that starts before it."""
        while self._state != _IDLE and self._t < t:
            state = self._state
            if state == _RUN:
                self._end_run()
            elif state == _STEP:
                self._end_step()
            self._decide(self._t)
        if self._t == t:
            state = self._state
            if state == _RUN:
                self._end_run()
                self._state = _PENDING
            elif state == _STEP:
                self._end_step()
                self._state = _PENDING

    def next_change_s(self) -> float:
        """When the segment under way ends (a decision due now is taken first, so call this
        after every arrival of the instant is submitted); inf when idle. For owners that drive
        one replica without SimPy (`sim.engine.closed_loop`)."""
        if self._state == _PENDING:
            self._decide(self._t)
        return self._t if self._state != _IDLE else math.inf

    def flush(self) -> None:
        """Run until every queued request has finished."""
        self.advance_to(math.inf)

    def evict(self, t: float) -> list[tuple[int, int]]:
        """The instance is gone at `t`: take back every unfinished request; empty the replica.

        Steps that end at or before `t` are applied (in a decode run, every whole step done by
        `t`); the step under way at `t` is lost. Returns (rid, output tokens already generated)
        for the running sequences in admission order, then the waiting queue in order — the
        order a router re-queues them in. The replica is left idle and empty (KV freed), ready
        to serve again when its replacement is up.
        """
        self.advance_to(t)
        if self._state == _RUN and t > self._s0:
            k = decode_steps_within(self._a, self._b, t - self._s0)
            if k > 0:
                self._k = k
                self._t = self._s0 + self._span(k)
                self._end_run()
        g = self.steps
        out: list[tuple[int, int]] = []
        goff = self._goff
        for rid in self.running:  # decode members, else the tail or admitted by the lost step
            out.append((rid, goff[rid] + g if rid in goff else self._gen[rid]))
        out.extend((rid, self._gen[rid]) for rid in self.waiting)
        if self._state != _IDLE:
            self.busy_periods.append((self.busy_since, t))
        self._empty(t)
        return out

    # ------------------------------------------------------------------ closed forms
    def _span(self, k: int) -> float:
        """Seconds taken by the first `k` steps of the current run."""
        return k * (self._a + self._b * (k - 1) * 0.5)

    def _cum_need(self, g0: int, k: int) -> int:
        """KV blocks the decode group needs over the k steps g0 .. g0+k-1."""
        if k <= 0:
            return 0
        full, rem = divmod(k, self._bs)
        if rem:
            s = g0 % self._bs
            return full * self._n_dec + sum(self._need[s : s + rem])
        return full * self._n_dec

    # ------------------------------------------------------------------ decisions
    def _head_fits(self, rid: int, free_after_decodes: int, n_running: int) -> bool:
        if n_running >= self._max_seqs:
            return False
        left = self._budget - n_running
        if left <= 0:
            return False
        h = self.log.cached_tokens[rid]
        new = min(self.log.input_tokens[rid] + self._gen[rid] - h, left)
        return -(-(h + new) // self._bs) + self._state_blocks <= free_after_decodes

    def _decide(self, s: float) -> None:
        """Choose what runs from time `s`: a decode run, one mixed step, or nothing."""
        g = self.steps
        n = self._n_dec
        free = self._kv_blocks - self._used
        need = self._need[g % self._bs] if n else 0
        # async scheduling: only what was queued by the start of the step that just ended
        vis = self._vis if self._async and (n or self._tail >= 0) else math.inf
        waiting = self.waiting
        seen = bool(waiting) and self._sub[waiting[0]] <= vis
        if (
            self._tail < 0
            and need <= free
            and not (seen and self._head_fits(waiting[0], free - need, n))
        ):
            if n == 0:
                if waiting:
                    raise RuntimeError("replica idle with an unadmittable queue head")
                self._state = _IDLE
                self.busy_periods.append((self.busy_since, s))
                return
            self._plan_run(s, free)
            if waiting and not seen:  # the head is seen when the run's first step ends
                self._cut_run(waiting[0], 1)
            return
        self._mixed_step(s, vis)

    def _plan_run(self, s: float, free: int) -> None:
        heap = self._heap
        fin_key = self._fin_key
        while fin_key.get(heap[0][2]) != heap[0][1]:
            heapq.heappop(heap)
        g = self.steps
        k = heap[0][0] - g + 1
        n = self._n_dec
        bs = self._bs
        if n * (-(-k // bs)) > free:  # the KV cache may run out within the run
            full = free // n
            j = full * bs
            total = full * n
            start = (g + j) % bs
            for i, count in enumerate(self._need[start : start + bs]):
                total += count
                if total > free:
                    j += i
                    break
            k = min(k, j)
        # NOTE: StepTimeModel.linear_s and _span inlined (same expressions): this runs once or
        # twice per request; the inlining and the fused helpers below bought ~15% end to end.
        extra = n - self._knee
        linear = self._flat + self._per_token * extra if extra > 0.0 else self._flat
        if self._experts > 0.0:
            linear += self._experts * (1.0 - power(self._miss, n))
        d = self._d
        self._a = a = self._ov + self._cpu * n + linear + d * (self._sum_off + n * (g + 1))
        self._b = b = d * n
        self._n = n
        self._s0 = s
        self._k = k
        self._t = s + k * (a + b * (k - 1) * 0.5)
        self._state = _RUN
        self.segments += 1

    def _maybe_cut_run(self, rid: int, t: float) -> None:
        """End the run at the first boundary at or after `t` (async scheduling: the one after,
        when the scheduler has seen `rid`) if `rid` could be admitted there."""
        a, b = self._a, self._b
        delta = t - self._s0
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
        self._cut_run(rid, k + 1 if self._async else k)

    def _cut_run(self, rid: int, k: int) -> None:
        """End the run at its `k`-th step boundary if `rid` could be admitted there."""
        if k >= self._k:
            return
        free = self._kv_blocks - self._used
        n = self._n
        # Cheap bound first (a member needs at most one block per block_size steps); the exact
        # count only when the bound is not enough.
        if self._head_fits(rid, free - n * (-(-(k + 1) // self._bs)), n) or self._head_fits(
            rid, free - self._cum_need(self.steps, k + 1), n
        ):
            self._k = k
            self._t = self._s0 + self._span(k)

    def _end_run(self) -> None:
        k = self._k
        g0 = self.steps
        n = self._n
        full, rem = divmod(k, self._bs)  # _cum_need(g0, k), inlined
        if rem:
            start = g0 % self._bs
            self._used += full * n + sum(self._need[start : start + rem])
        else:
            self._used += full * n
        self.outstanding_tokens -= n * k
        self.steps = g0 + k
        self._vis = self._s0 + self._span(k - 1)  # the start of the run's last step
        self._finish_decodes(g0 + k - 1, self._t)

    def _finish_decodes(self, last_step: int, end: float) -> None:
        """Retire decode-group members whose final token was sampled in step `last_step`."""
        heap = self._heap
        fin_key = self._fin_key
        log = self.log
        bs = self._bs
        need = self._need
        g = self.steps
        while heap and heap[0][0] <= last_step:
            _, key, rid = heapq.heappop(heap)
            if fin_key.get(rid) != key:
                continue
            off = self._off.pop(rid)
            del self._goff[rid], fin_key[rid], self.running[rid]
            j = (-off) % bs  # _unneed(off), inlined
            need[j] -= 1
            need[j + bs] -= 1
            self._sum_off -= off
            self._n_dec -= 1
            self._used -= -(-(off + g) // bs) + self._state_blocks
            log.finish_s[rid] = end
            del self._gen[rid], self._sub[rid]

    def _join_decodes(self, rid: int, computed: int, generated: int) -> None:
        g = self.steps
        off = computed - g
        goff = generated - g
        self._off[rid] = off
        self._goff[rid] = goff
        self._key += 1
        self._fin_key[rid] = self._key
        heapq.heappush(self._heap, (self.log.output_tokens[rid] - 1 - goff, self._key, rid))
        j = (-off) % self._bs
        self._need[j] += 1
        self._need[j + self._bs] += 1
        self._sum_off += off
        self._n_dec += 1

    def _unneed(self, off: int) -> None:
        j = (-off) % self._bs
        self._need[j] -= 1
        self._need[j + self._bs] -= 1

    def _preempt_newest(self) -> int:
        """Preempt the newest running sequence (recompute): free its KV, requeue it at the head."""
        rid, _ = self.running.popitem()
        bs = self._bs
        if rid == self._tail:
            computed = self._tail_computed
            self._tail = -1
        else:
            g = self.steps
            off = self._off.pop(rid)
            goff = self._goff.pop(rid)
            del self._fin_key[rid]
            self._unneed(off)
            self._sum_off -= off
            self._n_dec -= 1
            computed = off + g
            self._gen[rid] = goff + g
        self._used -= -(-computed // bs) + self._state_blocks
        self.outstanding_tokens += computed - self.log.cached_tokens[rid]
        self.log.preemptions[rid] += 1
        self.waiting.appendleft(rid)
        return rid

    def _mixed_step(self, s: float, vis: float) -> None:
        """Schedule one step exactly as the reference does, on aggregates; requests queued
        after `vis` are not admitted (async scheduling)."""
        bs = self._bs
        g = self.steps
        preempted = False
        need = self._need[g % bs] if self._n_dec else 0
        if need <= self._kv_blocks - self._used:
            self._used += need
        else:  # rare: KV exhausted by decodes; replay V1's allocation order member by member
            preempted = True
            for rid in list(self.running):
                if rid not in self.running or rid == self._tail:
                    break
                if (self._off[rid] + g) % bs:
                    continue
                while self._kv_blocks - self._used < 1:
                    if self._preempt_newest() == rid:
                        break
                if rid in self.running:
                    self._used += 1
        n_dec = self._n_dec
        budget = self._budget - n_dec
        entries: list[tuple[int, int, int]] = []
        log = self.log
        tail = self._tail
        if tail >= 0:
            c = self._tail_computed
            new = min(log.input_tokens[tail] + self._gen[tail] - c, budget)
            extra = -(-(c + new) // bs) - (-(-c // bs))
            if extra <= self._kv_blocks - self._used:
                self._used += extra
                entries.append((tail, new, c))
                budget -= new
            else:
                self._preempt_newest()  # the tail is the newest: it preempts itself
                preempted = True
        if not preempted:
            waiting = self.waiting
            running = self.running
            first_scheduled = log.first_scheduled_s
            inputs = log.input_tokens
            cached = log.cached_tokens
            gen = self._gen
            free = self._kv_blocks - self._used
            max_seqs = self._max_seqs
            sub = self._sub
            state = self._state_blocks
            while waiting and budget > 0 and len(running) < max_seqs:
                rid = waiting[0]
                if sub[rid] > vis:
                    break
                h = cached[rid]
                new = min(inputs[rid] + gen[rid] - h, budget)
                blocks = -(-(h + new) // bs) + state
                if blocks > free:
                    break
                waiting.popleft()
                free -= blocks
                running[rid] = None
                if first_scheduled[rid] != first_scheduled[rid]:
                    first_scheduled[rid] = s
                entries.append((rid, new, h))
                budget -= new
            self._used = self._kv_blocks - free
        tokens = n_dec
        ctx = self._sum_off + n_dec * (g + 1)
        pairs = 0
        for _, new, c in entries:
            tokens += new
            if new == 1:
                ctx += c + 1
            else:
                pairs += new * c + new * (new + 1) // 2  # prefill_pairs(new, c), inlined
        self._entries = entries
        self._step_dec = n_dec
        # StepTimeModel.step_s, inlined (same expression order)
        over = tokens - self._knee
        linear = self._flat + self._per_token * over if over > 0.0 else self._flat
        if self._experts > 0.0:
            linear += self._experts * (1.0 - power(self._miss, tokens))
        seqs = n_dec + len(entries)
        self._t = s + (self._ov + self._cpu * seqs + linear + self._d * ctx + self._p * pairs)
        self._vis = s
        self._state = _STEP
        self.segments += 1

    def _end_step(self) -> None:
        end = self._t
        g = self.steps
        self.steps = g + 1
        done = self._step_dec
        if self._n_dec:
            self._finish_decodes(g, end)
        log = self.log
        self._tail = -1
        for rid, new, c in self._entries:
            done += new
            c += new
            gen = self._gen[rid]
            if c == log.input_tokens[rid] + gen:
                gen += 1
                if gen == 1:
                    log.first_token_s[rid] = end
                if gen == log.output_tokens[rid]:
                    log.finish_s[rid] = end
                    self._used -= -(-c // self._bs) + self._state_blocks
                    del self.running[rid], self._gen[rid], self._sub[rid]
                else:
                    self._gen[rid] = gen
                    self._join_decodes(rid, c, gen)
            else:
                self._tail = rid
                self._tail_computed = c
        self.outstanding_tokens -= done
        self._entries = []

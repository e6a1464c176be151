"""The reference replica: vLLM (V1 scheduler) continuous batching, one iteration at a time.

This is the slow, obviously-correct engine. It keeps one record per sequence and replays the
scheduler literally every step; `sim.model` drives it with one SimPy event per iteration. The
event-skipping engine (`sim.engine.fast`) must reproduce its per-request timestamps exactly;
tests and `bench/engine.py` compare the two.

Scheduler semantics (vLLM V1 `Scheduler.schedule`, recompute preemption):
1. Running sequences, in admission order, each get min(uncomputed tokens, remaining budget)
   tokens. A decoding sequence has exactly one uncomputed token. Before a sequence is scheduled
   its KV blocks are allocated; if the cache is full the newest running sequence is preempted
   (KV freed, computed tokens reset to 0, back to the head of the waiting queue), repeatedly,
   until the allocation succeeds or the sequence preempted itself.
2. If nothing was preempted this step, waiting sequences are admitted FCFS while the budget,
   `max_num_seqs` and free blocks allow; the first that does not fit stops admission.
3. At the end of the step, a sequence whose known tokens are all computed samples one token.
   Its first sampled token stops TTFT; the last one (output_tokens) finishes it and frees KV.
   A sequence's KV is the blocks of its computed tokens plus, for a hybrid model, its
   recurrent state's `EngineLimits.state_blocks`, taken with its first blocks and freed with
   them (at the finish or a preemption).
4. With async scheduling (`EngineLimits.async_scheduling`, vLLM >= 0.14) step 2 only admits
   requests queued by the start of the step that just ended (vLLM chose the batch then),
   unless nothing is running. A request starts with its prefix-cache hit computed
   (`RequestLog.cached_tokens`), and a preempted one finds it again.

With `limits.scheduler == "v0"` (vLLM 0.5-0.7 `Scheduler._schedule_default`, chunked prefill
off; only this engine runs it, `sim.model` routes V0 replicas here):
1. Prefills first: waiting sequences are admitted FCFS with their whole prompt while the token
   budget, `max_num_seqs` (running included) and the KV cache allow; V0's block manager keeps a
   watermark of 1 % of the blocks free (`BlockSpaceManager.can_allocate`). If anything was
   admitted the step is prefill-only (no decodes), and each admitted sequence samples its first
   token at the step's end.
2. Otherwise every running sequence decodes, for `num_scheduler_steps` steps in a row (V0
   multi-step): KV for all of them is allocated at the start (lookahead slots; when short, the
   newest running sequence is preempted by recompute, V0's `_schedule_running`), nothing is
   admitted until the group ends, and the tokens reach the client at the group's end (output
   processing runs once per group), so a sequence that reaches its last token mid-group keeps
   its slot, computes the rest of the group and finishes at the group's end. The group's
   first step pays the step's CPU time (`overhead_s`: scheduling, input preparation, output
   processing); the others do not: multi-step scheduling exists to amortise that CPU work over
   the group (vllm-project/vllm#6854: "the 4ms only needs to be incurred once for every 8
   decode"; the inputs advance on the GPU between steps).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from sim.engine.log import RequestLog
from sim.engine.steptime import EngineLimits, StepTimeModel, prefill_pairs


@dataclass(slots=True)
class _Seq:
    rid: int
    input_tokens: int
    output_tokens: int
    generated: int = 0
    computed: int = 0
    blocks: int = 0
    cached: int = 0  # prompt tokens found in the prefix cache (`RequestLog.cached_tokens`)
    submitted: float = 0.0  # when it was queued here (async scheduling's visibility)

    @property
    def known_tokens(self) -> int:
        return self.input_tokens + self.generated


class ReferenceReplica:
    """One replica's scheduler state, advanced one step at a time by its owner.

    Protocol: `begin_step(now)` decides the batch and returns the step duration (or None when
    there is nothing to run); `end_step(end)` applies the step's results at its end time.
    """

    def __init__(
        self, index: int, limits: EngineLimits, step_time: StepTimeModel, log: RequestLog
    ) -> None:
        self.index = index
        self.limits = limits
        self.step_time = step_time
        self.log = log
        self.waiting: deque[_Seq] = deque()
        self.running: list[_Seq] = []
        self.free_blocks = limits.kv_blocks
        self.outstanding_tokens = 0
        self.steps = 0
        self._scheduled: list[tuple[_Seq, int]] = []
        self._group: list[_Seq] = []  # V0: the decode group under way
        self._group_left = 0  # V0: steps of the decode group still to run
        self._group_steps = 0  # V0: steps of the decode group done
        self._watermark = int(0.01 * limits.kv_blocks)  # V0 block manager's watermark (1 %)
        # async scheduling: the start of the step under way (the step that has ended when the
        # next decision is taken); inf while idle (EngineLimits.async_scheduling)
        self._visible_until = math.inf
        self.on_submit: Callable[[int], None] | None = None

    def submit(self, rid: int, t: float, generated: int = 0) -> None:
        """Queue request `rid` at `t` (the caller has checked `limits.accepts`), then call
        `on_submit` (the owner's wake-up of a sleeping replica process).

        `generated` > 0: an evicted request that already sent that many tokens (see
        `FastReplica.submit`); its prompt and those tokens are prefilled again.
        """
        p = self.log.input_tokens[rid]
        o = self.log.output_tokens[rid]
        h = self.log.cached_tokens[rid]
        self.log.replica[rid] = self.index
        self.waiting.append(_Seq(rid, p, o, generated, computed=h, cached=h, submitted=t))
        self.outstanding_tokens += p - h + o - 1
        if self.on_submit is not None:
            self.on_submit(self.index)

    def evict(self) -> list[tuple[int, int]]:
        """Take back every unfinished request (the step under way is lost); empty the replica.

        Returns (rid, output tokens generated) for running sequences in admission order, then
        waiting ones in queue order, as `FastReplica.evict` does.
        """
        out = [(s.rid, s.generated) for s in self.running]
        out.extend((s.rid, s.generated) for s in self.waiting)
        self.running = []
        self.waiting.clear()
        self.free_blocks = self.limits.kv_blocks
        self.outstanding_tokens = 0
        self._scheduled = []
        self._group = []
        self._group_left = 0
        self._visible_until = math.inf
        return out

    def queued_prompt_tokens(self) -> int:
        """Tokens the waiting queue must prefill before its requests decode."""
        return sum(s.known_tokens - s.computed for s in self.waiting)

    def cached_tokens_at(self, t: float) -> int:
        """Tokens the running sequences hold in the KV cache (`FastReplica.cached_tokens_at`;
        the owner has applied every step ending by `t`)."""
        return sum(s.computed for s in self.running)

    def remaining_tokens(self) -> int:
        """Tokens still to compute for every request on this replica (the router's load signal)."""
        return self.outstanding_tokens

    def advance_to(self, t: float) -> None:
        """Nothing to do: the owner's process applies each step at its end (`end_step`)."""

    def load_at(self, t: float) -> int:
        """The router's load signal (`FastReplica.load_at`): the replica's owner has already
        applied every step that ends by `t`, so this is `remaining_tokens()`."""
        return self.outstanding_tokens

    def has_work(self) -> bool:
        return bool(self.running or self.waiting)

    def _blocks_needed(self, seq: _Seq, new_tokens: int) -> int:
        """Blocks `seq` must be given to compute `new_tokens` more: those of its tokens, plus
        its state's (`EngineLimits.state_blocks`) when it holds none yet."""
        bs = self.limits.block_size
        return -(-(seq.computed + new_tokens) // bs) + self.limits.state_blocks - seq.blocks

    def _preempt_last(self) -> _Seq:
        victim = self.running.pop()
        self.free_blocks += victim.blocks
        self.outstanding_tokens += victim.computed - victim.cached
        victim.blocks = 0
        victim.computed = victim.cached
        self.log.preemptions[victim.rid] += 1
        self.waiting.appendleft(victim)
        return victim

    def begin_step(self, now: float) -> float | None:
        """Schedule one iteration starting at `now`; return its duration in seconds."""
        if not self.limits.v1:
            return self._begin_step_v0(now)
        budget = self.limits.max_num_batched_tokens
        scheduled: list[tuple[_Seq, int]] = []
        preempted = False
        # what the scheduler has seen when it chooses this step (EngineLimits.async_scheduling)
        visible = self._visible_until if self.limits.async_scheduling and self.running else math.inf
        i = 0
        while i < len(self.running) and budget > 0:
            seq = self.running[i]
            new = min(seq.known_tokens - seq.computed, budget)
            ok = True
            while True:
                need = self._blocks_needed(seq, new)
                if need <= self.free_blocks:
                    self.free_blocks -= need
                    seq.blocks += need
                    break
                victim = self._preempt_last()
                preempted = True
                if victim is seq:
                    ok = False
                    break
            if not ok:
                break
            scheduled.append((seq, new))
            budget -= new
            i += 1
        if not preempted:
            while self.waiting and budget > 0 and len(self.running) < self.limits.max_num_seqs:
                seq = self.waiting[0]
                if seq.submitted > visible:
                    break
                new = min(seq.known_tokens - seq.computed, budget)
                need = self._blocks_needed(seq, new)
                if need > self.free_blocks:
                    break
                self.waiting.popleft()
                self.free_blocks -= need
                seq.blocks += need
                self.running.append(seq)
                if self.log.first_scheduled_s[seq.rid] != self.log.first_scheduled_s[seq.rid]:
                    self.log.first_scheduled_s[seq.rid] = now
                scheduled.append((seq, new))
                budget -= new
        self._scheduled = scheduled
        if not scheduled:
            self._visible_until = math.inf
            return None
        self._visible_until = now
        tokens = 0
        decode_ctx = 0
        pairs = 0
        for seq, new in scheduled:
            tokens += new
            if new == 1:
                decode_ctx += seq.computed + 1
            else:
                pairs += prefill_pairs(new, seq.computed)
        self.steps += 1
        return self.step_time.step_s(tokens, decode_ctx, pairs, len(scheduled))

    def end_step(self, end: float) -> None:
        """Apply the scheduled step's results at time `end`."""
        if self._group_left:
            self._end_group_step(end)
            return
        log = self.log
        finished = False
        for seq, new in self._scheduled:
            seq.computed += new
            self.outstanding_tokens -= new
            if seq.computed == seq.known_tokens:
                seq.generated += 1
                if seq.generated == 1:
                    log.first_token_s[seq.rid] = end
                if seq.generated == seq.output_tokens:
                    log.finish_s[seq.rid] = end
                    self.free_blocks += seq.blocks
                    seq.blocks = 0
                    finished = True
        if finished:
            self.running = [s for s in self.running if s.generated < s.output_tokens]
        self._scheduled = []

    # ------------------------------------------------------------------ V0 (module docstring)
    def _decode_step_time(self) -> float:
        group = self._group
        self.steps += 1
        ctx = sum(s.computed + 1 for s in group)
        step_s = self.step_time.step_s(len(group), ctx, 0, len(group))
        if self._group_steps:  # not the group's first step: its CPU time was paid (docstring)
            step_s -= self.step_time.overhead_s
        return step_s

    def _begin_step_v0(self, now: float) -> float | None:
        if self._group_left:  # the decode group goes on: same batch, one more token each
            return self._decode_step_time()
        budget = self.limits.max_num_batched_tokens
        scheduled: list[tuple[_Seq, int]] = []
        while self.waiting and len(self.running) < self.limits.max_num_seqs:
            seq = self.waiting[0]
            new = seq.known_tokens - seq.computed
            need = self._blocks_needed(seq, new)
            watermark = self._watermark if self.running else 0
            if new > budget or self.free_blocks - need < watermark:
                break
            self.waiting.popleft()
            self.free_blocks -= need
            seq.blocks += need
            self.running.append(seq)
            if self.log.first_scheduled_s[seq.rid] != self.log.first_scheduled_s[seq.rid]:
                self.log.first_scheduled_s[seq.rid] = now
            scheduled.append((seq, new))
            budget -= new
        if scheduled:
            self._scheduled = scheduled
            self.steps += 1
            tokens = sum(new for _, new in scheduled)
            pairs = sum(prefill_pairs(new, s.computed) for s, new in scheduled if new > 1)
            ctx = sum(s.computed + 1 for s, new in scheduled if new == 1)  # as a decode
            return self.step_time.step_s(tokens, ctx, pairs, len(scheduled))
        steps = self.limits.num_scheduler_steps
        i = 0
        while i < len(self.running):
            seq = self.running[i]
            need = self._blocks_needed(seq, steps)
            if need <= self.free_blocks:
                self.free_blocks -= need
                seq.blocks += need
                i += 1
                continue
            if self._preempt_last() is seq:
                break
        if not self.running:  # everything preempted: the cache is empty, prefill again
            return self._begin_step_v0(now) if self.waiting else None
        self._group = list(self.running)
        self._group_left = steps
        self._group_steps = 0
        return self._decode_step_time()

    def _end_group_step(self, end: float) -> None:
        """One step of a V0 decode group: every member computes a token; at the group's end
        the client gets the group's tokens, and finished sequences leave."""
        self._group_left -= 1
        self._group_steps += 1
        for seq in self._group:
            seq.computed += 1
            if seq.generated + self._group_steps <= seq.output_tokens:
                self.outstanding_tokens -= 1
        if self._group_left:
            return
        log = self.log
        k = self._group_steps
        for seq in self._group:
            before = seq.generated
            seq.generated = min(seq.output_tokens, before + k)
            seq.computed = seq.known_tokens - 1 if seq.generated < seq.output_tokens else seq.cached
            if before == 0:
                log.first_token_s[seq.rid] = end
            if seq.generated == seq.output_tokens:
                log.finish_s[seq.rid] = end
                self.free_blocks += seq.blocks
                seq.blocks = 0
        self.running = [s for s in self.running if s.generated < s.output_tokens]
        self._group = []

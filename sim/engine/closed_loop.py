"""Closed-loop clients on one replica: `concurrency` clients, each sending its next request
`think_s` after its previous one completes (`vllm bench serve --max-concurrency`, GuideLLM
`concurrent`, genai-perf's concurrency mode).

vLLM's benchmark client (`vllm/benchmarks/serve.py`, `limited_request_func`) holds a semaphore
of `max_concurrency` around each request and starts the request's clock after acquiring it, so
the time spent waiting for a free client is not in the request's TTFT or E2E: a request's
`arrival_s` here is when it is sent. With a finite `--request-rate`, request i is also not sent
before its scheduled time `ready_s[i]` (the rate limiter runs ahead of the semaphore).
A request longer than `max_model_len` is rejected at once and frees its client at its send time.

The replica is driven without SimPy, with the engines' tie rule: at one instant, step ends are
applied first, then the requests of that instant are sent, then the next step is decided (a
request sent at a completion instant joins the next step). `engine` "lazy" uses `FastReplica`
(event skipping), "reference" the one-step-at-a-time `ReferenceReplica` (and every V0 replica);
both give the same timestamps (tests/test_closed_loop.py).
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence

from sim.engine.fast import FastReplica
from sim.engine.log import RequestLog
from sim.engine.reference import ReferenceReplica
from sim.engine.steptime import EngineLimits, StepTimeModel

SEND_CLOCK_S = 2.0**-30
"""A client's next send after a think time is stamped on a clock of 2^-30 s (0.93 ns), rounded
up. A send at a finish plus the think time can otherwise fall exactly, in real arithmetic, on
another sequence's step boundary (identical requests make every step alike), and which side
of it the send lands on is then decided by rounding, which the event-skipping closed forms and
the reference's running sums do not share: one admission apart. On the clock the send is
either exactly a boundary (dyadic step times, exact in both) or generically far from one in
ulps. A send with no think time is the finish instant itself, joining the next step in both."""


class _Clients:
    """Free clients (a heap of (free at, client)) and the next request to send."""

    def __init__(
        self, log: RequestLog, limits: EngineLimits, concurrency: int, ready_s: Sequence[float]
    ) -> None:
        self.log = log
        self.limits = limits
        self.ready = ready_s
        self.free = [(0.0, c) for c in range(concurrency)]
        self.next = 0
        self.inflight: dict[int, int] = {}  # rid -> client, in send order

    def next_send_s(self) -> float:
        if self.next >= len(self.log) or not self.free:
            return math.inf
        return max(self.free[0][0], self.ready[self.next])

    def send_until(self, t: float, submit: ReferenceReplica | FastReplica) -> None:
        """Send, in order, every request whose send time is at or before `t`."""
        log = self.log
        while (ts := self.next_send_s()) <= t:
            _, client = heapq.heappop(self.free)
            rid = self.next
            self.next += 1
            log.arrival_s[rid] = ts
            if not self.limits.accepts(log.input_tokens[rid], log.output_tokens[rid]):
                log.rejected[rid] = True
                heapq.heappush(self.free, (ts, client))
                continue
            self.inflight[rid] = client
            submit.submit(rid, ts)

    def collect(self, t: float, think_s: float) -> None:
        """Free the clients whose request finished (at `t`)."""
        finish = self.log.finish_s
        done = [rid for rid in self.inflight if finish[rid] == finish[rid]]
        send = t if think_s == 0.0 else math.ceil((t + think_s) / SEND_CLOCK_S) * SEND_CLOCK_S
        for rid in done:
            heapq.heappush(self.free, (send, self.inflight.pop(rid)))


def run_closed_loop(
    log: RequestLog,
    limits: EngineLimits,
    step_time: StepTimeModel,
    concurrency: int,
    think_s: float = 0.0,
    ready_s: Sequence[float] | None = None,
    engine: str = "lazy",
) -> int:
    """Serve every request of `log` (in index order) from `concurrency` closed-loop clients;
    fill `log.arrival_s` (send times) and the timestamps. Returns the steps run."""
    if concurrency < 1 or not think_s >= 0.0:
        raise ValueError("concurrency must be >= 1 and think_s >= 0")
    clients = _Clients(log, limits, concurrency, ready_s or [0.0] * len(log))
    if engine == "reference" or not limits.v1:
        return _reference(log, limits, step_time, clients, think_s)
    if engine != "lazy":
        raise ValueError(f"closed-loop clients run on 'lazy' or 'reference', not {engine!r}")
    rep = FastReplica(0, limits, step_time, log)
    clients.send_until(0.0, rep)
    while True:
        te = rep.next_change_s()
        tc = clients.next_send_s()
        if math.isinf(te) and math.isinf(tc):
            return rep.steps
        if tc < te:
            rep.advance_to(tc)
            clients.send_until(tc, rep)
            continue
        rep.advance_to(te)
        clients.collect(te, think_s)
        clients.send_until(te, rep)


def _reference(
    log: RequestLog,
    limits: EngineLimits,
    step_time: StepTimeModel,
    clients: _Clients,
    think_s: float,
) -> int:
    rep = ReferenceReplica(0, limits, step_time, log)
    now = 0.0
    clients.send_until(now, rep)
    while True:
        if not rep.has_work():
            now = clients.next_send_s()
            if math.isinf(now):
                return rep.steps
            clients.send_until(now, rep)
            continue
        duration = rep.begin_step(now)
        if duration is None:
            raise RuntimeError("reference replica has work but scheduled nothing")
        now += duration
        rep.end_step(now)
        clients.collect(now, think_s)
        clients.send_until(now, rep)

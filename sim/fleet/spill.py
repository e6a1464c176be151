"""Spill rules: when the router sends a request to the paid API instead of a GPU replica.

Each rule is a plain function of the healthy pool and the replica the routing policy picked;
`must_spill` fires when any rule the experiment's `[api.spill]` (`SpillSpec`) enables fires.
The "no healthy replica at all" case is the router's (`SpillSpec.when_no_replica`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from sim.config import SpillSpec


class Queued(Protocol):
    """What a spill rule may ask of a replica."""

    @property
    def waiting(self) -> Sequence[object]:
        """Requests queued for prefill."""
        ...

    def queued_prompt_tokens(self) -> int:
        """Tokens the waiting queue must prefill before its requests decode."""
        ...


def queue_over(pool: Sequence[Queued], limit: int) -> bool:
    """Every healthy replica has more than `limit` requests waiting."""
    return all(len(r.waiting) > limit for r in pool)


def over_wait(
    best: Queued, best_load: int, prompt_tokens: int, prefill_rate: float, max_wait_s: float
) -> bool:
    """The predicted queueing before this request's prefill on `best` exceeds `max_wait_s`:
    (tokens queued ahead + the request's own `prompt_tokens`) ÷ the replica's full-budget
    prefill rate (tokens/s). An idle replica (`best_load` 0) never spills."""
    if best_load <= 0:
        return False
    queued = best.queued_prompt_tokens() + prompt_tokens
    return bool(queued / prefill_rate > max_wait_s)


def must_spill(
    spill: SpillSpec,
    pool: Sequence[Queued],
    best: Queued,
    best_load: int,
    prompt_tokens: int,
    prefill_rate: float,
) -> bool:
    """Whether any enabled rule of `spill` sends the request to the API."""
    if spill.queue_over is not None and queue_over(pool, spill.queue_over):
        return True
    if spill.max_wait_s is not None:
        return over_wait(best, best_load, prompt_tokens, prefill_rate, spill.max_wait_s)
    return False

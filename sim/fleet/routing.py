"""Routing policies: which replica of the healthy pool receives a request (plain functions).

A policy is `policy(pool, t) -> replica`, over the replicas currently accepting requests, in
the fleet phase's order (Ciw's queue disciplines are written the same way). The mechanism that
calls it — arrivals, phases, reclaims, the API — is `sim.model`'s dispatch loop.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol, TypeVar


class Routable(Protocol):
    """What a routing policy may ask of a replica."""

    def load_at(self, t: float) -> int:
        """Outstanding work at `t` (prompt tokens not yet prefilled + output tokens to come)."""
        ...


R = TypeVar("R", bound=Routable)


def least_outstanding_tokens(pool: Sequence[R], t: float) -> tuple[R, int]:
    """Join the shortest queue in tokens: the replica with the least outstanding work at `t`
    (ties: the first in pool order), and that work. `pool` must not be empty."""
    best = pool[0]
    best_load = -1
    for rep in pool:
        load = rep.load_at(t)
        if best_load < 0 or load < best_load:
            best, best_load = rep, load
    return best, best_load

"""Routing policies: which replica of the healthy pool receives a request (plain functions).

A policy picks from `pool`, the replicas currently accepting requests in the fleet phase's
order (Ciw's queue disciplines are written the same way), and returns the replica and its
outstanding work at `t` (prompt tokens not yet prefilled + output tokens to come; -1 where the
policy did not need to look). The mechanism that calls it — arrivals, phases, reclaims, the
API — is `sim.model`'s dispatch loop; the compiled data plane (`sim.engine.compiled.fleet`)
implements the same three policies over arrays, with the same ties.

- `least_outstanding_tokens` (join the shortest queue in tokens, the default): exact JSQ.
- `round_robin`: pool position `turn % len(pool)`, `turn` counting the requests routed so far.
- `power_of_two_choices`: two distinct pool positions drawn from two uniforms in [0, 1), the
  less loaded of the two (ties: the first in pool order).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, Protocol, TypeVar

RoutingPolicy = Literal["least_outstanding_tokens", "round_robin", "power_of_two_choices"]
ROUTING_POLICIES: tuple[RoutingPolicy, ...] = (
    "least_outstanding_tokens",
    "round_robin",
    "power_of_two_choices",
)


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


def round_robin(pool: Sequence[R], turn: int) -> R:
    """The replica at pool position `turn % len(pool)` (`turn`: requests routed so far)."""
    return pool[turn % len(pool)]


def two_choices(size: int, u1: float, u2: float) -> tuple[int, int]:
    """Two distinct positions of a pool of `size` >= 2 from two uniforms in [0, 1), lower first."""
    j1 = int(u1 * size)
    j2 = int(u2 * (size - 1))
    if j2 >= j1:
        j2 += 1
    return (j1, j2) if j1 < j2 else (j2, j1)


def power_of_two_choices(pool: Sequence[R], t: float, u1: float, u2: float) -> tuple[R, int]:
    """The less loaded of two replicas drawn from `u1`, `u2` (ties: the first in pool order),
    and its outstanding work at `t`. A pool of one is its only member."""
    if len(pool) == 1:
        return pool[0], pool[0].load_at(t)
    lo, hi = two_choices(len(pool), u1, u2)
    first, second = pool[lo], pool[hi]
    load_first = first.load_at(t)
    load_second = second.load_at(t)
    if load_second < load_first:
        return second, load_second
    return first, load_first

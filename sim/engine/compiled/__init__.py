"""The compiled data plane: routing and vLLM V1 continuous batching over numpy arrays (numba).

`CompiledFleet` holds a fleet of replicas and one request set as arrays (`replica.State`);
its owner (the SimPy control plane in `sim.model`) calls `route(i0, i1, pool, ...)` to dispatch
the arrivals between two control instants over the replicas the control plane allows, and
`flush()` at the end. Per-request outcomes (first scheduled, first token, finish, preemptions,
replica, rejected) are then written back to the `RequestLog`, or read as arrays (`outcomes`,
`busy_inside`: a window of a sampled horizon, `sim.model.simulate_arrays`).

Semantics are those of `FastReplica` (`sim.engine.fast`) and the routing policies of
`sim.fleet.routing`; the one-step-per-event `ReferenceReplica` is the oracle both are tested
against (tests/test_compiled.py). For spot reclaims and API overflow the control plane also
calls `evict(r, t)` at a reclaim deadline and `dispatch` to re-route evicted or backlogged
requests; the spill rules (`Spill`) are applied inside the routing loop, which hands back the
requests it spilled for the control plane's API client (tests/test_hybrid_model.py).

The kernels are compiled on first use and cached on disk next to this package (numba's
`cache=True`); `compile_kernels()` compiles them eagerly and returns how long that took.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import NamedTuple, Protocol

import numpy as np

from sim.engine.compiled import layout as _r
from sim.engine.compiled.control import busy_within, evict, pool_total
from sim.engine.compiled.fleet import JSQ, JSQ_SCAN_MAX, P2C, ROUND_ROBIN, flush, route
from sim.engine.compiled.replica import advance_to
from sim.engine.log import RequestLog
from sim.engine.steptime import EngineLimits, StepTimeModel

__all__ = [
    "JSQ",
    "P2C",
    "ROUND_ROBIN",
    "CompiledFleet",
    "Requests",
    "Spill",
    "compile_kernels",
]

_NONE = np.zeros(0, dtype=np.int64)


class Spill(NamedTuple):
    """The spill rules of `sim.fleet.spill.must_spill` as the routing loop applies them.

    queue_over: spill when every replica of the pool has more than this many requests
    waiting (-1: off). max_wait_s: spill when the predicted queueing on the chosen replica
    exceeds it (NaN: off). rate: each replica's full-budget prefill rate, tokens/s.
    """

    queue_over: int
    max_wait_s: float
    rate: np.ndarray


class Requests(Protocol):
    """What the core reads of a request set: a `RequestLog`, or arrays (`MonthRequests`)."""

    @property
    def arrival_s(self) -> Sequence[float] | np.ndarray: ...
    @property
    def input_tokens(self) -> Sequence[int] | np.ndarray: ...
    @property
    def output_tokens(self) -> Sequence[int] | np.ndarray: ...
    def __len__(self) -> int: ...


_NO_SPILL = Spill(-1, math.nan, np.zeros(0))


class CompiledFleet:
    """Replicas with the given limits and step times, serving the requests of `log`.

    Construction copies the log's inputs into arrays; nothing runs until `route`.
    """

    def __init__(
        self,
        log: Requests,
        replicas: Sequence[tuple[EngineLimits, StepTimeModel]],
        uniforms: np.ndarray | None = None,
    ) -> None:
        n = len(log)
        nr = len(replicas)
        q = np.zeros((n, _r.N_Q), dtype=np.int64)
        q[:, _r.Q_IN] = log.input_tokens
        q[:, _r.Q_OUT] = log.output_tokens
        if isinstance(log, RequestLog) and log.has_cached_tokens:  # prefix-cache hits given
            q[:, _r.Q_HIT] = log.cached_tokens
        q[:, _r.Q_REP] = -1
        qf = np.full((n, _r.N_QF), math.nan)
        qf[:, _r.X_ARR] = log.arrival_s
        ri = np.zeros((nr, _r.N_RI), dtype=np.int64)
        rf = np.zeros((nr, _r.N_RF))
        for i, (limits, step) in enumerate(replicas):
            ri[i, _r.I_BS] = limits.block_size
            ri[i, _r.I_MAXSEQS] = limits.max_num_seqs
            ri[i, _r.I_BUDGET] = limits.max_num_batched_tokens
            ri[i, _r.I_KV] = limits.kv_blocks
            ri[i, _r.I_ASYNC] = limits.async_scheduling
            ri[i, _r.I_STATEBLK] = limits.state_blocks
            rf[i, _r.F_OV] = step.overhead_s
            rf[i, _r.F_D] = step.decode_attn_s_per_token
            rf[i, _r.F_FLAT] = step.flat_s
            rf[i, _r.F_KNEE] = step.knee_tokens
            rf[i, _r.F_PT] = step.per_token_s
            rf[i, _r.F_P] = step.prefill_attn_s_per_pair
            rf[i, _r.F_CPU] = step.per_seq_s
            rf[i, _r.F_EXP] = step.expert_read_s
            rf[i, _r.F_MISS] = 1.0 - step.expert_share
        for col in (_r.I_TAIL, _r.I_WHEAD, _r.I_WTAIL, _r.I_RHEAD, _r.I_RTAIL):
            ri[:, col] = -1
        max_bs = max((lim.block_size for lim, _ in replicas), default=1)
        max_seqs = max((lim.max_num_seqs for lim, _ in replicas), default=1)
        self.state = _r.State(
            ri=ri,
            rf=rf,
            q=q,
            qf=qf,
            needs=np.zeros((nr, 2 * max_bs), dtype=np.int64),
            heap=np.zeros((nr, max_seqs, 2), dtype=np.int64),
            ent=np.zeros((nr, max_seqs + 1, 3), dtype=np.int64),
            busy=np.zeros((n + nr + 1, 3)),
            nbusy=np.zeros(1, dtype=np.int64),
        )
        self.uniforms = uniforms if uniforms is not None else np.zeros((n, 2))
        self.counters = np.zeros(2, dtype=np.int64)
        self._rows = n + nr + 1  # busy-period rows that may be written (grows on evictions)
        # JSQ scans pools up to this size, else uses its tree (`fleet.JSQ_SCAN_MAX`; read
        # here, so that a test can set the module's value to run the tree on small pools)
        self.jsq_scan_max = JSQ_SCAN_MAX
        # JSQ's scratch for `route` (keys, next changes, heap entries and positions, tree,
        # each member's decode-run start and steps), sized for a pool of every replica:
        # allocated once, so that `route` allocates nothing and is compiled without
        # reference counting (`_jit.kernel`)
        width = 1 << max(nr - 1, 0).bit_length()
        self._scratch = (
            np.zeros(nr, dtype=np.int64),
            np.zeros(nr),
            np.zeros(nr, dtype=np.int64),
            np.zeros(nr, dtype=np.int64),
            np.zeros(2 * width, dtype=np.int64),
            np.zeros(nr),
            np.zeros(nr, dtype=np.int64),
        )

    @property
    def routed(self) -> int:
        """Requests dispatched to a replica so far."""
        return int(self.counters[0])

    def route(
        self,
        i0: int,
        i1: int,
        pool: Sequence[int],
        policy: int,
        max_model_len: int,
        spill: Spill | None = None,
    ) -> np.ndarray:
        """Dispatch arrivals [i0, i1) over the replicas `pool` (in phase order) by `policy`
        (`JSQ`, `ROUND_ROBIN`, `P2C`); longer than `max_model_len`: rejected. With `spill`,
        the requests its rules send to the API are not dispatched: returned, in order (an
        array of request indices; empty without `spill`)."""
        if i1 <= i0:
            return _NONE
        return self._route(i0, i1, _NONE, _NONE, math.nan, pool, policy, max_model_len, spill)

    def dispatch(
        self,
        items: Sequence[tuple[int, int]],
        t: float,
        pool: Sequence[int],
        policy: int,
        spill: Spill | None = None,
    ) -> np.ndarray:
        """Dispatch requests (rid, output tokens already sent) at `t`, in order, over `pool`
        (re-queued after an eviction, or waiting at the router); the spilled ones, returned
        (as `route`)."""
        if not items:
            return _NONE
        arr = np.asarray(items, dtype=np.int64).reshape(-1, 2)
        rids, gens = np.ascontiguousarray(arr[:, 0]), np.ascontiguousarray(arr[:, 1])
        return self._route(0, len(items), rids, gens, t, pool, policy, 0, spill)

    def _route(
        self,
        i0: int,
        i1: int,
        rids: np.ndarray,
        gens: np.ndarray,
        at: float,
        pool: Sequence[int],
        policy: int,
        max_model_len: int,
        spill: Spill | None,
    ) -> np.ndarray:
        pool_arr = np.asarray(pool, dtype=np.int64)
        if len(pool_arr) > len(self._scratch[0]):  # the kernel does not check its bounds
            raise ValueError(f"a pool of {len(pool_arr)} in a fleet of {len(self._scratch[0])}")
        spilled = np.empty(i1 - i0, dtype=np.int64) if spill is not None else _NONE
        rules = spill or _NO_SPILL
        self.counters[1] = 0
        route(
            *self.state,
            i0,
            i1,
            rids,
            gens,
            at,
            pool_arr,
            policy,
            self.jsq_scan_max,
            max_model_len,
            self.uniforms,
            self.counters,
            spill is not None,
            rules.queue_over,
            rules.max_wait_s,
            rules.rate,
            spilled,
            *self._scratch,
        )
        if spill is None:
            return _NONE
        return spilled[: int(self.counters[1])]

    def evict(self, r: int, t: float) -> list[tuple[int, int]]:
        """Replica `r`'s instance is gone at `t`: its unfinished requests (rid, output tokens
        already sent), running ones in admission order then the waiting queue; `r` is left
        idle and empty (`FastReplica.evict`)."""
        ri = self.state.ri
        held = int(ri[r, _r.I_NRUN] + ri[r, _r.I_NWAIT])
        self._reserve(held + 1)  # this busy period, and one per request re-dispatched
        out = np.empty((held, 2), dtype=np.int64)
        n = evict(*self.state, r, t, out)
        return [(int(a), int(b)) for a, b in out[:n].tolist()]

    def _reserve(self, rows: int) -> None:
        self._rows += rows
        busy = self.state.busy
        if busy.shape[0] < self._rows:
            grown = np.zeros((max(self._rows, 2 * busy.shape[0]), 3))
            grown[: busy.shape[0]] = busy
            self.state = self.state._replace(busy=grown)

    def advance(self, r: int, t: float) -> tuple[int, int]:
        """Bring replica `r` up to `t`; its (waiting, running) request counts then."""
        advance_to(*self.state, r, t)
        ri = self.state.ri
        return int(ri[r, _r.I_NWAIT]), int(ri[r, _r.I_NRUN])

    def pool_total(
        self,
        serving: np.ndarray,
        t: float,
        signal: int,
        kv_capacity_tokens: np.ndarray,
        prefill_tokens_per_s: np.ndarray,
    ) -> float:
        """Bring the replicas `serving` up to `t`; the sum of their autoscaling `signal`
        (`control.pool_total`; its index in `sim.config.AUTOSCALE_SIGNALS`) in that order.
        One call per autoscaler tick (a Python read of each replica's state cost ~8 µs)."""
        return float(
            pool_total(*self.state, serving, t, signal, kv_capacity_tokens, prefill_tokens_per_s)
        )

    def reject(self, rid: int) -> None:
        """Mark `rid` rejected (longer than the model length), outside `route`."""
        self.state.q[rid, _r.Q_REJ] = 1

    def served_elsewhere(
        self, rids: np.ndarray, first_token_s: np.ndarray, finish_s: np.ndarray
    ) -> None:
        """Record requests `rids` (distinct) as served off the fleet (the API): each one's
        first token unless it already streamed one on a replica, and its finish."""
        qf = self.state.qf
        unset = np.isnan(qf[rids, _r.X_FIRST])
        qf[rids[unset], _r.X_FIRST] = first_token_s[unset]
        qf[rids, _r.X_FIN] = finish_s

    def flush(self) -> None:
        """Run every replica until all it holds has finished."""
        flush(*self.state)

    def rejected(self) -> int:
        """Requests rejected so far."""
        return int(self.state.q[:, _r.Q_REJ].sum())

    def steps(self) -> list[int]:
        return [int(x) for x in self.state.ri[:, _r.I_G]]

    def segments(self) -> int:
        return int(self.state.ri[:, _r.I_SEGS].sum())

    def busy_periods(self) -> list[list[tuple[float, float]]]:
        """(start, end) in s of each replica's busy periods, in time order.

        NOTE: the rows (replica, start, end) are in time order across replicas; a stable sort
        by replica and `zip` of each replica's columns build the tuples at C speed (a Python
        loop over the rows was a tenth of a growth20pct replication)."""
        replicas = self.state.ri.shape[0]
        rows = self.state.busy[: int(self.state.nbusy[0])]
        if rows.shape[0] == 0:
            return [[] for _ in range(replicas)]
        rep = rows[:, 0].astype(np.int64)
        rows = rows[np.argsort(rep, kind="stable")]
        starts, ends = rows[:, 1].tolist(), rows[:, 2].tolist()
        bounds = np.cumsum(np.bincount(rep, minlength=replicas)).tolist()
        return [
            list(zip(starts[a:b], ends[a:b], strict=True))
            for a, b in zip([0, *bounds[:-1]], bounds, strict=True)
        ]

    def outcomes(self, first: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """First token (s), finish (s), rejected (bool) and preemptions of requests `first`
        on, as arrays: the values `write_log` copies into a log, without the lists."""
        q, qf = self.state.q, self.state.qf
        return (
            qf[first:, _r.X_FIRST].copy(),
            qf[first:, _r.X_FIN].copy(),
            q[first:, _r.Q_REJ] != 0,
            q[first:, _r.Q_PRE].copy(),
        )

    def busy_inside(self, replicas: Sequence[int], start_s: float, end_s: float) -> float:
        """Busy seconds inside [start_s, end_s) of `replicas`' busy periods, replica by replica
        (in the given order), each in time order (`busy_seconds_inside`): what
        `sim.replication.busy_inside` sums from `busy_periods()`, the same bits."""
        position = np.full(self.state.ri.shape[0], -1, dtype=np.int64)
        position[np.asarray(replicas, dtype=np.int64)] = np.arange(len(replicas))
        return float(busy_within(self.state.busy, self.state.nbusy, position, start_s, end_s))

    def write_log(self, log: RequestLog) -> None:
        """Copy the per-request outcomes into `log`."""
        q, qf = self.state.q, self.state.qf
        log.first_scheduled_s = qf[:, _r.X_SCHED].tolist()
        log.first_token_s = qf[:, _r.X_FIRST].tolist()
        log.finish_s = qf[:, _r.X_FIN].tolist()
        log.preemptions = q[:, _r.Q_PRE].tolist()
        log.replica = q[:, _r.Q_REP].tolist()
        log.rejected = (q[:, _r.Q_REJ] != 0).tolist()


def compile_kernels() -> float:
    """Compile (or load from numba's on-disk cache) every kernel; the seconds it took."""
    t0 = time.perf_counter()
    limits = EngineLimits(2, 4, 8, 16, 4)
    step = StepTimeModel(0.01, 0.0, 0.0, 0.0, 1e-6, 0.0)
    log = RequestLog([0.0, 0.0, 0.5], [4, 12, 3], [3, 3, 2])
    for policy in (JSQ, ROUND_ROBIN, P2C):
        fleet = CompiledFleet(log, [(limits, step)] * 2, np.full((3, 2), 0.5))
        fleet.route(0, 3, [0, 1], policy, 16, Spill(1, 0.1, np.ones(2)))
        fleet.dispatch(fleet.evict(0, 0.25), 0.25, [1], policy)
        fleet.advance(1, 0.3)
        for signal in range(4):  # `control.pool_total`, every signal
            fleet.pool_total(np.array([0, 1]), 0.4, signal, np.full(2, 64), np.ones(2))
        fleet.flush()
    return time.perf_counter() - t0

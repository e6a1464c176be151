"""Engine speed, measured side by side in one run (see the README's "Benchmarks").

Prints simulated requests per CPU-second of
  * the compiled data plane (`sim.engine.compiled`, numba; the default for plain runs), twice:
    through `simulate` (a `RequestLog` of Python lists in and out, as full-horizon runs and
    library users call it; the log is built before the clock starts) and on arrays in and out
    (`simulate_arrays`: the path every sampled window takes, and the core's interface as
    issue #14 specifies),
  * the pure-Python event-skipping engine (`FastReplica`, engine "lazy"),
  * the iteration-level reference engine (one SimPy event per step),
  * a bare SimPy loop doing 3 timeouts per request (the floor any SimPy model pays),
plus SimPy events per request and the ratios, on three workloads with Azure 2023 conversation
lengths:
  A. "vidur": one Llama-3-8B A100 replica, batch cap 256, 4,096 tokens per step, Poisson
     6 req/s, 100k requests — the scenario Vidur 0.0.26 simulates at ~420 req/s here;
  B. "high batch": one replica at 90% of its measured saturation throughput, 50k requests
     (batches of 100+ sequences, where one event per step costs the most);
  C. "fleet": 4 replicas at 70% of measured saturation throughput, 100k requests;
  D. "hybrid": 4 replicas at 85% of saturation, two of them spot (8 reclaims over the run,
     2 s notice, 10 min to a replacement), API spill when the predicted wait exceeds 0.5 s or
     no replica is up, 600 RPM with retries: compiled vs lazy vs reference.
Then a fleet sweep: 1/4/16/64/200 replicas at 70% of saturation each (JSQ routing), CPU time
per request of the compiled engine (and of the Python one up to 16 replicas), split into the
compiled core's routing and its data plane: the core alone (`CompiledFleet.route` + `flush`,
no SimPy, no log copies) against a replay of the same per-request replica choices without a
router (`replay` below: advance the chosen replica, submit), which does the same physics
(same segments, same timestamps, checked); the difference is what choosing the replica costs.
Every timing is the best CPU time of 3 repeats (the sweep's in 3 rounds over its sizes). The
kernels' JIT time is reported apart: the load from numba's on-disk cache in this process, and
with `--cold-jit` a compilation from scratch in a fresh process (an empty NUMBA_CACHE_DIR).

Usage: python bench/engine.py [--requests N] [--reference-requests N] [--cold-jit] [--sweep-only]
The reference engine is run on a prefix of the workload (default 20k requests) because it is
slow; its rate is per request of that prefix, and the timestamps of the prefix are checked to
agree with the compiled engine's.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Generator
from pathlib import Path

import numpy as np
import simpy
from numba import njit

from sim.config import ApiSpec, SpillSpec
from sim.engine import EngineLimits, RequestLog, StepTimeModel, load_step_time_catalog
from sim.engine.compiled import JSQ, CompiledFleet, compile_kernels
from sim.engine.compiled.layout import Q_REP, X_ARR, X_FIN
from sim.engine.compiled.replica import advance_to, submit
from sim.fleet import ApiClient, Outage
from sim.model import (
    FleetPhase,
    Hybrid,
    ReplicaSpec,
    simulate,
    simulate_arrays,
)
from sim.traces import read_azure_trace
from sim.workload import MonthRequests

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 3
Workload = tuple[list[float], list[int], list[int]]


def step_model() -> StepTimeModel:
    return load_step_time_catalog()[("llama-3-8b", "a100-80gb", 1, "fp16")].step


def workload(n: int, rate_per_s: float, seed: int) -> Workload:
    trace = read_azure_trace(ROOT / "traces" / "azure_conv_2023.csv")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, trace.height, n)
    arrivals = np.cumsum(rng.exponential(1 / rate_per_s, n))
    return (
        arrivals.tolist(),
        trace["input_tokens"].to_numpy()[idx].tolist(),
        trace["output_tokens"].to_numpy()[idx].tolist(),
    )


def run(
    engine: str,
    wl: Workload,
    replicas: int,
    limits: EngineLimits,
    step: StepTimeModel,
    repeats: int = REPEATS,
    hybrid: Callable[[], Hybrid] | None = None,
) -> tuple[float, RequestLog, int]:
    """Best CPU time of `repeats` runs (the machine may be shared), the log, events."""
    specs = [ReplicaSpec("p", "a100-80gb", limits, step)] * replicas
    phases = [FleetPhase(0.0, tuple(range(replicas)))]
    best = float("inf")
    for _ in range(repeats):
        log = RequestLog(*wl)
        h = hybrid() if hybrid is not None else None
        t0 = time.process_time()
        result = simulate(log, specs, phases, engine, h)  # type: ignore[arg-type]
        best = min(best, time.process_time() - t0)
    return best, log, result.simpy_events


def run_arrays(
    wl: Workload,
    replicas: int,
    limits: EngineLimits,
    step: StepTimeModel,
    expected: RequestLog,
    hybrid: Callable[[], Hybrid] | None = None,
) -> float:
    """Best CPU time of `simulate_arrays` on the workload's arrays (with `hybrid`, or none),
    reading the outcomes out as arrays (`CompiledFleet.outcomes`); checked to give the
    first-token and finish times of `expected` (the same run through `simulate`)."""
    requests = MonthRequests(
        1,
        np.asarray(wl[0], dtype=np.float64),
        np.asarray(wl[1], dtype=np.int64),
        np.asarray(wl[2], dtype=np.int64),
    )
    specs = [ReplicaSpec("p", "a100-80gb", limits, step)] * replicas
    phases = [FleetPhase(0.0, tuple(range(replicas)))]
    best = float("inf")
    first = finish = np.zeros(0)
    for _ in range(REPEATS):
        h = hybrid() if hybrid is not None else Hybrid()
        t0 = time.process_time()
        ran = simulate_arrays(requests, specs, phases, "compiled", h)
        assert ran is not None
        first, finish, _, _ = ran.fleet.outcomes()
        best = min(best, time.process_time() - t0)
    if not (
        np.array_equal(first, expected.first_token_s, equal_nan=True)
        and np.array_equal(finish, expected.finish_s, equal_nan=True)
    ):
        raise AssertionError("the array path gave other timestamps than simulate()")
    return best


def floor_rate(n: int) -> float:
    def proc(env: simpy.Environment) -> Generator[simpy.Event, object, None]:
        for _ in range(n):
            yield env.timeout(0.1)
            yield env.timeout(0.1)
            yield env.timeout(0.1)

    best = float("inf")
    for _ in range(REPEATS):
        env = simpy.Environment()
        env.process(proc(env))
        t0 = time.process_time()
        env.run()
        best = min(best, time.process_time() - t0)
    return n / best


def saturation_rate(limits: EngineLimits, step: StepTimeModel) -> float:
    """Requests/s one replica sustains when always full (all requests queued at t = 0)."""
    arr, inp, out = workload(4000, 1.0, seed=99)
    log = RequestLog([0.0] * len(arr), inp, out)
    simulate(log, [ReplicaSpec("p", "g", limits, step)], [FleetPhase(0.0, (0,))])
    finish = np.asarray(log.finish_s)
    # steady part: between the 10% and 90% completions
    f = np.sort(finish)
    return float(0.8 * len(f) / (f[int(0.9 * len(f))] - f[int(0.1 * len(f))]))


def compare(
    name: str,
    wl: Workload,
    replicas: int,
    limits: EngineLimits,
    step: StepTimeModel,
    ref_n: int,
    floor: float,
) -> None:
    n = len(wl[0])
    comp_s, comp_log, comp_events = run("compiled", wl, replicas, limits, step)
    arr_s = run_arrays(wl, replicas, limits, step, comp_log)
    lazy_s, _, lazy_events = run("lazy", wl, replicas, limits, step)
    prefix = (wl[0][:ref_n], wl[1][:ref_n], wl[2][:ref_n])
    pc_s, pc_log, _ = run("compiled", prefix, replicas, limits, step)
    ref_s, ref_log, ref_events = run("reference", prefix, replicas, limits, step)
    diff = max(
        np.nanmax(np.abs(np.asarray(getattr(pc_log, k)) - np.asarray(getattr(ref_log, k))))
        for k in ("first_token_s", "finish_s")
    )
    comp_rate = n / comp_s
    arr_rate = n / arr_s
    lazy_rate = n / lazy_s
    ref_rate = ref_n / ref_s
    prefix_comp_rate = ref_n / pc_s
    ttft = np.asarray(comp_log.first_token_s) - np.asarray(wl[0])
    p95 = np.nanpercentile(ttft, 95)
    print(f"\n[{name}] {n:,} requests, {replicas} replica(s); p95 TTFT {p95:.3f} s")
    print(f"  compiled engine    {comp_rate:>12,.0f} req/CPU-s   {comp_events / n:.4f} events/req")
    print(f"  compiled, arrays   {arr_rate:>12,.0f} req/CPU-s   (simulate_arrays; same bits)")
    print(f"  fast (Python)      {lazy_rate:>12,.0f} req/CPU-s   {lazy_events / n:.2f} events/req")
    print(
        f"  reference engine   {ref_rate:>12,.0f} req/CPU-s   {ref_events / ref_n:.1f} events/req"
        f"  (first {ref_n:,} requests; compiled on the same prefix: {prefix_comp_rate:,.0f})"
    )
    print(f"  bare SimPy floor   {floor:>12,.0f} req/CPU-s   3.00 events/request")
    print(f"  compiled / reference {prefix_comp_rate / ref_rate:>10.0f}x  (same prefix)")
    print(f"  compiled / floor     {comp_rate / floor:>10.2f}x  (arrays: {arr_rate / floor:.2f}x)")
    print(f"  compiled / fast      {comp_rate / lazy_rate:>10.1f}x")
    print(f"  max |compiled - reference| timestamp on the prefix: {diff:.2e} s")


def hybrid_factory(n: int, horizon_s: float) -> Callable[[], Hybrid]:
    """Spot reclaims on replicas 2 and 3 (4 each; a 2 s notice, so in-flight work is cut;
    replaced 10 min later) and an API with a 0.5 s spill budget and 600 RPM; a fresh API
    client per run (it keeps state)."""
    spec = ApiSpec(
        provider="bench",
        input_usd_per_million=1.0,
        output_usd_per_million=5.0,
        ttft_median_s=0.5,
        ttft_p95_s=0.5,
        output_tokens_per_s_median=100.0,
        output_tokens_per_s_p5=100.0,
        rpm=600,
        tpm=None,
        input_tpm=None,
        output_tpm=None,
        on_limit="retry",
        max_retry_wait_s=30.0,
        spill=SpillSpec(max_wait_s=0.5, when_no_replica=True),
        source="bench",
    )
    outages = {
        r: tuple(
            Outage(t, t + 2.0, t + 602.0, False)
            for t in np.linspace(horizon_s * (0.05 + 0.1 * r), horizon_s * 0.95, 4).tolist()
        )
        for r in (2, 3)
    }

    def make() -> Hybrid:
        return Hybrid(outages=outages, api=ApiClient(spec, np.full(n, 0.5), np.full(n, 100.0)))

    return make


def compare_hybrid(
    wl: Workload, limits: EngineLimits, step: StepTimeModel, ref_n: int, name: str
) -> None:
    n = len(wl[0])
    make = hybrid_factory(n, wl[0][-1])
    comp_s, comp_log, _ = run("compiled", wl, 4, limits, step, hybrid=make)
    arr_s = run_arrays(wl, 4, limits, step, comp_log, hybrid=make)
    lazy_s, lazy_log, _ = run("lazy", wl, 4, limits, step, hybrid=make)
    prefix = (wl[0][:ref_n], wl[1][:ref_n], wl[2][:ref_n])
    make_ref = hybrid_factory(ref_n, wl[0][-1])
    pc_s, pc_log, _ = run("compiled", prefix, 4, limits, step, hybrid=make_ref)
    ref_s, ref_log, _ = run("reference", prefix, 4, limits, step, repeats=1, hybrid=make_ref)
    same = all(
        np.array_equal(
            np.asarray(getattr(comp_log, k)), np.asarray(getattr(lazy_log, k)), equal_nan=True
        )
        for k in ("first_token_s", "finish_s")
    )
    diff = max(
        np.nanmax(np.abs(np.asarray(getattr(pc_log, k)) - np.asarray(getattr(ref_log, k))))
        for k in ("first_token_s", "finish_s")
    )
    spilled = sum(comp_log.api) / n
    evicted = sum(comp_log.evictions)
    print(f"\n[{name}] {n:,} requests; {spilled:.1%} spilled to the API, {evicted:,} evictions")
    print(f"  compiled engine    {n / comp_s:>12,.0f} req/CPU-s")
    print(f"  compiled, arrays   {n / arr_s:>12,.0f} req/CPU-s   (simulate_arrays; same bits)")
    print(f"  fast (Python)      {n / lazy_s:>12,.0f} req/CPU-s")
    print(f"  reference engine   {ref_n / ref_s:>12,.0f} req/CPU-s  (first {ref_n:,} requests)")
    print(f"  compiled / fast      {lazy_s / comp_s:>10.1f}x")
    print(f"  compiled / reference {(ref_s / ref_n) / (pc_s / ref_n):>10.0f}x  (same prefix)")
    print(f"  compiled == fast bit for bit: {same}; max |compiled - reference| {diff:.2e} s")


@njit(cache=False)
def replay(
    ri: np.ndarray,
    rf: np.ndarray,
    q: np.ndarray,
    qf: np.ndarray,
    needs: np.ndarray,
    heap: np.ndarray,
    ent: np.ndarray,
    busy: np.ndarray,
    nbusy: np.ndarray,
    chosen: np.ndarray,
) -> None:
    """The data plane without a router: each arrival to the replica `chosen[i]` (JSQ's choice,
    from a routed run), as `fleet.route` does once it has chosen."""
    for i in range(q.shape[0]):
        r = chosen[i]
        t = qf[i, X_ARR]
        advance_to(ri, rf, q, qf, needs, heap, ent, busy, nbusy, r, t)
        submit(ri, rf, q, qf, needs, r, i, t, 0)


def core_split(
    wl: Workload, size: int, limits: EngineLimits, step: StepTimeModel
) -> tuple[float, float, float]:
    """CPU s of the compiled core routing by JSQ (route + flush) and of the replay of its
    choices (replay + flush), one run of each, and segments per request."""
    log = RequestLog(*wl)
    n = len(log)
    fleet = CompiledFleet(log, [(limits, step)] * size)
    t0 = time.process_time()
    fleet.route(0, n, list(range(size)), JSQ, limits.max_model_len)
    fleet.flush()
    routed_s = time.process_time() - t0
    chosen = fleet.state.q[:, Q_REP].copy()
    finish = fleet.state.qf[:, X_FIN].copy()
    segments = fleet.segments()
    fleet = CompiledFleet(log, [(limits, step)] * size)
    t0 = time.process_time()
    replay(*fleet.state, chosen)
    fleet.flush()
    replayed_s = time.process_time() - t0
    if not np.array_equal(fleet.state.qf[:, X_FIN], finish, equal_nan=True):
        raise AssertionError("the replay of JSQ's choices gave other timestamps")
    if fleet.segments() != segments:
        raise AssertionError("the replay of JSQ's choices simulated other segments")
    return routed_s, replayed_s, segments / n


def fleet_sweep(
    sizes: list[int], per_replica_rate: float, n: int, limits: EngineLimits, step: StepTimeModel
) -> None:
    """CPU µs per request against fleet size at a fixed load per replica; the core's time
    split into routing and data plane (module docstring).

    The sizes are measured in turn, `REPEATS` rounds, each keeping its best time: on a shared
    machine a slow minute then lands on every size alike rather than on whichever size it
    met (measured one size after the other, five runs of the same code gave 1.36-2.29x at 200
    replicas)."""
    print(
        f"\n[fleet sweep] JSQ, {per_replica_rate:.2f} req/s per replica (70% of saturation), "
        f"{n:,} requests per size; load average {os.getloadavg()[0]:.2f}"
    )
    replay(*CompiledFleet(RequestLog([0.0], [1], [1]), [(limits, step)]).state, np.zeros(1, int))
    workloads = {size: workload(n, per_replica_rate * size, seed=10 + size) for size in sizes}
    inf = float("inf")
    best = {size: [inf, inf, inf, 0.0] for size in sizes}  # simulate, core, replay, segments
    for _ in range(REPEATS):
        for size in sizes:
            comp_s, _, _ = run("compiled", workloads[size], size, limits, step, repeats=1)
            routed_s, replayed_s, segs = core_split(workloads[size], size, limits, step)
            b = best[size]
            best[size] = [min(b[0], comp_s), min(b[1], routed_s), min(b[2], replayed_s), segs]
    rows = [(size, *(v / n * 1e6 for v in best[size][:3]), best[size][3]) for size in sizes]
    for size, comp, _, _, _ in rows:
        lazy = ""
        if size <= 16:
            lazy_s, _, _ = run("lazy", workloads[size], size, limits, step, repeats=1)
            lazy = f"; fast (Python) {lazy_s / n * 1e6:6.2f}"
        print(f"  {size:>4} replicas: compiled {comp:6.3f} µs/request{lazy}")
    print(
        "  µs/request: compiled = simulate(); core = route + flush; data plane = replay of the"
        " same choices; routing = core - data plane"
    )
    print("  replicas  compiled (x of 1)   core  data plane (x of 1)  routing  segments/req")
    _, base, _, base_plane, _ = rows[0]
    for size, comp, core, plane, segs in rows:
        print(
            f"  {size:>8}  {comp:8.3f} ({comp / base:4.2f}x)  {core:5.3f}  {plane:10.3f} "
            f"({plane / base_plane:4.2f}x)  {core - plane:7.3f}  {segs:12.2f}"
        )
    first, last = rows[0], rows[-1]
    print(
        f"  routing µs/request at R={last[0]} vs R={first[0]}: {last[2] - last[3]:.3f} vs "
        f"{first[2] - first[3]:.3f}; compiled {last[1] / first[1]:.2f}x of R={first[0]}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )


def cold_jit_s() -> float:
    """Seconds to compile every kernel from scratch, in a fresh process with an empty cache."""
    with tempfile.TemporaryDirectory() as cache:
        env = {**os.environ, "NUMBA_CACHE_DIR": cache}
        code = "from sim.engine.compiled import compile_kernels; print(compile_kernels())"
        out = subprocess.run(
            [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
        )
    return float(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--reference-requests", type=int, default=20_000)
    parser.add_argument("--sweep-requests", type=int, default=200_000)
    parser.add_argument("--cold-jit", action="store_true", help="also time a compile from scratch")
    parser.add_argument("--only-hybrid", action="store_true", help="the hybrid scenario alone")
    parser.add_argument("--sweep-only", action="store_true", help="the fleet sweep alone")
    args = parser.parse_args()
    jit = compile_kernels()
    print(f"JIT: kernels loaded from numba's cache (or compiled) in {jit:.2f} s (not in the rates)")
    if args.cold_jit:
        print(f"JIT: compiled from scratch in a fresh process in {cold_jit_s():.1f} s")
    step = step_model()
    floor = floor_rate(200_000)
    limits = EngineLimits(
        max_num_seqs=256, max_num_batched_tokens=4096, kv_blocks=25_000, max_model_len=16_384
    )
    if args.sweep_only:
        sat = saturation_rate(limits, step)
        fleet_sweep([1, 4, 16, 64, 200], 0.7 * sat, args.sweep_requests, limits, step)
        return
    if args.only_hybrid:
        sat = saturation_rate(limits, step)
        compare_hybrid(
            workload(args.requests, 0.85 * 4 * sat, seed=4),
            limits,
            step,
            args.reference_requests,
            f"hybrid: 4 replicas (2 spot) at 85% load + API spill ({0.85 * 4 * sat:.1f} req/s)",
        )
        return
    compare(
        "vidur: 1 replica, Poisson 6 req/s",
        workload(args.requests, 6.0, seed=1),
        1,
        limits,
        step,
        args.reference_requests,
        floor,
    )
    sat = saturation_rate(limits, step)
    compare(
        f"high batch: 1 replica at 90% load ({0.9 * sat:.2f} req/s)",
        workload(args.requests // 2, 0.9 * sat, seed=3),
        1,
        limits,
        step,
        args.reference_requests // 2,
        floor,
    )
    rate = 0.7 * 4 * sat
    compare(
        f"fleet: 4 replicas at 70% load ({rate:.1f} req/s; saturation {sat:.2f} req/s/replica)",
        workload(args.requests, rate, seed=2),
        4,
        limits,
        step,
        args.reference_requests,
        floor,
    )
    compare_hybrid(
        workload(args.requests, 0.85 * 4 * sat, seed=4),
        limits,
        step,
        args.reference_requests,
        f"hybrid: 4 replicas (2 spot) at 85% load + API spill ({0.85 * 4 * sat:.1f} req/s)",
    )
    fleet_sweep([1, 4, 16, 64, 200], 0.7 * sat, args.sweep_requests, limits, step)


if __name__ == "__main__":
    main()

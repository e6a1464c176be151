"""Engine speed, measured side by side in one run (see the README's "Benchmarks").

Prints simulated requests per CPU-second of
  * the event-skipping engine (`FastReplica`),
  * the iteration-level reference engine (one SimPy event per step),
  * a bare SimPy loop doing 3 timeouts per request (the floor any SimPy model pays),
plus SimPy events per request, on three workloads with Azure 2023 conversation lengths:
  A. "vidur": one Llama-3-8B A100 replica, batch cap 256, 4,096 tokens per step, Poisson
     6 req/s, 100k requests — the scenario Vidur 0.0.26 simulates at ~420 req/s here;
  B. "high batch": one replica at 90% of its measured saturation throughput, 50k requests
     (batches of 100+ sequences, where one event per step costs the most);
  C. "fleet": 4 replicas at 70% of measured saturation throughput, 100k requests.
Every timing is the best CPU time of 3 repeats.

Usage: python bench/engine.py [--requests N] [--reference-requests N]
The reference engine is run on a prefix of the workload (default 20k requests) because it is
slow; its rate is per request of that prefix, and the timestamps of the prefix are checked to
agree with the fast engine's.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import simpy

from sim.engine import EngineLimits, RequestLog, StepTimeModel, load_step_time_catalog
from sim.model import FleetPhase, ReplicaSpec, simulate
from sim.traces import read_azure_trace

ROOT = Path(__file__).resolve().parents[1]
REPEATS = 3


def step_model() -> StepTimeModel:
    return load_step_time_catalog()[("llama-3-8b", "a100-80gb", 1, "fp16")].step


def workload(n: int, rate_per_s: float, seed: int) -> tuple[list[float], list[int], list[int]]:
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
    wl: tuple[list[float], list[int], list[int]],
    replicas: int,
    limits: EngineLimits,
    step: StepTimeModel,
) -> tuple[float, RequestLog, int]:
    """Best CPU time of REPEATS runs (the machine may be shared), the log, events."""
    specs = [ReplicaSpec("p", "a100-80gb", limits, step)] * replicas
    phases = [FleetPhase(0.0, tuple(range(replicas)))]
    best = float("inf")
    for _ in range(REPEATS):
        log = RequestLog(*wl)
        t0 = time.process_time()
        result = simulate(log, specs, phases, engine)  # type: ignore[arg-type]
        best = min(best, time.process_time() - t0)
    return best, log, result.simpy_events


def floor_rate(n: int) -> float:
    def proc(env: simpy.Environment) -> object:
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
    return 0.8 * len(f) / (f[int(0.9 * len(f))] - f[int(0.1 * len(f))])


def compare(
    name: str,
    wl: tuple[list[float], list[int], list[int]],
    replicas: int,
    limits: EngineLimits,
    step: StepTimeModel,
    ref_n: int,
    floor: float,
) -> None:
    n = len(wl[0])
    fast_s, fast_log, events = run("fast", wl, replicas, limits, step)
    prefix = (wl[0][:ref_n], wl[1][:ref_n], wl[2][:ref_n])
    pf_s, pf_log, _ = run("fast", prefix, replicas, limits, step)
    ref_s, ref_log, ref_events = run("reference", prefix, replicas, limits, step)
    diff = max(
        np.nanmax(np.abs(np.asarray(getattr(pf_log, k)) - np.asarray(getattr(ref_log, k))))
        for k in ("first_token_s", "finish_s")
    )
    fast_rate = n / fast_s
    ref_rate = ref_n / ref_s
    prefix_fast_rate = ref_n / pf_s
    ttft = np.asarray(fast_log.first_token_s) - np.asarray(wl[0])
    p95 = np.percentile(ttft, 95)
    print(f"\n[{name}] {n:,} requests, {replicas} replica(s); p95 TTFT {p95:.3f} s")
    print(f"  fast engine        {fast_rate:>12,.0f} req/CPU-s   {events / n:.2f} events/request")
    print(
        f"  reference engine   {ref_rate:>12,.0f} req/CPU-s   {ref_events / ref_n:.1f} events/req"
        f"  (first {ref_n:,} requests; fast on the same prefix: {prefix_fast_rate:,.0f})"
    )
    print(f"  bare SimPy floor   {floor:>12,.0f} req/CPU-s   3.00 events/request")
    print(f"  fast / reference   {prefix_fast_rate / ref_rate:>12.1f}x  (same prefix)")
    print(f"  floor / fast       {floor / fast_rate:>12.2f}x")
    print(f"  max |fast - reference| timestamp on the prefix: {diff:.2e} s")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=100_000)
    parser.add_argument("--reference-requests", type=int, default=20_000)
    args = parser.parse_args()
    step = step_model()
    floor = floor_rate(200_000)
    limits = EngineLimits(
        max_num_seqs=256, max_num_batched_tokens=4096, kv_blocks=25_000, max_model_len=16_384
    )
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


if __name__ == "__main__":
    main()

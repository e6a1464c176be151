"""How big a run is before it starts: requests, memory and time per replication, from the spec.

`estimate_run(exp, replications, jobs)` gives a `RunSize`; `size_problems(exp, size)` the
located problems of a run that cannot finish on this machine — each names the knob to turn
(`monte_carlo.replications`, `workload.base_requests_per_day`, `horizon.mode`, a pool's
`count`). `sim run` prints the estimate under the horizon rule and refuses such a run unless
`--force`.

The figures are rough on purpose (within a factor of ~2): a replication simulates
`expected_requests` (the traffic model's own expectation at the mean growth; under a sampled
horizon, only the sampled windows with their warm-up, counted at the peak hours' load) at
`REQUESTS_PER_S` (bench/engine.py measures ~70k simulated requests/s on one core), and holds
one month's requests at a time at `BYTES_PER_REQUEST` (arrivals, lengths, per-request outcome
columns) plus `BYTES_PER_REPLICA` of per-replica state.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from sim.errors import Problem
from sim.experiment import Experiment
from sim.units import SECONDS_PER_HOUR, SECONDS_PER_MONTH

REQUESTS_PER_S = 70_000.0  # simulated requests per second and core (bench/engine.py)
BYTES_PER_REQUEST = 400.0  # arrays of one request's arrival, lengths and outcome, with slack
BYTES_PER_REPLICA = 256 * 1024.0  # one replica's queues, KV bookkeeping and counters
MAX_RUN_S = 7 * 86_400.0  # a run longer than a week on this machine is refused
MEMORY_SHARE = 0.8  # of physical memory that the concurrently running replications may use


@dataclass(frozen=True)
class RunSize:
    """Estimated size of a run: per replication, and for all of them on `jobs` workers."""

    requests_per_replication: float  # simulated (sampled windows only, when sampled)
    peak_month_requests: float  # the largest month's simulated requests (held in memory)
    replicas: int  # the largest fleet of any plan and month
    memory_bytes: float  # peak per replication
    seconds_per_replication: float
    replications: int
    jobs: int
    mode: str  # "full" | "sampled"

    @property
    def total_s(self) -> float:
        waves = -(-self.replications // max(1, min(self.jobs, self.replications)))
        return waves * self.seconds_per_replication

    def describe(self) -> str:
        return (
            f"size: ~{self.requests_per_replication:,.0f} simulated requests, "
            f"~{_bytes(self.memory_bytes)} and ~{_duration(self.seconds_per_replication)} per "
            f"replication; {self.replications:,} replications on {self.jobs} worker(s): "
            f"~{_duration(self.total_s)}"
        )


def estimate_run(exp: Experiment, replications: int, jobs: int) -> RunSize:
    """The size of running `replications` replications of `exp` on `jobs` workers."""
    spec = exp.spec
    traffic = exp.traffic()
    g = spec.workload.growth.mean_monthly
    per_month = [
        traffic.expected_arrivals(
            float(m * SECONDS_PER_MONTH), float((m + 1) * SECONDS_PER_MONTH), (1.0 + g) ** m
        )
        for m in range(spec.months)
    ]
    mode = exp.horizon()[0]
    if mode == "sampled":
        h = spec.horizon
        windows = h.peak_hours + h.strata * h.windows_per_stratum
        share = windows * (h.window_s + h.warmup_s) / SECONDS_PER_MONTH
        peak = float(exp.profile.array.max()) if exp.profile is not None else 1.0
        per_month = [n * min(1.0, share * max(peak, 1.0)) for n in per_month]
    replicas = max((m.replicas for plan in spec.all_plans() for m in plan.fleet), default=0)
    plans = len(spec.all_plans())
    requests = sum(per_month) * plans
    peak_month = max(per_month, default=0.0)
    memory = peak_month * BYTES_PER_REQUEST + replicas * BYTES_PER_REPLICA
    seconds = requests / REQUESTS_PER_S + 1.0  # + setup
    return RunSize(requests, peak_month, replicas, memory, seconds, replications, jobs, mode)


def physical_memory_bytes() -> float:
    """This machine's physical memory (bytes; a large stand-in where the OS does not say)."""
    try:
        return float(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 2.0**40


def size_problems(
    exp: Experiment, size: RunSize, memory_bytes: float | None = None
) -> list[Problem]:
    """Located problems of a run too large for this machine, each naming the knob to turn."""
    spec = exp.spec
    file = spec.file
    memory = physical_memory_bytes() if memory_bytes is None else memory_bytes
    budget = MEMORY_SHARE * memory
    problems: list[Problem] = []
    concurrent = max(1, min(size.jobs, size.replications))
    force = "; or pass --force"
    if size.memory_bytes * concurrent > budget:
        need = f"~{_bytes(size.memory_bytes)} per replication x {concurrent} at once"
        have = f"{_bytes(budget)} usable here"
        if size.replicas * BYTES_PER_REPLICA > size.peak_month_requests * BYTES_PER_REQUEST:
            key, value = _largest_pool(exp)
            problems.append(
                Problem(
                    file,
                    key,
                    f"a fleet of {size.replicas:,} replicas needs {need} ({have}): lower it{force}",
                    value,
                )
            )
        elif size.mode == "full" and spec.horizon.mode == "full":
            problems.append(
                Problem(
                    file,
                    "horizon.mode",
                    f"a full horizon needs {need} ({have}): "
                    f'set horizon.mode = "sampled" or "auto"{force}',
                    "full",
                )
            )
        else:
            problems.append(
                Problem(
                    file,
                    "workload.base_requests_per_day",
                    f"~{size.peak_month_requests:,.0f} requests in the busiest month need "
                    f"{need} ({have}): lower the volume{force}",
                    spec.workload.base_requests_per_day,
                )
            )
    if size.total_s > MAX_RUN_S:
        took = f"the run would take ~{_duration(size.total_s)} (at most {_duration(MAX_RUN_S)})"
        if size.seconds_per_replication * 100 < MAX_RUN_S:
            problems.append(
                Problem(
                    file,
                    "monte_carlo.replications",
                    f"{took}: lower it (or -n), or add --jobs{force}",
                    size.replications,
                )
            )
        else:
            problems.append(
                Problem(
                    file,
                    "workload.base_requests_per_day",
                    f"{took}, ~{_duration(size.seconds_per_replication)} per replication: "
                    f"lower the volume or sample the horizon{force}",
                    spec.workload.base_requests_per_day,
                )
            )
    return problems


def _largest_pool(exp: Experiment) -> tuple[str, int]:
    best = ("fleet", 0)
    for i, plan in enumerate(exp.spec.all_plans()):
        for m, month in enumerate(plan.fleet):
            for j, pool in enumerate(month.pools):
                if pool.count > best[1]:
                    prefix = f"plans[{i}]" if exp.spec.plans else "fleet"
                    best = (f"{prefix}.months[{m}].pools[{j}].count", pool.count)
    return best


def _bytes(n: float) -> str:
    for unit, size in (("TiB", 2.0**40), ("GiB", 2.0**30), ("MiB", 2.0**20)):
        if n >= size:
            return f"{n / size:.3g} {unit}"
    return f"{n / 1024:.3g} KiB"


def _duration(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 2 * SECONDS_PER_HOUR:
        return f"{s / 60:.0f} min"
    if s < 2 * 86_400:
        return f"{s / SECONDS_PER_HOUR:.1f} h"
    if s < 2 * 365 * 86_400:
        return f"{s / 86_400:.1f} days"
    return f"{s / (365 * 86_400):.3g} years"

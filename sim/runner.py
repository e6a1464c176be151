"""Monte Carlo: replications of one experiment on a backend, stored as they finish → `Results`.

Replication k draws every random number from `sim.rng.Streams(seed, k)` (`sim.replication`):
workers receive integers (the experiment and k), never generators, so the tables are the same
whatever the number of workers or the backend (a process pool, or Ray), and the plan is not
part of any key (common random numbers: replication k of every fleet plan sees the same
traffic). Results are sorted by (plan, replication) before they are concatenated.

A replication that raises is recorded in `Results.errors` (the others go on). Ctrl-C stops the
pool and returns the replications finished so far, flagged `interrupted`. With a `PartStore`,
every finished replication is saved at once, and a later run resumes from them.
"""

from __future__ import annotations

import contextlib
import time
import traceback
from collections.abc import Callable, Generator, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor, as_completed
from contextvars import ContextVar
from dataclasses import dataclass, field
from importlib import metadata
from typing import Literal

import polars as pl

from sim.capacity import Capacity, capacities, with_token_utilisation
from sim.config import ExperimentSpec
from sim.engine import ResolvedEngine
from sim.errors import SimError
from sim.experiment import Experiment
from sim.records import (
    FLEET_WEEK_SCHEMA,
    PAIRED_SCHEMA,
    RISK_SCHEMA,
    SCALE_EVENTS_SCHEMA,
    TIMELINE_EVENTS_SCHEMA,
    TIMELINE_SCHEMA,
)
from sim.replication import WHOLE, ReplicationOutput, Scope, run_replication
from sim.stats import hourly_frame, months_frame, paired_differences, summarise
from sim.stats.risk import risk_table
from sim.store import PartStore
from sim.timeline import sample_timeline
from sim.week import sample_week

__all__ = [
    "Backend",
    "BackendError",
    "ProgressFn",
    "Results",
    "replicate",
    "run_experiment",
    "shared_workers",
    "version",
]


def _safe_replication(exp: Experiment, replication: int, scope: Scope) -> ReplicationOutput:
    """The part `scope` asks for of replication `replication` (`run_replication`), its error
    recorded instead of raised."""
    try:
        return run_replication(exp, replication, scope=scope)
    except Exception as err:  # recorded per replication, as desmod does; the run goes on
        detail = "".join(traceback.format_exception_only(type(err), err)).strip()
        return ReplicationOutput(replication, [], [], 0, 0, 0.0, error=detail)


@dataclass
class Results:
    """Everything a run produced: tables, the manifest facts, errors, and whether it finished."""

    spec: ExperimentSpec
    engine: ResolvedEngine
    months: pl.DataFrame
    hourly: pl.DataFrame
    summary: pl.DataFrame
    replications_done: list[int]
    replications_requested: int
    wall_s: float
    requests: int
    errors: dict[int, str] = field(default_factory=dict)
    interrupted: bool = False
    horizon: str = ""
    paired: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=PAIRED_SCHEMA))
    timeline: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=TIMELINE_SCHEMA))
    timeline_events: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=TIMELINE_EVENTS_SCHEMA)
    )
    risk: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=RISK_SCHEMA))
    fleet_week: pl.DataFrame = field(default_factory=lambda: pl.DataFrame(schema=FLEET_WEEK_SCHEMA))
    scale_events: pl.DataFrame = field(
        default_factory=lambda: pl.DataFrame(schema=SCALE_EVENTS_SCHEMA)
    )
    capacities: dict[str, Capacity] = field(default_factory=dict)

    def manifest(self) -> dict[str, object]:
        """Self-describing facts for manifest.json (the resolved config comes from the CLI)."""
        return {
            "experiment": self.spec.name,
            "file": self.spec.file,
            "seed": self.spec.seed,
            "version": version(),
            "replications_requested": self.replications_requested,
            "replications_done": self.replications_done,
            "interrupted": self.interrupted,
            "wall_s": round(self.wall_s, 3),
            "simulated_requests": self.requests,
            "errors": {str(k): v for k, v in sorted(self.errors.items())},
            "slo_ttft_s": self.spec.slo.ttft_s,
            "slo_tpot_s": self.spec.slo.tpot_s,
            "horizon": self.horizon,
            "plans": [p.name for p in self.spec.all_plans()],
            "budget_usd_per_month": self.spec.cost.budget_usd_per_month,
            "step_times": self.engine.provenance(),
            "capacity_at_slo": {
                g: {"requests_per_s": c.requests_per_s, "tokens_per_s": c.tokens_per_s}
                for g, c in sorted(self.capacities.items())
            },
            "engine": self.engine.as_dict(),
        }


def version() -> str:
    try:
        return metadata.version("sim")
    except metadata.PackageNotFoundError:
        return "unknown"


ProgressFn = Callable[[ReplicationOutput, int, int], None]
Backend = Literal["local", "ray"]


_SHARED: ContextVar[ProcessPoolExecutor | None] = ContextVar("shared_workers", default=None)


@contextlib.contextmanager
def shared_workers(jobs: int, backend: Backend = "local") -> Iterator[None]:
    """Inside the block, every local `replicate` or run on `jobs` > 1 workers uses one process
    pool of `jobs` workers, started once and shut down at the end (a search's hundreds of
    small batches; each worker loads the compiled kernels once). Nothing for Ray, whose
    workers persist anyway. Results are unchanged: a replication's numbers depend only on
    (experiment, seed, replication)."""
    if backend != "local" or jobs <= 1 or _SHARED.get() is not None:
        yield
        return
    pool = ProcessPoolExecutor(max_workers=jobs)
    token = _SHARED.set(pool)
    try:
        yield
    finally:
        _SHARED.reset(token)
        pool.shutdown(wait=True, cancel_futures=True)


def _local_outputs(
    exp: Experiment, todo: list[int], jobs: int, scope: Scope = WHOLE, ordered: bool = False
) -> Generator[ReplicationOutput, None, None]:
    """Replications in this process (jobs = 1) or a process pool (the `shared_workers` pool
    when one is open), as they finish (`ordered`: in the order of `todo`). Closing the
    iterator early cancels the replications not yet begun."""
    if jobs == 1:
        for k in todo:
            yield _safe_replication(exp, k, scope)
        return
    shared = _SHARED.get()
    with contextlib.ExitStack() as stack:
        pool = shared or stack.enter_context(ProcessPoolExecutor(max_workers=jobs))
        futures: list[Future[ReplicationOutput]] = [
            pool.submit(_safe_replication, exp, k, scope) for k in todo
        ]
        try:
            for fut in futures if ordered else as_completed(futures):
                yield fut.result()
        finally:  # Ctrl-C or an error: drop what has not started
            for fut in futures:
                fut.cancel()


def _ray_outputs(
    exp: Experiment,
    todo: list[int],
    jobs: int,
    address: str | None,
    scope: Scope = WHOLE,
    ordered: bool = False,
) -> Generator[ReplicationOutput, None, None]:
    """Replications as Ray tasks (a local cluster of `jobs` CPUs, or the one at `address`), as
    they finish (`ordered`: in the order of `todo`); closing the iterator early cancels the
    tasks not yet finished.

    The same `_safe_replication` runs in every worker, so results do not depend on where they
    ran. Workers need the `sim` package importable (installed on every node of a cluster).
    """
    try:
        import ray
    except ImportError:
        raise BackendError(
            "the ray backend needs the optional extra: pip install 'sim[ray]'"
        ) from None
    if not ray.is_initialized():
        if address is None:
            ray.init(num_cpus=jobs, include_dashboard=False, log_to_driver=False)
        else:
            ray.init(address=address, log_to_driver=False)
    shared = ray.put(exp)
    task = ray.remote(_safe_replication)
    pending = [task.remote(shared, k, scope) for k in todo]
    try:
        while pending:
            if ordered:
                ready, pending = pending[:1], pending[1:]
            else:
                ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                yield ray.get(ref)
    finally:
        for ref in pending:
            ray.cancel(ref)


def replicate(
    exp: Experiment,
    replications: Iterable[int],
    *,
    jobs: int = 1,
    backend: Backend = "local",
    address: str | None = None,
    scope: Scope = WHOLE,
    stop: Callable[[ReplicationOutput], bool] | None = None,
) -> list[ReplicationOutput]:
    """The given replications of `exp` on a backend, in replication order (no store, no
    summary): the building block of searches that add replications as they need them.
    `scope`: the months and standard errors to compute (`sim.replication.Scope`).

    `stop` (a sequential test): the outputs are handed to it in replication order, and the
    list ends with the first one for which it returns True. What comes back is then the same
    whatever the workers' timing; replications begun beyond it are discarded (on a pool, at
    most its workers + 1 begin before the stop is seen; the rest are cancelled)."""
    todo = sorted(replications)
    if not todo:
        return []
    ordered = stop is not None
    if backend == "ray":
        stream = _ray_outputs(exp, todo, jobs, address, scope, ordered)
    elif backend == "local":
        stream = _local_outputs(exp, todo, min(jobs, len(todo)), scope, ordered)
    else:
        raise ValueError(f"unknown backend {backend!r}")
    if stop is None:
        return sorted(stream, key=lambda o: o.replication)
    outputs = []
    with contextlib.closing(stream):
        for out in stream:
            outputs.append(out)
            if stop(out):
                break
    return outputs


class BackendError(SimError):
    """A backend that cannot run here (missing extra, unreachable cluster)."""


def run_experiment(
    exp: Experiment,
    *,
    replications: int | None = None,
    jobs: int = 1,
    progress: ProgressFn | None = None,
    store: PartStore | None = None,
    backend: Backend = "local",
    address: str | None = None,
) -> Results:
    """Run `replications` (default: the experiment's) replications on `jobs` workers.

    With a `store`, replications already finished there are loaded instead of rerun, and each
    new one is saved the moment it finishes (so an interruption of any kind loses at most the
    replications under way). Ctrl-C returns what is finished, flagged `interrupted`.
    """
    n = exp.spec.replications if replications is None else replications
    if n < 1 or jobs < 1:
        raise ValueError("replications and jobs must be >= 1")
    t0 = time.perf_counter()
    outputs: dict[int, ReplicationOutput] = {}
    if store is not None:
        for k in store.finished():
            if k < n:
                months, hourly, info = store.load(k)
                outputs[k] = ReplicationOutput(
                    k,
                    months.to_dicts(),
                    hourly.to_dicts(),
                    int(info["requests"]),
                    int(info["simpy_events"]),
                    float(info["wall_s"]),
                )
    todo = [k for k in range(n) if k not in outputs]
    interrupted = False

    def done(out: ReplicationOutput) -> None:
        outputs[out.replication] = out
        if store is not None and out.error is None:
            store.save(
                out.replication,
                months_frame(out.months),
                hourly_frame(out.hourly),
                {"requests": out.requests, "simpy_events": out.simpy_events, "wall_s": out.wall_s},
            )
        if progress is not None:
            progress(out, len(outputs), n)

    try:
        if backend == "ray":
            stream_of = _ray_outputs(exp, todo, jobs, address)
        elif backend == "local":
            stream_of = _local_outputs(exp, todo, jobs)
        else:
            raise ValueError(f"unknown backend {backend!r}")
        for out in stream_of:
            done(out)
    except KeyboardInterrupt:
        interrupted = True
    ok = sorted(k for k, o in outputs.items() if o.error is None)
    month_list = [row for k in ok for row in outputs[k].months]
    hourly_list = [row for k in ok for row in outputs[k].hourly]
    months = months_frame(month_list)
    caps = capacities(exp.engine, exp.spec.gpus_used(), exp.lengths, exp.spec.slo)
    months = with_token_utilisation(months, exp.spec.all_plans(), caps)
    plan_names = [p.name for p in exp.spec.all_plans()]
    timeline, events = (
        sample_timeline(exp, n) if ok else (pl.DataFrame(schema=TIMELINE_SCHEMA), None)
    )
    week, scale_events = (
        sample_week(exp)
        if ok
        else (pl.DataFrame(schema=FLEET_WEEK_SCHEMA), pl.DataFrame(schema=SCALE_EVENTS_SCHEMA))
    )
    spec = exp.spec
    return Results(
        spec=spec,
        engine=exp.engine,
        months=months,
        hourly=hourly_frame(hourly_list),
        summary=summarise(months, spec.slo),
        risk=risk_table(months, spec.slo),
        capacities=caps,
        replications_done=ok,
        replications_requested=n,
        wall_s=time.perf_counter() - t0,
        requests=sum(o.requests for o in outputs.values()),
        errors={k: o.error for k, o in outputs.items() if o.error is not None},
        interrupted=interrupted,
        horizon=exp.horizon()[1],
        paired=paired_differences(months, exp.spec.slo.ttft_s, plan_names),
        timeline=timeline,
        timeline_events=events
        if events is not None
        else pl.DataFrame(schema=TIMELINE_EVENTS_SCHEMA),
        fleet_week=week,
        scale_events=scale_events,
    )

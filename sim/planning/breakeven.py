"""Break-even against the API: at what monthly volume does self-hosting start to pay?

`reference_cases()` are the practitioners' calculations of DESIGN.md §10, computed with the
cost layer (`sim.cost`) beside the figures they publish — the `--naive` view: no queueing, no
bursts, no weekly profile, no SLO, so self-hosting costs its fixed fleet and the API its tokens.

`breakeven(exp, volumes)` is the simulated view. For each monthly volume on a grid (same
lengths, weekly profile and bursts as the experiment, one month, no growth) it runs the plan
search (`sim.planning.search`) twice — self-hosted only, and self-hosted with API spill
(when the experiment has `[api]`) — for the cheapest plan meeting the risk target, and prices
the same tokens on the API. Per replication, the crossover is the first volume at which the
all-API bill reaches the self-hosted bill, interpolated linearly between grid points; its
p5–p95 across replications is reported with the median.

`sensitivity` is not here: see the issue notes in the README.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from sim.config import ExperimentSpec
from sim.cost import api_usd_per_request, break_even_requests, pool_cost, usd_per_million_tokens
from sim.experiment import Experiment
from sim.planning.prices import comparison_api
from sim.planning.search import Plan, plan_experiment
from sim.runner import Backend, shared_workers
from sim.units import HOURS_PER_MONTH, SECONDS_PER_DAY, SECONDS_PER_MONTH
from sim.workload import NoBurst, WeeklyProfile

Floor = dict[tuple[str, int], int]
"""(GPU type, tp) → the fewest replicas worth trying at a volume (more traffic needs no fewer)."""


@dataclass(frozen=True)
class ReferenceCase:
    """One published figure of DESIGN.md §10 and what the cost layer computes for it."""

    name: str
    inputs: str
    computed: float
    published: float
    unit: str
    note: str = ""

    @property
    def error(self) -> float:
        return self.computed / self.published - 1.0


def reference_cases() -> list[ReferenceCase]:
    """The §10 calculations, each from the cost layer's functions (no simulation)."""
    api_l40s = api_usd_per_request(800, 300, 0.15, 0.60)
    l40s_month = pool_cost(1, 1, HOURS_PER_MONTH, 1.60).gpu_usd + 500.0
    h100_pair = pool_cost(1, 1, 1.0, 6.0).gpu_usd  # "$6/h" is the price of the 2×H100 node
    api_4o = api_usd_per_request(500, 200, 2.50, 10.0)
    haiku_day = api_usd_per_request(7e6, 3e6, 1.0, 5.0)
    budget = sum(
        p.gpu_usd
        for p in (
            pool_cost(2, 1, 730, 1.60),
            pool_cost(4, 1, 40, 2.75),
            pool_cost(1, 1, 730, 0.95),
            pool_cost(2, 1, 80, 2.75),
        )
    )
    return [
        ReferenceCase(
            "API $/request", "GPT-4o-mini $0.15/$0.60, 800 in / 300 out", api_l40s, 0.00030, "USD"
        ),
        ReferenceCase(
            "self-hosted $/request at 500k/month",
            "1 L40S $1.60/h × 730 h + $500 ops",
            l40s_month / 500_000,
            0.00334,
            "USD",
        ),
        ReferenceCase(
            "break-even volume",
            "$1,668/month ÷ $0.00030",
            break_even_requests(l40s_month, api_l40s),
            5_266_666,
            "requests/month",
            "published sum uses $1.50/h × 720 h + $500 = $1,580 (5,266,666); "
            "$1.60 × 730 h gives 5,560,000",
        ),
        ReferenceCase(
            "API $/request", "GPT-4o $2.50/$10, 500 in / 200 out", api_4o, 0.00325, "USD"
        ),
        ReferenceCase(
            "2×H100 $/request at full load",
            "$6/h ÷ 50 requests/min",
            h100_pair / (50 * 60),
            0.002,
            "USD",
        ),
        ReferenceCase(
            "break-even rate",
            "$6/h ÷ $0.00325",
            break_even_requests(h100_pair, api_4o),
            1846,
            "requests/hour",
        ),
        ReferenceCase(
            "API bill", "10M tokens/day 70/30 on $1/$5 (Haiku-class)", haiku_day, 22.0, "USD/day"
        ),
        ReferenceCase("API bill", "the same × 30 days", haiku_day * 30, 660.0, "USD/month"),
        ReferenceCase(
            "one A10",
            "$0.79/h × 720 h",
            pool_cost(1, 1, 720, 0.79).gpu_usd,
            569.0,
            "USD/month",
            "the write-up's month is 720 h (730 h gives $576.70)",
        ),
        ReferenceCase(
            "compute budget",
            "2×L40S 730 h $1.60 + 4×A100 40 h $2.75 + 1×A10G 730 h $0.95 + 2×A100 80 h $2.75",
            budget,
            3895.0,
            "USD/month",
            "the lines sum to $3,909.50; the published total is $14.50 short",
        ),
        ReferenceCase(
            "H100 $/M tokens at 100 % use",
            "$2/h, 4M tokens/h",
            usd_per_million_tokens(2.0, 4_000_000),
            0.50,
            "USD",
        ),
        ReferenceCase(
            "H100 $/M tokens at 10 % use",
            "$2/h, 0.4M tokens/h",
            usd_per_million_tokens(2.0, 400_000),
            5.0,
            "USD",
        ),
    ]


# ---------------------------------------------------------------- the simulated break-even


REFINE_REL = 0.10
"""Refinement stops when the crossover's bracket spans less than 10 % of volume."""


@dataclass(frozen=True)
class VolumePoint:
    """The cheapest plans meeting the risk at one monthly volume, and the API bill."""

    requests_per_month: float
    self_hosted: Plan | None  # None: the naive view (the fixed fleet, `fixed_usd`)
    hybrid: Plan | None
    api_usd: float  # mean all-API bill of the same tokens
    fixed_usd: float = math.nan  # the naive view's self-hosted bill


@dataclass
class Breakeven:
    """The sweep, its crossover per replication and the API it is priced against."""

    spec: ExperimentSpec
    api: str
    points: list[VolumePoint]
    crossover: np.ndarray  # per replication, requests/month (NaN: no crossover in the grid)
    naive_crossover: float  # the experiment's month-1 fleet ÷ API $/request, no simulation

    def table(self) -> pl.DataFrame:
        """One row per volume: self-hosted and hybrid plan, their costs, the API bill."""
        rows = []
        for p in self.points:
            sh = p.self_hosted
            own = sh.choices[0] if sh is not None and sh.choices else None
            hyb = p.hybrid.choices[0] if p.hybrid is not None and p.hybrid.choices else None
            if sh is None:
                label = "the experiment's month-1 fleet (naive)"
            else:
                label = own.candidate.label() if own else "none within max_replicas"
            rows.append(
                {
                    "requests_per_month": p.requests_per_month,
                    "self_hosted": label,
                    "self_hosted_usd": own.cost_usd if own else p.fixed_usd,
                    "hybrid": hyb.candidate.label() if hyb else "",
                    "hybrid_usd": hyb.cost_usd if hyb else math.nan,
                    "all_api_usd": p.api_usd,
                }
            )
        return pl.DataFrame(rows)

    def quantiles(self) -> tuple[float, float, float]:
        """(p5, p50, p95) of the crossover across replications (NaN when none crossed)."""
        x = self.crossover[np.isfinite(self.crossover)]
        if x.size == 0:
            return (math.nan, math.nan, math.nan)
        p5, p50, p95 = np.percentile(x, [5, 50, 95])
        return float(p5), float(p50), float(p95)


def volume_grid(low: float, high: float, per_decade: int) -> list[float]:
    """Log-spaced monthly volumes from `low` to `high`, `per_decade` points a decade."""
    n = max(2, round(math.log10(high / low) * per_decade) + 1)
    return [float(v) for v in np.geomspace(low, high, n)]


def at_volume(exp: Experiment, requests_per_month: float, naive: bool = False) -> Experiment:
    """`exp` as one month at `requests_per_month`, no growth (naive: flat profile, no bursts)."""
    s = exp.spec
    workload = dataclasses.replace(
        s.workload,
        base_requests_per_day=requests_per_month * SECONDS_PER_DAY / SECONDS_PER_MONTH,
        growth=dataclasses.replace(s.workload.growth, mean_monthly=0.0, sd_log=0.0),
    )
    spec = dataclasses.replace(s, months=1, workload=workload, fleet=s.fleet[:1], plans=())
    out = exp.with_spec(spec)
    if naive:
        out = dataclasses.replace(out, profile=WeeklyProfile.flat(), burst=NoBurst())
    return out


def naive_breakeven(exp: Experiment, volumes: Sequence[float]) -> Breakeven:
    """The practitioners' arithmetic on `exp`: the month-1 fleet at list price plus operations
    whatever the volume (no queueing, bursts, profile or SLO), against the API bill of the mean
    request of the experiment's lengths."""
    name, p_in, p_out = comparison_api(exp.spec.api, exp.spec.search.compare_api)
    fixed = _fleet_usd(exp)
    per_request = api_usd_per_request(
        float(np.mean(exp.lengths.input_tokens)),
        float(np.mean(exp.lengths.output_tokens)),
        p_in,
        p_out,
    )
    rows = [
        VolumePoint(float(v), None, None, float(v) * per_request, fixed) for v in sorted(volumes)
    ]
    cross = break_even_requests(fixed, per_request)
    return Breakeven(exp.spec, name, rows, np.array([cross]), cross)


def _fleet_usd(exp: Experiment) -> float:
    """The month-1 fleet at on-demand list price, plus operations (USD per month)."""
    gpu_usd = sum(
        pool_cost(p.count, exp.spec.engine.tp, HOURS_PER_MONTH, exp.spec.cost.price(p.gpu)).gpu_usd
        for p in exp.spec.fleet[0].pools
    )
    return gpu_usd + exp.spec.cost.ops_usd_per_month


def breakeven(
    exp: Experiment,
    volumes: Sequence[float],
    *,
    naive: bool = False,
    flat_profile: bool = False,
    no_bursts: bool = False,
    hybrid: bool = True,
    refine: int = 4,
    jobs: int = 1,
    backend: Backend = "local",
    address: str | None = None,
    progress: Callable[[str], None] | None = None,
) -> Breakeven:
    """Sweep `volumes` (requests/month) for the cheapest plans and the API bill (module doc).

    refine: after the grid, up to this many extra volumes bisect (geometrically) the first
    bracket where the API bill overtakes the self-hosted one, until it is within
    `REFINE_REL`. naive: `naive_breakeven` (no simulation). flat_profile / no_bursts:
    simulate without the weekly profile / the bursts, to see how much each moves the answer.
    hybrid: also search plans that spill to the API (when the experiment has `[api]`)."""
    if naive:
        return naive_breakeven(exp, volumes)
    with shared_workers(jobs, backend):  # one pool for every search
        return _breakeven(
            exp, volumes, flat_profile, no_bursts, hybrid, refine, jobs, backend, address, progress
        )


def _breakeven(
    exp: Experiment,
    volumes: Sequence[float],
    flat_profile: bool,
    no_bursts: bool,
    hybrid: bool,
    refine: int,
    jobs: int,
    backend: Backend,
    address: str | None,
    progress: Callable[[str], None] | None,
) -> Breakeven:
    say = progress or (lambda _: None)
    name, p_in, p_out = comparison_api(exp.spec.api, exp.spec.search.compare_api)
    s = exp.spec.search
    done: dict[float, tuple[VolumePoint, np.ndarray, np.ndarray, Floor]] = {}

    def visit(v: float) -> None:
        # More traffic never needs fewer replicas: start each GPU type above the counts that
        # failed at the largest volume below this one.
        below = [u for u in done if u < v]
        floor = dict(done[max(below)][3]) if below else {}
        one = at_volume(exp, v)
        if flat_profile:
            one = dataclasses.replace(one, profile=WeeklyProfile.flat())
        if no_bursts:
            one = dataclasses.replace(one, burst=NoBurst())
        own = plan_experiment(
            one,
            dataclasses.replace(s, api_options=(False,)),
            jobs=jobs,
            backend=backend,
            address=address,
            verify=False,
            compare_input=False,
            min_counts=floor,
        )
        for t in own.tried:
            # (a scheduled N failing says nothing of a static N, which serves more hours)
            if not t.accepted and t.candidate.spot == 0 and not t.candidate.scheduled:
                key = (t.candidate.gpu, t.candidate.tp)
                floor[key] = max(floor.get(key, 1), t.candidate.count + 1)
        mixed = None
        own_count = own.choices[0].candidate.count if own.choices else s.max_replicas + 1
        # Spilling only pays with fewer replicas than the self-hosted plan (the same fleet plus
        # an API bill costs more): search those counts, none when that leaves no replica.
        if hybrid and exp.spec.api is not None and own_count > 1:
            mixed = plan_experiment(
                one,
                dataclasses.replace(s, api_options=(True,), max_replicas=own_count - 1),
                jobs=jobs,
                backend=backend,
                address=address,
                verify=False,
                compare_input=False,
            )
        ev = own.chosen.get(1)
        if ev is None:
            say(f"{v:,.0f} requests/month: no self-hosted plan within the search space")
            nan = np.full(1, math.nan)
            done[v] = (VolumePoint(v, own, mixed, math.nan), np.full(1, math.inf), nan, floor)
            return
        rows = ev.month(1)
        bill = rows["input_tokens"].to_numpy() * p_in + rows["output_tokens"].to_numpy() * p_out
        bill = bill / 1e6
        done[v] = (
            VolumePoint(v, own, mixed, float(bill.mean())),
            rows["cost_usd"].to_numpy(),
            bill,
            floor,
        )
        say(
            f"{v:,.0f} requests/month: {own.choices[0].candidate.label()} "
            f"${own.choices[0].cost_usd:,.0f}; all-API ${bill.mean():,.0f}"
        )

    for v in sorted(volumes):
        visit(float(v))
    for _ in range(refine):  # bisect the first bracket where the API overtakes self-hosting
        order = sorted(done)
        gaps = [float(np.nanmean(done[v][2]) - np.nanmean(done[v][1])) for v in order]
        bracket = next(
            (
                (a, b)
                for a, b, ga, gb in zip(order, order[1:], gaps, gaps[1:], strict=False)
                if ga < 0 <= gb
            ),
            None,
        )
        if bracket is None or bracket[1] / bracket[0] < 1.0 + REFINE_REL:
            break
        visit(math.sqrt(bracket[0] * bracket[1]))
    order = sorted(done)
    points = [done[v][0] for v in order]
    own_cost = [done[v][1] for v in order]
    api_cost = [done[v][2] for v in order]
    crossover = _crossovers([p.requests_per_month for p in points], own_cost, api_cost)
    return Breakeven(exp.spec, name, points, crossover, naive_breakeven(exp, [1.0]).naive_crossover)


def _crossovers(volumes: list[float], own: list[np.ndarray], api: list[np.ndarray]) -> np.ndarray:
    """Per replication, the first volume where the API bill reaches the self-hosted bill,
    interpolated linearly in volume between grid points (exact when the fleet is the same at
    both points: its bill is then constant and the API bill linear in volume)."""
    n = min((a.size for a in api if np.isfinite(a).all()), default=0)
    out = np.full(n, math.nan)
    for r in range(n):
        prev: tuple[float, float] | None = None  # (volume, api − own)
        for v, o, a in zip(volumes, own, api, strict=True):
            if not np.isfinite(a).all() or a.size <= r:
                prev = None
                continue
            gap = float(a[r] - o[r])
            if gap >= 0:
                if prev is None or prev[1] >= 0:
                    out[r] = v
                else:  # linear interpolation between the two grid points
                    frac = prev[1] / (prev[1] - gap)
                    out[r] = prev[0] + frac * (v - prev[0])
                break
            prev = (v, gap)
    return out

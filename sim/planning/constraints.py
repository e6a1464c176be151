"""Practical plans: at most `max_change_per_month` replicas added or removed at a month
boundary, and a GPU type kept at least `min_months_per_gpu_type` months once chosen.

The month-by-month search picks each month's cheapest accepted fleet on its own; these
constraints tie the months together. For every GPU type the search chose, the least accepted
on-demand count per month is found (staged Clopper–Pearson decisions, as the search's), and a
dynamic programme over months picks, among counts at or above it, the sequence of least total
cost whose boundaries respect the constraints (a change of GPU type replaces the whole fleet:
it counts old + new replicas as changed). More replicas never raise P(miss) under common
random numbers, so a count above the least accepted one is accepted too; every month of the
result is nevertheless decided again and reported with its own evidence. Spot shares and API
spill are not searched under these constraints (on-demand fleets only), nor schedules. A
month that starts before a GPU type's lead time has run out keeps at most the current fleet of
it (`sim.planning.orders.fleet_cap`).
"""

from __future__ import annotations

from collections.abc import Callable

from sim.config.plan import PlanSearchSpec
from sim.planning.decide import Candidate, MonthChoice, decide, month_choice
from sim.planning.evaluate import Evaluation, Evaluator
from sim.planning.orders import fleet_cap
from sim.planning.prices import GpuPrice
from sim.units import HOURS_PER_MONTH

State = tuple[str, int, int]  # GPU type, replicas, months of this GPU type so far (capped)


def least_counts(
    ev: Evaluator, s: PlanSearchSpec, months: int, gpus: list[str], tp: int = 1
) -> dict[tuple[int, str], int]:
    """(month, GPU type) → the least on-demand count of `tp`-way replicas accepted that month
    (absent: none)."""
    out: dict[tuple[int, str], int] = {}
    for gpu in gpus:
        for month in range(1, months + 1):
            for count in range(1, s.max_replicas + 1):
                if decide(ev, Candidate(gpu, count, tp=tp), months, month, s)[0]:
                    out[(month, gpu)] = count
                    break
    return out


def _changed(a: State, gpu: str, count: int) -> int:
    return abs(count - a[1]) if gpu == a[0] else count + a[1]


def practical_plan(
    ev: Evaluator,
    s: PlanSearchSpec,
    months: int,
    choices: list[MonthChoice],
    prices: dict[str, GpuPrice],
    tp: int,
    ops_usd: float,
    say: Callable[[str], None],
) -> tuple[list[MonthChoice], dict[int, Evaluation]]:
    """The cheapest plan over the chosen GPU types that respects the constraints (module doc);
    the unconstrained `choices` when none does."""
    gpus = sorted({ch.candidate.gpu for ch in choices})
    least = least_counts(ev, s, months, gpus, tp)
    need = min(s.min_months_per_gpu_type, months)

    def cost(gpu: str, count: int) -> float:
        return count * tp * HOURS_PER_MONTH * prices[gpu].on_demand_usd_per_hour + ops_usd

    def most(gpu: str, month: int) -> int:
        cap = fleet_cap(s, gpu, month)
        return s.max_replicas if cap is None else min(cap, s.max_replicas)

    best: dict[State, tuple[float, list[tuple[str, int]]]] = {}
    for gpu in gpus:
        if (1, gpu) in least:
            for count in range(least[(1, gpu)], most(gpu, 1) + 1):
                best[(gpu, count, 1)] = (cost(gpu, count), [(gpu, count)])
    for month in range(2, months + 1):
        step: dict[State, tuple[float, list[tuple[str, int]]]] = {}
        for state, (total, path) in best.items():
            for gpu in gpus:
                if (month, gpu) not in least:
                    continue
                if gpu != state[0] and state[2] < need:
                    continue  # the old GPU type has not lasted long enough
                for count in range(least[(month, gpu)], most(gpu, month) + 1):
                    if s.max_change_per_month is not None and (
                        _changed(state, gpu, count) > s.max_change_per_month
                    ):
                        continue
                    run = min(state[2] + 1, need) if gpu == state[0] else 1
                    key = (gpu, count, run)
                    value = total + cost(gpu, count)
                    if key not in step or value < step[key][0]:
                        step[key] = (value, [*path, (gpu, count)])
        best = step
    finals = [v for k, v in best.items() if k[2] >= need]
    if not finals:
        say("no plan meets max_change_per_month / min_months_per_gpu_type: unconstrained kept")
        return choices, {}
    total, path = min(finals, key=lambda v: v[0])
    out: list[MonthChoice] = []
    chosen: dict[int, Evaluation] = {}
    for month, (gpu, count) in enumerate(path, start=1):
        c = Candidate(gpu, count, tp=tp)
        accepted, result = decide(ev, c, months, month, s)
        chosen[month] = result
        out.append(
            month_choice(
                result, c, month, result.cost(month, "p95" if s.objective == "p95" else "mean")
            )
        )
        if not accepted:
            say(f"month {month}: {c.label()} is above the least accepted count yet not accepted")
    say(f"constrained plan: ${total / months:,.0f} a month on average")
    return out, chosen

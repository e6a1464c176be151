"""One pool of a month's fleet: `{name, gpu, count, market}`, and how it moves within the month
(`schedule` rules by hour of the week, or a reactive `autoscale` table).

    pools = [
      { name = "base", gpu = "a100-80gb", count = 1, market = "reserved" },
      { name = "day", gpu = "a100-80gb", count = 0,
        schedule = [{ days = "mon-fri", hours = [8, 20], count = 2 }] },
      { name = "burst", gpu = "a100-80gb", count = 0,
        autoscale = { min_replicas = 0, max_replicas = 4, signal = "queue_depth", target = 4 } },
    ]
"""

from __future__ import annotations

import re

from sim.config.reader import MAX_NAME, MISSING, Context, Table, within
from sim.config.spec import AUTOSCALE_SIGNALS, AutoscaleSpec, PoolSpec, ScheduleRule
from sim.units import MARKETS, Market

MAX_POOL_COUNT = 10_000  # replicas in one pool
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")
DAY_NAMES = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_WORDS = {"all": tuple(range(7)), "weekdays": tuple(range(5)), "weekend": (5, 6)}


def parse_days(text: str) -> tuple[int, ...] | None:
    """ "mon-fri", "sat,sun", "mon,wed-fri", "weekdays", "weekend" or "all" → day indices
    (0 = Monday), sorted; None when not understood. A range may wrap ("fri-mon")."""
    words = text.strip().lower()
    if words in DAY_WORDS:
        return DAY_WORDS[words]
    days: set[int] = set()
    for part in words.split(","):
        ends = [p.strip()[:3] for p in part.split("-")]
        if len(ends) > 2 or any(e not in DAY_NAMES for e in ends):
            return None
        a, b = DAY_NAMES.index(ends[0]), DAY_NAMES.index(ends[-1])
        days.update((a + i) % 7 for i in range((b - a) % 7 + 1))
    return tuple(sorted(days))


def pool_spec(ctx: Context, pt: Table, index: int, known_gpus: tuple[str, ...]) -> PoolSpec:
    """Read one pool table (`pt`, the `index`-th of its month); problems go to `ctx`."""
    count_range = within(0, MAX_POOL_COUNT, "replicas")
    market = pt.string("market", Market.ON_DEMAND.value, choices=MARKETS)
    spec = PoolSpec(
        name=pt.string("name", f"pool{index}"),
        gpu=pt.string("gpu", choices=known_gpus),
        count=pt.integer("count", MISSING, *count_range),
        market=market,
        schedule=_schedule(ctx, pt),
        autoscale=_autoscale(ctx, pt),
    )
    if spec.moves and market != Market.ON_DEMAND:
        # NOTE: a reserved instance is paid whether up or not, so moving it saves nothing; a
        # moving spot pool would need reclaims drawn only while an instance runs (not modelled).
        ctx.add(f"{pt.path}.market", "schedule and autoscale apply to on_demand pools", market)
    if spec.schedule and spec.autoscale is not None:
        ctx.add(f"{pt.path}.autoscale", "a pool has a schedule or an autoscaler, not both")
    a = spec.autoscale
    if (
        a is not None
        and isinstance(spec.count, int)
        and all(isinstance(x, int) for x in (a.min_replicas, a.max_replicas))
    ):
        if a.min_replicas > a.max_replicas:
            ctx.add(f"{pt.path}.autoscale.max_replicas", "must be >= min_replicas", a.max_replicas)
        elif not a.min_replicas <= spec.count <= a.max_replicas:
            ctx.add(
                f"{pt.path}.count",
                f"must be within autoscale's [{a.min_replicas}, {a.max_replicas}] "
                "(the replicas up at the month's start)",
                spec.count,
            )
    pt.close()
    name = spec.name
    if isinstance(name, str) and (not NAME.fullmatch(name) or len(name) > MAX_NAME):
        ctx.add(
            f"{pt.path}.name",
            f"must be 1 to {MAX_NAME} letters, digits, '.', '_', '+' or '-'",
            name,
        )
    return spec


def _schedule(ctx: Context, pt: Table) -> tuple[ScheduleRule, ...]:
    raw = pt.raw("schedule")
    if raw is MISSING:
        return ()
    where = f"{pt.path}.schedule"
    if not isinstance(raw, list) or not raw:
        ctx.add(where, 'must be a list of { days = "mon-fri", hours = [8, 20], count = 2 }', raw)
        return ()
    rules = []
    for i, item in enumerate(raw):
        rt = Table(ctx, item, f"{where}[{i}]")
        days_text = rt.string("days", "all")
        days = parse_days(days_text) if isinstance(days_text, str) else None
        if isinstance(days_text, str) and days is None:
            ctx.add(
                f"{rt.path}.days",
                'must name days: "mon-fri", "sat,sun", "weekdays", "weekend" or "all"',
                days_text,
            )
        hours = rt.raw("hours")
        span = _hours(hours)
        if span is None:
            ctx.add(
                f"{rt.path}.hours",
                "must be [start, end]: whole hours of the day, 0 <= start < end <= 24",
                None if hours is MISSING else hours,
                has_value=hours is not MISSING,
            )
        count = rt.integer("count", MISSING, *within(0, MAX_POOL_COUNT, "replicas"))
        rt.close()
        if days is not None and span is not None and isinstance(count, int):
            rules.append(ScheduleRule(days, span[0], span[1], count))
    return tuple(rules)


def _hours(raw: object) -> tuple[int, int] | None:
    if not isinstance(raw, list) or len(raw) != 2:
        return None
    if not all(isinstance(h, int) and not isinstance(h, bool) for h in raw):
        return None
    start, end = raw
    return (start, end) if 0 <= start < end <= 24 else None


def _autoscale(ctx: Context, pt: Table) -> AutoscaleSpec | None:
    if pt.raw("autoscale") is MISSING:
        return None
    at = pt.table("autoscale")
    d = AutoscaleSpec(0, 0, 1.0)
    count = within(0, MAX_POOL_COUNT, "replicas")
    spec = AutoscaleSpec(
        min_replicas=at.integer("min_replicas", MISSING, *count),
        max_replicas=at.integer("max_replicas", MISSING, *within(1, MAX_POOL_COUNT, "replicas")),
        target=at.number("target", MISSING, *within(0, 1e9, open_low=True)),
        signal=at.string("signal", d.signal, choices=AUTOSCALE_SIGNALS),
        interval_s=at.number("interval_s", d.interval_s, *within(0, 86_400, "s", open_low=True)),
        tolerance=at.number("tolerance", d.tolerance, *within(0, 10)),
        up_cooldown_s=at.number("up_cooldown_s", d.up_cooldown_s, *within(0, 1e7, "s")),
        down_cooldown_s=at.number("down_cooldown_s", d.down_cooldown_s, *within(0, 1e7, "s")),
        provisioning_s=at.number("provisioning_s", d.provisioning_s, *within(0, 1e7, "s")),
        predictive=at.boolean("predictive", d.predictive),
    )
    at.close()
    return spec

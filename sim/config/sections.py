"""The `[engine]`, `[fleet]` / `[[plans]]`, `[spot]`, `[api]` and `[cost]` sections."""

from __future__ import annotations

import math
import re
from collections.abc import Callable

from sim.config.reader import (
    MISSING,
    Context,
    Table,
    all_numbers,
    hint,
    join,
    non_negative,
    positive,
)
from sim.config.spec import (
    ON_LIMIT,
    ApiSpec,
    CostSpec,
    EngineSpec,
    MonthPlan,
    PlanSpec,
    PoolSpec,
    SpillSpec,
    SpotSpec,
)
from sim.data import (
    DTYPE_BYTES,
    QUANTIZATION_WEIGHT_DTYPE,
    api_providers,
    gpus,
    models,
    spot_market_rows,
)
from sim.units import MARKETS


def engine_section(ctx: Context, t: Table) -> EngineSpec:
    model = t.string("model", choices=tuple(sorted(models())))
    dtype = t.string("dtype", "fp16", choices=tuple(DTYPE_BYTES))
    weight_dtype = t.string("weight_dtype", None, choices=tuple(DTYPE_BYTES))
    quantization = t.string("quantization", None, choices=tuple(QUANTIZATION_WEIGHT_DTYPE))
    if isinstance(quantization, str):
        implied = QUANTIZATION_WEIGHT_DTYPE[quantization]
        if isinstance(weight_dtype, str) and weight_dtype != implied:
            ctx.add(
                join(t.path, "weight_dtype"),
                f"contradicts quantization = {quantization!r} (weights {implied})",
                weight_dtype,
            )
        weight_dtype = implied
    spec = EngineSpec(
        model=model,
        dtype=dtype,
        tp=t.integer("tp", 1, check=lambda x: x in (1, 2, 4, 8), rule="1, 2, 4 or 8"),
        max_num_seqs=t.integer("max_num_seqs", check=lambda x: x >= 1, rule=">= 1"),
        max_num_batched_tokens=t.integer(
            "max_num_batched_tokens", check=lambda x: x >= 1, rule=">= 1"
        ),
        max_model_len=t.integer("max_model_len", check=lambda x: x >= 2, rule=">= 2"),
        gpu_memory_utilization=t.number(
            "gpu_memory_utilization", 0.9, check=lambda x: 0 < x <= 1, rule="in (0, 1]"
        ),
        block_size=t.integer("block_size", 16, check=lambda x: x >= 1, rule=">= 1"),
        kv_blocks=t.integer("kv_blocks", None, check=lambda x: x >= 1, rule=">= 1"),
        weight_dtype=weight_dtype if weight_dtype != dtype else None,
    )
    if (
        isinstance(spec.max_num_seqs, int)
        and isinstance(spec.max_num_batched_tokens, int)
        and spec.max_num_batched_tokens < spec.max_num_seqs
    ):
        ctx.add(
            join(t.path, "max_num_batched_tokens"),
            f"must be >= max_num_seqs ({spec.max_num_seqs}), as vLLM requires",
            spec.max_num_batched_tokens,
        )
    known = models().get(model) if isinstance(model, str) else None
    if (
        known is not None
        and isinstance(spec.max_model_len, int)
        and (spec.max_model_len > known.max_position)
    ):
        ctx.add(
            join(t.path, "max_model_len"),
            f"must be <= the model's context length {known.max_position}",
            spec.max_model_len,
        )
    t.close()
    return spec


def fleet_section(ctx: Context, t: Table, months: int) -> tuple[MonthPlan, ...]:
    """`[fleet]` (or one `[[plans]]` entry): `months = [{pools}, ...]`, or `pools` for all."""
    fleet = _months(ctx, t, months)
    t.close()
    return fleet


def _months(ctx: Context, t: Table, months: int) -> tuple[MonthPlan, ...]:
    if "pools" in t.data and "months" not in t.data:
        plan = _month(ctx, t, t.path)
        return (plan,) * months if isinstance(months, int) else (plan,)
    raw = t.raw("months")
    where = join(t.path, "months")
    plans: list[MonthPlan] = []
    if not isinstance(raw, list) or not raw:
        ctx.add(
            where,
            "must be a list of [[fleet.months]] tables, one per month (or give `pools` for all)",
            None if raw is MISSING else raw,
            has_value=raw is not MISSING,
        )
        return ()
    if isinstance(months, int) and len(raw) != months:
        ctx.add(where, f"must have one entry per month ({months})", f"{len(raw)} entries")
    for i, month in enumerate(raw):
        mt = Table(ctx, month, f"{where}[{i}]")
        plans.append(_month(ctx, mt, mt.path))
        mt.close()
    return tuple(plans)


def _month(ctx: Context, mt: Table, path: str) -> MonthPlan:
    known_gpus = tuple(sorted(gpus()))
    pools_raw = mt.raw("pools")
    pools: list[PoolSpec] = []
    if not isinstance(pools_raw, list) or not pools_raw:
        ctx.add(
            f"{path}.pools",
            "must be a non-empty list of pools",
            None if pools_raw is MISSING else pools_raw,
            has_value=pools_raw is not MISSING,
        )
        return MonthPlan(())
    for j, pool in enumerate(pools_raw):
        pt = Table(ctx, pool, f"{path}.pools[{j}]")
        pools.append(
            PoolSpec(
                name=pt.string("name", f"pool{j}"),
                gpu=pt.string("gpu", choices=known_gpus),
                count=pt.integer("count", check=non_negative, rule=">= 0"),
                market=pt.string("market", "on_demand", choices=MARKETS),
            )
        )
        pt.close()
    names = [p.name for p in pools]
    for j, name in enumerate(names):
        if name in names[:j]:
            ctx.add(f"{path}.pools[{j}].name", "is used by another pool of this month", name)
    counts = [p.count for p in pools]
    valid = all(isinstance(c, int) and c >= 0 for c in counts)
    total = sum(counts) if valid else 0
    # Only when every count is valid: a bad count is already reported on its own.
    if valid and total < 1:
        ctx.add(f"{path}.pools", "must hold at least one replica", total)
    return MonthPlan(tuple(pools))


def plans_section(ctx: Context, top: Table, months: int) -> tuple[PlanSpec, ...]:
    """`[[plans]]`: several fleet plans compared with common random numbers (or none)."""
    raw = top.raw("plans")
    if raw is MISSING:
        return ()
    if not isinstance(raw, list) or not raw:
        ctx.add("plans", "must be a list of [[plans]] tables", raw)
        return ()
    out: list[PlanSpec] = []
    for i, item in enumerate(raw):
        pt = Table(ctx, item, f"plans[{i}]")
        name = pt.string("name")
        if isinstance(name, str) and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", name):
            ctx.add(f"{pt.path}.name", "must be letters, digits, '.', '_', '+' or '-'", name)
        if name in [p.name for p in out]:
            ctx.add(f"{pt.path}.name", "is used by another plan", name)
        api = pt.boolean("api", True)
        fleet = _months(ctx, pt, months)
        pt.close()
        out.append(PlanSpec(name, fleet, api))
    return tuple(out)


def spot_section(ctx: Context, top: Table, plans: tuple[PlanSpec, ...]) -> SpotSpec | None:
    uses_spot = any(p.market == "spot" for pl in plans for m in pl.fleet for p in m.pools)
    if "spot" not in top.data:
        top.seen.add("spot")
        if uses_spot:
            ctx.add("spot", 'is required: a pool has market = "spot"', has_value=False)
        return None
    t = top.table("spot")
    known = spot_market_rows()
    spec = SpotSpec(
        market=t.string("market", choices=tuple(sorted(known))),
        preemptions_per_instance_hour=t.number(
            "preemptions_per_instance_hour", None, check=non_negative, rule=">= 0"
        ),
        notice_s=t.number("notice_s", None, check=non_negative, rule=">= 0 (seconds)"),
        cold_start_s=t.number("cold_start_s", None, check=non_negative, rule=">= 0 (seconds)"),
        fallback_after_s=t.number(
            "fallback_after_s", None, check=non_negative, rule=">= 0 (seconds)"
        ),
    )
    market = known.get(spec.market) if isinstance(spec.market, str) else None
    if (
        market is not None
        and spec.preemptions_per_instance_hour is not None
        and market["kind"] != "rate"
    ):
        ctx.add(
            "spot.preemptions_per_instance_hour",
            f"applies to rate markets only; {spec.market} replays a trace",
            spec.preemptions_per_instance_hour,
        )
    t.close()
    return spec


def api_section(ctx: Context, top: Table) -> ApiSpec | None:
    if "api" not in top.data:
        top.seen.add("api")
        return None
    t = top.table("api")
    table = api_providers()
    provider = t.string("provider", choices=tuple(sorted(table)))
    row = table.get(provider) if isinstance(provider, str) else None

    def num(key: str, check: Callable[[float], bool], rule: str) -> float:
        default = row.get(key, MISSING) if row is not None else None
        if default is MISSING:  # the provider table has no published figure: must be given
            value = t.number(key, None, check=check, rule=rule)
            if value is None and key not in t.data:
                ctx.add(
                    join(t.path, key),
                    f"is required: no published figure for {provider} in sim/data/api.toml",
                    has_value=False,
                )
            return value
        return t.number(key, default, check=check, rule=rule)

    def limit(key: str, table_key: str) -> int | None:
        default = row.get(table_key) if row is not None else None
        return t.integer(key, default, check=positive, rule="> 0 (per minute)")

    ttft_median = num("ttft_median_s", positive, "> 0 (seconds)")
    ttft_p95 = num("ttft_p95_s", positive, "> 0 (seconds)")
    speed_median = num("output_tokens_per_s_median", positive, "> 0 (tokens/s)")
    speed_p5 = num("output_tokens_per_s_p5", positive, "> 0 (tokens/s)")
    if all_numbers(ttft_median, ttft_p95) and ttft_p95 < ttft_median:
        ctx.add(f"{t.path}.ttft_p95_s", f"must be >= ttft_median_s ({ttft_median})", ttft_p95)
    if all_numbers(speed_median, speed_p5) and speed_p5 > speed_median:
        ctx.add(
            f"{t.path}.output_tokens_per_s_p5",
            f"must be <= output_tokens_per_s_median ({speed_median})",
            speed_p5,
        )
    sp = t.table("spill")
    spill = SpillSpec(
        max_wait_s=sp.number("max_wait_s", None, check=non_negative, rule=">= 0 (seconds)"),
        queue_over=sp.integer("queue_over", None, check=non_negative, rule=">= 0"),
        when_no_replica=sp.boolean("when_no_replica", True),
    )
    sp.close()
    spec = ApiSpec(
        provider=provider,
        input_usd_per_million=num("input_usd_per_million", non_negative, ">= 0"),
        output_usd_per_million=num("output_usd_per_million", non_negative, ">= 0"),
        ttft_median_s=ttft_median,
        ttft_p95_s=ttft_p95,
        output_tokens_per_s_median=speed_median,
        output_tokens_per_s_p5=speed_p5,
        rpm=limit("rpm", "requests_per_minute"),
        tpm=limit("tpm", "tokens_per_minute"),
        input_tpm=limit("input_tpm", "input_tokens_per_minute"),
        output_tpm=limit("output_tpm", "output_tokens_per_minute"),
        on_limit=t.string("on_limit", "retry", choices=ON_LIMIT),
        # One rate-limit window: a throttled request waits at most until a minute has passed.
        max_retry_wait_s=t.number("max_retry_wait_s", 60.0, check=non_negative, rule=">= 0"),
        spill=spill,
        source="; ".join(
            str(row[k]) for k in ("price_source", "rate_limit_source") if row and k in row
        ),
    )
    t.close()
    return spec


def cost_section(ctx: Context, t: Table, plans: tuple[PlanSpec, ...]) -> CostSpec:
    ops = t.number("ops_usd_per_month", check=non_negative, rule=">= 0")
    budget = t.number("budget_usd_per_month", None, check=positive, rule="> 0")
    known = gpus()
    prices = _price_table(
        ctx, t.table("gpu_usd_per_hour"), {n: g.price_usd_per_hour for n, g in known.items()}
    )
    spot_defaults = {
        n: g.spot_price_usd_per_hour
        for n, g in known.items()
        if g.spot_price_usd_per_hour is not None
    }
    spot = _price_table(ctx, t.table("spot_usd_per_hour"), spot_defaults)
    for plan in plans:
        for m, month in enumerate(plan.fleet):
            for pool in month.pools:
                if pool.market == "spot" and pool.gpu in known and pool.gpu not in spot:
                    ctx.add(
                        "cost.spot_usd_per_hour",
                        f"needs a spot price for {pool.gpu} (the GPU catalog has none; "
                        f"used by plan {plan.name}, month {m + 1}, pool {pool.name})",
                        has_value=False,
                    )
                    spot[pool.gpu] = math.nan  # reported once
    t.close()
    return CostSpec(
        ops,
        tuple(sorted(prices.items())),
        tuple(sorted((k, v) for k, v in spot.items() if v == v)),
        budget,
    )


def _price_table(ctx: Context, table: Table, defaults: dict[str, float]) -> dict[str, float]:
    """Per-GPU $/h: catalog defaults, overridden by the experiment's table."""
    known = gpus()
    prices = dict(defaults)
    for key in list(table.data):
        if key not in known:
            table.seen.add(key)
            ctx.add(join(table.path, key), f"unknown GPU{hint(key, tuple(known))}", has_value=False)
            continue
        prices[key] = table.number(key, check=non_negative, rule=">= 0")
    table.close()
    return prices

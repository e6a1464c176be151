"""The `[engine]`, `[fleet]` / `[[plans]]`, `[spot]`, `[api]` and `[cost]` sections."""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping
from pathlib import Path

from sim.config.pools import NAME, pool_spec
from sim.config.reader import (
    MAX_NAME,
    MISSING,
    Context,
    Rule,
    Table,
    all_numbers,
    existing_file,
    hint,
    join,
    percent_hint,
    within,
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
from sim.config.vllm import parse_version
from sim.data import (
    DTYPE_BYTES,
    QUANTIZATION_WEIGHT_DTYPE,
    GpuSpec,
    api_providers,
    gpus,
    models,
    read_toml_file,
    spot_market_rows,
)
from sim.data.tables import canonical_model_name
from sim.data.user_gpus import parse_user_gpus
from sim.errors import ConfigError
from sim.units import MARKETS


def engine_section(ctx: Context, t: Table, calibration_override: str | None = None) -> EngineSpec:
    """`[engine]`; `calibration_override` (an absolute path, `--calibration`) replaces the
    file's `calibration` key."""
    # a Hugging Face id or alias (e.g. "Qwen/Qwen3.5-9B") names its catalog model
    model = t.string("model", choices=tuple(sorted(models())), alias=canonical_model_name)
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
    calibration = _calibration_file(ctx, t)
    if calibration_override is not None:
        calibration = calibration_override
    spec = EngineSpec(
        model=model,
        dtype=dtype,
        tp=t.integer("tp", 1, check=lambda x: x in (1, 2, 4, 8), rule="1, 2, 4 or 8"),
        max_num_seqs=t.integer("max_num_seqs", MISSING, *within(1, 100_000)),
        max_num_batched_tokens=t.integer(
            "max_num_batched_tokens", MISSING, *within(1, 100_000_000)
        ),
        max_model_len=t.integer("max_model_len", MISSING, *within(2, 100_000_000)),
        gpu_memory_utilization=t.number(
            "gpu_memory_utilization",
            0.9,
            check=lambda x: 0 < x <= 1,
            rule="in (0, 1]",
            suggest=percent_hint,
        ),
        block_size=t.integer("block_size", 16, *within(1, 4096)),
        kv_blocks=t.integer("kv_blocks", None, *within(1, 1e9)),
        weight_dtype=weight_dtype if weight_dtype != dtype else None,
        calibration=calibration,
        vllm_version=_vllm_version(ctx, t),
        async_scheduling=t.boolean("async_scheduling", None),
    )
    if spec.async_scheduling is not None and spec.vllm_version is None:
        ctx.add(
            join(t.path, "async_scheduling"),
            "needs vllm_version beside it (the CPU time of a step follows the version)",
            spec.async_scheduling,
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


def _vllm_version(ctx: Context, t: Table) -> str | None:
    """`[engine] vllm_version`: a V1 version (0.8 or later); V0's scheduler runs in `sim bench`
    only (the reference engine), not in experiments."""
    raw = t.string("vllm_version", None)
    if not isinstance(raw, str):
        return None
    where = join(t.path, "vllm_version")
    try:
        version = parse_version(raw)
    except ValueError:
        ctx.add(where, 'must be a vLLM version such as "0.15.1"', raw)
        return None
    if version.family != "v1":
        ctx.add(where, "must be 0.8 or later (V1); V0 runs in `sim bench` only", raw)
        return None
    return raw.strip()


def _calibration_file(ctx: Context, t: Table) -> str | None:
    """`[engine] calibration`: a user's step-time entries (relative to the experiment's folder).
    Its contents are checked where the engine is resolved (`sim.engine.catalog`), still before
    anything runs."""
    raw = t.string("calibration", None)
    if not isinstance(raw, str):
        return None
    where = join(t.path, "calibration")
    return existing_file(ctx, where, raw, Path(ctx.file).parent)


def gpu_table(ctx: Context, calibration: str | None) -> tuple[dict[str, GpuSpec], set[str]]:
    """The GPU types an experiment may name: the packaged table and the `[[gpu]]` tables of
    its calibration file (`sim.data.user_gpus`; problems located in that file go to `ctx`),
    and every name the file defines, valid or not (a pool naming a rejected table is not
    reported a second time). Read here, before the fleet and the cost, because pools name these
    GPU types and their prices are the cost's defaults; `sim.experiment` resolves the engine."""
    known = dict(gpus())
    if calibration is None:
        return known, set(known)
    try:
        rows = read_toml_file(calibration).get("gpu")
    except ConfigError as err:
        ctx.problems.extend(err.problems)
        return known, set(known)
    names = {
        r["name"] for r in rows or () if isinstance(r, dict) and isinstance(r.get("name"), str)
    }
    try:
        known.update(parse_user_gpus(rows, calibration))
    except ConfigError as err:
        ctx.problems.extend(err.problems)
    return known, set(known) | names


def fleet_section(
    ctx: Context, t: Table, months: int, known: Collection[str]
) -> tuple[MonthPlan, ...]:
    """`[fleet]` (or one `[[plans]]` entry): `months = [{pools}, ...]`, or `pools` for all;
    pools may name the GPU types in `known` (`gpu_table`'s names)."""
    fleet = _months(ctx, t, months, known)
    t.close()
    return fleet


def _months(ctx: Context, t: Table, months: int, known: Collection[str]) -> tuple[MonthPlan, ...]:
    if "pools" in t.data and "months" not in t.data:
        plan = _month(ctx, t, t.path, known)
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
        plans.append(_month(ctx, mt, mt.path, known))
        mt.close()
    return tuple(plans)


def _month(ctx: Context, mt: Table, path: str, known: Collection[str]) -> MonthPlan:
    known_gpus = tuple(sorted(known))
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
    seen: set[str] = set()  # one pass: 20,000 pools parse in well under a second
    for j, pool in enumerate(pools_raw):
        pt = Table(ctx, pool, f"{path}.pools[{j}]")
        spec = pool_spec(ctx, pt, j, known_gpus)
        pools.append(spec)
        name = spec.name
        if isinstance(name, str) and name in seen:
            ctx.add(f"{path}.pools[{j}].name", "is used by another pool of this month", name)
        seen.add(name)
    month = MonthPlan(tuple(pools))
    counts = [p.count for p in pools]
    # Only when every count is valid: a bad count is already reported on its own.
    if all(isinstance(c, int) and c >= 0 for c in counts):
        least = month.least_serving()
        if least < 1:
            ctx.add(
                f"{path}.pools",
                "must hold at least one replica"
                + (" at every hour of the week" if any(p.moves for p in pools) else ""),
                least,
            )
    return month


_NAME = NAME


def plans_section(
    ctx: Context, top: Table, months: int, known: Collection[str]
) -> tuple[PlanSpec, ...]:
    """`[[plans]]`: several fleet plans compared with common random numbers (or none)."""
    raw = top.raw("plans")
    if raw is MISSING:
        return ()
    if not isinstance(raw, list) or not raw:
        ctx.add("plans", "must be a list of [[plans]] tables", raw)
        return ()
    out: list[PlanSpec] = []
    names: set[str] = set()
    for i, item in enumerate(raw):
        pt = Table(ctx, item, f"plans[{i}]")
        name = pt.string("name")
        if isinstance(name, str) and not _NAME.fullmatch(name):
            ctx.add(f"{pt.path}.name", "must be letters, digits, '.', '_', '+' or '-'", name)
        elif isinstance(name, str) and len(name) > MAX_NAME:
            ctx.add(f"{pt.path}.name", f"must be at most {MAX_NAME} characters", name)
        if isinstance(name, str) and name in names:
            ctx.add(f"{pt.path}.name", "is used by another plan", name)
        if isinstance(name, str):
            names.add(name)
        api = pt.boolean("api", True)
        fleet = _months(ctx, pt, months, known)
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
            "preemptions_per_instance_hour", None, *within(0, 100, "per hour")
        ),
        notice_s=t.number("notice_s", None, *within(0, 86_400, "seconds")),
        cold_start_s=t.number("cold_start_s", None, *within(0, 86_400, "seconds")),
        fallback_after_s=t.number("fallback_after_s", None, *within(0, 1e8, "seconds")),
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

    def num(key: str, check: Callable[[float], bool], rule: Rule) -> float:
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
        return t.integer(key, default, *within(1, 1e12, "per minute"))

    ttft_median = num("ttft_median_s", *within(0, 3600, "seconds", open_low=True))
    ttft_p95 = num("ttft_p95_s", *within(0, 3600, "seconds", open_low=True))
    speed_median = num("output_tokens_per_s_median", *within(0, 1e6, "tokens/s", open_low=True))
    speed_p5 = num("output_tokens_per_s_p5", *within(0, 1e6, "tokens/s", open_low=True))
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
        max_wait_s=sp.number("max_wait_s", None, *within(0, 86_400, "seconds")),
        queue_over=sp.integer("queue_over", None, *within(0, 1e9)),
        when_no_replica=sp.boolean("when_no_replica", True),
    )
    sp.close()
    spec = ApiSpec(
        provider=provider,
        input_usd_per_million=num("input_usd_per_million", *within(0, MAX_USD_PER_MILLION, "$")),
        output_usd_per_million=num("output_usd_per_million", *within(0, MAX_USD_PER_MILLION, "$")),
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
        max_retry_wait_s=t.number("max_retry_wait_s", 60.0, *within(0, 86_400, "seconds")),
        spill=spill,
        source="; ".join(
            str(row[k]) for k in ("price_source", "rate_limit_source") if row and k in row
        ),
    )
    t.close()
    return spec


# Plausible money: the largest GPU instances list near $100/GPU-hour; $10^10 a month is beyond
# any inference budget; API list prices are ~$0.1..$600 per million tokens.
MAX_USD_PER_GPU_HOUR = 1000.0
MAX_USD_PER_MONTH = 1e10
MAX_USD_PER_MILLION = 10_000.0


def cost_section(
    ctx: Context, t: Table, plans: tuple[PlanSpec, ...], known: Mapping[str, GpuSpec]
) -> CostSpec:
    """`[cost]`: prices default to `known`'s (`gpu_table`: the packaged table's, and those of
    the calibration file's GPU types), overridden by the experiment's tables."""
    ops = t.number("ops_usd_per_month", MISSING, *within(0, MAX_USD_PER_MONTH, "$/month"))
    budget = t.number(
        "budget_usd_per_month", None, *within(0, MAX_USD_PER_MONTH, "$/month", open_low=True)
    )
    prices = _price_table(
        ctx,
        t.table("gpu_usd_per_hour"),
        {n: g.price_usd_per_hour for n, g in known.items()},
        known,
    )
    spot_defaults = {
        n: g.spot_price_usd_per_hour
        for n, g in known.items()
        if g.spot_price_usd_per_hour is not None
    }
    spot = _price_table(ctx, t.table("spot_usd_per_hour"), spot_defaults, known)
    _require_prices(
        ctx, plans, known, "spot", spot, "cost.spot_usd_per_hour", "the GPU catalog has none"
    )
    reserved = _price_table(ctx, t.table("reserved_usd_per_hour"), {}, known)
    _require_prices(
        ctx,
        plans,
        known,
        "reserved",
        reserved,
        "cost.reserved_usd_per_hour",
        "commitment prices have no package default",
    )
    gt = t.table("billing_granularity_s")
    granularity = {
        market: gt.number(market, 1.0, *within(0, 31 * 86_400, "s", open_low=True))
        for market in MARKETS
    }
    gt.close()
    t.close()
    return CostSpec(
        ops,
        tuple(sorted(prices.items())),
        tuple(sorted((k, v) for k, v in spot.items() if v == v)),
        budget,
        tuple(sorted((k, v) for k, v in reserved.items() if v == v)),
        tuple(sorted(granularity.items())),
    )


def _require_prices(
    ctx: Context,
    plans: tuple[PlanSpec, ...],
    known: Mapping[str, GpuSpec],
    market: str,
    prices: dict[str, float],
    key: str,
    why: str,
) -> None:
    """One located problem per GPU a `market` pool uses without a price in `prices` (marked
    NaN there, so it is reported once and left out of the spec)."""
    for plan in plans:
        for m, month in enumerate(plan.fleet):
            for pool in month.pools:
                if pool.market == market and pool.gpu in known and pool.gpu not in prices:
                    ctx.add(
                        key,
                        f"needs a {market} price for {pool.gpu} ({why}; used by plan "
                        f"{plan.name}, month {m + 1}, pool {pool.name})",
                        has_value=False,
                    )
                    prices[pool.gpu] = math.nan


def _price_table(
    ctx: Context, table: Table, defaults: dict[str, float], known: Mapping[str, GpuSpec]
) -> dict[str, float]:
    """Per-GPU $/h: catalog defaults, overridden by the experiment's table (GPUs in `known`)."""
    prices = dict(defaults)
    for key in list(table.data):
        if key not in known:
            table.seen.add(key)
            ctx.add(join(table.path, key), f"unknown GPU{hint(key, tuple(known))}", has_value=False)
            continue
        prices[key] = table.number(key, MISSING, *within(0, MAX_USD_PER_GPU_HOUR, "$/h"))
    table.close()
    return prices

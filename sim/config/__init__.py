"""Experiment files (TOML) → frozen dataclasses, with strict, located, all-at-once validation.

Every problem names the file, the dotted key path and the value
(`experiments/x.toml: fleet.months[2].pools[0].count: must be >= 0, got -1`); unknown keys get a
"did you mean". All problems are collected, then raised once as `ConfigError`. Relative paths in
the file are resolved against the file's folder. Only this package and `sim.data` read TOML;
data files named by the experiment are loaded (and checked) by `sim.experiment`, which also
resolves what follows from the spec (KV-cache capacity, step times).

docs/config.md lists every key with its type, unit, default and meaning (a test keeps it
complete). The sections: top level (`name`, `seed`, `months`), `[monte_carlo]`, `[workload]`
(generated, replay or include; `[workload.growth]`, `[workload.burst]`, `[workload.lengths]`),
`[engine]`, `[fleet]` or `[[plans]]`, `[spot]`, `[api]` with `[api.spill]`, `[cost]`, `[slo]`,
`[horizon]`.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
from pathlib import Path
from typing import Any

from sim.config.plan import PlanSearchSpec, plan_section
from sim.config.reader import (
    MAX_NAME,
    MISSING,
    Context,
    Table,
    non_negative,
    read_user_text,
    within,
)
from sim.config.sections import (
    api_section,
    cost_section,
    engine_section,
    fleet_section,
    gpu_table,
    plans_section,
    spot_section,
)
from sim.config.spec import (
    AUTOSCALE_SIGNALS,
    BURST_KINDS,
    ON_LIMIT,
    TRACE_FORMATS,
    WORKLOAD_KINDS,
    ApiSpec,
    AutoscaleSpec,
    BurstLayerSpec,
    BurstSpec,
    CostSpec,
    EngineSpec,
    ExperimentSpec,
    GrowthSpec,
    HorizonSpec,
    MonthPlan,
    PlanSpec,
    PoolSpec,
    ReplaySpec,
    ScheduleRule,
    SloSpec,
    SpillSpec,
    SpotSpec,
    WorkloadSpec,
)
from sim.config.workload import MAX_MONTHLY_GROWTH, parse_workload_file, workload_section
from sim.errors import ConfigError, Problem

__all__ = [
    "AUTOSCALE_SIGNALS",
    "BURST_KINDS",
    "ON_LIMIT",
    "TRACE_FORMATS",
    "WORKLOAD_KINDS",
    "ApiSpec",
    "AutoscaleSpec",
    "BurstLayerSpec",
    "BurstSpec",
    "CostSpec",
    "EngineSpec",
    "ExperimentSpec",
    "GrowthSpec",
    "HorizonSpec",
    "MonthPlan",
    "PlanSearchSpec",
    "PlanSpec",
    "PoolSpec",
    "ReplaySpec",
    "ScheduleRule",
    "SloSpec",
    "SpillSpec",
    "SpotSpec",
    "WorkloadSpec",
    "keys_read",
    "load_experiment_spec",
    "parse_experiment",
    "parse_workload_file",
]


def keys_read(text: str, file: str) -> set[str]:
    """Every key path the reader asks for while reading experiment TOML `text` (list indices as
    `[]`), whether or not the file is valid: the keys it accepts in the sections present."""
    ctx = Context(file)
    with contextlib.suppress(ConfigError):
        _parse(text, ctx)
    return ctx.asked


def parse_experiment(text: str, file: str, calibration: str | Path | None = None) -> ExperimentSpec:
    """Parse and validate experiment TOML `text` read from `file`; raise ConfigError.

    calibration: a calibration file that replaces `[engine] calibration` (`--calibration`),
    read before the fleet so that pools may name the GPU types its `[[gpu]]` tables define.
    """
    override = None if calibration is None else str(Path(calibration).resolve())
    return _parse(text, Context(file), override)


def _parse(text: str, ctx: Context, calibration: str | None = None) -> ExperimentSpec:
    file = ctx.file
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([Problem(file, "", f"not valid TOML: {err}", has_value=False)]) from None
    top = Table(ctx, data, "")
    name = top.string("name", Path(file).stem)
    if isinstance(name, str) and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        ctx.add(
            "name", "must be letters, digits, '.', '_' or '-' (it names the report folder)", name
        )
    elif isinstance(name, str) and len(name) > MAX_NAME:
        ctx.add("name", f"must be at most {MAX_NAME} characters (it names the report folder)", name)
    seed = top.integer("seed", check=non_negative, rule=">= 0")
    months = top.integer("months", 6, check=lambda x: 1 <= x <= 36, rule="between 1 and 36")
    if not (isinstance(months, int) and 1 <= months <= 36):
        months = 6  # reported above; the sections below are read against a sane horizon
    mc = top.table("monte_carlo")
    replications = mc.integer("replications", 20, *within(1, 1_000_000))
    calibration_uncertainty = mc.boolean("calibration_uncertainty", True)
    mc.close()
    workload = workload_section(ctx, top.table("workload"), Path(file).resolve().parent)
    _check_total_growth(ctx, workload, months)
    engine = engine_section(ctx, top.table("engine"), calibration)
    known_gpus, gpu_names = gpu_table(ctx, engine.calibration)
    plans = plans_section(ctx, top, months, gpu_names)
    if plans:
        if "fleet" in top.data:
            ctx.add("fleet", "give either [fleet] or [[plans]], not both", has_value=False)
            top.seen.add("fleet")
        fleet = plans[0].fleet
    else:
        fleet = fleet_section(ctx, top.table("fleet"), months, gpu_names)
    all_plans = plans or (PlanSpec("main", fleet),)
    spot = spot_section(ctx, top, all_plans)
    api = api_section(ctx, top)
    if api is None:
        for i, plan in enumerate(plans):
            if "api" in _raw_plan_keys(data, i):
                ctx.add(f"plans[{i}].api", "needs an [api] section to spill to", plan.api)
    cost = cost_section(ctx, top.table("cost"), all_plans, known_gpus)
    search = plan_section(
        ctx,
        top.table("plan"),
        has_spot=spot is not None,
        has_api=api is not None,
        known_gpus=gpu_names,  # (a rejected [[gpu]] table is reported once, as for pools)
    )
    slo_t = top.table("slo")
    slo = SloSpec(
        ttft_s=slo_t.number(
            "ttft_s", MISSING, *within(0, 3600, "s", open_low=True), expected="a number of seconds"
        ),
        tpot_s=slo_t.number(
            "tpot_s",
            MISSING,
            *within(0, 60, "s per token", open_low=True),
            expected="a number of seconds",
        ),
    )
    slo_t.close()
    h = top.table("horizon")
    horizon = HorizonSpec(
        mode=h.string("mode", "auto", choices=("auto", "full", "sampled")),
        auto_max_requests=h.integer("auto_max_requests", 300_000, *within(1, 1e9)),
        window_s=h.number(
            "window_s",
            1800.0,
            check=lambda x: x > 0 and 3600 % x == 0,
            rule="a divisor of 3600 (seconds)",
        ),
        warmup_s=h.number("warmup_s", 600.0, *within(0, 86_400, "s")),
        peak_hours=h.integer("peak_hours", 8, check=lambda x: 0 <= x <= 168, rule="in 0..168"),
        strata=h.integer("strata", 4, check=lambda x: 1 <= x <= 156, rule="in 1..156"),
        windows_per_stratum=h.integer(
            "windows_per_stratum", 3, check=lambda x: x >= 2, rule=">= 2 (for the error)"
        ),
    )
    h.close()
    top.close()
    if ctx.problems:
        raise ConfigError(ctx.problems)
    return ExperimentSpec(
        file=file,
        name=name,
        seed=seed,
        months=months,
        replications=replications,
        workload=workload,
        engine=engine,
        fleet=fleet,
        cost=cost,
        slo=slo,
        horizon=horizon,
        plans=plans,
        spot=spot,
        api=api,
        calibration_uncertainty=calibration_uncertainty,
        search=search,
    )


MAX_TOTAL_GROWTH = 1e6  # month-1 to last-month volume: beyond, the plan is not a plan


def _check_total_growth(ctx: Context, workload: WorkloadSpec, months: int) -> None:
    g = workload.growth.mean_monthly
    if not (isinstance(g, float | int) and -1 < g <= MAX_MONTHLY_GROWTH):
        return
    if not (isinstance(months, int) and 1 <= months <= 36):  # a bad count is reported apart
        return
    factor = (1.0 + g) ** max(months - 1, 0)
    if factor > MAX_TOTAL_GROWTH:
        path = "workload.growth.mean_monthly"
        ctx.add(
            path,
            f"grows traffic {factor:.3g}x over {months} months (more than "
            f"{MAX_TOTAL_GROWTH:g}x): lower it or the number of months",
            g,
        )


def _raw_plan_keys(data: dict[str, Any], i: int) -> tuple[str, ...]:
    """Keys written in the raw TOML of `[[plans]]` entry i (to tell a default from a choice)."""
    plans = data.get("plans")
    if isinstance(plans, list) and i < len(plans) and isinstance(plans[i], dict):
        return tuple(plans[i])
    return ()


def load_experiment_spec(path: str | Path, calibration: str | Path | None = None) -> ExperimentSpec:
    """Read and validate an experiment file (a located `ConfigError` when it cannot be read:
    the path policy of `sim.errors.path_refusal`, at most `MAX_FILE_BYTES`, UTF-8);
    `calibration` replaces its `[engine] calibration` (`parse_experiment`)."""
    return parse_experiment(read_user_text(path), str(path), calibration)

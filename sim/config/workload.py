"""The `[workload]` section: generated, replayed, or included from a workload file."""

from __future__ import annotations

import dataclasses
import tomllib
from pathlib import Path
from typing import Any

from sim.config.reader import (
    MISSING,
    Context,
    Table,
    as_float,
    existing_file,
    join,
    percent_hint,
    read_user_text,
    within,
)
from sim.config.spec import (
    BURST_KINDS,
    COLUMN_KEYS,
    TIME_UNITS,
    TRACE_FORMATS,
    WORKLOAD_KINDS,
    BurstLayerSpec,
    BurstSpec,
    GrowthSpec,
    ReplaySpec,
    TraceColumns,
    WorkloadSpec,
)
from sim.errors import ConfigError


def workload_section(
    ctx: Context, t: Table, base_dir: Path, *, growth_required: bool = True
) -> WorkloadSpec:
    """The `[workload]` table: generated (default), replay, or `include` of a workload file."""
    include = t.raw("include")
    if include is not MISSING:
        return _included_workload(ctx, t, base_dir, include)
    kind = t.string("kind", "generated", choices=WORKLOAD_KINDS)
    growth = _growth(t, required=growth_required)
    if kind == "replay":
        spec = _replay_workload(ctx, t, base_dir, growth)
    elif kind == "generated":
        spec = _generated_workload(ctx, t, base_dir, growth)
    else:  # a misspelt kind is reported above; do not pile errors on the keys it would use
        t.seen.update(t.data)
        spec = WorkloadSpec(0.0, None, None, "", growth, BurstSpec("none"), kind=kind)
    t.close()
    return spec


def _growth(t: Table, *, required: bool) -> GrowthSpec:
    if not required and t.data.get("growth", MISSING) is MISSING:
        t.seen.add("growth")
        return GrowthSpec(0.0, 0.0)
    g = t.table("growth")
    growth = GrowthSpec(
        mean_monthly=g.number(
            "mean_monthly",
            MISSING,
            *within(-1, MAX_MONTHLY_GROWTH, "a fraction per month", open_low=True),
            suggest=percent_hint,
        ),
        sd_log=g.number("sd_log", 0.0, *within(0, 2)),
    )
    g.close()
    return growth


# Plausible ranges (a located error outside them): +300 %/month is already a startup's best
# month; 10^10 requests/day is ~100x the largest published LLM service's daily volume.
MAX_MONTHLY_GROWTH = 3.0
MAX_REQUESTS_PER_DAY = 1e10
MAX_PROFILE_VALUE = 1e12  # weekly-profile multipliers are relative (normalised to mean 1)


def _volume(t: Table, default: object) -> float:
    return t.number(
        "base_requests_per_day", default, *within(0, MAX_REQUESTS_PER_DAY, open_low=True)
    )


def _generated_workload(ctx: Context, t: Table, base_dir: Path, growth: GrowthSpec) -> WorkloadSpec:
    rate = _volume(t, MISSING)
    profile_raw = t.raw("weekly_profile")
    profile_file: str | None = None
    profile_values: tuple[float, ...] | None = None
    where = join(t.path, "weekly_profile")
    if profile_raw is MISSING:
        ctx.add(where, "is required (a CSV file or a list of 168 numbers)", has_value=False)
    elif isinstance(profile_raw, str):
        profile_file = existing_file(ctx, where, profile_raw, base_dir)
    elif isinstance(profile_raw, list):
        values = [as_float(x) for x in profile_raw]
        if len(values) != 168 or any(v is None or v < 0 for v in values):
            ctx.add(
                where, "must list 168 numbers >= 0 (one per hour of week)", f"{len(values)} values"
            )
        elif any(v is not None and v > MAX_PROFILE_VALUE for v in values):
            big = max(v for v in values if v is not None)
            ctx.add(where, f"multipliers must be <= {MAX_PROFILE_VALUE:g} (relative values)", big)
        elif sum(v for v in values if v is not None) <= 0:
            ctx.add(where, "must not be all zero", profile_raw[:3])
        else:
            profile_values = tuple(v for v in values if v is not None)
    else:
        ctx.add(where, "must be a file path or a list of 168 numbers", profile_raw)
    lengths = _lengths(ctx, t, base_dir, required=True)
    burst = _burst(ctx, t)
    file, fmt, smoothing, columns = lengths or ("", None, 0.0, None)
    return WorkloadSpec(
        rate,
        profile_file,
        profile_values,
        file,
        growth,
        burst,
        "generated",
        fmt,
        smoothing,
        lengths_columns=columns,
    )


def _replay_workload(ctx: Context, t: Table, base_dir: Path, growth: GrowthSpec) -> WorkloadSpec:
    trace_raw = t.string("trace")
    trace = (
        existing_file(ctx, join(t.path, "trace"), trace_raw, base_dir, folder_ok=True)
        if isinstance(trace_raw, str)
        else None
    )
    fmt = t.string("format", None, choices=TRACE_FORMATS)
    columns = _columns(ctx, t, fmt)
    rate_scale = t.number("rate_scale", None, *within(0, 1e6, open_low=True))
    volume = _volume(t, None)
    if rate_scale is not None and volume is not None:
        ctx.add(
            join(t.path, "rate_scale"),
            "give either rate_scale or base_requests_per_day (the volume it implies), not both",
            rate_scale,
        )
    time_scale = t.number("time_scale", 1.0, *within(0, 1e6, open_low=True))
    offset_s = t.number("offset_s", 0.0, *within(-1e9, 1e9, "s"), expected="a number of seconds")
    loop = t.boolean("loop", True)
    period_s = t.number(
        "period_s", None, *within(0, 1e10, "s", open_low=True), expected="a number of seconds"
    )
    for key in ("weekly_profile", "burst"):
        if key in t.data:
            t.seen.add(key)
            ctx.add(
                join(t.path, key),
                'not used with kind = "replay" (the trace gives the shape of traffic)',
                has_value=False,
            )
    lengths = _lengths(ctx, t, base_dir, required=False)
    replay = ReplaySpec(
        trace_file=trace or "",
        format=fmt,
        rate_scale=rate_scale,
        time_scale=time_scale,
        offset_s=offset_s,
        loop=loop,
        period_s=period_s,
        own_lengths=lengths is None,
        columns=columns,
    )
    file, lfmt, smoothing, lcolumns = lengths or (trace or "", fmt, 0.0, columns)
    return WorkloadSpec(
        volume or 0.0,
        None,
        None,
        file,
        growth,
        BurstSpec("none"),
        "replay",
        lfmt,
        smoothing,
        replay,
        lengths_columns=lcolumns,
    )


def _lengths(
    ctx: Context, t: Table, base_dir: Path, *, required: bool
) -> tuple[str, str | None, float, TraceColumns | None] | None:
    """`lengths = "file"` or `[workload.lengths] file, format, smoothing_log_sd, columns,
    time_unit`."""
    raw = t.raw("lengths")
    where = join(t.path, "lengths")
    if raw is MISSING:
        if required:
            ctx.add(
                where,
                "is required (a trace file to resample (input, output) pairs from)",
                has_value=False,
            )
        return None
    if isinstance(raw, str):
        file = existing_file(ctx, where, raw, base_dir, folder_ok=True)
        return (file, None, 0.0, None) if file else None
    if not isinstance(raw, dict):
        ctx.add(where, "must be a trace file or a table {file, format, smoothing_log_sd}", raw)
        return None
    lt = Table(ctx, raw, where)
    name = lt.string("file")
    file = (
        existing_file(ctx, join(where, "file"), name, base_dir, folder_ok=True)
        if isinstance(name, str)
        else None
    )
    fmt = lt.string("format", None, choices=TRACE_FORMATS)
    smoothing = lt.number("smoothing_log_sd", 0.0, check=lambda x: 0 <= x <= 2, rule="in [0, 2]")
    columns = _columns(ctx, lt, fmt)
    lt.close()
    return (file, fmt, smoothing, columns) if file else None


def _columns(ctx: Context, t: Table, fmt: str | None) -> TraceColumns | None:
    """`columns = {arrival = "...", input = "...", output = "..."}` and `time_unit`: a request
    log's own column names (`sim.traces.columns`), or None when neither key is given."""
    raw = t.raw("columns")
    unit = t.string("time_unit", None, choices=tuple(TIME_UNITS))
    if raw is MISSING:
        if unit is not None:
            ctx.add(join(t.path, "time_unit"), "only with columns = {arrival = ...}", unit)
        return None
    where = join(t.path, "columns")
    if not isinstance(raw, dict):
        ctx.add(where, 'must be a table {arrival = "...", input = "...", output = "..."}', raw)
        return None
    ct = Table(ctx, raw, where)
    names = {k: ct.string(k, None) for k in COLUMN_KEYS}
    ct.close()
    given = {k: v for k, v in names.items() if isinstance(v, str)}
    if not given:
        ctx.add(where, "must name at least one of arrival, input, output", raw)
        return None
    if fmt not in (None, "generic"):
        ctx.add(join(t.path, "format"), 'must be "generic" (or left out) with columns', fmt)
    values = list(given.values())
    for key, name in given.items():
        if not name.strip() or values.count(name) > 1:
            ctx.add(join(where, key), "must be a column name, each named once", name)
    return TraceColumns(given.get("arrival"), given.get("input"), given.get("output"), unit or "s")


def _burst(ctx: Context, t: Table) -> BurstSpec:
    b = t.table("burst")
    kind = b.string("kind", "none", choices=BURST_KINDS)
    if kind in ("markov", "ou"):
        spec = BurstSpec(kind, (_burst_layer(b, kind),))
    elif kind == "product":
        raw = b.raw("layers")
        where = join(b.path, "layers")
        layers: list[BurstLayerSpec] = []
        if not isinstance(raw, list) or len(raw) < 2:
            ctx.add(
                where,
                'must list at least 2 layer tables ({kind = "markov" | "ou", ...})',
                None if raw is MISSING else raw,
                has_value=raw is not MISSING,
            )
        else:
            for i, layer in enumerate(raw):
                lt = Table(ctx, layer, f"{where}[{i}]")
                layer_kind = lt.string("kind", choices=("markov", "ou"))
                if layer_kind in ("markov", "ou"):
                    layers.append(_burst_layer(lt, layer_kind))
                else:
                    lt.seen.update(lt.data)
                lt.close()
        spec = BurstSpec(kind, tuple(layers))
    else:
        spec = BurstSpec("none")
        if kind != "none":
            # A misspelt kind is reported above; its parameters are not unknown keys.
            b.seen.update(b.data)
    b.close()
    return spec


def _burst_layer(b: Table, kind: str) -> BurstLayerSpec:
    if kind == "markov":
        return BurstLayerSpec(
            kind,
            mean_calm_s=b.number("mean_calm_s", MISSING, *within(0, 1e8, "s", open_low=True)),
            mean_burst_s=b.number("mean_burst_s", MISSING, *within(0, 1e8, "s", open_low=True)),
            burst_ratio=b.number("burst_ratio", MISSING, *within(1, 1e6)),
        )
    sigma = b.number("sigma", check=lambda x: 0 <= x <= 5, rule="in [0, 5]")
    tau = b.number("correlation_time_s", MISSING, *within(0, 1e8, "s", open_low=True))
    default_step = min(60.0, tau / 5.0) if isinstance(tau, float) and tau > 0 else 60.0
    return BurstLayerSpec(
        kind,
        sigma=sigma,
        correlation_time_s=tau,
        step_s=b.number("step_s", default_step, *within(1e-3, 86_400, "s")),
    )


_OVERRIDABLE = ("include", "base_requests_per_day", "growth")


def _included_workload(ctx: Context, t: Table, base_dir: Path, include: Any) -> WorkloadSpec:
    """`include = "file.toml"`: the workload of a workload file (e.g. from `sim trace fit`),
    with this experiment's `base_requests_per_day` and `[workload.growth]` taking precedence."""
    where = join(t.path, "include")
    path: str | None = None
    if isinstance(include, str):
        path = existing_file(ctx, where, include, base_dir)
    else:
        ctx.add(where, "must be a workload file path", include)
    for key in t.data:
        if key not in _OVERRIDABLE:
            t.seen.add(key)
            ctx.add(
                join(t.path, key),
                f"not allowed with include (set it in {include}; only "
                "base_requests_per_day and [workload.growth] may be given here)",
                has_value=False,
            )
    volume = _volume(t, None)
    given_growth = "growth" in t.data
    growth = _growth(t, required=False)
    t.close()
    fallback = WorkloadSpec(0.0, None, None, "", growth, BurstSpec("none"))
    if path is None:
        return fallback
    inner = _parse_workload_file(ctx, Path(path), nested=True)
    if inner is None:
        return fallback
    spec, had_growth = inner
    if not (given_growth or had_growth):
        ctx.add(join(t.path, "growth.mean_monthly"), "is required (a number)", has_value=False)
    replay = spec.replay
    if volume is not None and replay is not None:
        replay = dataclasses.replace(replay, rate_scale=None)
    return dataclasses.replace(
        spec,
        base_requests_per_day=volume if volume is not None else spec.base_requests_per_day,
        growth=growth if given_growth else spec.growth,
        replay=replay,
        source_file=path,
    )


def _parse_workload_file(
    ctx: Context, path: Path, *, nested: bool
) -> tuple[WorkloadSpec, bool] | None:
    """A workload file: one `[workload]` table. Problems are reported against that file."""
    file = str(path)
    sub = Context(file, ctx.asked)
    sub.problems = ctx.problems  # one list: every problem of every file, reported at once
    try:
        data = tomllib.loads(read_user_text(path))
    except ConfigError as err:
        sub.problems.extend(err.problems)
        return None
    except tomllib.TOMLDecodeError as err:
        sub.add("", f"not valid TOML: {err}", has_value=False)
        return None
    top = Table(sub, data, "")
    raw = top.raw("workload")
    if raw is MISSING:
        sub.add(
            "workload", "is required (a workload file holds one [workload] table)", has_value=False
        )
    table = Table(sub, raw, "workload")
    if nested and "include" in table.data:
        table.seen.add("include")
        sub.add("workload.include", "a workload file cannot include another", has_value=False)
        table.data = {k: v for k, v in table.data.items() if k != "include"}
    had_growth = "growth" in table.data
    spec = workload_section(sub, table, path.resolve().parent, growth_required=False)
    top.close()
    return spec, had_growth


def parse_workload_file(path: str | Path) -> WorkloadSpec:
    """Read and validate a standalone workload file (one `[workload]` table, growth optional:
    default none); raise ConfigError with every problem."""
    ctx = Context(str(path))
    parsed = _parse_workload_file(ctx, Path(path), nested=False)
    if ctx.problems or parsed is None:
        raise ConfigError(ctx.problems)
    return parsed[0]

"""Experiment files (TOML) → frozen dataclasses, with strict, located, all-at-once validation.

Every problem names the file, the dotted key path and the value
(`experiments/x.toml: fleet.months[2].pools[0].count: must be >= 0, got -1`); unknown keys get a
"did you mean". All problems are collected, then raised once as `ConfigError`. Relative paths in
the file are resolved against the file's folder. This module reads TOML only: data files named
by the experiment are loaded (and checked) by `sim.experiment`.

Schema (units in names: `_s` seconds, `_usd` dollars, `_per_day` per 24 h):

    name, seed, months
    [monte_carlo]  replications
    [workload]     base_requests_per_day, weekly_profile (file or 168 numbers), lengths (file)
    [workload.growth] mean_monthly, sd_log
    [workload.burst]  kind = "none" | "markov", mean_calm_s, mean_burst_s, burst_ratio
    [engine]       model, dtype, tp, max_num_seqs, max_num_batched_tokens, max_model_len,
                   gpu_memory_utilization, block_size, kv_blocks (optional override)
    [[fleet.months]] pools = [{name, gpu, count}]   (one entry per month)
    [cost]         ops_usd_per_month, [cost.gpu_usd_per_hour] (per-GPU price overrides)
    [slo]          ttft_s, tpot_s
"""

from __future__ import annotations

import difflib
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sim.catalog import load_step_time_catalog
from sim.errors import ConfigError, Problem
from sim.hardware import DTYPE_BYTES, gpus, kv_capacity_tokens, models

T = TypeVar("T")
_MISSING: Any = object()


@dataclass(frozen=True)
class GrowthSpec:
    """Monthly traffic growth: per-month factors log-normal with mean 1 + mean_monthly."""

    mean_monthly: float
    sd_log: float


@dataclass(frozen=True)
class BurstSpec:
    """Burst modulation of the arrival rate (kind "none" or a 2-state Markov "markov")."""

    kind: str
    mean_calm_s: float = 0.0
    mean_burst_s: float = 0.0
    burst_ratio: float = 1.0


@dataclass(frozen=True)
class WorkloadSpec:
    base_requests_per_day: float
    weekly_profile_file: str | None
    weekly_profile_values: tuple[float, ...] | None
    lengths_file: str
    growth: GrowthSpec
    burst: BurstSpec


@dataclass(frozen=True)
class StepTimeSpec:
    """Step-time coefficients (seconds) for one GPU type; see `sim.engine.steptime`."""

    overhead_s: float
    flat_s: float
    knee_tokens: float
    per_token_s: float
    decode_attn_s_per_token: float
    prefill_attn_s_per_pair: float
    source: str


@dataclass(frozen=True)
class EngineSpec:
    model: str
    dtype: str
    tp: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    gpu_memory_utilization: float
    block_size: int
    kv_blocks: int | None


@dataclass(frozen=True)
class PoolSpec:
    name: str
    gpu: str
    count: int


@dataclass(frozen=True)
class MonthPlan:
    pools: tuple[PoolSpec, ...]

    @property
    def replicas(self) -> int:
        return sum(p.count for p in self.pools)


@dataclass(frozen=True)
class CostSpec:
    ops_usd_per_month: float
    gpu_usd_per_hour: tuple[tuple[str, float], ...]

    def price(self, gpu: str) -> float:
        return dict(self.gpu_usd_per_hour)[gpu]


@dataclass(frozen=True)
class SloSpec:
    ttft_s: float
    tpot_s: float


@dataclass(frozen=True)
class HorizonSpec:
    """How much of each month is simulated (`sim.horizon` documents the estimator).

    mode "full" simulates every request; "sampled" a stratified sample of one-hour windows;
    "auto" (default) picks "sampled" when a replication's expected requests exceed
    `auto_max_requests` (default 300,000: a full replication then takes more than ~5 s at the
    ~70k simulated requests/s bench/engine.py measures, and a 200-replication run minutes).
    """

    mode: str = "auto"
    auto_max_requests: int = 300_000
    # Sample design, validated against full runs by bench/horizon.py (figures in docs/horizon.md):
    window_s: float = 1800.0  # 30-minute windows (a divisor of the profile's one-hour resolution)
    warmup_s: float = 600.0  # 10 min of warm-up before each window
    peak_hours: int = 8  # the 8 busiest hour-of-week slots, simulated every month
    strata: int = 4
    windows_per_stratum: int = 3


@dataclass(frozen=True)
class ExperimentSpec:
    """A whole experiment, resolved: every default filled, every reference checked."""

    file: str
    name: str
    seed: int
    months: int
    replications: int
    workload: WorkloadSpec
    engine: EngineSpec
    step_times: tuple[tuple[str, StepTimeSpec], ...]  # per GPU used by the fleet
    kv_blocks: tuple[tuple[str, int], ...]  # KV-cache blocks per replica, per GPU used
    fleet: tuple[MonthPlan, ...]
    cost: CostSpec
    slo: SloSpec
    horizon: HorizonSpec = HorizonSpec()

    def step_time(self, gpu: str) -> StepTimeSpec:
        return dict(self.step_times)[gpu]

    def kv_blocks_for(self, gpu: str) -> int:
        return dict(self.kv_blocks)[gpu]

    def gpus_used(self) -> tuple[str, ...]:
        return tuple(sorted({p.gpu for m in self.fleet for p in m.pools}))


# ---------------------------------------------------------------------------- machinery
class _Ctx:
    def __init__(self, file: str) -> None:
        self.file = file
        self.problems: list[Problem] = []

    def add(
        self, key_path: str, message: str, value: object = None, has_value: bool = True
    ) -> None:
        self.problems.append(Problem(self.file, key_path, message, value, has_value))


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class _Table:
    """One TOML table being read: typed getters, and unknown keys reported when `close`d."""

    def __init__(self, ctx: _Ctx, data: object, path: str) -> None:
        self.ctx = ctx
        self.path = path
        self.ok = isinstance(data, dict)
        if not self.ok and data is not _MISSING:
            ctx.add(path, "must be a table", data)
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.seen: set[str] = set()

    def raw(self, key: str) -> Any:
        self.seen.add(key)
        return self.data.get(key, _MISSING)

    def table(self, key: str) -> _Table:
        return _Table(self.ctx, self.raw(key), _join(self.path, key))

    def _get(
        self,
        key: str,
        default: Any,
        convert: Callable[[Any], T | None],
        expected: str,
        check: Callable[[T], bool] | None,
        rule: str,
    ) -> T:
        value = self.raw(key)
        where = _join(self.path, key)
        if value is _MISSING:
            if default is _MISSING:
                self.ctx.add(where, f"is required ({expected})", has_value=False)
            return default  # type: ignore[no-any-return]
        converted = convert(value)
        if converted is None:
            self.ctx.add(where, f"must be {expected}", value)
            return default if default is not _MISSING else None  # type: ignore[return-value]
        if check is not None and not check(converted):
            self.ctx.add(where, f"must be {rule}", value)
        return converted

    def number(
        self,
        key: str,
        default: Any = _MISSING,
        check: Callable[[float], bool] | None = None,
        rule: str = "",
        expected: str = "a number",
    ) -> float:
        return self._get(key, default, _as_float, expected, check, rule)

    def integer(
        self,
        key: str,
        default: Any = _MISSING,
        check: Callable[[int], bool] | None = None,
        rule: str = "",
    ) -> int:
        return self._get(key, default, _as_int, "an integer", check, rule)

    def string(
        self, key: str, default: Any = _MISSING, choices: tuple[str, ...] | None = None
    ) -> str:
        value: str = self._get(key, default, _as_str, "a string", None, "")
        if choices is not None and isinstance(value, str) and value not in choices:
            self.ctx.add(
                _join(self.path, key),
                f"must be one of {', '.join(choices)}{_hint(value, choices)}",
                value,
            )
        return value

    def close(self) -> None:
        known = sorted(self.seen)
        for key in self.data:
            if key not in self.seen:
                self.ctx.add(
                    _join(self.path, key), f"unknown key{_hint(key, known)}", has_value=False
                )


def _hint(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _as_float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def _as_int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int):
        return None
    return v


def _as_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _positive(x: float) -> bool:
    return x > 0


def _non_negative(x: float) -> bool:
    return x >= 0


# ---------------------------------------------------------------------------- sections
def _workload(ctx: _Ctx, t: _Table, base_dir: Path) -> WorkloadSpec:
    rate = t.number("base_requests_per_day", check=_positive, rule="> 0")
    profile_raw = t.raw("weekly_profile")
    profile_file: str | None = None
    profile_values: tuple[float, ...] | None = None
    where = _join(t.path, "weekly_profile")
    if profile_raw is _MISSING:
        ctx.add(where, "is required (a CSV file or a list of 168 numbers)", has_value=False)
    elif isinstance(profile_raw, str):
        profile_file = _existing_file(ctx, where, profile_raw, base_dir)
    elif isinstance(profile_raw, list):
        values = [_as_float(x) for x in profile_raw]
        if len(values) != 168 or any(v is None or v < 0 for v in values):
            ctx.add(
                where, "must list 168 numbers >= 0 (one per hour of week)", f"{len(values)} values"
            )
        elif sum(v for v in values if v is not None) <= 0:
            ctx.add(where, "must not be all zero", profile_raw[:3])
        else:
            profile_values = tuple(v for v in values if v is not None)
    else:
        ctx.add(where, "must be a file path or a list of 168 numbers", profile_raw)
    lengths_raw = t.string("lengths")
    lengths_file = (
        _existing_file(ctx, _join(t.path, "lengths"), lengths_raw, base_dir)
        if isinstance(lengths_raw, str)
        else None
    )
    g = t.table("growth")
    growth = GrowthSpec(
        mean_monthly=g.number("mean_monthly", check=lambda x: x > -1, rule="> -1"),
        sd_log=g.number("sd_log", 0.0, check=_non_negative, rule=">= 0"),
    )
    g.close()
    b = t.table("burst")
    kind = b.string("kind", "none", choices=("none", "markov"))
    if kind == "markov":
        burst = BurstSpec(
            kind=kind,
            mean_calm_s=b.number("mean_calm_s", check=_positive, rule="> 0"),
            mean_burst_s=b.number("mean_burst_s", check=_positive, rule="> 0"),
            burst_ratio=b.number("burst_ratio", check=lambda x: x >= 1, rule=">= 1"),
        )
    else:
        burst = BurstSpec(kind="none")
        if b.data.get("kind", "none") != "none":
            # A misspelt kind is reported above; its markov parameters are not unknown keys.
            b.seen.update(("mean_calm_s", "mean_burst_s", "burst_ratio"))
    b.close()
    t.close()
    return WorkloadSpec(rate, profile_file, profile_values, lengths_file or "", growth, burst)


def _existing_file(ctx: _Ctx, where: str, value: str, base_dir: Path) -> str | None:
    path = (base_dir / value).resolve()
    if not path.is_file():
        ctx.add(where, f"file not found ({path})", value)
        return None
    return str(path)


def _engine(ctx: _Ctx, t: _Table) -> EngineSpec:
    model = t.string("model", choices=tuple(sorted(models())))
    dtype = t.string("dtype", "fp16", choices=tuple(DTYPE_BYTES))
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
    )
    if (
        isinstance(spec.max_num_seqs, int)
        and isinstance(spec.max_num_batched_tokens, int)
        and spec.max_num_batched_tokens < spec.max_num_seqs
    ):
        ctx.add(
            _join(t.path, "max_num_batched_tokens"),
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
            _join(t.path, "max_model_len"),
            f"must be <= the model's context length {known.max_position}",
            spec.max_model_len,
        )
    t.close()
    return spec


def _fleet(ctx: _Ctx, t: _Table, months: int) -> tuple[MonthPlan, ...]:
    raw = t.raw("months")
    where = _join(t.path, "months")
    plans: list[MonthPlan] = []
    if not isinstance(raw, list) or not raw:
        ctx.add(
            where,
            "must be a list of [[fleet.months]] tables, one per month",
            None if raw is _MISSING else raw,
            has_value=raw is not _MISSING,
        )
    else:
        if isinstance(months, int) and len(raw) != months:
            ctx.add(where, f"must have one entry per month ({months})", f"{len(raw)} entries")
        known_gpus = tuple(sorted(gpus()))
        for i, month in enumerate(raw):
            mt = _Table(ctx, month, f"{where}[{i}]")
            pools_raw = mt.raw("pools")
            pools: list[PoolSpec] = []
            if not isinstance(pools_raw, list) or not pools_raw:
                ctx.add(
                    f"{mt.path}.pools",
                    "must be a non-empty list of pools",
                    None if pools_raw is _MISSING else pools_raw,
                    has_value=pools_raw is not _MISSING,
                )
            else:
                for j, pool in enumerate(pools_raw):
                    pt = _Table(ctx, pool, f"{mt.path}.pools[{j}]")
                    pools.append(
                        PoolSpec(
                            name=pt.string("name", f"pool{j}"),
                            gpu=pt.string("gpu", choices=known_gpus),
                            count=pt.integer("count", check=_non_negative, rule=">= 0"),
                        )
                    )
                    pt.close()
                counts = [p.count for p in pools]
                valid = all(isinstance(c, int) and c >= 0 for c in counts)
                total = sum(counts) if valid else 0
                # Only when every count is valid: a bad count is already reported on its own.
                if valid and total < 1:
                    ctx.add(f"{mt.path}.pools", "must hold at least one replica", total)
            mt.close()
            plans.append(MonthPlan(tuple(pools)))
    t.close()
    return tuple(plans)


def _step_times(
    ctx: _Ctx, engine: EngineSpec, fleet: tuple[MonthPlan, ...]
) -> tuple[tuple[str, StepTimeSpec], ...]:
    catalog = load_step_time_catalog()
    used = sorted({p.gpu for m in fleet for p in m.pools if isinstance(p.gpu, str)})
    out: list[tuple[str, StepTimeSpec]] = []
    for gpu in used:
        key = (engine.model, gpu, engine.tp, engine.dtype)
        entry = catalog.get(key)
        if entry is None:
            have = ", ".join(f"{m}/{g}/tp{tp}/{d}" for (m, g, tp, d) in sorted(catalog))
            ctx.add(
                "engine",
                f"no step-time calibration for {engine.model} on {gpu} at tp "
                f"{engine.tp} {engine.dtype}; catalogued: {have}",
                f"{engine.model}/{gpu}",
            )
            continue
        out.append(
            (
                gpu,
                StepTimeSpec(
                    overhead_s=entry.overhead_s,
                    flat_s=entry.flat_s,
                    knee_tokens=entry.knee_tokens,
                    per_token_s=entry.per_token_s,
                    decode_attn_s_per_token=entry.decode_attn_s_per_token,
                    prefill_attn_s_per_pair=entry.prefill_attn_s_per_pair,
                    source=entry.source,
                ),
            )
        )
    return tuple(out)


def _kv_blocks(ctx: _Ctx, engine: EngineSpec, gpus_used: list[str]) -> tuple[tuple[str, int], ...]:
    """KV blocks per replica for each GPU, with the "can it serve this model" check."""
    out: list[tuple[str, int]] = []
    shape = models()[engine.model]
    for gpu in gpus_used:
        if engine.kv_blocks is not None:
            blocks = engine.kv_blocks
            tokens = float(blocks * engine.block_size)
        else:
            tokens = kv_capacity_tokens(
                shape,
                gpus()[gpu],
                dtype=engine.dtype,
                tp=engine.tp,
                gpu_memory_utilization=engine.gpu_memory_utilization,
                max_num_batched_tokens=engine.max_num_batched_tokens,
                max_num_seqs=engine.max_num_seqs,
            )
            blocks = max(0, int(tokens // engine.block_size))
        capacity = blocks * engine.block_size
        if capacity < engine.max_model_len:
            per_token = shape.kv_bytes_per_token(engine.dtype, engine.tp)
            # Negative `tokens` (weights and activations alone exceed the budget) count too.
            short_gb = (engine.max_model_len - min(capacity, tokens)) * per_token / 1e9
            ctx.add(
                "engine",
                f"{engine.model} ({engine.dtype}, tp {engine.tp}) on {gpu}: "
                f"KV cache holds {capacity} tokens, less than max_model_len "
                f"{engine.max_model_len}; short by {short_gb:.2f} GB per GPU",
                f"{engine.model}/{gpu}",
            )
        out.append((gpu, blocks))
    return tuple(out)


def _cost(ctx: _Ctx, t: _Table, fleet: tuple[MonthPlan, ...]) -> CostSpec:
    ops = t.number("ops_usd_per_month", check=_non_negative, rule=">= 0")
    prices_table = t.table("gpu_usd_per_hour")
    known = gpus()
    prices: dict[str, float] = {name: g.price_usd_per_hour for name, g in known.items()}
    for key in list(prices_table.data):
        if key not in known:
            prices_table.seen.add(key)
            ctx.add(
                _join(prices_table.path, key),
                f"unknown GPU{_hint(key, tuple(known))}",
                has_value=False,
            )
            continue
        prices[key] = prices_table.number(key, check=_non_negative, rule=">= 0")
    prices_table.close()
    t.close()
    return CostSpec(ops, tuple(sorted(prices.items())))


def parse_experiment(text: str, file: str) -> ExperimentSpec:
    """Parse and validate experiment TOML `text` read from `file`; raise ConfigError."""
    ctx = _Ctx(file)
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as err:
        raise ConfigError([Problem(file, "", f"not valid TOML: {err}", has_value=False)]) from None
    top = _Table(ctx, data, "")
    name = top.string("name", Path(file).stem)
    if isinstance(name, str) and not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name):
        ctx.add(
            "name", "must be letters, digits, '.', '_' or '-' (it names the report folder)", name
        )
    seed = top.integer("seed", check=_non_negative, rule=">= 0")
    months = top.integer("months", 6, check=lambda x: 1 <= x <= 36, rule="between 1 and 36")
    mc = top.table("monte_carlo")
    replications = mc.integer("replications", 20, check=lambda x: x >= 1, rule=">= 1")
    mc.close()
    workload = _workload(ctx, top.table("workload"), Path(file).resolve().parent)
    engine = _engine(ctx, top.table("engine"))
    fleet = _fleet(ctx, top.table("fleet"), months)
    cost = _cost(ctx, top.table("cost"), fleet)
    slo_t = top.table("slo")
    slo = SloSpec(
        ttft_s=slo_t.number("ttft_s", check=_positive, rule="> 0", expected="a number of seconds"),
        tpot_s=slo_t.number("tpot_s", check=_positive, rule="> 0", expected="a number of seconds"),
    )
    slo_t.close()
    h = top.table("horizon")
    horizon = HorizonSpec(
        mode=h.string("mode", "auto", choices=("auto", "full", "sampled")),
        auto_max_requests=h.integer("auto_max_requests", 300_000, check=_positive, rule="> 0"),
        window_s=h.number(
            "window_s",
            1800.0,
            check=lambda x: x > 0 and 3600 % x == 0,
            rule="a divisor of 3600 (seconds)",
        ),
        warmup_s=h.number("warmup_s", 600.0, check=_non_negative, rule=">= 0"),
        peak_hours=h.integer("peak_hours", 8, check=lambda x: 0 <= x <= 168, rule="in 0..168"),
        strata=h.integer("strata", 4, check=lambda x: 1 <= x <= 156, rule="in 1..156"),
        windows_per_stratum=h.integer(
            "windows_per_stratum", 3, check=lambda x: x >= 2, rule=">= 2 (for the error)"
        ),
    )
    h.close()
    top.close()
    step_times: tuple[tuple[str, StepTimeSpec], ...] = ()
    kv: tuple[tuple[str, int], ...] = ()
    if not ctx.problems:
        step_times = _step_times(ctx, engine, fleet)
        kv = _kv_blocks(ctx, engine, [g for g, _ in step_times])
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
        step_times=step_times,
        kv_blocks=kv,
        fleet=fleet,
        cost=cost,
        slo=slo,
        horizon=horizon,
    )


def load_experiment_spec(path: str | Path) -> ExperimentSpec:
    """Read and validate an experiment file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(
            [Problem(str(path), "", f"cannot read file: {err.strerror}", has_value=False)]
        ) from None
    return parse_experiment(text, str(path))

"""Experiment files (TOML) → frozen dataclasses, with strict, located, all-at-once validation.

Every problem names the file, the dotted key path and the value
(`experiments/x.toml: fleet.months[2].pools[0].count: must be >= 0, got -1`); unknown keys get a
"did you mean". All problems are collected, then raised once as `ConfigError`. Relative paths in
the file are resolved against the file's folder. This module reads TOML only: data files named
by the experiment are loaded (and checked) by `sim.experiment`.

Schema (units in names: `_s` seconds, `_usd` dollars, `_per_day` per 24 h):

    name, seed, months
    [monte_carlo]  replications, calibration_uncertainty (default true)
    [workload]     kind = "generated" (default) | "replay", or include = "workload.toml"
      generated:   base_requests_per_day, weekly_profile (file or 168 numbers),
                   lengths (trace file, or {file, format, smoothing_log_sd})
      replay:      trace, format, rate_scale | base_requests_per_day, time_scale, offset_s,
                   loop, period_s, lengths (optional: resample instead of the trace's own)
      include:     a workload file's [workload] (from `sim trace fit`); only
                   base_requests_per_day and [workload.growth] may be given beside it
    [workload.growth] mean_monthly, sd_log
    [workload.burst]  kind = "none" | "markov" (mean_calm_s, mean_burst_s, burst_ratio)
                   | "ou" (sigma, correlation_time_s, step_s) | "product" (layers = [...])
    [engine]       model, dtype, tp, max_num_seqs, max_num_batched_tokens, max_model_len,
                   gpu_memory_utilization, block_size, kv_blocks (optional override)
    [[fleet.months]] pools = [{name, gpu, count}]   (one entry per month)
    [cost]         ops_usd_per_month, [cost.gpu_usd_per_hour] (per-GPU price overrides)
    [slo]          ttft_s, tpot_s
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sim.catalog import COEFFICIENTS as STEP_TIME_COEFFICIENTS
from sim.catalog import StepTimeEntry, load_step_time_catalog
from sim.errors import ConfigError, Problem
from sim.hardware import (
    DTYPE_BYTES,
    QUANTIZATION_WEIGHT_DTYPE,
    RooflineCoefficients,
    gpus,
    kv_capacity_tokens,
    load_roofline_factors,
    models,
    roofline_coefficients,
)
from sim.providers import api_providers
from sim.spot import markets as spot_markets

T = TypeVar("T")
_MISSING: Any = object()

WORKLOAD_KINDS = ("generated", "replay")
BURST_KINDS = ("none", "markov", "ou", "product")
# The trace formats `sim.traces.read_trace` reads (named here so config can check them).
TRACE_FORMATS = (
    "azure",
    "mooncake",
    "servegen",
    "vidur",
    "vllm-bench",
    "llmservingsim",
    "generic",
    "rates",
)


@dataclass(frozen=True)
class GrowthSpec:
    """Monthly traffic growth: per-month factors log-normal with mean 1 + mean_monthly."""

    mean_monthly: float
    sd_log: float


@dataclass(frozen=True)
class BurstLayerSpec:
    """One burst layer: "markov" (two-state: calm ↔ burst) or "ou" (log-normal OU log-rate)."""

    kind: str
    mean_calm_s: float = 0.0
    mean_burst_s: float = 0.0
    burst_ratio: float = 1.0
    sigma: float = 0.0
    correlation_time_s: float = 0.0
    step_s: float = 0.0


@dataclass(frozen=True)
class BurstSpec:
    """Burst modulation of the arrival rate: kind "none"; one layer "markov" or "ou" (its keys
    in the table); or "product" of `layers` (independent layers multiplied)."""

    kind: str
    layers: tuple[BurstLayerSpec, ...] = ()


@dataclass(frozen=True)
class ReplaySpec:
    """`workload.kind = "replay"`: a trace replayed on the plan clock (`sim.workload.replay`).

    `rate_scale` None means: from `WorkloadSpec.base_requests_per_day` if that is > 0, else 1.
    `own_lengths`: the requests keep the trace's own token pairs (else `lengths` are resampled).
    """

    trace_file: str
    format: str | None = None
    rate_scale: float | None = None
    time_scale: float = 1.0
    offset_s: float = 0.0
    loop: bool = True
    period_s: float | None = None
    own_lengths: bool = True


@dataclass(frozen=True)
class WorkloadSpec:
    """The `[workload]` section. `kind` "generated" (default) or "replay" (`replay` set).

    `base_requests_per_day` is the month-1 mean volume (a replay may leave it 0: its volume
    then follows `replay.rate_scale`). `lengths_file` is the file the (input, output) pairs come
    from (a replay's own trace when `replay.own_lengths`); `lengths_format` None = detected.
    `source_file` names the workload file an `include` read, if any.
    """

    base_requests_per_day: float
    weekly_profile_file: str | None
    weekly_profile_values: tuple[float, ...] | None
    lengths_file: str
    growth: GrowthSpec
    burst: BurstSpec
    kind: str = "generated"
    lengths_format: str | None = None
    lengths_smoothing: float = 0.0
    replay: ReplaySpec | None = None
    source_file: str | None = None

    def data_files(self) -> tuple[str, ...]:
        """Every data file (or folder) the workload reads, for fingerprints."""
        files = [self.weekly_profile_file, self.lengths_file, self.source_file]
        if self.replay is not None:
            files.append(self.replay.trace_file)
        return tuple(dict.fromkeys(f for f in files if f))


@dataclass(frozen=True)
class StepTimeSpec:
    """Step-time coefficients (seconds) for one GPU type; see `sim.engine.steptime`.

    calibrated: False when no fitted catalogue entry exists and the coefficients come from the
        roofline of the GPU's specs (`sim.hardware.roofline`); outputs must then say
        "uncalibrated".
    residual_sd_log: SD of log(measured / predicted) step time for these coefficients (held-out
        profile rows for fitted entries, the roofline's measured spread otherwise); a
        replication may scale step times by exp(N(0, residual_sd_log²)).
    """

    overhead_s: float
    flat_s: float
    knee_tokens: float
    per_token_s: float
    decode_attn_s_per_token: float
    prefill_attn_s_per_pair: float
    source: str
    calibrated: bool = True
    residual_sd_log: float = 0.0

    @property
    def provenance(self) -> str:
        """The label "calibrated" or "uncalibrated", for every output showing step times."""
        return "calibrated" if self.calibrated else "uncalibrated"


@dataclass(frozen=True)
class EngineSpec:
    """The `[engine]` section (vLLM's engine arguments).

    dtype: KV-cache dtype, and the weights' unless `weight_dtype` says otherwise.
    weight_dtype: precision of the linear-layer weights (`[engine] weight_dtype`, or implied by
        `quantization` = "awq" | "gptq" → int4, "fp8" → fp8, "int8" → int8); None = `dtype`.
    """

    model: str
    dtype: str
    tp: int
    max_num_seqs: int
    max_num_batched_tokens: int
    max_model_len: int
    gpu_memory_utilization: float
    block_size: int
    kv_blocks: int | None
    weight_dtype: str | None = None

    @property
    def weights(self) -> str:
        """The weights' dtype (`weight_dtype`, else `dtype`)."""
        return self.weight_dtype or self.dtype


MARKETS = ("on_demand", "spot")
ON_LIMIT = ("retry", "drop")


@dataclass(frozen=True)
class PoolSpec:
    """`count` replicas of `gpu` bought on `market` ("on_demand" or "spot")."""

    name: str
    gpu: str
    count: int
    market: str = "on_demand"


@dataclass(frozen=True)
class MonthPlan:
    pools: tuple[PoolSpec, ...]

    @property
    def replicas(self) -> int:
        return sum(p.count for p in self.pools)


@dataclass(frozen=True)
class PlanSpec:
    """One fleet plan of an experiment: its months, and whether it may spill to the API."""

    name: str
    fleet: tuple[MonthPlan, ...]
    api: bool = True


@dataclass(frozen=True)
class SpotSpec:
    """How spot pools are reclaimed and replaced (`sim.spot` has the markets and their data).

    market: a row of sim/data/spot_markets.toml (its rate or trace, notice, availability delay).
    preemptions_per_instance_hour: overrides the market's rate (rate markets only).
    notice_s: overrides the market's reclaim notice.
    cold_start_s: from instance start to serving (weights load + engine start); None = derived
        from the model's weight bytes (`sim.spot.cold_start_s`).
    fallback_after_s: replace by an on-demand instance when no spot one is available after this
        wait; None = always wait for spot.
    """

    market: str
    preemptions_per_instance_hour: float | None = None
    notice_s: float | None = None
    cold_start_s: float | None = None
    fallback_after_s: float | None = None


@dataclass(frozen=True)
class SpillSpec:
    """When the router sends a request to the API instead of a GPU replica (any rule fires).

    max_wait_s: predicted queueing before prefill on the least-loaded replica exceeds this
        (queued prompt tokens ÷ the replica's full-budget prefill rate); None = rule off.
    queue_over: every healthy replica has more than this many requests waiting; None = off.
    when_no_replica: no healthy replica at all (all reclaimed); otherwise such requests wait at
        the router until one is back.
    """

    max_wait_s: float | None = None
    queue_over: int | None = None
    when_no_replica: bool = True


@dataclass(frozen=True)
class ApiSpec:
    """The paid API used for overflow (`sim.api` models it; prices per million tokens)."""

    provider: str
    input_usd_per_million: float
    output_usd_per_million: float
    ttft_median_s: float
    ttft_p95_s: float
    output_tokens_per_s_median: float
    output_tokens_per_s_p5: float
    rpm: int | None  # requests per minute
    tpm: int | None  # input + output tokens per minute (OpenAI's TPM)
    input_tpm: int | None  # input tokens per minute (Anthropic's ITPM)
    output_tpm: int | None  # output tokens per minute (Anthropic's OTPM)
    on_limit: str
    max_retry_wait_s: float
    spill: SpillSpec
    source: str


@dataclass(frozen=True)
class CostSpec:
    ops_usd_per_month: float
    gpu_usd_per_hour: tuple[tuple[str, float], ...]
    spot_usd_per_hour: tuple[tuple[str, float], ...] = ()
    budget_usd_per_month: float | None = None

    def price(self, gpu: str) -> float:
        return dict(self.gpu_usd_per_hour)[gpu]

    def spot_price(self, gpu: str) -> float:
        return dict(self.spot_usd_per_hour)[gpu]


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
    plans: tuple[PlanSpec, ...] = ()  # empty: one plan, "main", of `fleet`
    spot: SpotSpec | None = None
    api: ApiSpec | None = None
    # Sample each replication's step-time scale from the fit's residual spread (issue #3 §4).
    calibration_uncertainty: bool = True

    def all_plans(self) -> tuple[PlanSpec, ...]:
        """The plans to simulate: `[[plans]]`, or the single `[fleet]` plan named "main"."""
        return self.plans or (PlanSpec("main", self.fleet),)

    def step_time(self, gpu: str) -> StepTimeSpec:
        return dict(self.step_times)[gpu]

    def kv_blocks_for(self, gpu: str) -> int:
        return dict(self.kv_blocks)[gpu]

    def gpus_used(self) -> tuple[str, ...]:
        return tuple(sorted({p.gpu for pl in self.all_plans() for m in pl.fleet for p in m.pools}))


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

    def boolean(self, key: str, default: Any = _MISSING) -> bool:
        return self._get(key, default, _as_bool, "true or false", None, "")

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


def _as_bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def _as_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def _positive(x: float) -> bool:
    return x > 0


def _non_negative(x: float) -> bool:
    return x >= 0


# ---------------------------------------------------------------------------- sections
def _workload(
    ctx: _Ctx, t: _Table, base_dir: Path, *, growth_required: bool = True
) -> WorkloadSpec:
    """The `[workload]` table: generated (default), replay, or `include` of a workload file."""
    include = t.raw("include")
    if include is not _MISSING:
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


def _growth(t: _Table, *, required: bool) -> GrowthSpec:
    if not required and t.data.get("growth", _MISSING) is _MISSING:
        t.seen.add("growth")
        return GrowthSpec(0.0, 0.0)
    g = t.table("growth")
    growth = GrowthSpec(
        mean_monthly=g.number("mean_monthly", check=lambda x: x > -1, rule="> -1"),
        sd_log=g.number("sd_log", 0.0, check=_non_negative, rule=">= 0"),
    )
    g.close()
    return growth


def _generated_workload(ctx: _Ctx, t: _Table, base_dir: Path, growth: GrowthSpec) -> WorkloadSpec:
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
    lengths = _lengths(ctx, t, base_dir, required=True)
    burst = _burst(ctx, t)
    file, fmt, smoothing = lengths or ("", None, 0.0)
    return WorkloadSpec(
        rate, profile_file, profile_values, file, growth, burst, "generated", fmt, smoothing
    )


def _replay_workload(ctx: _Ctx, t: _Table, base_dir: Path, growth: GrowthSpec) -> WorkloadSpec:
    trace_raw = t.string("trace")
    trace = (
        _existing_file(ctx, _join(t.path, "trace"), trace_raw, base_dir, folder_ok=True)
        if isinstance(trace_raw, str)
        else None
    )
    fmt = t.string("format", None, choices=TRACE_FORMATS)
    rate_scale = t.number("rate_scale", None, check=_positive, rule="> 0")
    volume = t.number("base_requests_per_day", None, check=_positive, rule="> 0")
    if rate_scale is not None and volume is not None:
        ctx.add(
            _join(t.path, "rate_scale"),
            "give either rate_scale or base_requests_per_day (the volume it implies), not both",
            rate_scale,
        )
    time_scale = t.number("time_scale", 1.0, check=_positive, rule="> 0")
    offset_s = t.number("offset_s", 0.0, expected="a number of seconds")
    loop = t.boolean("loop", True)
    period_s = t.number(
        "period_s", None, check=_positive, rule="> 0", expected="a number of seconds"
    )
    for key in ("weekly_profile", "burst"):
        if key in t.data:
            t.seen.add(key)
            ctx.add(
                _join(t.path, key),
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
    )
    file, lfmt, smoothing = lengths or (trace or "", fmt, 0.0)
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
    )


def _lengths(
    ctx: _Ctx, t: _Table, base_dir: Path, *, required: bool
) -> tuple[str, str | None, float] | None:
    """`lengths = "file"` or `[workload.lengths] file, format, smoothing_log_sd`."""
    raw = t.raw("lengths")
    where = _join(t.path, "lengths")
    if raw is _MISSING:
        if required:
            ctx.add(
                where,
                "is required (a trace file to resample (input, output) pairs from)",
                has_value=False,
            )
        return None
    if isinstance(raw, str):
        file = _existing_file(ctx, where, raw, base_dir, folder_ok=True)
        return (file, None, 0.0) if file else None
    if not isinstance(raw, dict):
        ctx.add(where, "must be a trace file or a table {file, format, smoothing_log_sd}", raw)
        return None
    lt = _Table(ctx, raw, where)
    name = lt.string("file")
    file = (
        _existing_file(ctx, _join(where, "file"), name, base_dir, folder_ok=True)
        if isinstance(name, str)
        else None
    )
    fmt = lt.string("format", None, choices=TRACE_FORMATS)
    smoothing = lt.number("smoothing_log_sd", 0.0, check=lambda x: 0 <= x <= 2, rule="in [0, 2]")
    lt.close()
    return (file, fmt, smoothing) if file else None


def _burst(ctx: _Ctx, t: _Table) -> BurstSpec:
    b = t.table("burst")
    kind = b.string("kind", "none", choices=BURST_KINDS)
    if kind in ("markov", "ou"):
        spec = BurstSpec(kind, (_burst_layer(b, kind),))
    elif kind == "product":
        raw = b.raw("layers")
        where = _join(b.path, "layers")
        layers: list[BurstLayerSpec] = []
        if not isinstance(raw, list) or len(raw) < 2:
            ctx.add(
                where,
                'must list at least 2 layer tables ({kind = "markov" | "ou", ...})',
                None if raw is _MISSING else raw,
                has_value=raw is not _MISSING,
            )
        else:
            for i, layer in enumerate(raw):
                lt = _Table(ctx, layer, f"{where}[{i}]")
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


def _burst_layer(b: _Table, kind: str) -> BurstLayerSpec:
    if kind == "markov":
        return BurstLayerSpec(
            kind,
            mean_calm_s=b.number("mean_calm_s", check=_positive, rule="> 0"),
            mean_burst_s=b.number("mean_burst_s", check=_positive, rule="> 0"),
            burst_ratio=b.number("burst_ratio", check=lambda x: x >= 1, rule=">= 1"),
        )
    sigma = b.number("sigma", check=lambda x: 0 <= x <= 5, rule="in [0, 5]")
    tau = b.number("correlation_time_s", check=_positive, rule="> 0")
    default_step = min(60.0, tau / 5.0) if isinstance(tau, float) and tau > 0 else 60.0
    return BurstLayerSpec(
        kind,
        sigma=sigma,
        correlation_time_s=tau,
        step_s=b.number("step_s", default_step, check=_positive, rule="> 0"),
    )


_OVERRIDABLE = ("include", "base_requests_per_day", "growth")


def _included_workload(ctx: _Ctx, t: _Table, base_dir: Path, include: Any) -> WorkloadSpec:
    """`include = "file.toml"`: the workload of a workload file (e.g. from `sim trace fit`),
    with this experiment's `base_requests_per_day` and `[workload.growth]` taking precedence."""
    where = _join(t.path, "include")
    path: str | None = None
    if isinstance(include, str):
        path = _existing_file(ctx, where, include, base_dir)
    else:
        ctx.add(where, "must be a workload file path", include)
    for key in t.data:
        if key not in _OVERRIDABLE:
            t.seen.add(key)
            ctx.add(
                _join(t.path, key),
                f"not allowed with include (set it in {include}; only "
                "base_requests_per_day and [workload.growth] may be given here)",
                has_value=False,
            )
    volume = t.number("base_requests_per_day", None, check=_positive, rule="> 0")
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
        ctx.add(_join(t.path, "growth.mean_monthly"), "is required (a number)", has_value=False)
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
    ctx: _Ctx, path: Path, *, nested: bool
) -> tuple[WorkloadSpec, bool] | None:
    """A workload file: one `[workload]` table. Problems are reported against that file."""
    file = str(path)
    sub = _Ctx(file)
    sub.problems = ctx.problems  # one list: every problem of every file, reported at once
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        sub.add("", f"cannot read file: {err.strerror}", has_value=False)
        return None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        sub.add("", f"not valid TOML: {err}", has_value=False)
        return None
    top = _Table(sub, data, "")
    raw = top.raw("workload")
    if raw is _MISSING:
        sub.add(
            "workload", "is required (a workload file holds one [workload] table)", has_value=False
        )
    table = _Table(sub, raw, "workload")
    if nested and "include" in table.data:
        table.seen.add("include")
        sub.add("workload.include", "a workload file cannot include another", has_value=False)
        table.data = {k: v for k, v in table.data.items() if k != "include"}
    had_growth = "growth" in table.data
    spec = _workload(sub, table, path.resolve().parent, growth_required=False)
    top.close()
    return spec, had_growth


def parse_workload_file(path: str | Path) -> WorkloadSpec:
    """Read and validate a standalone workload file (one `[workload]` table, growth optional:
    default none); raise ConfigError with every problem."""
    ctx = _Ctx(str(path))
    parsed = _parse_workload_file(ctx, Path(path), nested=False)
    if ctx.problems or parsed is None:
        raise ConfigError(ctx.problems)
    return parsed[0]


def _existing_file(
    ctx: _Ctx, where: str, value: str, base_dir: Path, *, folder_ok: bool = False
) -> str | None:
    path = (base_dir / value).resolve()
    if not (path.is_file() or (folder_ok and path.is_dir())):
        ctx.add(where, f"file not found ({path})", value)
        return None
    return str(path)


def _engine(ctx: _Ctx, t: _Table) -> EngineSpec:
    model = t.string("model", choices=tuple(sorted(models())))
    dtype = t.string("dtype", "fp16", choices=tuple(DTYPE_BYTES))
    weight_dtype = t.string("weight_dtype", None, choices=tuple(DTYPE_BYTES))
    quantization = t.string("quantization", None, choices=tuple(QUANTIZATION_WEIGHT_DTYPE))
    if isinstance(quantization, str):
        implied = QUANTIZATION_WEIGHT_DTYPE[quantization]
        if isinstance(weight_dtype, str) and weight_dtype != implied:
            ctx.add(
                _join(t.path, "weight_dtype"),
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
    """`[fleet]` (or one `[[plans]]` entry): `months = [{pools}, ...]`, or `pools` for all."""
    fleet = _months(ctx, t, months)
    t.close()
    return fleet


def _months(ctx: _Ctx, t: _Table, months: int) -> tuple[MonthPlan, ...]:
    if "pools" in t.data and "months" not in t.data:
        plan = _month(ctx, t, t.path)
        return (plan,) * months if isinstance(months, int) else (plan,)
    raw = t.raw("months")
    where = _join(t.path, "months")
    plans: list[MonthPlan] = []
    if not isinstance(raw, list) or not raw:
        ctx.add(
            where,
            "must be a list of [[fleet.months]] tables, one per month (or give `pools` for all)",
            None if raw is _MISSING else raw,
            has_value=raw is not _MISSING,
        )
        return ()
    if isinstance(months, int) and len(raw) != months:
        ctx.add(where, f"must have one entry per month ({months})", f"{len(raw)} entries")
    for i, month in enumerate(raw):
        mt = _Table(ctx, month, f"{where}[{i}]")
        plans.append(_month(ctx, mt, mt.path))
        mt.close()
    return tuple(plans)


def _month(ctx: _Ctx, mt: _Table, path: str) -> MonthPlan:
    known_gpus = tuple(sorted(gpus()))
    pools_raw = mt.raw("pools")
    pools: list[PoolSpec] = []
    if not isinstance(pools_raw, list) or not pools_raw:
        ctx.add(
            f"{path}.pools",
            "must be a non-empty list of pools",
            None if pools_raw is _MISSING else pools_raw,
            has_value=pools_raw is not _MISSING,
        )
        return MonthPlan(())
    for j, pool in enumerate(pools_raw):
        pt = _Table(ctx, pool, f"{path}.pools[{j}]")
        pools.append(
            PoolSpec(
                name=pt.string("name", f"pool{j}"),
                gpu=pt.string("gpu", choices=known_gpus),
                count=pt.integer("count", check=_non_negative, rule=">= 0"),
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


def _plans(ctx: _Ctx, top: _Table, months: int) -> tuple[PlanSpec, ...]:
    """`[[plans]]`: several fleet plans compared with common random numbers (or none)."""
    raw = top.raw("plans")
    if raw is _MISSING:
        return ()
    if not isinstance(raw, list) or not raw:
        ctx.add("plans", "must be a list of [[plans]] tables", raw)
        return ()
    out: list[PlanSpec] = []
    for i, item in enumerate(raw):
        pt = _Table(ctx, item, f"plans[{i}]")
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


def _spot(ctx: _Ctx, top: _Table, plans: tuple[PlanSpec, ...]) -> SpotSpec | None:
    uses_spot = any(p.market == "spot" for pl in plans for m in pl.fleet for p in m.pools)
    if "spot" not in top.data:
        top.seen.add("spot")
        if uses_spot:
            ctx.add("spot", 'is required: a pool has market = "spot"', has_value=False)
        return None
    t = top.table("spot")
    known = spot_markets()
    spec = SpotSpec(
        market=t.string("market", choices=tuple(sorted(known))),
        preemptions_per_instance_hour=t.number(
            "preemptions_per_instance_hour", None, check=_non_negative, rule=">= 0"
        ),
        notice_s=t.number("notice_s", None, check=_non_negative, rule=">= 0 (seconds)"),
        cold_start_s=t.number("cold_start_s", None, check=_non_negative, rule=">= 0 (seconds)"),
        fallback_after_s=t.number(
            "fallback_after_s", None, check=_non_negative, rule=">= 0 (seconds)"
        ),
    )
    market = known.get(spec.market) if isinstance(spec.market, str) else None
    if (
        market is not None
        and spec.preemptions_per_instance_hour is not None
        and market.kind != "rate"
    ):
        ctx.add(
            "spot.preemptions_per_instance_hour",
            f"applies to rate markets only; {spec.market} replays a trace",
            spec.preemptions_per_instance_hour,
        )
    t.close()
    return spec


def _api(ctx: _Ctx, top: _Table) -> ApiSpec | None:
    if "api" not in top.data:
        top.seen.add("api")
        return None
    t = top.table("api")
    table = api_providers()
    provider = t.string("provider", choices=tuple(sorted(table)))
    row = table.get(provider) if isinstance(provider, str) else None

    def num(key: str, check: Callable[[float], bool], rule: str) -> float:
        default = row.get(key, _MISSING) if row is not None else None
        if default is _MISSING:  # the provider table has no published figure: must be given
            value = t.number(key, None, check=check, rule=rule)
            if value is None and key not in t.data:
                ctx.add(
                    _join(t.path, key),
                    f"is required: no published figure for {provider} in sim/data/api.toml",
                    has_value=False,
                )
            return value
        return t.number(key, default, check=check, rule=rule)

    def limit(key: str, table_key: str) -> int | None:
        default = row.get(table_key) if row is not None else None
        return t.integer(key, default, check=_positive, rule="> 0 (per minute)")

    ttft_median = num("ttft_median_s", _positive, "> 0 (seconds)")
    ttft_p95 = num("ttft_p95_s", _positive, "> 0 (seconds)")
    speed_median = num("output_tokens_per_s_median", _positive, "> 0 (tokens/s)")
    speed_p5 = num("output_tokens_per_s_p5", _positive, "> 0 (tokens/s)")
    if _floats(ttft_median, ttft_p95) and ttft_p95 < ttft_median:
        ctx.add(f"{t.path}.ttft_p95_s", f"must be >= ttft_median_s ({ttft_median})", ttft_p95)
    if _floats(speed_median, speed_p5) and speed_p5 > speed_median:
        ctx.add(
            f"{t.path}.output_tokens_per_s_p5",
            f"must be <= output_tokens_per_s_median ({speed_median})",
            speed_p5,
        )
    sp = t.table("spill")
    spill = SpillSpec(
        max_wait_s=sp.number("max_wait_s", None, check=_non_negative, rule=">= 0 (seconds)"),
        queue_over=sp.integer("queue_over", None, check=_non_negative, rule=">= 0"),
        when_no_replica=sp.boolean("when_no_replica", True),
    )
    sp.close()
    spec = ApiSpec(
        provider=provider,
        input_usd_per_million=num("input_usd_per_million", _non_negative, ">= 0"),
        output_usd_per_million=num("output_usd_per_million", _non_negative, ">= 0"),
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
        max_retry_wait_s=t.number("max_retry_wait_s", 60.0, check=_non_negative, rule=">= 0"),
        spill=spill,
        source="; ".join(
            str(row[k]) for k in ("price_source", "rate_limit_source") if row and k in row
        ),
    )
    t.close()
    return spec


def _floats(*values: object) -> bool:
    return all(isinstance(v, float | int) and not isinstance(v, bool) for v in values)


def _step_times(
    ctx: _Ctx, engine: EngineSpec, fleet: tuple[MonthPlan, ...]
) -> tuple[tuple[str, StepTimeSpec], ...]:
    """Step-time coefficients per GPU used: the fitted catalogue entry for (model, gpu, tp,
    dtype) when there is one, else the roofline of the specs (flagged uncalibrated)."""
    catalog = load_step_time_catalog()
    used = sorted({p.gpu for m in fleet for p in m.pools if isinstance(p.gpu, str)})
    out: list[tuple[str, StepTimeSpec]] = []
    for gpu in used:
        key = (engine.model, gpu, engine.tp, engine.dtype)
        # Fitted entries are for unquantised weights: a separate weight dtype has no entry.
        entry = catalog.get(key) if engine.weight_dtype is None else None
        if entry is not None:
            spec = _step_spec(entry, entry.source, calibrated=True)
        else:
            shape, hw = models().get(engine.model), gpus().get(gpu)
            if shape is None or hw is None:  # already reported by _engine / _fleet
                continue
            r = roofline_coefficients(
                shape,
                hw,
                tp=engine.tp,
                weight_dtype=engine.weights,
                kv_dtype=engine.dtype,
                factors=load_roofline_factors(),
            )
            have = ", ".join(f"{m}/{g}/tp{tp}/{d}" for (m, g, tp, d) in sorted(catalog))
            spec = _step_spec(r, f"{r.source}. Fitted entries: {have}", calibrated=False)
        out.append((gpu, spec))
    return tuple(out)


def _step_spec(
    c: StepTimeEntry | RooflineCoefficients, source: str, *, calibrated: bool
) -> StepTimeSpec:
    """A resolved step-time spec from a fitted entry or a roofline estimate (same fields)."""
    coefficients = {name: getattr(c, name) for name in STEP_TIME_COEFFICIENTS}
    return StepTimeSpec(
        **coefficients,
        source=source,
        calibrated=calibrated,
        residual_sd_log=c.residual_sd_log,
    )


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
                weight_dtype=engine.weight_dtype,
                tp=engine.tp,
                gpu_memory_utilization=engine.gpu_memory_utilization,
                max_num_batched_tokens=engine.max_num_batched_tokens,
                max_num_seqs=engine.max_num_seqs,
            )
            blocks = max(0, int(tokens // engine.block_size))
        capacity = blocks * engine.block_size
        if capacity < engine.max_model_len:
            precision = engine.dtype
            if engine.weight_dtype is not None:
                precision = f"weights {engine.weight_dtype}, KV {engine.dtype}"
            per_token = shape.kv_bytes_per_token(engine.dtype, engine.tp)
            # Negative `tokens` (weights and activations alone exceed the budget) count too.
            short_gb = (engine.max_model_len - min(capacity, tokens)) * per_token / 1e9
            ctx.add(
                "engine",
                f"{engine.model} ({precision}, tp {engine.tp}) on {gpu}: "
                f"KV cache holds {capacity} tokens, less than max_model_len "
                f"{engine.max_model_len}; short by {short_gb:.2f} GB per GPU",
                f"{engine.model}/{gpu}",
            )
        out.append((gpu, blocks))
    return tuple(out)


def _cost(ctx: _Ctx, t: _Table, plans: tuple[PlanSpec, ...]) -> CostSpec:
    ops = t.number("ops_usd_per_month", check=_non_negative, rule=">= 0")
    budget = t.number("budget_usd_per_month", None, check=_positive, rule="> 0")
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


def _price_table(ctx: _Ctx, table: _Table, defaults: dict[str, float]) -> dict[str, float]:
    """Per-GPU $/h: catalog defaults, overridden by the experiment's table."""
    known = gpus()
    prices = dict(defaults)
    for key in list(table.data):
        if key not in known:
            table.seen.add(key)
            ctx.add(
                _join(table.path, key), f"unknown GPU{_hint(key, tuple(known))}", has_value=False
            )
            continue
        prices[key] = table.number(key, check=_non_negative, rule=">= 0")
    table.close()
    return prices


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
    calibration_uncertainty = mc.boolean("calibration_uncertainty", True)
    mc.close()
    workload = _workload(ctx, top.table("workload"), Path(file).resolve().parent)
    engine = _engine(ctx, top.table("engine"))
    plans = _plans(ctx, top, months)
    if plans:
        if "fleet" in top.data:
            ctx.add("fleet", "give either [fleet] or [[plans]], not both", has_value=False)
            top.seen.add("fleet")
        fleet = plans[0].fleet
    else:
        fleet = _fleet(ctx, top.table("fleet"), months)
    all_plans = plans or (PlanSpec("main", fleet),)
    spot = _spot(ctx, top, all_plans)
    api = _api(ctx, top)
    if api is None:
        for i, plan in enumerate(plans):
            if "api" in _raw_plan_keys(data, i):
                ctx.add(f"plans[{i}].api", "needs an [api] section to spill to", plan.api)
    cost = _cost(ctx, top.table("cost"), all_plans)
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
        step_times = _step_times(ctx, engine, tuple(m for pl in all_plans for m in pl.fleet))
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
        plans=plans,
        spot=spot,
        api=api,
        calibration_uncertainty=calibration_uncertainty,
    )


def _raw_plan_keys(data: dict[str, Any], i: int) -> tuple[str, ...]:
    """Keys written in the raw TOML of `[[plans]]` entry i (to tell a default from a choice)."""
    plans = data.get("plans")
    if isinstance(plans, list) and i < len(plans) and isinstance(plans[i], dict):
        return tuple(plans[i])
    return ()


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

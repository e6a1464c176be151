"""The experiment spec: user input only, checked, nothing derived (frozen dataclasses).

`sim.config` builds these from an experiment file; `sim.experiment` loads the files they name
and resolves what follows from them (KV-cache capacity, step times, their provenance).
docs/config.md lists every key with its type, unit, default and meaning.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sim.config.plan import PlanSearchSpec

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
    "otel",
    "prometheus",
)
TIME_UNITS = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "ns": 1e-9}  # numeric arrival times → seconds
COLUMN_KEYS = ("arrival", "input", "output")


@dataclass(frozen=True)
class TraceColumns:
    """How a request log's columns map to a request: `arrival`, `input`, `output` name the
    file's columns (None: the generic names `arrival_s`, `input_tokens`, `output_tokens`; an
    `arrival` left None and absent from the file makes a length-only trace).

    `time_unit` ("s", "ms", "us", "ns") scales numeric arrival times (epoch or relative);
    ISO-8601 timestamps carry their own. Arrival times are rebased to the first request.
    """

    arrival: str | None = None
    input: str | None = None
    output: str | None = None
    time_unit: str = "s"


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
    columns: TraceColumns | None = None


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
    lengths_columns: TraceColumns | None = None

    def data_files(self) -> tuple[str, ...]:
        """Every data file (or folder) the workload reads, for fingerprints."""
        files = [self.weekly_profile_file, self.lengths_file, self.source_file]
        if self.replay is not None:
            files.append(self.replay.trace_file)
        return tuple(dict.fromkeys(f for f in files if f))


@dataclass(frozen=True)
class EngineSpec:
    """The `[engine]` section (vLLM's engine arguments).

    dtype: KV-cache dtype, and the weights' unless `weight_dtype` says otherwise.
    weight_dtype: precision of the linear-layer weights (`[engine] weight_dtype`, or implied by
        `quantization` = "awq" | "gptq" → int4, "fp8" → fp8, "int8" → int8); None = `dtype`.
    calibration: absolute path of the user's calibration file (`[engine] calibration`: step-time
        `[[entry]]` tables over the packaged catalog, `sim.engine.catalog.load_user_calibration`);
        None = packaged entries only.
    vllm_version: the served vLLM (V1: 0.8 or later), which sets the CPU time of a step
        (`sim.engine.versions`: none with async scheduling, the default from 0.14; a CPU time
        per sequence for the synchronous engine); None = the catalog's step times as they are.
    async_scheduling: `vllm serve --async-scheduling` (True) / `--no-async-scheduling`
        (False); None = the version's default.
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
    calibration: str | None = None
    vllm_version: str | None = None
    async_scheduling: bool | None = None

    @property
    def weights(self) -> str:
        """The weights' dtype (`weight_dtype`, else `dtype`)."""
        return self.weight_dtype or self.dtype


ON_LIMIT = ("retry", "drop")


@dataclass(frozen=True)
class ScheduleRule:
    """`count` replicas serve from `start_hour` to `end_hour` (hours of the day, 0-24, end
    exclusive) on each day of `days` (0 = Monday ... 6 = Sunday, the plan clock of
    `sim.workload.clock`). A pool's later rules override earlier ones where they overlap."""

    days: tuple[int, ...]
    start_hour: int
    end_hour: int
    count: int


AUTOSCALE_SIGNALS = ("queue_depth", "running", "kv_usage", "predicted_ttft")
"""What a reactive autoscaler watches, per serving replica of its pool (`sim.fleet.autoscale`):
requests waiting (vLLM's `vllm:num_requests_waiting`), sequences running
(`vllm:num_requests_running`), the KV-cache fraction in use (`vllm:kv_cache_usage_perc`), or
the predicted wait before prefill (queued prompt tokens ÷ the full-budget prefill rate, s)."""


@dataclass(frozen=True)
class AutoscaleSpec:
    """A reactive autoscaler on one pool, with Kubernetes HPA semantics (`sim.fleet.autoscale`).

    Every `interval_s` the pool's mean `signal` per serving replica is compared with `target`:
    desired = ceil(serving × signal / target), unchanged while |signal / target − 1| ≤
    `tolerance`, clamped to [`min_replicas`, `max_replicas`]. A scale-up acts at once (and not
    again within `up_cooldown_s`); a scale-down takes the largest desired count of the last
    `down_cooldown_s` (HPA's stabilisation window). A new replica serves `provisioning_s` (to
    obtain the instance) + the cold start (weights ÷ load bandwidth + engine start) after the
    decision, and is billed from when the instance is obtained; a removed one stops receiving
    requests at once, finishes what it holds, and is billed until the decision.

    With `predictive`, the size never falls below what the weekly profile says the current
    hour, or the hour one scale-up delay ahead, needs: ceil(max_replicas × p(h) ÷ max p)
    (`sim.fleet.autoscale.profile_floor`), so replicas are started before the morning ramp
    rather than after the queue builds, and kept to the end of their hour.

    Defaults: Kubernetes HPA (kubernetes.io, "Horizontal Pod Autoscaling": sync period 15 s,
    tolerance 0.1, scale-down stabilisation 300 s, scale-up 0 s); provisioning 0 s (no public
    measurement of on-demand GPU instance start: give yours).
    """

    min_replicas: int
    max_replicas: int
    target: float
    signal: str = "queue_depth"
    interval_s: float = 15.0
    tolerance: float = 0.1
    up_cooldown_s: float = 0.0
    down_cooldown_s: float = 300.0
    provisioning_s: float = 0.0
    predictive: bool = False


@dataclass(frozen=True)
class PoolSpec:
    """`count` replicas of `gpu` bought on `market` ("on_demand", "spot" or "reserved").

    Within the month an on-demand pool may move: `schedule` rules set how many replicas serve
    by hour of the week (`count` outside them), or `autoscale` moves it between its bounds
    (`count` at the month's start). `slots` is the most replicas the pool can have up.
    """

    name: str
    gpu: str
    count: int
    market: str = "on_demand"
    schedule: tuple[ScheduleRule, ...] = ()
    autoscale: AutoscaleSpec | None = None

    @property
    def slots(self) -> int:
        """The most replicas this pool can have up in the month (its fleet slots)."""
        if self.autoscale is not None:
            return max(self.count, self.autoscale.max_replicas)
        return max([self.count, *(r.count for r in self.schedule)])

    def hourly_counts(self) -> tuple[int, ...]:
        """Replicas scheduled to serve in each of the 168 hours of the week (0 = Monday
        00:00): `count`, overridden by the schedule's rules in order. An autoscaled pool's
        count is its autoscaler's business: `slots` in every hour (the most it can have)."""
        if self.autoscale is not None:
            return (self.slots,) * 168
        counts = [self.count] * 168
        for rule in self.schedule:
            for day in rule.days:
                for hour in range(rule.start_hour, rule.end_hour):
                    counts[24 * day + hour] = rule.count
        return tuple(counts)

    @property
    def moves(self) -> bool:
        """Whether the pool's size changes within the month (a schedule or an autoscaler)."""
        return bool(self.schedule) or self.autoscale is not None


@dataclass(frozen=True)
class MonthPlan:
    pools: tuple[PoolSpec, ...]

    @property
    def replicas(self) -> int:
        """The most replicas the month can have up (every pool at its largest)."""
        return sum(p.slots for p in self.pools)

    def least_serving(self) -> int:
        """The fewest replicas the month's schedules leave serving in any hour of the week."""
        if not any(p.schedule for p in self.pools):  # every hour alike: no 168-hour sum
            return sum(p.hourly_counts()[0] for p in self.pools)
        hourly = [p.hourly_counts() for p in self.pools]
        return min(sum(c[h] for c in hourly) for h in range(168))


@dataclass(frozen=True)
class PlanSpec:
    """One fleet plan of an experiment: its months, and whether it may spill to the API."""

    name: str
    fleet: tuple[MonthPlan, ...]
    api: bool = True

    @property
    def moves(self) -> bool:
        """Whether any pool changes size within a month (a schedule or an autoscaler)."""
        return any(p.moves for month in self.fleet for p in month.pools)

    def static(self, name: str) -> PlanSpec:
        """This plan with every moving pool fixed at its most replicas around the clock."""
        fleet = tuple(
            MonthPlan(
                tuple(
                    PoolSpec(p.name, p.gpu, p.slots, p.market) if p.moves else p
                    for p in month.pools
                )
            )
            for month in self.fleet
        )
        return PlanSpec(name, fleet, self.api)


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
    # Reserved (committed) price per GPU-hour, paid for every hour of the month used or not;
    # no package default (commitment prices are negotiated: give yours, with its source).
    reserved_usd_per_hour: tuple[tuple[str, float], ...] = ()
    # Billing granularity per market, s: an instance's run is rounded up to a whole number of
    # these (AWS, GCP and Azure bill Linux GPU instances per second: 1 s; some neoclouds per hour).
    billing_granularity_s: tuple[tuple[str, float], ...] = ()

    def reserved_price(self, gpu: str) -> float:
        return dict(self.reserved_usd_per_hour)[gpu]

    def granularity_s(self, market: str) -> float:
        """Billing granularity of `market`, s (1 s unless set)."""
        return dict(self.billing_granularity_s).get(market, 1.0)

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
    """A whole experiment as the user wrote it: every default filled, every name checked."""

    file: str
    name: str
    seed: int
    months: int
    replications: int
    workload: WorkloadSpec
    engine: EngineSpec
    fleet: tuple[MonthPlan, ...]
    cost: CostSpec
    slo: SloSpec
    horizon: HorizonSpec = HorizonSpec()
    plans: tuple[PlanSpec, ...] = ()  # empty: one plan, "main", of `fleet`
    spot: SpotSpec | None = None
    api: ApiSpec | None = None
    # Sample each replication's step-time scale from the fit's residual spread (issue #3 §4).
    calibration_uncertainty: bool = True
    search: PlanSearchSpec = field(default_factory=PlanSearchSpec)  # `[plan]` of `sim plan`

    def all_plans(self) -> tuple[PlanSpec, ...]:
        """The plans to simulate: `[[plans]]`, or the single `[fleet]` plan named "main" —
        preceded, when its pools move within a month, by its static counterpart "static"
        (every pool at its most replicas around the clock), the baseline its saving is
        measured against on the same replications."""
        if self.plans:
            return self.plans
        main = PlanSpec("main", self.fleet)
        return (main.static("static"), main) if main.moves else (main,)

    def gpus_used(self) -> tuple[str, ...]:
        return tuple(sorted({p.gpu for pl in self.all_plans() for m in pl.fleet for p in m.pools}))

"""The engine a `sim bench` run predicts for: its options (`BenchSpec`), the names it is given
read into the catalogs' (`read_names`), and the vLLM engine those options make with its
defaults (`engine_setup`: scheduler limits by GPU class and version, KV dtype, data
parallelism), each default taken said in a note. `sim.calibration.bench` runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sim.calibration.measured import EngineSetup
from sim.data import GpuSpec, models
from sim.data.names import checkpoint_model
from sim.engine.catalog import gpu_named, gpu_spec
from sim.engine.kv import kv_cache, kv_shortfall
from sim.engine.steptime import StepTimeModel
from sim.engine.versions import (
    CLIENT_S,
    V0_DEFAULT_BATCHED_TOKENS,
    V0_DEFAULT_MAX_NUM_SEQS,
    cpu_family,
    describe,
    parse_version,
    with_version_cpu,
)
from sim.errors import ConfigError, Problem
from sim.workload.prefix import SharedPrefix

BIG_GPU_BYTES = 70 * 2**30
"""vLLM V1's OpenAI-server defaults by GPU (`EngineArgs.get_batch_defaults` in
vllm/engine/arg_utils.py, vLLM ≥ 0.8; the A100 exception is vLLM PR #17885): a GPU with
≥ 70 GiB whose name does not contain "a100" gets max_num_seqs 1024 and
max_num_batched_tokens 8192, every other GPU 256 and 2048."""


def vllm_default_limits(gpu: str, calibration: str | None = None) -> tuple[int, int, str]:
    """(max_num_seqs, max_num_batched_tokens, why) of vLLM V1's OpenAI server on `gpu` (a
    packaged GPU type or one the `calibration` file defines)."""
    try:
        spec: GpuSpec | None = gpu_spec(gpu, calibration)
    except KeyError:
        spec = None
    memory = spec.device_memory_bytes if spec is not None else 0.0
    source = "vLLM V1 OpenAI-server default (vllm/engine/arg_utils.py get_batch_defaults)"
    if memory >= BIG_GPU_BYTES and "a100" not in gpu:
        return 1024, 8192, f"{source}: GPU with >= 70 GiB, not an A100"
    return 256, 2048, f"{source}: GPU with < 70 GiB or an A100"


@dataclass(frozen=True)
class BenchSpec:
    """One `vllm bench serve` run against one vLLM replica (the CLI's options, same names).

    dtype: the weights' precision (fp16/bf16, or the checkpoint's quantisation: fp8, int8,
        int4; "bf16" and "fp16" are the same to the step-time catalog); kv_cache_dtype: None =
        vLLM's "auto", the model's 16-bit dtype whatever the weights' quantisation (vLLM engine
        arguments: "If 'auto', will use model data type"; its cache dtypes are auto and fp8),
        "fp8" halves it.
    input_lens/output_lens: explicit per-request lengths (a dataset FILE); None = `random`.
    max_num_seqs, max_num_batched_tokens: None = vLLM's defaults for the GPU
        (`vllm_default_limits`); max_model_len: None = the model's context length.
    calibration: a user calibration file whose entries take precedence over the catalog.
    max_concurrency: closed-loop clients (`vllm bench serve --max-concurrency`); None = open.
    vllm_version: the server's vLLM version (scheduler family, defaults, CPU time); None = V1
        without the CPU term. chunked_prefill: V0 only (None/False = off, V0's default).
    num_scheduler_steps: V0 multi-step scheduling (1 = off).
    async_scheduling: `vllm serve --async-scheduling` (True) or `--no-async-scheduling`
        (False); None = the version's default (on from 0.14). V1 only.
    cpu_per_seq_s: CPU seconds per sequence per step; None = the CPU family's fitted
        value (`sim.engine.versions.CPU_PER_SEQ_S`), 0 without a version.
    timing: "engine" or "client" (adds the family's client time to TTFT and E2E).
    data_parallel_size: `vllm serve --data-parallel-size`: that many engines of `tp` GPUs each
        behind one front end, open loop, dense models (`engine_setup` says why not otherwise).
    prefix_len, num_prefixes, prompts_per_prefix, prefix_cache_warm: the prompts' shared
        prefixes (`sim.workload.prefix.SharedPrefix`: `prefix_len` tokens before each random
        prompt of `input_len`, as `--random-prefix-len` and `--dataset-name
        prefix_repetition` make them; `prompts_per_prefix` > 0 a fixed prompt set sent in
        turn, as inference-perf's shared_prefix generator).
    enable_prefix_caching: `vllm serve --enable-prefix-caching` (True) or
        `--no-enable-prefix-caching` (False); None = the engine's default (V1: on, V0: off).
    """

    model: str
    gpu: str
    tp: int = 1
    dtype: str = "fp16"
    kv_cache_dtype: str | None = None
    input_len: int = 1024
    output_len: int = 128
    range_ratio: float = 0.0
    request_rate: float = math.inf
    burstiness: float = 1.0
    num_prompts: int = 1000
    seed: int = 0
    max_num_seqs: int | None = None
    max_num_batched_tokens: int | None = None
    max_model_len: int | None = None
    kv_blocks: int | None = None
    gpu_memory_utilization: float = 0.9
    calibration: str | None = None
    input_lens: tuple[int, ...] | None = field(default=None, repr=False)
    output_lens: tuple[int, ...] | None = field(default=None, repr=False)
    max_concurrency: int | None = None
    vllm_version: str | None = None
    chunked_prefill: bool | None = None
    num_scheduler_steps: int = 1
    cpu_per_seq_s: float | None = None
    timing: str = "engine"
    async_scheduling: bool | None = None
    data_parallel_size: int = 1
    prefix_len: int = 0
    num_prefixes: int = 1
    prompts_per_prefix: int = 0
    prefix_cache_warm: bool = False
    enable_prefix_caching: bool | None = None

    @property
    def family(self) -> str:
        """ "v1" or "v0" (`sim.engine.versions`); "v1" without a version."""
        return "v1" if self.vllm_version is None else parse_version(self.vllm_version).family

    @property
    def scheduler(self) -> str:
        """The scheduler that runs: V0's only for V0 without chunked prefill."""
        return "v0" if self.family == "v0" and not self.chunked_prefill else "v1"

    @property
    def cpu_family(self) -> str | None:
        """ "v0", "v1" or "v1-async" (`sim.engine.versions.cpu_family`); None without a
        version (the catalog's step times as they are)."""
        if self.vllm_version is None:
            return None
        return cpu_family(parse_version(self.vllm_version), self.async_scheduling)

    @property
    def prefix_caching(self) -> bool:
        """Whether the server caches prefixes: as given, else the engine's default: on in the
        V1 engine (vLLM's V1 announcement, 2025-01-27: "zero-overhead prefix caching ...
        enabled by default"; `EngineArgs` turns `enable_prefix_caching` on for V1), off in
        V0."""
        if self.enable_prefix_caching is not None:
            return self.enable_prefix_caching
        return self.family == "v1"

    @property
    def shared_prefix(self) -> SharedPrefix:
        return SharedPrefix(
            self.prefix_len, self.num_prefixes, self.prompts_per_prefix, self.prefix_cache_warm
        )

    def step_model(self, step: StepTimeModel, user_entry: bool) -> StepTimeModel:
        """The step times a run uses: the version's CPU time on packaged step times (a user's
        entry, fitted on their server, keeps its own), then `cpu_per_seq_s` when given."""
        fam = self.cpu_family
        if fam is not None and not user_entry:
            step = with_version_cpu(step, fam)
        return step if self.cpu_per_seq_s is None else step.with_cpu(self.cpu_per_seq_s)

    def client_s(self) -> float:
        fam = self.cpu_family or "v1"
        return CLIENT_S[fam] if self.timing == "client" else 0.0


def _catalog_dtype(dtype: str) -> str:
    # The catalog's 16-bit entries are keyed "fp16"; bf16 runs at the same speed and size.
    return "fp16" if dtype == "bf16" else dtype


def data_parallel_refusal(model: str, dp: int, closed_loop: bool) -> str | None:
    """Why `dp` data-parallel engines of `model` are not modelled, or None when they are:
    an MoE model's ranks step in lockstep under vLLM's DP coordinator (dummy forward passes on
    idle ranks: vLLM's data_parallel_deployment.md), and closed-loop clients would have to be
    shared across engines."""
    if dp > 1 and models()[model].is_moe:
        return "data-parallel MoE: vLLM steps its ranks in lockstep, not modelled"
    if dp > 1 and closed_loop:
        return "closed-loop clients over data-parallel engines: not modelled"
    return None


def _prefix_problems(spec: BenchSpec) -> list[Problem]:
    """What is wrong with the spec's shared prefixes (`SharedPrefix`), one problem each."""
    out = []
    for key, value, low in (
        ("prefix_len", spec.prefix_len, 0),
        ("num_prefixes", spec.num_prefixes, 1),
        ("prompts_per_prefix", spec.prompts_per_prefix, 0),
    ):
        if value < low:
            out.append(Problem("bench", key, f"must be >= {low}", value))
    shared = spec.prefix_len > 0 or spec.prompts_per_prefix > 0
    if shared and spec.input_lens is not None:
        why = "shared prefixes are generated for the random dataset only, not a dataset's lengths"
        out.append(Problem("bench", "prefix_len", why, spec.prefix_len))
    return out


def read_names(
    model: str, gpu: str, dtype: str | None = None, calibration: str | None = None
) -> tuple[str, str, str, list[str]]:
    """The catalog model, GPU and weight dtype a benchmark's names mean, and a note for each
    name read: a checkpoint id names its model and, unless `dtype` is given, its weights'
    quantisation (`sim.data.names.checkpoint_model`); a GPU that is neither a catalog name nor
    a GPU type of the `calibration` file is read by its usual name (`gpu_named`). A name
    that means nothing is passed on as given, for `engine_setup` to refuse."""
    notes = []
    named, named_dtype = checkpoint_model(model)
    if named is not None and named != model:
        notes.append(f"model {model}: the catalog's {named}")
    if dtype is None and named_dtype is not None:
        notes.append(f"weights {named_dtype}, as the checkpoint's name says")
    catalog_gpu = gpu_named(gpu, calibration)
    if catalog_gpu is not None and catalog_gpu != gpu:
        notes.append(f"GPU {gpu}: the catalog's {catalog_gpu}")
    return named or model, catalog_gpu or gpu, dtype or named_dtype or "fp16", notes


def engine_setup(spec: BenchSpec) -> tuple[EngineSetup, list[str]]:
    """The engine the benchmark runs on, and one note per default taken (with its source)."""
    problems = []
    if spec.model not in models():
        problems.append(Problem("bench", "model", "not in the model catalog", spec.model))
    try:
        gpu_spec(spec.gpu, spec.calibration)
    except KeyError:
        where = "" if spec.calibration is None else " nor in the calibration file's [[gpu]]"
        problems.append(Problem("bench", "gpu", f"not in the GPU catalog{where}", spec.gpu))
    if problems:
        raise ConfigError(problems)
    refusal = models()[spec.model].tensor_parallel_refusal(spec.tp)
    if refusal is not None:
        raise ConfigError([Problem("bench", "tp", refusal, spec.tp)])
    notes = []
    if spec.timing not in ("engine", "client"):
        raise ConfigError([Problem("bench", "timing", "must be engine or client", spec.timing)])
    dp = spec.data_parallel_size
    if dp < 1:
        raise ConfigError([Problem("bench", "data_parallel_size", "must be >= 1", dp)])
    why = data_parallel_refusal(spec.model, dp, spec.max_concurrency is not None)
    if why is not None:
        raise ConfigError([Problem("bench", "data_parallel_size", why, dp)])
    if dp > 1:
        notes.append(
            f"data parallel: {dp} engines, each request to the one with the least outstanding"
            " tokens (vLLM's front end balances on the engines' waiting and running counts,"
            " vllm/v1/engine/coordinator.py: an approximation)"
        )
    if spec.vllm_version is not None:
        try:
            parse_version(spec.vllm_version)
        except ValueError as exc:
            problem = Problem("bench", "vllm_version", str(exc), spec.vllm_version)
            raise ConfigError([problem]) from None
    if problems := _prefix_problems(spec):
        raise ConfigError(problems)
    max_len = spec.max_model_len or models()[spec.model].max_position
    if spec.family == "v1":
        seqs, budget, why = vllm_default_limits(spec.gpu, spec.calibration)
    elif spec.scheduler == "v0":
        seqs = V0_DEFAULT_MAX_NUM_SEQS
        budget = max(max_len, V0_DEFAULT_BATCHED_TOKENS)
        why = "vLLM V0 defaults (vllm/config.py SchedulerConfig): 256, max(max_model_len, 2048)"
    else:
        seqs, budget = V0_DEFAULT_MAX_NUM_SEQS, V0_DEFAULT_BATCHED_TOKENS
        why = "vLLM V0 defaults with chunked prefill: 256, 2048"
    if spec.max_num_seqs is None or spec.max_num_batched_tokens is None:
        notes.append(
            f"engine limits: max_num_seqs {spec.max_num_seqs or seqs}, max_num_batched_tokens "
            f"{spec.max_num_batched_tokens or budget} ({why} where not given)"
        )
    kv = _catalog_dtype(spec.kv_cache_dtype or "fp16")  # "auto": the model's 16-bit dtype
    weights = _catalog_dtype(spec.dtype)
    setup = EngineSetup(
        model=spec.model,
        gpu=spec.gpu,
        tp=spec.tp,
        dtype=kv,
        max_num_seqs=spec.max_num_seqs or seqs,
        max_num_batched_tokens=spec.max_num_batched_tokens or budget,
        max_model_len=max_len,
        kv_blocks=spec.kv_blocks,
        gpu_memory_utilization=spec.gpu_memory_utilization,
        weight_dtype=weights if weights != kv else None,
        scheduler=spec.scheduler,
        num_scheduler_steps=spec.num_scheduler_steps,
        async_scheduling=spec.cpu_family == "v1-async",
        calibration=spec.calibration,
    )
    fam = spec.cpu_family
    if spec.vllm_version is not None and fam is not None:
        notes.append(
            f"{describe(parse_version(spec.vllm_version), fam)}; {spec.scheduler.upper()} scheduler"
        )
    return setup, notes


def engine_refusal(setup: EngineSetup) -> Problem | None:
    """Why vLLM would refuse to start this engine, named as `sim bench`'s options, or None:
    its KV cache cannot hold one request of `max_model_len` (`does_not_fit`), or its limits
    break a rule vLLM enforces too (`EngineLimits`: a step budget below max_num_seqs; V0
    without chunked prefill and a budget below max_model_len; multi-step on V1)."""
    if (problem := does_not_fit(setup)) is not None:
        return problem
    try:
        setup.limits()
    except ValueError as exc:
        given = (
            f"seqs {setup.max_num_seqs}, batched tokens {setup.max_num_batched_tokens},"
            f" model len {setup.max_model_len}, scheduler steps {setup.num_scheduler_steps}"
        )
        return Problem("bench", "engine limits", f"{exc}: vLLM would not start", given)
    return None


def does_not_fit(setup: EngineSetup) -> Problem | None:
    """Why vLLM would refuse to start this engine (its KV cache cannot hold one request of
    `max_model_len`), named as `sim bench`'s options, or None when it fits."""
    if setup.kv_blocks is not None:
        state = setup.resolved_state_blocks()
        tokens = setup.longest_context()
        if tokens >= setup.max_model_len:
            return None
        beside = f" beside one sequence's state ({state} blocks)" if state else ""
        held = f"{setup.kv_blocks:,} blocks hold {tokens:,} tokens{beside}, less than max_model_len"
        return Problem("bench", "kv_blocks", f"{held} {setup.max_model_len:,}", setup.kv_blocks)
    short = kv_shortfall(setup.settings, setup.gpu, kv_cache(setup.settings, setup.gpu))
    if short is None:
        return None
    return Problem(
        "bench",
        "max_model_len",
        f"{short}: vLLM would not start; give more GPUs (--tp), a shorter --max-model-len,"
        " smaller weights (--dtype fp8/int4), a larger --gpu-memory-utilization or --gpu",
        setup.max_model_len,
    )

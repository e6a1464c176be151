"""The engine an experiment runs on each GPU type: step times, KV-cache blocks, limits.

`resolve_engine(settings, gpus)` is the one place where the `[engine]` settings become what a
replica needs: the step times of `sim.engine.catalog.resolve_step_time` (fitted or roofline,
with provenance) and the KV-cache blocks of `kv_cache` (vLLM's memory accounting, or the
measured `kv_blocks` override). The experiment, validation and calibration all call it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sim.config import EngineSpec
from sim.data import gpus, models
from sim.engine.catalog import ResolvedStepTime, resolve_step_time
from sim.engine.kv import kv_capacity_tokens
from sim.engine.steptime import EngineLimits


@dataclass(frozen=True)
class KvCache:
    """KV-cache capacity of one replica: `blocks` of the engine's block size, and the estimate
    in tokens it came from (negative when weights and activations alone exceed the memory)."""

    blocks: int
    tokens: float


def kv_cache(settings: EngineSpec, gpu: str) -> KvCache:
    """The ONE KV-capacity function: `settings.kv_blocks` when measured, else the estimate of
    `sim.engine.kv.kv_capacity_tokens` for the model on `gpu`, in whole blocks."""
    if settings.kv_blocks is not None:
        return KvCache(settings.kv_blocks, float(settings.kv_blocks * settings.block_size))
    tokens = kv_capacity_tokens(
        models()[settings.model],
        gpus()[gpu],
        dtype=settings.dtype,
        weight_dtype=settings.weight_dtype,
        tp=settings.tp,
        gpu_memory_utilization=settings.gpu_memory_utilization,
        max_num_batched_tokens=settings.max_num_batched_tokens,
        max_num_seqs=settings.max_num_seqs,
    )
    return KvCache(max(0, int(tokens // settings.block_size)), tokens)


def kv_shortfall(settings: EngineSpec, gpu: str, kv: KvCache) -> str | None:
    """Why the model cannot serve one `max_model_len` request on `gpu`, or None when it can."""
    capacity = kv.blocks * settings.block_size
    if capacity >= settings.max_model_len:
        return None
    precision = settings.dtype
    if settings.weight_dtype is not None:
        precision = f"weights {settings.weight_dtype}, KV {settings.dtype}"
    per_token = models()[settings.model].kv_bytes_per_token(settings.dtype, settings.tp)
    # Negative `tokens` (weights and activations alone exceed the budget) count too.
    short_gb = (settings.max_model_len - min(capacity, kv.tokens)) * per_token / 1e9
    return (
        f"{settings.model} ({precision}, tp {settings.tp}) on {gpu}: "
        f"KV cache holds {capacity} tokens, less than max_model_len "
        f"{settings.max_model_len}; short by {short_gb:.2f} GB per GPU"
    )


@dataclass(frozen=True)
class GpuEngine:
    """The engine on one GPU type: its step times (with provenance) and KV-cache blocks."""

    gpu: str
    step_time: ResolvedStepTime
    kv_blocks: int


class ModelDoesNotFit(ValueError):
    """The model cannot serve one `max_model_len` request on some GPU type (one line each)."""

    def __init__(self, gpus: list[str], messages: list[str]) -> None:
        self.gpus = gpus
        self.messages = messages
        super().__init__("; ".join(messages))


@dataclass(frozen=True)
class ResolvedEngine:
    """The `[engine]` settings and what follows from them on each GPU type used."""

    settings: EngineSpec
    per_gpu: Mapping[str, GpuEngine]

    def step_time(self, gpu: str) -> ResolvedStepTime:
        return self.per_gpu[gpu].step_time

    def limits(self, gpu: str) -> EngineLimits:
        """vLLM's scheduler limits of one replica on `gpu`."""
        s = self.settings
        return EngineLimits(
            max_num_seqs=s.max_num_seqs,
            max_num_batched_tokens=s.max_num_batched_tokens,
            kv_blocks=self.per_gpu[gpu].kv_blocks,
            max_model_len=s.max_model_len,
            block_size=s.block_size,
        )

    def provenance(self) -> dict[str, str]:
        """ "calibrated" or "uncalibrated" per GPU type (for manifests and summaries)."""
        return {gpu: e.step_time.provenance for gpu, e in sorted(self.per_gpu.items())}


def resolve_engine(settings: EngineSpec, gpu_names: Iterable[str]) -> ResolvedEngine:
    """Step times and KV blocks of `settings` on each of `gpu_names`; `ModelDoesNotFit`
    naming every GPU type whose KV cache cannot hold one request of `max_model_len`."""
    per_gpu: dict[str, GpuEngine] = {}
    bad: list[str] = []
    messages: list[str] = []
    for gpu in sorted(set(gpu_names)):
        step = resolve_step_time(
            settings.model, gpu, settings.tp, settings.dtype, settings.weight_dtype
        )
        kv = kv_cache(settings, gpu)
        why = kv_shortfall(settings, gpu, kv)
        if why is not None:
            bad.append(gpu)
            messages.append(why)
        per_gpu[gpu] = GpuEngine(gpu, step, kv.blocks)
    if messages:
        raise ModelDoesNotFit(bad, messages)
    return ResolvedEngine(settings, per_gpu)

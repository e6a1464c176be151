"""The engine an experiment runs on each GPU type: step times, KV-cache blocks, limits.

`resolve_engine(settings, gpus)` is the one place where the `[engine]` settings become what a
replica needs: the step times of `sim.engine.catalog.resolve_step_time` (fitted or roofline,
with provenance) and the KV-cache blocks of `sim.engine.kv.kv_cache` (vLLM's memory
accounting, or the measured `kv_blocks` override). The experiment, validation and calibration
all call it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from sim.config import EngineSpec
from sim.data import models
from sim.engine.catalog import ResolvedStepTime, resolve_step_time
from sim.engine.kv import kv_cache, kv_shortfall
from sim.engine.steptime import EngineLimits
from sim.engine.versions import cpu_family, describe, parse_version, with_version_cpu


@dataclass(frozen=True)
class GpuEngine:
    """The engine on one GPU type: its step times (with provenance) and KV-cache blocks."""

    gpu: str
    step_time: ResolvedStepTime
    kv_blocks: int
    state_blocks: int = 0  # blocks a running sequence's recurrent state takes (sim.engine.kv)


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
        family = None
        if s.vllm_version is not None:
            family = cpu_family(parse_version(s.vllm_version), s.async_scheduling)
        return EngineLimits(
            max_num_seqs=s.max_num_seqs,
            max_num_batched_tokens=s.max_num_batched_tokens,
            kv_blocks=self.per_gpu[gpu].kv_blocks,
            state_blocks=self.per_gpu[gpu].state_blocks,
            max_model_len=s.max_model_len,
            block_size=s.block_size,
            async_scheduling=family == "v1-async",
        )

    def as_dict(self) -> dict[str, object]:
        """Per GPU type: step-time coefficients, provenance, source and KV blocks (manifests)."""
        return {gpu: dataclasses.asdict(e) for gpu, e in sorted(self.per_gpu.items())}

    def provenance(self) -> dict[str, str]:
        """ "calibrated" or "uncalibrated" per GPU type (for manifests and summaries)."""
        return {gpu: e.step_time.provenance for gpu, e in sorted(self.per_gpu.items())}


def _with_version(settings: EngineSpec, step: ResolvedStepTime) -> ResolvedStepTime:
    """`step` with the CPU time of `settings.vllm_version` (`sim.engine.versions`), unless the
    step times are the user's calibrated entry (fitted on their server, CPU included)."""
    if settings.vllm_version is None or step.user_entry:
        return step
    version = parse_version(settings.vllm_version)
    family = cpu_family(version, settings.async_scheduling)
    return dataclasses.replace(
        step,
        step=with_version_cpu(step.step, family),
        source=f"{step.source.rstrip('.')}. CPU time: {describe(version, family)}",
    )


def resolve_engine(settings: EngineSpec, gpu_names: Iterable[str]) -> ResolvedEngine:
    """Step times and KV blocks of `settings` on each of `gpu_names`; `ModelDoesNotFit`
    naming every GPU type whose KV cache cannot hold one request of `max_model_len`."""
    per_gpu: dict[str, GpuEngine] = {}
    bad: list[str] = []
    messages: list[str] = []
    refusal = models()[settings.model].tensor_parallel_refusal(settings.tp)
    for gpu in sorted(set(gpu_names)):
        if refusal is not None:
            bad.append(gpu)
            messages.append(f"{settings.model} at tp {settings.tp} on {gpu}: {refusal}")
            continue
        step = resolve_step_time(
            settings.model,
            gpu,
            settings.tp,
            settings.dtype,
            settings.weight_dtype,
            calibration=settings.calibration,
        )
        step = _with_version(settings, step)
        kv = kv_cache(settings, gpu)
        why = kv_shortfall(settings, gpu, kv)
        if why is not None:
            bad.append(gpu)
            messages.append(why)
        per_gpu[gpu] = GpuEngine(gpu, step, kv.blocks, kv.state_blocks)
    if messages:
        raise ModelDoesNotFit(bad, messages)
    return ResolvedEngine(settings, per_gpu)

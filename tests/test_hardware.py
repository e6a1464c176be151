"""GPU/model tables, KV capacity against vLLM-reported block counts, and the roofline fallback."""

from __future__ import annotations

import dataclasses
import math
import re
from pathlib import Path
from typing import Any

import pytest

from sim.config import parse_experiment
from sim.data import GpuSpec, gpus, models, parse_gpus
from sim.engine.catalog import ResolvedStepTime, load_step_time_catalog
from sim.engine.kv import kv_capacity_tokens
from sim.engine.resolve import ModelDoesNotFit, ResolvedEngine, resolve_engine
from sim.engine.roofline import (
    RooflineFactors,
    allreduce_latency_s,
    load_roofline_factors,
    parse_roofline_factors,
    roofline_step_time,
    uses_custom_allreduce,
)
from sim.engine.steptime import StepTimeModel
from sim.errors import ConfigError


def roofline_coefficients(*args: Any, **kwargs: Any) -> StepTimeModel:
    """The roofline step times without their provenance text."""
    return roofline_step_time(*args, **kwargs)[0]


ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "sim" / "data"
REQUIRED_GPUS = (
    "a10g",
    "l4",
    "l40s",
    "a40",
    "a100-40gb",
    "a100-80gb",
    "h100-80gb",
    "h200",
    "b200",
    "mi300x",
)


# ---------------------------------------------------------------------------- catalog integrity


def test_every_required_gpu_has_specs_and_sourced_prices() -> None:
    table = gpus()
    for name in REQUIRED_GPUS:
        g = table[name]
        assert g.memory_bandwidth_gb_per_s > 0 and g.fp16_dense_tflops > 0, name
        assert g.price_usd_per_hour > 0 and g.price_source.strip(), name
        assert g.spec_source.strip() and g.interconnect, name
        # spot price and its source come together, and spot is never above on-demand
        assert (g.spot_price_usd_per_hour is None) == (g.spot_price_source is None), name
        if g.spot_price_usd_per_hour is not None:
            assert g.spot_price_usd_per_hour < g.price_usd_per_hour, name


def test_gpus_without_a_listed_spot_price_say_so() -> None:
    # L4, A40 (RunPod, no spot listed), B200 and MI300X (web list prices only): absent, not guessed
    for name in ("l4", "a40", "b200", "mi300x"):
        assert not gpus()[name].has_spot_price
    assert gpus()["h100-80gb"].has_spot_price


def test_existing_price_keys_still_work() -> None:
    a100 = gpus()["a100-80gb"]
    assert a100.alt_price_usd_per_hour == 1.64  # experiments/growth20pct.toml uses it
    assert a100.price_usd_per_hour == 5.12


def test_every_number_in_the_gpu_and_model_tables_has_a_source() -> None:
    """A number carries an inline comment, or a `<name>_source` string names its origin (prices);
    model shapes are cited once per row (`hf_id`) and field by field in the file header."""
    cited_by_header = {
        "layers",
        "hidden",
        "heads",
        "kv_heads",
        "head_dim",
        "vocab",
        "experts",
        "experts_per_token",
        "intermediate",
        "max_position",
        "shared_experts",
        "dense_layers",
        "dense_intermediate",
        "kv_lora_rank",
        "qk_rope_head_dim",
        "q_lora_rank",
        "v_head_dim",
        "sliding_window",
        "sliding_window_layers",
        # the hybrid section's header names their config fields and sources
        "linear_attention_layers",
        "linear_key_heads",
        "linear_value_heads",
        "linear_key_head_dim",
        "linear_value_head_dim",
        "linear_conv_kernel",
    }
    for file in ("gpus.toml", "models.toml"):
        text = (DATA / file).read_text()
        for block in re.split(r"^\[", text, flags=re.M)[1:]:
            keys = {ln.split("=")[0].strip() for ln in block.splitlines() if "=" in ln}
            for ln in block.splitlines():
                m = re.match(r"^(\w+) = ([0-9.e+-]+)\s*(#.*)?$", ln)
                if m is None or m.group(1) in cited_by_header:
                    continue
                price_key = m.group(1).removesuffix("_usd_per_hour")
                has_source = f"{price_key}_source" in keys or f"{m.group(1)}_source" in keys
                assert m.group(3) or has_source, f"{file}: {ln!r} has no source"


def test_model_params_match_the_shapes() -> None:
    for m in models().values():
        assert m.param_count() == int(m.params), m.name
    moe = models()["qwen3-30b-a3b"]
    assert 3.2e9 < moe.active_params() < 3.4e9  # model card: 3.3B activated


def test_gpu_table_rejects_a_spot_price_without_source() -> None:
    row = {
        "memory_gb": 80.0,
        "price_usd_per_hour": 1.0,
        "price_source": "x",
        "memory_bandwidth_gb_per_s": 1.0,
        "fp16_dense_tflops": 1.0,
        "interconnect": "pcie4",
        "interconnect_gb_per_s": 64.0,
        "spec_source": "x",
        "spot_price_usd_per_hour": 0.5,
    }
    with pytest.raises(ConfigError, match=r"g\.spot_price_usd_per_hour: needs spot_price_source"):
        parse_gpus({"g": row})


# ---------------------------------------------------------------------------- KV capacity

# vLLM-reported KV-cache sizes with the full engine configuration known:
# (label, model, device memory GiB, gpu_memory_utilization, max_num_batched_tokens,
#  max_num_seqs, reported KV tokens)
VLLM_REPORTED = (
    # shared/data/llmservingsim/examples/RTX4090/Llama-3.1-8B/vllm/meta.json: vLLM 0.19.0,
    # bf16, device_total_memory_bytes 25,250,627,584, num_gpu_blocks 2588 (41,408 tokens)
    ("RTX 4090, vLLM 0.19", "llama-3.1-8b", 25250627584 / 2**30, 0.9, 2048, 256, 41408),
    # github.com/vllm-project/vllm/issues/10517 (RTX 3090, Llama-3.1-8B-Instruct, 0.9,
    # V0 engine: the profiling step is max_model_len tokens): 20000 -> 1952, 29000 -> 1478
    # blocks. Device memory: the RTX 4090's (same 24 GB GDDR6X, no ECC; not in the issue).
    ("RTX 3090, max_model_len 20000", "llama-3.1-8b", 23.52, 0.9, 20000, 256, 1952 * 16),
    ("RTX 3090, max_model_len 29000", "llama-3.1-8b", 23.52, 0.9, 29000, 256, 1478 * 16),
    # vllm-public-runs P205-P224 (dennislee22, vLLM 0.10, A100-80GB, Qwen2-7B bf16, V1 limits
    # 256 / 2048): vLLM's log "KV cache 5.01 GiB = 93,872 tokens" at utilisation 0.25 and
    # "24.83 GiB = 464,848 tokens" at 0.5. The device memory of sim/data/gpus.toml comes from
    # these two lines, so only the reserve terms are checked here.
    ("A100-80GB, utilisation 0.25", "qwen2-7b", 79.25, 0.25, 2048, 256, 93872),
    ("A100-80GB, utilisation 0.5", "qwen2-7b", 79.25, 0.5, 2048, 256, 464848),
)


def _consumer_gpu(device_gib: float) -> GpuSpec:
    return GpuSpec(
        name="consumer",
        memory_gb=24.0,
        price_usd_per_hour=1.0,
        price_source="-",
        device_memory_gib=device_gib,
    )


@pytest.mark.parametrize("case", VLLM_REPORTED, ids=[c[0] for c in VLLM_REPORTED])
def test_kv_capacity_against_vllm_reported_blocks(case: tuple[Any, ...]) -> None:
    _, model, device_gib, util, mnbt, seqs, reported = case
    tokens = kv_capacity_tokens(
        models()[model],
        _consumer_gpu(device_gib),
        dtype="bf16",
        tp=1,
        gpu_memory_utilization=util,
        max_num_batched_tokens=mnbt,
        max_num_seqs=seqs,
    )
    err = (tokens // 16 * 16) / reported - 1
    # measured: -0.5 %, -7.6 %, -4.1 %, -12.3 %, -2.5 % (never more than vLLM finds)
    assert -0.13 < err < 0.0, f"{err:+.1%}"


def test_device_memory_is_what_the_kv_estimate_multiplies() -> None:
    """The packaged A100-80GB reports 79.25 GiB (85.1e9 bytes), more than its nominal 80e9."""
    a100 = gpus()["a100-80gb"]
    assert a100.device_memory_bytes == pytest.approx(79.25 * 2**30)
    assert a100.device_memory_bytes > a100.memory_gb * 1e9
    for name, g in gpus().items():
        assert 0.9 * g.memory_gb * 1e9 < g.device_memory_bytes < 1.1 * g.memory_gb * 1e9, name
    bare = GpuSpec(name="x", memory_gb=24.0, price_usd_per_hour=1.0, price_source="-")
    assert bare.device_memory_bytes == 24e9  # unknown: the nominal figure, conservative


def test_weights_precision_is_separate_from_kv_dtype() -> None:
    m, g = models()["llama-3-8b"], gpus()["l4"]
    kw: dict[str, Any] = {
        "tp": 1,
        "gpu_memory_utilization": 0.9,
        "max_num_batched_tokens": 2048,
        "max_num_seqs": 64,
    }
    fp16 = kv_capacity_tokens(m, g, dtype="fp16", **kw)
    awq = kv_capacity_tokens(m, g, dtype="fp16", weight_dtype="int4", **kw)
    awq_fp8kv = kv_capacity_tokens(m, g, dtype="fp8", weight_dtype="int4", **kw)
    # AWQ Llama-3-8B: 6.98e9 linear weights x (0.5 + 2.5/128) B + 1.05e9 16-bit embedding/lm_head
    assert m.weight_bytes("int4") == pytest.approx(5.73e9, rel=0.01)
    per_token = m.kv_bytes_per_token("fp16", 1)
    assert awq - fp16 == pytest.approx((m.weight_bytes("fp16") - 5.73e9) / per_token, rel=0.01)
    assert awq_fp8kv == pytest.approx(2 * awq)  # same bytes, half per token


EXPERIMENT = """
seed = 1
months = 1
[workload]
base_requests_per_day = 1000
weekly_profile = {profile}
lengths = "{lengths}"
[workload.growth]
mean_monthly = 0.0
sd_log = 0.0
[engine]
model = "{model}"
tp = {tp}
max_num_seqs = 64
max_num_batched_tokens = 2048
max_model_len = {max_len}
{extra}
[[fleet.months]]
pools = [{{ gpu = "{gpu}", count = 1 }}]
[cost]
ops_usd_per_month = 0.0
[slo]
ttft_s = 1.0
tpot_s = 0.1
"""


def _experiment(model: str, gpu: str, tp: int = 1, max_len: int = 4096, extra: str = "") -> str:
    return EXPERIMENT.format(
        profile=[1.0] * 168,
        lengths=ROOT / "traces" / "azure_conv_2023.csv",
        model=model,
        gpu=gpu,
        tp=tp,
        max_len=max_len,
        extra=extra,
    )


def _engine(text: str) -> ResolvedEngine:
    spec = parse_experiment(text, str(ROOT / "x.toml"))
    return resolve_engine(spec.engine, spec.gpus_used())


def _only_step_time(text: str) -> tuple[str, ResolvedStepTime]:
    ((gpu, e),) = _engine(text).per_gpu.items()
    return gpu, e.step_time


def test_model_that_does_not_fit_names_the_shortfall_in_gb() -> None:
    with pytest.raises(ModelDoesNotFit) as err:
        _engine(_experiment("llama-3-70b", "l40s", tp=1))
    msg = str(err.value)
    short = re.search(r"short by ([0-9.]+) GB per GPU", msg)
    assert short is not None, msg
    # 141.1 GB of fp16 weights + activations vs 43.2 GB usable on a 48 GB L40S at 0.9
    assert 95.0 < float(short.group(1)) < 105.0


def test_awq_weights_make_the_same_model_fit() -> None:
    # 70B in fp16 needs two H100s; AWQ int4 weights (~38 GB) fit on one
    with pytest.raises(ModelDoesNotFit, match="short by"):
        _engine(_experiment("llama-3-70b", "h100-80gb"))
    text = _experiment("llama-3-70b", "h100-80gb", extra='quantization = "awq"')
    spec = parse_experiment(text, str(ROOT / "x.toml"))
    assert spec.engine.weight_dtype == "int4" and spec.engine.dtype == "fp16"
    engine = _engine(text)
    assert engine.per_gpu["h100-80gb"].kv_blocks > 4096 // 16
    st = engine.step_time("h100-80gb")
    assert not st.calibrated  # no fitted entry for int4 weights: the roofline, flagged


def test_contradicting_quantization_and_weight_dtype_is_an_error() -> None:
    extra = 'quantization = "awq"\nweight_dtype = "fp8"'
    with pytest.raises(ConfigError, match=r"engine\.weight_dtype: contradicts quantization"):
        parse_experiment(_experiment("llama-3-8b", "h100-80gb", extra=extra), "x.toml")


# ---------------------------------------------------------------------------- roofline


def test_uncatalogued_pair_gets_an_uncalibrated_roofline() -> None:
    gpu, st = _only_step_time(_experiment("llama-3-8b", "l40s"))
    assert gpu == "l40s" and not st.calibrated and st.provenance == "uncalibrated"
    assert "UNCALIBRATED" in st.source and "llama-3-8b/a100-80gb/tp1/fp16" in st.source
    assert st.residual_sd_log == load_roofline_factors().residual_sd_log > 0
    # weight-read floor: 16.06 GB over the L40S's 864 GB/s is 18.6 ms at 100 % efficiency
    assert st.step.flat_s > 16.06e9 / 864e9


def test_catalogued_pair_stays_calibrated() -> None:
    _, st = _only_step_time(_experiment("llama-3-8b", "a100-80gb"))
    e = load_step_time_catalog()[("llama-3-8b", "a100-80gb", 1, "fp16")]
    assert (
        st.calibrated
        and st.step.flat_s == e.step.flat_s
        and st.residual_sd_log == e.residual_sd_log
    )


def test_unknown_model_or_gpu_lists_what_is_catalogued() -> None:
    with pytest.raises(ConfigError) as err:
        parse_experiment(_experiment("llama-9-1t", "h100-80gb"), "x.toml")
    assert "engine.model" in str(err.value) and "llama-3-8b" in str(err.value)
    with pytest.raises(ConfigError) as err:
        parse_experiment(_experiment("llama-3-8b", "tpu-v5"), "x.toml")
    assert "a100-80gb" in str(err.value) and "mi300x" in str(err.value)


def test_roofline_is_close_to_every_fitted_entry() -> None:
    """In-sample check of the shipped constants (the leave-one-out error is in the TOML)."""
    f = load_roofline_factors()
    for (model, gpu, tp, _), e in load_step_time_catalog().items():
        r = roofline_coefficients(
            models()[model], gpus()[gpu], tp=tp, weight_dtype="fp16", kv_dtype="fp16", factors=f
        )
        c = e.step
        for batch in (1, 64, 256):
            fit = c.flat_s + c.per_token_s * max(0.0, batch - c.knee_tokens)
            fit += c.decode_attn_s_per_token * batch * 1024
            roof = r.flat_s + r.per_token_s * max(0.0, batch - r.knee_tokens)
            roof += r.decode_attn_s_per_token * batch * 1024
            assert abs(math.log(roof / fit)) < 0.15, (model, gpu, tp, batch)
    assert 0 < f.leave_one_out_mape < 0.10
    assert 0.3 < f.mem_efficiency <= 1.0 and 0.3 < f.flop_efficiency <= 1.0


def test_roofline_scales_with_the_hardware() -> None:
    f, m = load_roofline_factors(), models()["llama-3-8b"]

    def coef(gpu: str, wd: str = "fp16", tp: int = 1) -> float:
        return roofline_coefficients(
            m, gpus()[gpu], tp=tp, weight_dtype=wd, kv_dtype="fp16", factors=f
        ).flat_s

    assert coef("h200") < coef("h100-80gb") < coef("a100-80gb") < coef("l40s") < coef("l4")
    assert coef("h100-80gb", "fp8") < coef("h100-80gb")  # half the weight bytes
    fp8 = roofline_coefficients(
        m, gpus()["a100-80gb"], tp=1, weight_dtype="fp8", kv_dtype="fp16", factors=f
    )
    fp16 = roofline_coefficients(
        m, gpus()["a100-80gb"], tp=1, weight_dtype="fp16", kv_dtype="fp16", factors=f
    )
    # no FP8 tensor cores on Ampere: weight-only GEMMs at the fp16 peak, at their efficiency
    slowdown = f.flop_efficiency / f.weight_only_flop_efficiency
    assert fp8.per_token_s == pytest.approx(fp16.per_token_s * slowdown, rel=1e-12)
    tp2 = roofline_coefficients(
        m, gpus()["l40s"], tp=2, weight_dtype="fp16", kv_dtype="fp16", factors=f
    )
    assert tp2.flat_s > coef("l40s") / 2  # the all-reduce latency is not free


def test_all_reduce_is_the_kernel_vllm_runs_on_that_interconnect() -> None:
    """vLLM's custom all-reduce on 2/4/6/8 GPUs NVLink connects all to all (or two on a bridge);
    NCCL for more than two PCIe GPUs and other degrees. A TP step's fixed time has 2 per layer."""
    f, g = load_roofline_factors(), gpus()
    assert f.custom_allreduce_latency_s < f.nccl_latency_s
    for gpu in ("a100-80gb", "h100-80gb", "h200", "b200"):
        assert all(uses_custom_allreduce(g[gpu], tp) for tp in (2, 4, 8))
        assert not uses_custom_allreduce(g[gpu], 3) and not uses_custom_allreduce(g[gpu], 1)
    assert uses_custom_allreduce(g["a40"], 2) and not uses_custom_allreduce(g["a40"], 4)
    for gpu in ("l40s", "l4", "a10g", "rtx-4090", "mi300x"):
        assert not any(uses_custom_allreduce(g[gpu], tp) for tp in (2, 4, 8)), gpu
    assert allreduce_latency_s(g["h100-80gb"], 4, f) == f.custom_allreduce_latency_s
    assert allreduce_latency_s(g["l40s"], 4, f) == f.nccl_latency_s
    said = roofline_step_time(
        models()["qwen2.5-72b"],
        g["h100-80gb"],
        tp=4,
        weight_dtype="bf16",
        kv_dtype="bf16",
        factors=f,
    )[1]
    assert "all-reduce: vLLM's custom kernel, 9.2 us" in said
    m = models()["llama-3-70b"]

    def flat(gpu: str, factors: RooflineFactors) -> float:
        return roofline_coefficients(
            m, g[gpu], tp=4, weight_dtype="fp16", kv_dtype="fp16", factors=factors
        ).flat_s

    # Equal latencies: no difference; the step of an NVLink replica moves by 2 x layers x the gap.
    same = dataclasses.replace(f, custom_allreduce_latency_s=f.nccl_latency_s)
    gap_s = 2 * m.layers * (f.nccl_latency_s - f.custom_allreduce_latency_s)
    assert flat("h100-80gb", same) - flat("h100-80gb", f) == pytest.approx(gap_s)
    assert flat("l40s", same) == flat("l40s", f)


def test_roofline_factors_are_validated() -> None:
    good = dataclasses.asdict(load_roofline_factors())
    assert parse_roofline_factors({"roofline": good}, "x.toml") == load_roofline_factors()
    with pytest.raises(ConfigError, match=r"x\.toml: roofline\.mem_efficiency: must be a finite"):
        parse_roofline_factors({"roofline": {**good, "mem_efficiency": -1.0}}, "x.toml")


# ------------------------------------------------------------------ [engine] vllm_version


def test_vllm_version_sets_the_cpu_time_of_an_experiments_steps() -> None:
    from sim.engine.versions import V1_CPU_PER_SEQ_S

    _, plain = _only_step_time(_experiment("llama-3-8b", "a100-80gb"))
    assert plain.step.overhead_s > 0 and plain.step.cpu_per_seq_s == 0.0  # the catalog's
    _, new = _only_step_time(
        _experiment("llama-3-8b", "a100-80gb", extra='vllm_version = "0.15.1"')
    )
    assert new.step == dataclasses.replace(plain.step, overhead_s=0.0)
    assert "async scheduling" in new.source and new.calibrated
    _, sync = _only_step_time(
        _experiment("llama-3-8b", "a100-80gb", extra='vllm_version = "0.10.1"')
    )
    assert sync.step == dataclasses.replace(
        plain.step, overhead_s=0.0, cpu_per_seq_s=V1_CPU_PER_SEQ_S
    )
    both = 'vllm_version = "0.10.1"\nasync_scheduling = true'
    _, forced = _only_step_time(_experiment("llama-3-8b", "a100-80gb", extra=both))
    assert forced.step == new.step
    # async scheduling also chooses a step's batch when the step before starts (EngineLimits)
    for extra, on in (("", False), ('vllm_version = "0.10.1"', False), (both, True)):
        engine = _engine(_experiment("llama-3-8b", "a100-80gb", extra=extra))
        assert engine.limits("a100-80gb").async_scheduling is on
    new_engine = _engine(_experiment("llama-3-8b", "a100-80gb", extra='vllm_version = "0.15.1"'))
    assert new_engine.limits("a100-80gb").async_scheduling


@pytest.mark.parametrize(
    ("extra", "where"),
    [
        ('vllm_version = "0.6.3"', "engine.vllm_version"),
        ('vllm_version = "latest"', "engine.vllm_version"),
        ("async_scheduling = false", "engine.async_scheduling"),
    ],
)
def test_bad_vllm_version_is_one_located_problem(extra: str, where: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_experiment(_experiment("llama-3-8b", "a100-80gb", extra=extra), "x.toml")
    (problem,) = err.value.problems
    assert problem.key_path == where, problem

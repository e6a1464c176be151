"""The catalog of served models and GPUs (issue #12 parts 5-6): shapes against their model cards,
MLA KV bytes, Hugging Face aliases, the MoE touched-experts read, precision in the roofline, and
that every model fits some catalog GPU configuration."""

from __future__ import annotations

import dataclasses
import importlib.util
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from sim.config import EngineSpec
from sim.data import gpus, models, parse_models, weight_bytes_per_param
from sim.data.hardware import expected_experts_touched
from sim.data.tables import canonical_model_name
from sim.engine.kv import kv_cache, kv_capacity_tokens, kv_shortfall, state_blocks
from sim.engine.resolve import resolve_engine
from sim.engine.roofline import (
    load_roofline_factors,
    roofline_step_time,
)
from sim.engine.steptime import StepTimeModel
from sim.errors import ConfigError

# Total parameters on each model card (or the paper/report it points to), for the shape's count.
CARD_PARAMS = {
    "llama-3.1-405b": 405e9,
    "llama-3.2-1b": 1.23e9,
    "llama-3.2-3b": 3.21e9,
    "llama-3.3-70b": 70.6e9,
    "qwen2-7b": 7.6e9,
    "qwen2.5-7b": 7.61e9,
    "qwen2.5-14b": 14.7e9,
    "qwen2.5-32b": 32.5e9,
    "qwen2.5-72b": 72.7e9,
    "qwen3-0.6b": 0.6e9,
    "qwen3-1.7b": 1.7e9,
    "qwen3-4b": 4.0e9,
    "qwen3-8b": 8.2e9,
    "qwen3-14b": 14.8e9,
    "qwen3-235b-a22b": 235e9,
    "mistral-7b": 7.25e9,
    "mistral-7b-v0.1": 7.3e9,
    "llama-2-13b": 13e9,
    "mixtral-8x7b": 46.7e9,
    "mixtral-8x22b": 141e9,
    "gpt-oss-20b": 20.9e9,
    "gpt-oss-120b": 116.8e9,
    "gemma-2-9b": 9.24e9,
    "gemma-2-27b": 27.2e9,
    "gemma-3-4b": (417 + 675 + 3209) * 1e6,
    "gemma-3-12b": (417 + 1012 + 10759) * 1e6,
    "gemma-3-27b": (417 + 1416 + 25600) * 1e6,
    "deepseek-v3": 671e9,
    "llama-4-scout": 109e9,
    "llama-4-maverick": 400e9,
    # Qwen3.5's card counts the language model (9B); vLLM also loads its vision encoder, whose
    # count (extra_params) comes from transformers' Qwen3_5VisionConfig, not from the card
    "qwen3.5-9b": 9e9 + 456_010_480,
    "qwen3.5-35b-a3b": 35e9,
    "qwen3-next-80b-a3b": 80e9,
    "mistral-nemo-12b": 12.2e9,
    "mistral-small-24b": 23.6e9,
    "phi-4": 14.7e9,
    "yi-34b": 34e9,
    "phi-3-medium": 14e9,
    "phi-3-mini": 3.8e9,
    "qwen2.5-0.5b": 0.49e9,
    "qwen2.5-1.5b": 1.54e9,
    "qwen2.5-3b": 3.09e9,
}
# Activated parameters on the model cards (they count the lm_head but not the input embedding).
CARD_ACTIVE = {
    "qwen3-235b-a22b": 22e9,
    "mixtral-8x7b": 12.9e9,
    "mixtral-8x22b": 39e9,
    "deepseek-v3": 37e9,
    "llama-4-scout": 17e9,
    "llama-4-maverick": 17e9,
    "qwen3.5-35b-a3b": 3e9,
}

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("name", sorted(CARD_PARAMS))
def test_new_model_parses_and_matches_its_card(name: str) -> None:
    m = models()[name]
    assert m.param_count() == int(m.params)
    assert abs(m.params / CARD_PARAMS[name] - 1) < 0.02, f"{m.params / 1e9:.2f}B"
    if name in CARD_ACTIVE:
        # our active count adds the input embedding (a lookup, < 1.1B for these)
        lookup = m.vocab * m.hidden
        assert abs((m.active_params() - lookup) / CARD_ACTIVE[name] - 1) < 0.08, name


def test_deepseek_mla_kv_bytes_per_token() -> None:
    ds = models()["deepseek-v3"]
    # config.json: 61 layers, kv_lora_rank 512, qk_rope_head_dim 64; bf16 = 2 bytes
    assert ds.kv_bytes_per_token("bf16", 1) == 61 * (512 + 64) * 2 == 70_272
    assert ds.kv_bytes_per_token("fp8", 1) == 35_136
    # the latent is shared by all heads, so each TP rank holds all of it
    assert ds.kv_bytes_per_token("bf16", 8) == 70_272
    # standard attention would cache 2 x 128 heads x 192 x 61 layers x 2 B: 43x more
    assert 2 * 128 * 192 * 61 * 2 / 70_272 > 40


def test_kv_heads_fewer_than_gpus_are_replicated_not_split() -> None:
    """vLLM keeps max(1, kv_heads // tp) KV heads on each GPU (`ModelConfig.get_num_kv_heads`):
    Qwen3-235B-A22B's 4 KV heads over 8 GPUs are one head per GPU, as over 4, not half of one
    (which had doubled its KV capacity at tp 8)."""
    m = models()["qwen3-235b-a22b"]
    assert m.kv_heads == 4
    one_head = 2 * m.layers * 1 * m.head_dim * 2  # K and V, one head, bf16, per layer
    assert m.kv_bytes_per_token("bf16", 8) == m.kv_bytes_per_token("bf16", 4) == one_head
    assert m.kv_bytes_per_token("bf16", 2) == 2 * one_head
    dense = models()["llama-3-70b"]  # 8 KV heads: split evenly up to tp 8
    assert dense.kv_bytes_per_token("bf16", 8) * 8 == dense.kv_bytes_per_token("bf16", 1)


def test_tensor_parallel_sizes_vllm_refuses() -> None:
    """vLLM needs the attention heads divisible by tp, and the KV heads split evenly or
    replicated evenly; everything else about a degree is allowed."""
    assert "28 attention heads" in (models()["qwen2.5-7b"].tensor_parallel_refusal(8) or "")
    assert "10 KV heads" in (models()["phi-4"].tensor_parallel_refusal(4) or "")
    assert models()["phi-4"].tensor_parallel_refusal(2) is None  # 10 heads split 5 + 5
    assert models()["qwen3-235b-a22b"].tensor_parallel_refusal(8) is None  # replicated x2
    assert models()["deepseek-v3"].tensor_parallel_refusal(8) is None  # MLA: nothing to split
    assert models()["llama-3-8b"].tensor_parallel_refusal(3) is not None


def test_touched_experts_formula() -> None:
    e, k = 128, 8
    assert expected_experts_touched(e, k, 1) == pytest.approx(k)
    assert expected_experts_touched(e, k, 0) == 0.0
    assert expected_experts_touched(e, k, 10_000) == pytest.approx(e)
    assert expected_experts_touched(e, k, 32) == pytest.approx(128 * (1 - (120 / 128) ** 32))
    # Monte Carlo: tokens choosing k distinct experts uniformly
    rng = np.random.default_rng(0)
    for tokens in (1, 4, 16, 64):
        hits = [
            len({x for _ in range(tokens) for x in rng.choice(e, size=k, replace=False)})
            for _ in range(400)
        ]
        assert np.mean(hits) == pytest.approx(expected_experts_touched(e, k, tokens), rel=0.02)


def test_moe_step_reads_only_the_experts_a_batch_touches() -> None:
    """Qwen3-30B-A3B (48 layers of 128 experts, 8 per token) on an H100: the step carries the
    touched-experts read exactly, E·(1 − (1 − k/E)^T) experts of each layer, at the fused-MoE
    kernels' memory efficiency, and each MoE layer's fixed kernel time, on top of the weights
    every step reads (at the dense kernels' efficiency). A weight-only MoE (int4) reads its
    experts at the dense efficiency: no timings of those kernels."""
    f = load_roofline_factors()
    m, g = models()["qwen3-30b-a3b"], gpus()["h100-80gb"]
    st, source = roofline_step_time(m, g, tp=1, weight_dtype="bf16", kv_dtype="bf16", factors=f)
    peak = g.memory_bandwidth_gb_per_s * 1e9
    bw = peak * f.mem_efficiency
    expert_bytes = 48 * m.expert_params() * 2.0  # one expert in every layer
    one_expert_s = expert_bytes / (peak * f.moe_mem_efficiency)
    assert st.expert_read_s == pytest.approx(128 * one_expert_s, rel=1e-12)
    assert st.expert_share == 8 / 128
    assert "experts a batch touches" in source and "fused-MoE kernels per layer" in source
    others = m.weight_bytes("bf16") - m.vocab * m.hidden * 2 - 128 * expert_bytes
    everything_s = m.layers * f.layer_floor_s + 48 * f.moe_layer_floor_s + others / bw
    assert st.flat_s == pytest.approx(everything_s, rel=1e-9)
    for tokens in (1, 4, 16, 64):
        touched = expected_experts_touched(128, 8, tokens)
        assert st.linear_s(tokens) == pytest.approx(st.flat_s + touched * one_expert_s, rel=1e-12)
    # a lone decode reads 8 experts a layer, 16 tokens 52 of them, a prefill chunk all 128
    assert st.linear_s(1) - st.flat_s == pytest.approx(8 * one_expert_s, rel=1e-12)
    assert st.linear_s(2048) > st.flat_s + 0.999 * st.expert_read_s
    int4, _ = roofline_step_time(m, g, tp=1, weight_dtype="int4", kv_dtype="bf16", factors=f)
    assert int4.expert_read_s == pytest.approx(
        48 * 128 * m.expert_params() * weight_bytes_per_param("int4") / bw, rel=1e-12
    )
    dense = models()["llama-3-8b"]
    dense_st, _ = roofline_step_time(
        dense, g, tp=1, weight_dtype="bf16", kv_dtype="bf16", factors=f
    )
    assert (dense_st.expert_read_s, dense_st.expert_share) == (0.0, 0.0)


def test_moe_kernel_constants_are_the_fit_of_the_published_kernel_timings() -> None:
    """`moe_mem_efficiency` and `moe_layer_floor_s` are the medians of
    `scripts/fit_moe_kernels.py`'s fits, each of which describes its table within 4 % RMS."""
    spec = importlib.util.spec_from_file_location("fit_moe", REPO / "scripts/fit_moe_kernels.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules["fit_moe"] = mod  # dataclasses resolve their module
    spec.loader.exec_module(mod)
    fits = [mod.fit(d) for d in mod.DATASETS]
    assert all(rms < 0.04 for _, _, rms in fits)
    f = load_roofline_factors()
    assert f.moe_mem_efficiency == pytest.approx(np.median([e for _, e, _ in fits]), abs=5e-4)
    assert f.moe_layer_floor_s == pytest.approx(np.median([a for a, _, _ in fits]), rel=1e-3)


def test_hybrid_linear_attention_kv_state_and_step_time() -> None:
    """Qwen3.5-9B: 8 of 32 layers are gated attention (16 Q / 4 KV heads of 256), 24 are Gated
    DeltaNet (16 QK / 32 V heads of 128, convolution kernel 4). By hand: KV bytes per token in
    bf16 = 8 layers x 2 (K, V) x 4 heads x 256 x 2 bytes; the recurrent state per sequence =
    24 layers x (conv (2 x 16 x 128 + 32 x 128) x 3 x 2 bytes + temporal 32 x 128 x 128 x 4
    bytes: float32, the config's `mamba_ssm_dtype`, which vLLM follows); TP2 halves both. The
    roofline counts query-key pairs on the 8 attention layers only, and charges the state's read
    and write per sequence. A model naming no state dtype keeps it in the KV cache's."""
    m = models()["qwen3.5-9b"]
    assert m.attention_layers == 8
    assert m.kv_bytes_per_token("bf16", 1) == 8 * 2 * 4 * 256 * 2 == 32_768
    state = 24 * ((2 * 16 * 128 + 32 * 128) * 3 * 2 + 32 * 128 * 128 * 4)
    assert m.ssm_state_dtype == "fp32"
    assert m.state_bytes_per_seq("bf16", 1) == state == 51_511_296
    assert m.state_bytes_per_seq("bf16", 2) == state / 2
    auto = dataclasses.replace(m, ssm_state_dtype="")  # vLLM's "auto": the KV cache's dtype
    assert auto.state_bytes_per_seq("bf16", 1) == 26_345_472
    assert m.kv_bytes_per_token("fp8", 2) == 32_768 / 4
    f, g = load_roofline_factors(), gpus()["h100-80gb"]
    st, source = roofline_step_time(m, g, tp=1, weight_dtype="bf16", kv_dtype="bf16", factors=f)
    bw = g.memory_bandwidth_gb_per_s * 1e9 * f.attn_mem_efficiency
    assert st.state_s_per_seq == pytest.approx(2 * state / bw, rel=1e-12)
    assert st.decode_attn_s_per_token == pytest.approx(32_768 / bw, rel=1e-12)
    pairs = 4.0 * 8 * 16 * 256 / (g.fp16_dense_tflops * 1e12 * f.attn_flop_efficiency)
    assert st.prefill_attn_s_per_pair == pytest.approx(pairs, rel=1e-12)
    assert "hybrid: 24 of 32 layers linear attention" in source
    # a model without linear-attention layers carries no state term
    dense, _ = roofline_step_time(
        models()["qwen3-8b"], g, tp=1, weight_dtype="bf16", kv_dtype="bf16", factors=f
    )
    assert dense.state_s_per_seq == 0.0 and models()["qwen3-8b"].state_bytes_per_seq("bf16", 1) == 0


def test_hybrid_kv_capacity_counts_each_running_sequences_state_in_blocks() -> None:
    """The KV estimate counts the pool whole; each running sequence of a hybrid model holds its
    recurrent state's blocks besides its tokens' (vLLM's hybrid KV-cache manager takes state
    pages from the same pool): Qwen3.5-9B's 51.5 MB state (its DeltaNet state in float32) in
    blocks of 16 tokens of 32 KB is 99 blocks. One more `max_num_seqs` costs only its fp32
    logits row; a server with --max-num-seqs 2048 (GPUStack's, which vLLM ran) fits."""
    m, g = models()["qwen3.5-9b"], gpus()["h100-80gb"]

    def cap(seqs: int) -> float:
        return kv_capacity_tokens(
            m,
            g,
            dtype="bf16",
            tp=1,
            gpu_memory_utilization=0.9,
            max_num_batched_tokens=8192,
            max_num_seqs=seqs,
        )

    assert m.kv_bytes_per_token("bf16", 1) == 32_768
    assert cap(256) - cap(257) == pytest.approx(m.vocab * 4.0 / 32_768, rel=1e-9)
    assert cap(1024) > 1_000_000  # 32 KB a token: the hybrid's cache holds far more tokens
    assert state_blocks(m, dtype="bf16", tp=1, block_size=16) == 99  # ceil(51,511,296 / 524,288)
    assert state_blocks(m, dtype="bf16", tp=2, block_size=16) == 99  # both halve over TP
    assert state_blocks(models()["qwen3-8b"], dtype="bf16", tp=1, block_size=16) == 0
    spec = EngineSpec(
        model="qwen3.5-9b",
        dtype="bf16",
        tp=1,
        max_num_seqs=2048,
        max_num_batched_tokens=8192,
        max_model_len=32768,
        gpu_memory_utilization=0.9,
        block_size=16,
        kv_blocks=None,
    )
    kv = kv_cache(spec, "h100-80gb")
    assert kv.state_blocks == 99 and kv_shortfall(spec, "h100-80gb", kv) is None
    limits = resolve_engine(spec, ["h100-80gb"]).limits("h100-80gb")
    assert limits.state_blocks == 99 and limits.kv_blocks == kv.blocks


def test_precision_in_the_roofline() -> None:
    f = load_roofline_factors()
    m = models()["llama-3.1-8b"]

    def step(gpu: str, wd: str, kv: str = "fp16") -> StepTimeModel:
        return roofline_step_time(m, gpus()[gpu], tp=1, weight_dtype=wd, kv_dtype=kv, factors=f)[0]

    # W8A8 on Ada/Hopper/Blackwell: GEMMs at the FP8 peak (twice the fp16 one)
    for gpu in ("l40s", "h100-80gb", "rtx-4090", "rtx-pro-6000"):
        half = step(gpu, "fp16").per_token_s / 2
        assert step(gpu, "fp8").per_token_s == pytest.approx(half, rel=0.02)
    # Ampere: FP8 weight-only (Marlin), computed at the fp16 peak at the weight-only kernels'
    # efficiency (0.42 of it against cuBLAS's 0.70: scripts/fit_weight_only.py); weight bytes
    # still halve the flat part
    weight_only_slowdown = f.flop_efficiency / f.weight_only_flop_efficiency
    assert 1.5 < weight_only_slowdown < 1.8
    for wd in ("fp8", "int4"):  # int4 (AWQ/GPTQ): weight-only on every GPU
        assert step("a100-80gb", wd).per_token_s == pytest.approx(
            step("a100-80gb", "fp16").per_token_s * weight_only_slowdown, rel=1e-12
        )
    assert step("h100-80gb", "int4").per_token_s == pytest.approx(
        step("h100-80gb", "fp16").per_token_s * weight_only_slowdown, rel=1e-12
    )
    assert step("a100-80gb", "fp8").flat_s < 0.6 * step("a100-80gb", "fp16").flat_s
    _, said = roofline_step_time(
        m, gpus()["a100-80gb"], tp=1, weight_dtype="int4", kv_dtype="fp16", factors=f
    )
    assert "weight-only GEMMs at 0.42 of the fp16 peak" in said
    # int4: a quarter of the weight bytes plus scales
    assert step("a100-80gb", "int4").flat_s < step("a100-80gb", "fp8").flat_s
    # FP8 KV cache: half the bytes a decode reads per token of context
    assert step("h100-80gb", "fp16", "fp8").decode_attn_s_per_token == pytest.approx(
        step("h100-80gb", "fp16").decode_attn_s_per_token / 2
    )


def test_hugging_face_ids_resolve_to_catalog_names() -> None:
    assert canonical_model_name("meta-llama/Llama-3.1-8B-Instruct") == "llama-3.1-8b"
    assert canonical_model_name("META-LLAMA/LLAMA-3.1-8B-INSTRUCT") == "llama-3.1-8b"
    assert canonical_model_name("deepseek-ai/DeepSeek-R1") == "deepseek-v3"
    assert canonical_model_name("Qwen/Qwen3-235B-A22B-Instruct-2507-FP8") == "qwen3-235b-a22b"
    assert canonical_model_name("openai/gpt-oss-20b") == "gpt-oss-20b"
    # the R1 distills keep their base models' architectures (DeepSeek-R1 README)
    assert canonical_model_name("deepseek-ai/DeepSeek-R1-Distill-Llama-8B") == "llama-3.1-8b"
    assert canonical_model_name("deepseek-ai/DeepSeek-R1-Distill-Qwen-32B") == "qwen2.5-32b"
    assert canonical_model_name("Qwen/Qwen3.5-35B-A3B-FP8") == "qwen3.5-35b-a3b"
    assert canonical_model_name("llama-3-8b") == "llama-3-8b"
    # fine-tunes and re-releases with their base's config
    assert canonical_model_name("nvidia/Llama-3.1-Nemotron-70B-Instruct-HF") == "llama-3.1-70b"
    assert canonical_model_name("Qwen/QwQ-32B") == "qwen2.5-32b"
    assert canonical_model_name("Qwen/Qwen2.5-Coder-32B-Instruct") == "qwen2.5-32b"
    assert canonical_model_name("Qwen/Qwen2-72B-Instruct") == "qwen2.5-72b"
    assert canonical_model_name("mistralai/Mistral-Small-24B-Instruct-2501") == "mistral-small-24b"
    assert canonical_model_name("mistralai/Mistral-Nemo-Instruct-2407") == "mistral-nemo-12b"
    assert canonical_model_name("microsoft/phi-4") == "phi-4"
    assert canonical_model_name("no/such-model") is None


def test_model_table_rejects_ambiguous_aliases_and_half_mla() -> None:
    row = {
        "hf_id": "x/a",
        "params": 1,
        "layers": 1,
        "hidden": 1,
        "heads": 1,
        "kv_heads": 1,
        "head_dim": 1,
        "intermediate": 1,
        "vocab": 1,
        "max_position": 1,
    }
    with pytest.raises(ConfigError, match="also names 'a'"):
        parse_models({"a": row, "b": {**row, "hf_id": "x/b", "aliases": ["X/A"]}})
    with pytest.raises(ConfigError, match="kv_lora_rank, qk_rope_head_dim, v_head_dim go"):
        parse_models({"a": {**row, "kv_lora_rank": 512}})
    with pytest.raises(ConfigError, match=r"a\.shared_experts: needs experts"):
        parse_models({"a": {**row, "shared_experts": 1}})
    # a state dtype only where there are linear-attention layers, and only a known one
    with pytest.raises(ConfigError, match=r"a\.ssm_state_dtype: must be one of fp32"):
        parse_models({"a": {**row, "ssm_state_dtype": "fp32"}})
    hybrid = {**row, "layers": 2, "linear_attention_layers": 1, "linear_key_heads": 1}
    hybrid |= {"linear_value_heads": 1, "linear_key_head_dim": 1, "linear_value_head_dim": 1}
    hybrid["linear_conv_kernel"] = 2
    with pytest.raises(ConfigError, match=r"a\.ssm_state_dtype: .* 'fp64'"):
        parse_models({"a": {**hybrid, "ssm_state_dtype": "fp64"}})
    assert parse_models({"a": {**hybrid, "ssm_state_dtype": "fp32"}})["a"].ssm_state_dtype == "fp32"


# Models that fit no catalog configuration (TP ≤ 8 on one node), and why.
DOES_NOT_FIT: dict[str, str] = {}


def _fits_somewhere(name: str) -> str | None:
    m = models()[name]
    for gpu in gpus().values():
        for tp in (1, 2, 4, 8):
            for wd in ("bf16", "fp8", "int4"):
                tokens = kv_capacity_tokens(
                    m,
                    gpu,
                    dtype="bf16",
                    weight_dtype=wd,
                    tp=tp,
                    gpu_memory_utilization=0.9,
                    max_num_batched_tokens=2048,
                    max_num_seqs=256,
                )
                if tokens >= 4096:
                    return f"{gpu.name} tp{tp} {wd}"
    return None


@pytest.mark.parametrize("name", sorted(models()))
def test_every_model_fits_some_catalog_gpu_configuration(name: str) -> None:
    where = _fits_somewhere(name)
    assert (where is None) == (name in DOES_NOT_FIT), where


def test_largest_models_need_a_full_node() -> None:
    # DeepSeek-V3 in bf16 (1.34 TB) fits no 8-GPU node here but the 2 TB MI325X one; its native
    # fp8 (0.67 TB) fits 8 H200s
    ds = models()["deepseek-v3"]
    kw: dict[str, Any] = {"tp": 8, "gpu_memory_utilization": 0.9, "max_num_batched_tokens": 2048}
    h200 = gpus()["h200"]
    assert kv_capacity_tokens(ds, h200, dtype="bf16", max_num_seqs=256, **kw) < 0
    assert (
        kv_capacity_tokens(ds, h200, dtype="bf16", weight_dtype="fp8", max_num_seqs=256, **kw) > 1e5
    )


def test_new_gpus_have_specs_and_dated_prices() -> None:
    for name in ("rtx-4090", "rtx-pro-6000", "mi325x"):
        g = gpus()[name]
        assert g.memory_bandwidth_gb_per_s > 0 and g.fp16_dense_tflops > 0 and g.fp8_dense_tflops
        assert g.spec_source and any(ch.isdigit() for ch in g.price_source), name
    assert gpus()["rtx-4090"].memory_gb == 24.0  # the LLMServingSim RTX 4090 runs
    for name in ("l40s", "l4", "a10g", "h200"):
        assert gpus()[name].spec_source.strip()

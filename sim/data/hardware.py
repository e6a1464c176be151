"""The types of the GPU and model tables shipped with the package (`sim/data/gpus.toml`,
`models.toml`): `GpuSpec`, `ModelShape` (a decoder's shape and what follows from it: parameter
counts, weight, KV and recurrent-state bytes), the dtype sizes, and the expected experts a batch
touches. Data only: every number's source is in the TOML beside it; `sim.data.tables` reads and
validates the tables.
"""

from __future__ import annotations

from dataclasses import dataclass

GIB = 1024**3
DTYPE_BYTES = {"fp16": 2.0, "bf16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
"""Bytes per element of each dtype (weights or KV cache)."""

SSM_STATE_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0}
"""Bytes per element of a linear-attention layer's temporal (SSM) state, by the dtype a model's
config names for it (`ModelShape.ssm_state_dtype`)."""

QUANT_GROUP_SIZE = 128
"""Weights per quantisation group of int4 (AWQ/GPTQ) checkpoints: the default `group_size` of
AutoAWQ and of GPTQ checkpoints in vLLM's docs. Each group stores one fp16 scale and one packed
4-bit zero point, i.e. 2.5 bytes per 128 weights on top of the 0.5 bytes per weight."""

QUANTIZATION_WEIGHT_DTYPE = {"awq": "int4", "gptq": "int4", "fp8": "fp8", "int8": "int8"}
"""vLLM `--quantization` names accepted in `[engine] quantization`, and the weight dtype each
stores (AWQ/GPTQ: 4-bit weights with fp16 activations; fp8: 8-bit float weights; int8: W8A8)."""


def weight_bytes_per_param(weight_dtype: str) -> float:
    """Average bytes per quantised (linear-layer) weight, including group scales for int4."""
    if weight_dtype == "int4":
        return DTYPE_BYTES["int4"] + 2.5 / QUANT_GROUP_SIZE
    return DTYPE_BYTES[weight_dtype]


@dataclass(frozen=True)
class GpuSpec:
    """One GPU type (per GPU, not per instance).

    memory_gb: device memory in 1e9 bytes, as the datasheet states it.
    device_memory_gib: the memory the device reports to CUDA (torch's `total_memory`, what
        vLLM's `gpu_memory_utilization` multiplies), GiB; 0 = unknown, the KV estimate then
        takes `memory_gb` (fewer bytes than any device here reports: conservative).
    memory_bandwidth_gb_per_s: peak memory bandwidth, 1e9 bytes/s.
    fp16_dense_tflops / fp8_dense_tflops: dense tensor-core peak, 1e12 FLOP/s (None: no FP8
        tensor cores, so FP8 weights are computed in fp16).
    interconnect: link kind ("nvlink4", "pcie4", ...); interconnect_gb_per_s its datasheet
        GPU-to-GPU bandwidth, 1e9 bytes/s.
    price_usd_per_hour: on-demand price per GPU-hour; spot_price_usd_per_hour the spot price in
        the same source, or None when the source lists none (spot unavailable, not guessed).
    alt_*: a second provider's price, for comparison and for experiments that pick it.
    *_source: where each number comes from.
    """

    name: str
    memory_gb: float
    price_usd_per_hour: float
    price_source: str
    memory_bandwidth_gb_per_s: float = 0.0
    fp16_dense_tflops: float = 0.0
    fp8_dense_tflops: float | None = None
    interconnect: str = ""
    interconnect_gb_per_s: float = 0.0
    spec_source: str = ""
    spot_price_usd_per_hour: float | None = None
    spot_price_source: str | None = None
    alt_price_usd_per_hour: float | None = None
    alt_price_source: str | None = None
    alt_spot_price_usd_per_hour: float | None = None
    alt_spot_price_source: str | None = None
    device_memory_gib: float = 0.0

    @property
    def device_memory_bytes(self) -> float:
        """Bytes the device reports to CUDA (`device_memory_gib`, else `memory_gb`)."""
        if self.device_memory_gib > 0:
            return self.device_memory_gib * 2.0**30
        return self.memory_gb * 1e9

    @property
    def has_spot_price(self) -> bool:
        """Whether the price source lists a spot price for this GPU."""
        return self.spot_price_usd_per_hour is not None

    def tflops(self, weight_dtype: str) -> float:
        """Dense peak for matmuls with weights of `weight_dtype` (1e12 FLOP/s).

        FP8 weights use the FP8 tensor-core peak where the GPU has one (vLLM's W8A8 path); int8,
        int4 and FP8 on GPUs without FP8 cores run weight-only kernels that compute in fp16.
        """
        if weight_dtype == "fp8" and self.fp8_dense_tflops is not None:
            return self.fp8_dense_tflops
        return self.fp16_dense_tflops


@dataclass(frozen=True)
class ModelShape:
    """A decoder-only transformer's shape, from its Hugging Face config.json.

    params: total parameters (`param_count()` of the shape; tests hold the two equal).
    intermediate: MLP width (one routed expert's width for MoE).
    experts / experts_per_token: 0 / 0 for dense models.

    Optional fields, absent (0 / False) for a plain Llama-style model:
    tie_embeddings: the lm_head shares the input embedding (`tie_word_embeddings`).
    shared_experts: MoE experts every token passes through (DeepSeek `n_shared_experts`, Llama-4's
        shared expert), each `intermediate` wide.
    dense_layers, dense_intermediate: layers of an MoE model whose MLP is one dense MLP of
        `dense_intermediate` width instead of experts (DeepSeek `first_k_dense_replace` with
        `intermediate_size`; Llama-4 Maverick's non-MoE layers with `intermediate_size_mlp`).
    kv_lora_rank, qk_rope_head_dim, q_lora_rank, v_head_dim: multi-head latent attention (MLA,
        DeepSeek-V2/V3). The KV cache holds one compressed latent of `kv_lora_rank` plus one shared
        RoPE key of `qk_rope_head_dim` per token per layer; `head_dim` is then the query/key head
        width (`qk_nope_head_dim + qk_rope_head_dim`) and `v_head_dim` the value head width.
    sliding_window, sliding_window_layers: layers attending only to the last `sliding_window`
        tokens (Gemma-3's local layers, gpt-oss's banded layers, Llama-4's chunked layers). Shape
        only: KV capacity still counts every layer at full context, which is exact up to the
        window and conservative beyond it (vLLM's hybrid KV allocator stores less).
    linear_attention_layers, linear_key_heads, linear_value_heads, linear_key_head_dim,
        linear_value_head_dim, linear_conv_kernel: a hybrid model's Gated DeltaNet layers
        (Qwen3-Next, Qwen3.5: `layer_types` / `full_attention_interval`, `linear_num_key_heads`,
        `linear_num_value_heads`, `linear_key_head_dim`, `linear_value_head_dim`,
        `linear_conv_kernel_dim`). Such a layer has no KV cache: it keeps a fixed recurrent state
        per sequence (`state_bytes_per_seq`); the other `attention_layers` are standard attention.
    ssm_state_dtype: the dtype of those layers' temporal state when the model's config names one
        (`mamba_ssm_dtype`: "fp32" for Qwen3.5); "" = the KV cache's dtype, vLLM's "auto".
    attn_output_gate: the attention layers' q_proj also produces a sigmoid output gate, as wide as
        the queries (Qwen3-Next and Qwen3.5 gated attention; `attn_output_gate`).
    extra_params: parameters vLLM loads outside the decoder the shape describes (a vision
        encoder): counted in the weight bytes at 16 bits, never in the active parameters.
    aliases: other names the model is known by (Hugging Face ids of instruct or quantised
        checkpoints); `hf_id` is always one. See `sim.data.tables.canonical_model_name`.
    """

    name: str
    hf_id: str
    params: float
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    intermediate: int
    vocab: int
    max_position: int
    experts: int = 0
    experts_per_token: int = 0
    qkv_bias: bool = False
    qk_norm: bool = False
    tie_embeddings: bool = False
    shared_experts: int = 0
    dense_layers: int = 0
    dense_intermediate: int = 0
    kv_lora_rank: int = 0
    qk_rope_head_dim: int = 0
    q_lora_rank: int = 0
    v_head_dim: int = 0
    sliding_window: int = 0
    sliding_window_layers: int = 0
    linear_attention_layers: int = 0
    linear_key_heads: int = 0
    linear_value_heads: int = 0
    linear_key_head_dim: int = 0
    linear_value_head_dim: int = 0
    linear_conv_kernel: int = 0
    ssm_state_dtype: str = ""
    attn_output_gate: bool = False
    extra_params: int = 0
    aliases: tuple[str, ...] = ()

    @property
    def is_moe(self) -> bool:
        return self.experts > 0

    @property
    def is_mla(self) -> bool:
        """Whether attention is multi-head latent attention (a compressed KV cache)."""
        return self.kv_lora_rank > 0

    @property
    def moe_layers(self) -> int:
        """Layers whose MLP is routed experts (0 for a dense model)."""
        return self.layers - self.dense_layers if self.is_moe else 0

    @property
    def attention_layers(self) -> int:
        """Layers with softmax attention, hence a KV cache (all but the linear-attention ones)."""
        return self.layers - self.linear_attention_layers

    def kv_bytes_per_token(self, dtype: str, tp: int) -> float:
        """KV-cache bytes one token occupies on one GPU of a `tp`-way replica.

        Standard attention caches a key and a value per KV head: 2 × kv_heads × head_dim per
        attention layer, split over the `tp` GPUs; with fewer KV heads than GPUs vLLM keeps one
        on each (replicated: `ModelConfig.get_num_kv_heads` = max(1, kv_heads // tp)). MLA
        caches one latent and one RoPE key per layer, kv_lora_rank + qk_rope_head_dim, shared by
        all heads, so vLLM keeps the whole latent on every GPU: it does not shrink with `tp`.
        Linear-attention layers cache nothing per token (`state_bytes_per_seq`).
        """
        if self.is_mla:
            return self.layers * (self.kv_lora_rank + self.qk_rope_head_dim) * DTYPE_BYTES[dtype]
        heads_per_gpu = max(1, self.kv_heads // tp)
        return 2.0 * self.attention_layers * heads_per_gpu * self.head_dim * DTYPE_BYTES[dtype]

    def tensor_parallel_refusal(self, tp: int) -> str | None:
        """Why vLLM refuses to split this model over `tp` GPUs, or None when it splits it.

        vLLM needs the attention heads divisible by the tensor-parallel size
        (`ModelConfig.verify_with_parallel_config`), and it splits the KV heads evenly over the
        GPUs or, when there are fewer KV heads than GPUs, replicates each on tp / kv_heads of
        them (`QKVParallelLinear`): one count must divide the other. MLA has no KV heads to
        split."""
        if tp < 1 or self.heads % tp:
            return f"vLLM needs the {self.heads} attention heads divisible by tp {tp}"
        if not self.is_mla and self.kv_heads % tp and tp % self.kv_heads:
            return (
                f"vLLM splits the {self.kv_heads} KV heads evenly over tp {tp} GPUs or"
                " replicates them, and neither count divides the other"
            )
        return None

    @property
    def _linear_conv_dim(self) -> int:
        """Channels of a Gated DeltaNet layer's causal convolution (its q, k and v streams)."""
        return (
            2 * self.linear_key_heads * self.linear_key_head_dim
            + self.linear_value_heads * self.linear_value_head_dim
        )

    def state_bytes_per_seq(self, dtype: str, tp: int) -> float:
        """Recurrent-state bytes one sequence holds on one GPU of a `tp`-way replica, whatever
        its length (0 without linear-attention layers).

        Per Gated DeltaNet layer vLLM keeps a convolution state of conv_dim × (kernel − 1) in
        the KV cache's dtype and a temporal state of value_heads × value_head_dim × key_head_dim
        in `mamba_ssm_cache_dtype`, both split over `tp` (`MambaStateShapeCalculator.
        gated_delta_net_state_shape`, `MambaStateDtypeCalculator`, vllm/model_executor/layers/
        mamba/mamba_utils.py). That dtype is "auto" (the KV cache's) unless set; for Qwen3.5
        vLLM sets it from the config's `mamba_ssm_dtype`, float32 (vllm-project/vllm#34489,
        in 0.17: `ssm_state_dtype`).
        """
        conv = self._linear_conv_dim * (self.linear_conv_kernel - 1) * DTYPE_BYTES[dtype]
        ssm = SSM_STATE_BYTES[self.ssm_state_dtype] if self.ssm_state_dtype else DTYPE_BYTES[dtype]
        temporal = self.linear_value_heads * self.linear_value_head_dim * self.linear_key_head_dim
        return self.linear_attention_layers * (conv + temporal * ssm) / tp

    @property
    def embedding_params(self) -> int:
        """Input embedding plus the lm_head (unless tied): kept in 16-bit by quantised
        checkpoints."""
        return (1 if self.tie_embeddings else 2) * self.vocab * self.hidden

    def _attention_params(self) -> int:
        if self.is_mla:
            nope = self.head_dim - self.qk_rope_head_dim
            if self.q_lora_rank:
                q = self.hidden * self.q_lora_rank + self.q_lora_rank  # down-proj + its norm
                q += self.q_lora_rank * self.heads * self.head_dim
            else:
                q = self.hidden * self.heads * self.head_dim
            kv = self.hidden * (self.kv_lora_rank + self.qk_rope_head_dim) + self.kv_lora_rank
            kv += self.kv_lora_rank * self.heads * (nope + self.v_head_dim)
            return q + kv + self.heads * self.v_head_dim * self.hidden
        q = self.heads * self.head_dim
        kv = self.kv_heads * self.head_dim
        attn = self.hidden * (q + 2 * kv) + q * self.hidden
        attn += self.hidden * q if self.attn_output_gate else 0
        attn += (q + 2 * kv) if self.qkv_bias else 0
        attn += 2 * self.head_dim if self.qk_norm else 0
        return attn

    def _linear_attention_params(self) -> int:
        """One Gated DeltaNet layer: in_proj_qkv, in_proj_z, in_proj_b and in_proj_a from the
        hidden state, the depthwise convolution, dt_bias and A_log, the gated norm, out_proj."""
        value = self.linear_value_heads * self.linear_value_head_dim
        conv = self._linear_conv_dim
        proj = self.hidden * (conv + value + 2 * self.linear_value_heads) + value * self.hidden
        norm = self.linear_value_head_dim  # the gated RMSNorm's weight
        return proj + conv * self.linear_conv_kernel + 2 * self.linear_value_heads + norm

    def expert_params(self) -> int:
        """Parameters of one routed expert in one layer (a gated MLP: gate, up, down)."""
        return 3 * self.hidden * self.intermediate

    def _mlp_params(self, routed: int) -> int:
        """Parameters of one MoE layer's MLP with `routed` routed experts counted."""
        return (routed + self.shared_experts) * self.expert_params() + self.hidden * self.experts

    def _decoder_params(self, routed: int) -> int:
        """All layers, with `routed` routed experts counted in each MoE layer."""
        mixers = self.attention_layers * self._attention_params()
        if self.linear_attention_layers:
            mixers += self.linear_attention_layers * self._linear_attention_params()
        mixers += self.layers * 2 * self.hidden  # two RMSNorms per layer
        if not self.is_moe:
            return mixers + self.layers * 3 * self.hidden * self.intermediate
        dense = self.dense_layers * 3 * self.hidden * self.dense_intermediate
        return mixers + dense + self.moe_layers * self._mlp_params(routed)

    def param_count(self) -> int:
        """Total parameters implied by the shape (checked against `params` in the tests)."""
        return (
            self.embedding_params
            + self._decoder_params(self.experts)
            + self.hidden
            + self.extra_params
        )

    def active_params(self) -> float:
        """Parameters one token's forward pass multiplies by (all of them for a dense model)."""
        if not self.is_moe:
            return self.params - self.extra_params
        return float(
            self.embedding_params + self._decoder_params(self.experts_per_token) + self.hidden
        )

    def expert_weight_params(self) -> int:
        """Parameters of all routed experts of all layers (read only when a batch routes to
        them)."""
        return self.moe_layers * self.experts * self.expert_params()

    def weight_bytes(self, weight_dtype: str) -> float:
        """Bytes of the whole checkpoint's weights with linear layers stored as `weight_dtype`.

        Quantised checkpoints (fp8, int8, AWQ/GPTQ int4) keep the embedding and lm_head in 16
        bits, as vLLM loads them; norms and biases are negligible and counted at the same rate.
        `extra_params` (a vision encoder) stay in 16 bits.
        """
        if DTYPE_BYTES[weight_dtype] == 2.0:
            return self.params * 2.0
        sixteen_bit = self.embedding_params + self.extra_params
        quantised = self.params - sixteen_bit
        return quantised * weight_bytes_per_param(weight_dtype) + sixteen_bit * 2.0


def expected_experts_touched(experts: int, experts_per_token: int, tokens: float) -> float:
    """Expected number of distinct experts (of `experts`) that `tokens` tokens route to, each
    choosing `experts_per_token` of them uniformly: E · (1 − (1 − k/E)^T).

    Uniform routing is the assumption (trained routers are load-balanced towards it); each
    expert is missed by one token with probability 1 − k/E, independently across tokens.
    """
    if experts <= 0:
        return 0.0
    if tokens <= 0:
        return 0.0
    return float(experts * (1.0 - (1.0 - experts_per_token / experts) ** tokens))

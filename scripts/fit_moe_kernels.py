"""Fit the MoE layer's kernel constants on published timings of vLLM's (and SGLang's) fused MoE.

`[roofline] moe_layer_floor_s` and `moe_mem_efficiency` (sim/data/step_time.toml) describe one
MoE layer's fused-experts kernels (routing-table alignment, the gate/up and down grouped GEMMs,
the activation) as a fixed time plus the read of the experts a batch touches:

    t(M) = floor + bytes_touched(M) / (efficiency × peak bandwidth)

where a batch of M tokens, each routed to k of E experts, touches E × (1 − (1 − k/E)^M) experts
on average (uniform routing, as the benchmarks draw it; `sim.engine.steptime`), each of
3 × N × K weights (gate and up N × K, down K × N; N the expert width on one GPU, K the hidden
size). The roofline had charged that read at the dense layers' efficiency (`mem_efficiency`,
measured on Vidur's eager profiles) and no fixed time, so small MoE batches ran fast (docs/
validation.md: gpt-oss-120b at concurrency 4, TPOT −32 to −45 %) and large experts slow
(Mixtral-8x7B TP2, E2E p95 +15 to +21 %).

The timings below are each PR's published `benchmark_moe.py` (or SGLang's
`tuning_fused_moe_triton.py`) kernel times in microseconds for the named shape and GPU (CUDA
graphs, random routing). Each dataset is fitted by least squares on (bytes_touched, t); the
shipped constants are the medians over the datasets, and the script prints each dataset's fit
and its RMS error so that their spread is seen. Run from the repository root (instant):

    python scripts/fit_moe_kernels.py
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

TB = 1e12


@dataclass(frozen=True)
class KernelTimings:
    """One published table of fused-MoE kernel times."""

    source: str
    gpu: str
    peak_bytes_per_s: float  # the GPU's datasheet memory bandwidth
    experts: int  # E
    top_k: int  # k
    width: int  # N: the expert's intermediate width on one GPU
    hidden: int  # K
    bytes_per_weight: float  # 2 for bf16, 1 for fp8 (block scales not counted)
    batch: tuple[int, ...]  # M, tokens
    time_us: tuple[float, ...]

    def bytes_touched(self) -> np.ndarray:
        m = np.asarray(self.batch, dtype=np.float64)
        touched = self.experts * (1.0 - (1.0 - self.top_k / self.experts) ** m)
        return touched * 3.0 * self.width * self.hidden * self.bytes_per_weight


DATASETS = (
    KernelTimings(
        "sgl-project/sglang#11730 (Qwen3-235B-A22B FP8 W8A8 block, TP8, default config)",
        "H200",
        4.8 * TB,
        128,
        8,
        192,
        4096,
        1.0,
        (1, 2, 4, 8, 16, 24, 32),
        (31.70, 36.56, 49.67, 66.87, 92.36, 117.38, 124.99),
    ),
    KernelTimings(
        "vllm-project/vllm#31448 (Qwen3-Omni-30B-A3B bf16, TP1, default config)",
        "B200",
        8.0 * TB,
        128,
        8,
        768,
        2048,
        2.0,
        (1, 2, 4),
        (39.61, 51.87, 73.18),
    ),
    KernelTimings(
        "vllm-project/vllm#24700 (Qwen3-30B-A3B FP8 W8A8, TP1, main's default config)",
        "H100 SXM",
        3.35 * TB,
        128,
        8,
        768,
        2048,
        1.0,
        (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128),
        (44.54, 59.94, 90.46, 129.77, 185.40, 215.99, 238.37, 257.83, 262.73, 270.98, 273.72),
    ),
    KernelTimings(
        "vllm-project/vllm#24700 (Mixtral-8x7B bf16, TP2, tuned config)",
        "H100 SXM",
        3.35 * TB,
        8,
        2,
        7168,
        4096,
        2.0,
        (1, 2, 4, 8, 16, 24, 32, 48, 64, 96, 128),
        (144.03, 229.28, 351.10, 434.98, 471.49, 478.27, 487.35, 487.85, 483.14, 494.42, 491.39),
    ),
    KernelTimings(
        "sgl-project/sglang#6825 (Qwen3-30B-A3B bf16, TP1, default config)",
        "A100 PCIe 40GB",
        1.555 * TB,
        128,
        8,
        768,
        2048,
        2.0,
        (1, 2, 4, 8, 16, 24, 32, 48, 64, 96),
        (109.21, 159.81, 268.89, 403.13, 611.19, 730.19, 808.53, 885.97, 917.45, 943.14),
    ),
)
"""The batches each table gives up to where its experts are all touched (beyond, GEMM compute
grows and the read no longer explains the time)."""


def fit(d: KernelTimings) -> tuple[float, float, float]:
    """(floor s, efficiency, RMS relative error) of t = floor + bytes / (eff × peak)."""
    x = d.bytes_touched()
    t = np.asarray(d.time_us) * 1e-6
    slope, floor = np.polyfit(x, t, 1)
    pred = floor + slope * x
    rms = float(np.sqrt(np.mean((pred / t - 1.0) ** 2)))
    return float(floor), float(1.0 / (slope * d.peak_bytes_per_s)), rms


def main() -> None:
    floors, effs = [], []
    for d in DATASETS:
        floor, eff, rms = fit(d)
        floors.append(floor)
        effs.append(eff)
        print(
            f"{d.gpu:>15}  floor {floor * 1e6:5.1f} us  efficiency {eff:.3f}  (RMS {rms:.1%},"
            f" {len(d.batch)} batches)  {d.source}"
        )
    print(f"median: floor {np.median(floors) * 1e6:.1f} us, efficiency {np.median(effs):.3f}")
    print(f"moe_layer_floor_s = {np.median(floors):.4g}")
    print(f"moe_mem_efficiency = {np.median(effs):.3f}")


if __name__ == "__main__":
    main()

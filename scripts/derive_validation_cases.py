"""Derive the packaged validation runs (sim/data/validation/*.csv) from ../shared/data.

Usage, from the repository root:

    python scripts/derive_validation_cases.py [--data ../shared/data]

For each LLMServingSim example run (real vLLM 0.19.0, `examples/<GPU>/<model>/vllm/`), writes
one CSV with a row per request, sorted by engine arrival:

    arrival_s      queued_ts − first queued_ts (s): when the engine received the request
    input_tokens   input_toks
    output_tokens  output_toks
    ttft_s         first_token_ts − queued_ts (s)
    e2e_s          last_token_ts − queued_ts (s)

All three timestamps are the engine's own monotonic clock, so the latencies exclude the client
and the network (see docs/validation.md). The engine configuration of each run (from its
`meta.json`) is written by hand into `sim/data/validation/cases.toml`.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import polars as pl

REPO_ROOT = Path(__file__).resolve().parent.parent
RUNS = {
    "llmservingsim_rtx4090_llama31_8b.csv": "RTX4090/Llama-3.1-8B",
    "llmservingsim_rtxpro6000_llama31_8b.csv": "RTXPRO6000/Llama-3.1-8B",
    "llmservingsim_rtxpro6000_qwen3_32b.csv": "RTXPRO6000/Qwen3-32B",
    "llmservingsim_rtxpro6000_qwen3_30b_a3b.csv": "RTXPRO6000/Qwen3-30B-A3B-Instruct-2507",
}


def derive(requests: Path) -> pl.DataFrame:
    """One LLMServingSim `requests.jsonl` as the validation schema (see the module docstring)."""
    raw = pl.read_ndjson(requests)
    t0 = raw["queued_ts"].min()
    return (
        raw.select(
            (pl.col("queued_ts") - t0).alias("arrival_s"),
            pl.col("input_toks").alias("input_tokens"),
            pl.col("output_toks").alias("output_tokens"),
            (pl.col("first_token_ts") - pl.col("queued_ts")).alias("ttft_s"),
            (pl.col("last_token_ts") - pl.col("queued_ts")).alias("e2e_s"),
        )
        .sort("arrival_s", maintain_order=True)
        .with_columns(pl.col(c).round(6) for c in ("arrival_s", "ttft_s", "e2e_s"))
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT.parent / "shared" / "data")
    parser.add_argument("--out", type=Path, default=REPO_ROOT / "sim" / "data" / "validation")
    args = parser.parse_args()
    for name, run in RUNS.items():
        frame = derive(args.data / "llmservingsim" / "examples" / run / "vllm" / "requests.jsonl")
        frame.write_csv(args.out / name)
        print(f"{name}: {frame.height} requests")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

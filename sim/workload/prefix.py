"""Prompts that share a prefix, and the prefix-cache hits vLLM finds for them.

vLLM's automatic prefix caching (on by default in the V1 engine) keeps the KV of every full
block of `block_size` tokens it has computed, keyed by a hash of the block and every token
before it, until the memory is needed; a request whose prompt starts with blocks in the cache
starts with them computed (`num_computed_tokens`), up to the prompt's last token, which is
always computed so that the step has logits to sample from (vllm/v1/core/kv_cache_manager.py,
`get_computed_blocks`: at most `num_tokens - 1` tokens, in whole blocks). A benchmark whose
prompts share a prefix therefore prefills only what follows it after the first request.

Benchmark datasets with shared prefixes (`SharedPrefix`), each prompt in a *group* that shares
its first `prefix_tokens` tokens:
* `vllm bench serve --dataset-name random --random-prefix-len P`: one group, every prompt a
  new random continuation (vllm/benchmarks/datasets.py, `RandomDataset`);
* `--dataset-name prefix_repetition`: `num_prefixes` groups of `num_requests // num_prefixes`
  prompts each (a prefix and a random suffix), shuffled (`PrefixRepetitionRandomDataset`);
* inference-perf's `shared_prefix` generator (kubernetes-sigs/inference-perf,
  `SharedPrefixDataGenerator`): `num_groups × num_prompts_per_group` fixed prompts, each a
  group's system prompt and its own question, shuffled once and sent in turn, so the same
  prompt comes back every `groups × prompts_per_group` requests and then hits in full.

`prefix_cache_hits` gives each request the tokens the cache holds for it when it is
scheduled, under two assumptions (their limits are stated where they are used): a prefix is
cached once an EARLIER request carried it (vLLM caches a block only once computed, so a
request scheduled while the first one with its prefix is still prefilling misses it), and
nothing cached is evicted (true while the distinct prompt tokens fit in the KV cache beside
the running requests: `prefix_footprint_tokens`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

IntArray = npt.NDArray[np.int64]


@dataclass(frozen=True)
class SharedPrefix:
    """The prefix structure of a benchmark's prompts (module docstring).

    prefix_tokens: tokens every prompt of a group starts with (0: no shared prefix).
    groups: how many distinct prefixes (`--prefix-repetition-num-prefixes`; 1 for
        `--random-prefix-len`; inference-perf's `num_groups`).
    prompts_per_group: 0 = every request a new prompt (vLLM's datasets); K > 0 = a fixed set
        of `groups × K` prompts sent in turn (inference-perf's `num_prompts_per_group`).
    warm: the server has served these prompts before the run (a later stage of a multi-stage
        benchmark): every prefix and every fixed prompt is in the cache from the start.
    """

    prefix_tokens: int = 0
    groups: int = 1
    prompts_per_group: int = 0
    warm: bool = False

    def __post_init__(self) -> None:
        if self.prefix_tokens < 0 or self.groups < 1 or self.prompts_per_group < 0:
            raise ValueError(f"invalid shared prefix {self}")

    def assign(self, n: int, rng: np.random.Generator) -> tuple[IntArray, IntArray]:
        """(group, prompt id) of each of `n` requests in sending order. vLLM's datasets:
        `groups` equal shares of the requests in a random order, every prompt distinct (`n`
        is expected to be a multiple of `groups`, as `prefix_repetition` makes it); a fixed
        prompt set: its prompts shuffled once, then sent in turn."""
        if self.prompts_per_group == 0:
            group = np.repeat(np.arange(self.groups, dtype=np.int64), -(-n // self.groups))[:n]
            return rng.permutation(group), np.arange(n, dtype=np.int64)
        order = rng.permutation(self.groups * self.prompts_per_group).astype(np.int64)
        prompt = order[np.arange(n) % order.size]
        return prompt // self.prompts_per_group, prompt


def _occurrence(ids: IntArray) -> IntArray:
    """How many earlier elements have the same id (0 for the first of each)."""
    ids = np.asarray(ids, dtype=np.int64)
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    starts = np.flatnonzero(np.r_[True, ordered[1:] != ordered[:-1]])
    counts = np.diff(np.r_[starts, ids.size])
    out = np.empty(ids.size, dtype=np.int64)
    out[order] = np.arange(ids.size) - np.repeat(starts, counts)
    return out


def prefix_cache_hits(
    shared: SharedPrefix,
    group: IntArray,
    prompt: IntArray,
    input_tokens: IntArray,
    block_size: int,
    caches: int = 1,
) -> IntArray:
    """Prompt tokens each request finds in the prefix cache, in sending order (module
    docstring): the whole prompt less its last token, in whole blocks, when an earlier request
    sent the same prompt; else its group's shared prefix, in whole blocks, when an earlier
    request had that group; else none. With `shared.warm` every group and prompt was sent
    before the run.

    `caches` > 1: that many engines behind one front end (`--data-parallel-size`), each with
    its own cache, which learns a prefix when a request with it lands there. The routing is
    not known here, so a prefix counts as cached from its `caches`+1-th request on: one miss
    per engine, taken as the first ones (routing by load spreads a prefix's first requests
    over the engines, the misses a little later than that)."""
    inputs = np.asarray(input_tokens, dtype=np.int64)
    last = inputs - 1  # vLLM computes at least the prompt's last token
    whole = last // block_size * block_size
    prefix = np.minimum(shared.prefix_tokens, last) // block_size * block_size
    if shared.warm:
        seen_group = np.ones(inputs.size, dtype=bool)
        seen_prompt = np.full(inputs.size, shared.prompts_per_group > 0)
    else:
        seen_group, seen_prompt = _occurrence(group) >= caches, _occurrence(prompt) >= caches
    return np.where(seen_prompt, whole, np.where(seen_group, prefix, 0)).astype(np.int64)


def prefix_footprint_tokens(
    shared: SharedPrefix, group: IntArray, prompt: IntArray, input_tokens: IntArray
) -> int:
    """KV tokens the prefix cache must keep for every hit `prefix_cache_hits` counts: each
    group's prefix once, and the rest of each prompt sent more than once (before the run, for
    a warm cache, counts as once)."""
    prefixes = int(np.unique(group).size) * shared.prefix_tokens
    if shared.prompts_per_group == 0:
        return prefixes
    _, first, counts = np.unique(prompt, return_index=True, return_counts=True)
    again = first[counts > (0 if shared.warm else 1)]
    rest = np.asarray(input_tokens, dtype=np.int64)[again] - shared.prefix_tokens
    return prefixes + int(np.maximum(rest, 0).sum())

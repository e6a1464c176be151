"""The names people give models and GPUs, mapped to the catalog's.

`checkpoint_model` reads a checkpoint id as published or typed ("RedHatAI/Llama-3.3-70B-Instruct-
FP8-dynamic", "Qwen/Qwen2.5-7B-Instruct-GPTQ-Int4"): the catalog model and the weight dtype its
name states. `gpu_by_name` reads a GPU as benchmarks name it ("H100-SXM-80GB", "NVIDIA L40S",
"A100-SXM4-40GB"). `sim bench` takes both; the published-runs replay reads its table with them.
"""

from __future__ import annotations

import functools
import re

from sim.data.tables import canonical_model_name, gpus, models

QUANT_SUFFIXES = (
    (r"[-_.]fp8([-_](dynamic|static|kv))*$", "fp8"),  # -FP8, -FP8-dynamic (Red Hat), -FP8-KV
    (r"[-_.]gptq[-_]int8$", "int8"),
    (r"[-_.](awq|gptq)([-_]int4)?$", "int4"),  # -AWQ, -AWQ-INT4, -GPTQ-Int4
    (r"[-_.]quantized[-_.]w4a16$", "int4"),  # Neural Magic / Red Hat
    (r"[-_.]quantized[-_.]w8a8$", "int8"),
    (r"[-_.](w4a16|int4|4bit)$", "int4"),
)
"""Checkpoint-name suffixes of quantised weights and the weight dtype each stores (FP8; int4:
AWQ/GPTQ/W4A16, 4-bit weights with fp16 activations; int8: W8A8 or GPTQ 8-bit), matched on the
lower-cased name, the first that fits."""

GPU_NAMES = {
    "h100": "h100-80gb",
    "h200": "h200",
    "b200": "b200",
    "a100": "a100-80gb",
    "l40s": "l40s",
    "l4": "l4",
    "a10g": "a10g",
    "a40": "a40",
    "mi300x": "mi300x",
    "mi325x": "mi325x",
    "rtx 4090": "rtx-4090",
    "4090": "rtx-4090",
    "rtx pro 6000": "rtx-pro-6000",
    "rtxpro6000": "rtx-pro-6000",
}
"""A GPU's name as benchmarks write it, once vendor words and form factor are dropped
(`gpu_by_name`), to its row of `sim/data/gpus.toml`. What is not here ("h100 pcie", "h100 nvl",
"l40", "t4") is a part the catalog does not have."""
GPU_NOISE = re.compile(r"^(nvidia|amd|instinct|geforce|tesla|gpu|hbm\d?e?|sxm\d?)$")
"""Words of a GPU's name that do not tell the part: vendor, brand, memory type, SXM socket."""
GPU_MEMORY = re.compile(r"^(\d+) ?gb?$")
"""A memory size in a GPU's name ("80GB"): it tells an A100-40GB from an A100-80GB, and an
H100 NVL (94 GB) from the SXM part."""


def checkpoint_model(name: str) -> tuple[str | None, str | None]:
    """(catalog model or None, the weight dtype the name states or None) of a checkpoint id:
    its Hugging Face id or alias when the model table knows it (`canonical_model_name`), else
    that of the id less its precision suffix (`QUANT_SUFFIXES`: "…-Instruct-2407-FP8" is
    "…-Instruct-2407"), else the bare name less that suffix and its instruct/chat/version
    tags, looked up again."""
    checkpoint = name.split()[0] if name.split() else ""  # less any note after the id
    base = checkpoint.split("/")[-1].lower()
    dtype = None
    for pattern, d in QUANT_SUFFIXES:
        if re.search(pattern, base):
            base, dtype = re.sub(pattern, "", base), d
            break
    org = checkpoint.rsplit("/", 1)[0] + "/" if "/" in checkpoint else ""
    for whole in (checkpoint, org + base):  # as written, then its unquantised checkpoint's id
        known = canonical_model_name(whole)
        if known is not None:
            return known, dtype
    # republished under another organisation with the original repository's name
    # (RedHatAI/Llama-4-Scout-17B-16E-Instruct-FP8-dynamic: meta-llama's repository, FP8)
    known = _repository_names().get(base)
    if known is not None:
        return known, dtype
    base = re.sub(r"(-(instruct|chat|hf|it))+(-\d+)?$", "", base)  # CodeLlama-34b-Instruct-hf
    base = re.sub(r"-v\d+(\.\d+)*$", "", base)  # Mixtral-8x7B-v0.1
    base = base.replace("meta-llama-", "llama-")
    if base.startswith("meta-"):
        base = base[5:]
    return canonical_model_name(base), dtype


@functools.cache
def _repository_names() -> dict[str, str]:
    """Every catalog model's Hugging Face repository name (its id less the organisation,
    lower-cased) to the model, for the names one model alone has."""
    owners: dict[str, set[str]] = {}
    for name, m in models().items():
        for hf_id in (m.hf_id, *m.aliases):
            owners.setdefault(hf_id.split("/")[-1].lower(), set()).add(name)
    return {repo: next(iter(names)) for repo, names in owners.items() if len(names) == 1}


def gpu_by_name(name: str) -> str | None:
    """The catalog GPU a GPU name is (a catalog name itself, else `GPU_NAMES` on the name's
    words less vendor, brand, memory type and socket), None when the catalog does not have
    that part: "H100-SXM-80GB" and "NVIDIA H100 80GB HBM3" are h100-80gb, "A100-SXM4-40GB"
    a100-40gb, "H100 PCIe" and "my-l40s-like" nothing. A parenthesised note after the name
    ("H100 (form factor not stated)") is not read."""
    if name in gpus():
        return name
    words = re.sub(r"[^a-z0-9]+", " ", name.split("(")[0].lower()).split()  # less any "(note)"
    memory = [int(m.group(1)) for w in words if (m := GPU_MEMORY.match(w))]
    part = " ".join(w for w in words if not GPU_NOISE.match(w) and not GPU_MEMORY.match(w))
    gpu = GPU_NAMES.get(part)
    if gpu == "a100-80gb" and 40 in memory:
        return "a100-40gb"
    if gpu == "h100-80gb" and memory and memory != [80]:
        return None  # the 94 GB NVL or another H100 the catalog does not have
    return gpu

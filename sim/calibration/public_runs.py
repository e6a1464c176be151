"""Replay the published vLLM runs (`sim/data/validation/public_runs.csv`, a copy of
`shared/data/vllm-public-runs/runs.csv`: SOURCE.md beside it) through `sim bench`
(`sim.calibration.bench.run_bench`, the same code as the CLI) and compare; `sim validate`
gates and reports them (`sim.calibration.validate`).

A row is replayed when its model (by Hugging Face id or alias, `canonical_model_name`) and GPU
are in the catalogs, it runs without pipeline parallelism (and data-parallel engines only for a
dense model, open loop: `sim bench --data-parallel-size`), its lengths are
known and its workload is a burst, a constant or Poisson rate, or closed-loop concurrency.
Lengths, each an approximation named in the case's note where it is one:

* `random` dataset: the fixed lengths, except that without `--ignore-eos` outputs stop at EOS
  (`vllm bench serve` sends `ignore_eos` only with the flag), so the realised mean output
  `total_output_tokens / completed` is replayed when it is below the cap;
* a ShareGPT dataset: the shipped ShareGPT lengths (Llama-3 tokens, `sim.data.sharegpt_lengths`)
  of the run's sampler, scaled to the realised means `total_*_tokens / completed`: vLLM's
  (its length filters), or for GPUStack's guidellm wrapper the first N first turns in file
  order, unfiltered (N the run's requests: the very prompts it sent);
* otherwise the realised means `total_*_tokens / completed`;
* else the measured means a row's notes quote (inference-perf); with `ignore_eos` the engine
  generates the cap while the client counts its re-tokenised text, so the simulated output
  throughput is counted at the client's rate (`PublicCase.counted`).

A published TPOT finer than the row's own E2E, TTFT and output length allow is not compared
(`TPOT_CONSISTENCY`); a KV size quoted from the server log replaces the estimate. MLPerf
rows (input lengths not published), speculative-decoding/MTP rows, pipeline-parallel rows and
data-parallel MoE or closed-loop rows are listed with their reason. Load (for the <= 85 %
gate): closed loop, concurrency over the engines' concurrency capacity; open loop, Little's
law on the measured mean E2E (rate × E2E) over the same capacity; a burst (every request at
t = 0, guidellm's capped at 512 in flight included) is saturation (load 1+).
"""

from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field, replace
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from sim.calibration.bench import BenchSpec, engine_setup, run_bench
from sim.calibration.bench_setup import data_parallel_refusal, does_not_fit
from sim.data import models, packaged, sharegpt_lengths
from sim.data.names import checkpoint_model, gpu_by_name
from sim.workload.prefix import SharedPrefix

METRIC_COLUMNS = {
    "ttft_mean": ("ttft_mean_ms", "mean_ttft_ms"),
    "ttft_p50": ("ttft_p50_ms", "median_ttft_ms"),
    "ttft_p90": ("ttft_p90_ms", "p90_ttft_ms"),
    "ttft_p95": ("ttft_p95_ms", "p95_ttft_ms"),
    "ttft_p99": ("ttft_p99_ms", "p99_ttft_ms"),
    "tpot_mean": ("tpot_mean_ms", "mean_tpot_ms"),
    "tpot_p50": ("tpot_p50_ms", "median_tpot_ms"),
    "tpot_p90": ("tpot_p90_ms", "p90_tpot_ms"),
    "tpot_p95": ("tpot_p95_ms", "p95_tpot_ms"),
    "tpot_p99": ("tpot_p99_ms", "p99_tpot_ms"),
    "e2e_mean": ("e2e_mean_ms", "mean_e2el_ms"),
    "e2e_p50": ("e2e_p50_ms", "median_e2el_ms"),
    "e2e_p90": ("e2e_p90_ms", "p90_e2el_ms"),
    "e2e_p95": ("e2e_p95_ms", "p95_e2el_ms"),
    "e2e_p99": ("e2e_p99_ms", "p99_e2el_ms"),
    "throughput": ("output_throughput_tok_per_s", "output_throughput"),
}
"""Our metric name -> (runs.csv column, `sim bench`'s result key)."""
FAMILIES = ("ttft", "tpot", "e2e", "throughput")
"""The metric families medians are taken over (`family_medians`)."""
PERCENTILES = (50.0, 90.0, 95.0, 99.0)
"""The percentiles runs.csv publishes (p50 as the median; p90 and p95 on 36 and 81 rows)."""
PUBLIC_RUNS_FILE = ("validation", "public_runs.csv")
"""The packaged copy of the published runs (under `sim/data/`)."""
REPLAY_SCHEMA = {
    "row": pl.String,
    "version": pl.String,
    "load": pl.Float64,
    "metric": pl.String,
    "measured": pl.Float64,
    "simulated": pl.Float64,
    "error": pl.Float64,
    "note": pl.String,
}
"""`replay_all`'s columns: run id, vLLM version ("0.11"), load, metric ("" for a run not
replayed), measured and simulated value (ms, or tok/s for throughput), error = simulated /
measured − 1, note (approximations made, or why the run was not replayed)."""
MAX_PROMPTS = 1000  # replay at most this many requests of a row (speed); noted when cut


def _num(v: Any) -> float | None:
    try:
        x = float(str(v).split()[0])
    except (ValueError, IndexError):
        return None
    return x if math.isfinite(x) or x == math.inf else None


def _model(name: str) -> tuple[str | None, str]:
    """(catalog model, weight dtype) of a checkpoint name (`checkpoint_model`; unquantised
    weights are "fp16")."""
    model, dtype = checkpoint_model(name)
    return model, dtype or "fp16"


def _reported_kv_blocks(text: str) -> int | None:
    """vLLM's KV-cache size when the row quotes its server log ("KV cache 5.01 GiB = 93,872
    tokens"), in blocks of 16 (vLLM's default block size); None when not quoted. A measured
    size overrides the estimate (DESIGN §4: vLLM's reported `num_gpu_blocks` is more exact)."""
    m = re.search(r"KV cache [0-9.]+ GiB = ([0-9,]+) tokens", text)
    return int(m.group(1).replace(",", "")) // 16 if m else None


def _measured_means(notes: str) -> tuple[int, int] | None:
    """(input, output) mean lengths a row's notes report as measured ("measured prompt_len mean
    591.63 ... output_len mean 193.72": inference-perf rows), or None."""
    pin = re.search(r"measured prompt_len mean ([0-9.]+)", notes)
    pout = re.search(r"output_len mean ([0-9.]+)", notes)
    if pin is None or pout is None:
        return None
    return max(1, round(float(pin.group(1)))), max(1, round(float(pout.group(1))))


TPOT_CONSISTENCY = 1.5
"""How far a row's mean E2E − TTFT may exceed its mean TPOT × (mean output − 1) before its TPOT
is judged to time something finer than tokens. `vllm bench serve` times tokens: the ratio is
1.00 in replays of open and closed loops with heavy-tailed lengths, and below 1 in bursts (the
short requests decode in the crowded start: 0.57 for a ShareGPT-like burst of 1000 on H100), so
only the upper side is checked. inference-perf's rows of early 2026 have E2E − TTFT ≈
(2 × output − 1) × TPOT on all 24 rows (ratio 2.0; ITL p50 ≈ 0.03 ms: two stream timestamps per
token): their TPOT is half the time per token and is not compared."""


def _tpot_consistent(measured: dict[str, float], output_len: int) -> bool:
    """Whether the published mean TPOT is not finer than the published mean E2E, TTFT and output
    length allow (True when a mean is missing: nothing to check)."""
    e2e, ttft, tpot = (measured.get(k) for k in ("e2e_mean", "ttft_mean", "tpot_mean"))
    if e2e is None or ttft is None or tpot is None or output_len < 2:
        return True
    return (e2e - ttft) / (tpot * (output_len - 1)) <= TPOT_CONSISTENCY


EOS_MEAN_NOTE = "output length: the realised mean (stopped at EOS before the cap)"
"""The note of a `random` run whose outputs stopped at EOS: its realised mean output replays."""


@dataclass(frozen=True)
class PublicCase:
    row: str
    spec: BenchSpec | None
    reason: str = ""  # why not replayed, or "" when replayed
    approx: str = ""  # approximations made (lengths)
    load: float = math.nan
    measured: dict[str, float] = field(default_factory=dict)
    version: str = ""
    counted: float = 1.0  # output tokens the client counts per generated token (throughput)


def _async_flag(server_flags: str) -> bool | None:
    """`--async-scheduling` (True), `--no-async-scheduling` (False) or neither (None: the
    version's default) in a row's `vllm serve` command line."""
    if re.search(r"--no-async[-_]scheduling\b", server_flags):
        return False
    if re.search(r"--async[-_]scheduling\b", server_flags):
        return True
    return None


SHARED_PREFIX = re.compile(
    r"(\d+) groups x (\d+) prompts/group, system prompt (\d+) tok \+ question (\d+) tok"
)
"""inference-perf's shared_prefix generator as the BLIS rows' notes state it."""


def _shared_prefix(r: dict[str, Any], lin: int) -> SharedPrefix:
    """The row's inference-perf shared-prefix prompts, or no shared prefix (`SharedPrefix()`)
    for any other dataset. The prompt's tokens as served (`lin`, the measured mean) exceed
    the generator's nominal system + question tokens (random token ids decoded to text and
    tokenised again); the system prompt is taken to grow in the same proportion. A row of a
    later stage (its notes: "stage 1 of 2") ran after the same prompts had been served."""
    m = SHARED_PREFIX.search(r["notes"])
    if "shared_prefix" not in r["dataset"] or m is None:
        return SharedPrefix()
    groups, per_group, system, question = (int(x) for x in m.groups())
    stage = re.search(r"stage (\d+) of", r["notes"])
    return SharedPrefix(
        prefix_tokens=min(lin - 1, round(system * lin / (system + question))),
        groups=groups,
        prompts_per_group=per_group,
        warm=stage is not None and int(stage.group(1)) > 0,
    )


def _prefix_caching_flag(text: str) -> bool | None:
    """The row's prefix caching: on or off as stated, None for the engine's default."""
    t = text.lower()
    if t.startswith(("off", "false", "no")) or "--no-enable-prefix-caching" in t:
        return False
    if t.startswith(("on", "yes", "true")):
        return True
    return None


def case_of(
    r: dict[str, Any],
    versioned: bool = True,
    timing: str = "client",
    calibration: str | None = None,
) -> PublicCase:
    """The `BenchSpec` replaying one row, or the reason it cannot be replayed. `calibration`:
    a user's calibration file (its entries over the packaged catalog, as `sim bench`)."""
    rid = r["row_id"]
    measured = {k: v for k, (col, _) in METRIC_COLUMNS.items() if (v := _num(r[col]) or 0.0) > 0}
    ver = r["engine_version"]
    # "0.11.0", or a main-branch build named by the release it follows ("main at 2025-08-19
    # (after v0.10.1 ...)": that release's engine)
    m = re.match(r"\d+\.\d+", ver) or re.search(r"after v?(\d+\.\d+)", ver)
    version = (m.group(1) if m.groups() else m.group(0)) if m else ""

    def skip(reason: str) -> PublicCase:
        return PublicCase(rid, None, reason, measured=measured, version=version)

    model, wdtype = _model(r["model"])
    gpu = gpu_by_name(r["gpu_type"])
    kind = r["workload_type"]
    if model is None:
        return skip(f"model {r['model']} not in the catalog")
    if gpu is None:
        return skip(f"GPU {r['gpu_type']} not in the catalog")
    if "amd" in r["engine"].lower() or "rocm" in ver.lower():
        return skip("AMD vLLM fork with a custom MLPerf scheduler")
    if kind.startswith("mlperf"):
        return skip("MLPerf: the OpenOrca/Mixtral input lengths are not published")
    flags = (r["server_flags"] + r["notes"] + r["sweep_id"]).lower()
    if "speculative" in flags or "mtp" in flags or "-optimized" in flags:
        return skip("speculative decoding / MTP: no acceptance-rate model")
    if (_num(r["pipeline_parallel"]) or 1) > 1:
        return skip("pipeline parallel: not modelled")
    dp = int(_num(r["replicas"]) or 1)  # data-parallel engines behind one front end
    if (refusal := data_parallel_refusal(model, dp, closed_loop=False)) is not None:
        return skip(refusal)  # before the lengths: the model alone rules it out
    n = int(_num(r["num_requests"]) or _num(r["completed_requests"]) or 0)
    done = _num(r["completed_requests"]) or n
    approx = ""
    lens: tuple[tuple[int, ...], tuple[int, ...]] | tuple[None, None] = (None, None)
    counted = 1.0  # output tokens the client counts per token the engine generates
    ignore_eos = "ignore-eos" in r["client_command"] or "ignore_eos true" in r["notes"]
    realised_out = (_num(r["total_output_tokens"]) or 0) / done if done else 0.0
    nominal_out = int(_num(r["output_len_tokens"]) or 0)
    if r["dataset"].lower().startswith("random") and _num(r["input_len_tokens"]):
        lin = int(_num(r["input_len_tokens"]) or 1)
        lout = nominal_out or 1
        if not ignore_eos and 0 < realised_out < lout:
            # without --ignore-eos `vllm bench serve` does not send ignore_eos
            # (vllm/benchmarks/lib/endpoint_request_func.py), so outputs stop at EOS
            lout = max(1, round(realised_out))
            approx = EOS_MEAN_NOTE
    elif _num(r["total_input_tokens"]) and realised_out:
        lin = max(1, round((_num(r["total_input_tokens"]) or 0) / done))
        lout = max(1, round(realised_out))
        approx = "lengths: the realised means (dataset lengths not shipped)"
        if "sharegpt" in r["dataset"].lower():
            first_n = int(done) if "benchmark-runner" in r["client_tool"] else None
            lens = sharegpt_scaled(lin, lout, first_n)
            approx = (
                f"lengths: ShareGPT's (the shipped table of vLLM's sampler) scaled to the"
                f" realised means {lin}/{lout}"
                if first_n is None
                else f"lengths: the first {first_n} of ShareGPT's first turns in file order, as"
                f" GPUStack's guidellm wrapper sends them (the shipped table), scaled to the"
                f" realised means {lin}/{lout}"
            )
    elif (measured_lens := _measured_means(r["notes"])) is not None:
        lin, lout = measured_lens
        approx = "lengths: the measured means in the notes (per-request lengths not shipped)"
        if ignore_eos and nominal_out > 0:
            # the engine generates the cap; the client's count re-tokenises the text
            counted, lout = lout / nominal_out, nominal_out
            approx += (
                f"; the engine generates the cap {nominal_out}, the client counts"
                f" {counted:.2f} per token"
            )
    elif "sharegpt" in r["dataset"].lower():
        ins, outs = sharegpt_lengths()
        lens = (tuple(ins), tuple(outs))
        lin, lout = round(float(np.mean(ins))), round(float(np.mean(outs)))
        approx = (
            "lengths: the shipped ShareGPT table as vLLM's sampler draws it (the run's token"
            " totals are not published)"
        )
    elif _num(r["input_len_tokens"]) and nominal_out:
        lin, lout = int(_num(r["input_len_tokens"]) or 1), nominal_out
        approx = f"lengths: the nominal {lin}/{lout} of dataset {r['dataset'].split(' (')[0]!r}"
    else:
        return skip("lengths unknown (no nominal lengths, no token totals)")
    prefix = _shared_prefix(r, lin)
    if prefix.prompts_per_group:
        approx += (
            f"; inference-perf's shared prefix: {prefix.groups} x {prefix.prompts_per_group}"
            f" prompts sent in turn, {prefix.prefix_tokens} shared tokens each"
            + (", cached from the stage before" if prefix.warm else "")
        )
    if not _tpot_consistent(measured, lout):
        measured = {k: v for k, v in measured.items() if not k.startswith("tpot")}
        approx += (
            "; TPOT not compared: the published mean TPOT is not (E2E - TTFT) / (output - 1)"
            " of the published means (the client times stream chunks, not tokens)"
        )
    rate, burst, conc = math.inf, 1.0, None
    if kind == "closed_loop_concurrency":
        conc = int(_num(r["concurrency"]) or 1)
    elif kind == "online_constant_rate":
        rate, burst = _num(r["request_rate_qps"]) or math.inf, math.inf
    elif kind == "online_poisson":
        # `vllm bench serve --burstiness`: Gamma inter-arrivals of that shape (1 = Poisson)
        rate = _num(r["request_rate_qps"]) or math.inf
        burst = _num(r.get("burstiness", "")) or 1.0
    elif kind != "offline_burst":
        return skip(f"workload {kind}")
    duration = _num(r["benchmark_duration_s"]) or 0.0
    if conc is None and math.isfinite(rate) and duration > 0 and done > 1:
        # Sending done requests at `rate` takes (done - 1) / rate s (Gamma inter-arrivals of
        # shape `burst`: give or take 5 SDs, sqrt((done - 1) / burst) / rate; a constant rate:
        # 1 %). A run that ended sooner did not send at the stated rate: GPUStack's
        # long-context and generation-heavy profiles ("rate 1", 100-200 requests in 49-74 s)
        # report as many requests in flight at their peak as they sent, a burst
        span = (done - 1) / rate
        slack = 0.01 * span if math.isinf(burst) else 5 * math.sqrt((done - 1) / burst) / rate
        if duration < span - slack:
            approx += (
                f"; sent at once: {done:.0f} requests in {duration:g} s cannot have been sent at"
                f" the stated {rate:g} req/s ({span:g} s)"
            )
            rate, burst = math.inf, 1.0
    if "guidellm" in r["client_tool"] and math.isinf(rate) is False and rate >= 1000:
        rate, conc = math.inf, 512  # guidellm rate 1000: a burst capped at 512 in flight
    if "guidellm" in r["client_tool"] and kind == "offline_burst":
        conc = 512
    if (refusal := data_parallel_refusal(model, dp, conc is not None)) is not None:
        return skip(refusal)
    tp = int(_num(r["tensor_parallel"]) or 1)
    kv = "fp8" if "fp8" in r["kv_cache_dtype"].lower() else None
    if "mxfp4" in r["precision"].lower() or "awq" in r["quantization"].lower():
        wdtype = "int4"
    elif "fp8" in r["precision"].lower() and wdtype == "fp16":
        wdtype = "fp8"
    seqs = _num(r["max_num_seqs"])
    budget = _num(r["max_num_batched_tokens"])
    mml = _num(r["max_model_len"])
    steps = int(_num(r["num_scheduler_steps"]) or 1)
    kv_blocks = _reported_kv_blocks(r["server_flags"] + " " + r["notes"])
    chunked = "on" in r["chunked_prefill"].lower() or "true" in r["chunked_prefill"].lower()
    spec = BenchSpec(
        async_scheduling=_async_flag(r["server_flags"]),
        model=model,
        gpu=gpu,
        tp=tp,
        dtype=wdtype,
        kv_cache_dtype=kv,
        input_len=lin - prefix.prefix_tokens,  # the prompt after its shared prefix
        output_len=lout,
        request_rate=rate,
        burstiness=burst,
        # a fixed prompt set is replayed whole, its first round (prompts not yet cached) the
        # share of the run it was; not a run whose clients gave up (its statistics are those
        # of the requests that completed)
        num_prompts=n if prefix.prompts_per_group and done >= n else min(n, MAX_PROMPTS),
        max_num_seqs=int(seqs) if seqs else None,
        max_num_batched_tokens=int(budget) if budget else None,
        max_model_len=int(mml) if mml else None,
        kv_blocks=kv_blocks,
        input_lens=lens[0],
        output_lens=lens[1],
        gpu_memory_utilization=_num(r["gpu_memory_utilization"]) or 0.9,
        max_concurrency=conc,
        vllm_version=version if versioned and version else None,
        chunked_prefill=chunked or None,
        num_scheduler_steps=steps if versioned else 1,
        timing=timing if versioned else "engine",
        data_parallel_size=dp,
        calibration=calibration,
        enable_prefix_caching=_prefix_caching_flag(r["prefix_caching"]),
        prefix_len=prefix.prefix_tokens,
        num_prefixes=prefix.groups,
        prompts_per_prefix=prefix.prompts_per_group,
        prefix_cache_warm=prefix.warm,
    )
    try:
        setup, _ = engine_setup(spec)
        if not mml and does_not_fit(setup) is not None:
            # vLLM served this row, so its KV cache held one request of max_model_len: where
            # the estimate (sim.engine.kv) falls short of the model's context, replay at the
            # longest context the estimate holds, when every request of the row fits in it
            kv_tokens = setup.longest_context()
            longest = max(lens[0] or (lin,)) + max(lens[1] or (lout,))
            if kv_tokens >= longest:
                spec = replace(spec, max_model_len=kv_tokens)
                setup, _ = engine_setup(spec)
                approx = "; ".join(
                    x
                    for x in (
                        approx,
                        f"max_model_len {kv_tokens:,}: the KV estimate's (sim.engine.kv), short"
                        f" of the model's {models()[model].max_position:,} that vLLM served",
                    )
                    if x
                )
        setup.limits()  # the row's limits must make a valid engine
    except Exception as exc:  # a located config problem of the row: listed, not fatal
        return skip(f"engine does not fit: {exc}")
    cap = setup.concurrency_capacity(lin + lout) * dp
    if kind == "offline_burst" or (conc is None and math.isinf(rate)):
        # every request queued at t = 0: saturation, whatever the client's cap in flight
        # (guidellm's 512), as a `vllm bench serve` burst
        load = max(1.0, n / cap)
    elif conc is not None:
        load = min(conc, n) / cap
    else:
        load = rate * (measured.get("e2e_mean", math.inf) / 1e3) / cap
    approx = approx.removeprefix("; ")
    return PublicCase(rid, spec, "", approx, load, measured, version, counted)


def sharegpt_scaled(
    mean_in: float, mean_out: float, first_n: int | None = None
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Shipped ShareGPT lengths (`sim.data.sharegpt_lengths`) with each column scaled to the
    given mean (rounded, at least 1): ShareGPT's shape at a row's realised means (another
    tokenizer, a chat template, outputs that stop at EOS move the means a few percent).

    `first_n` None: vLLM's sampler, the whole table (a `vllm bench serve` run draws from it).
    Otherwise the first `first_n` first turns in file order, GPUStack's benchmark-runner's
    (guidellm) prompts for a run of that many requests: unfiltered, so a longer tail of prompts
    (p99 ~2,900 tokens against vLLM's 1,024 cap) and outputs closer to their mean (median
    238 of mean 270, against 130 of 199). NOTE: their 1,000 sum to 270,010 output tokens in
    Llama-3's tokenizer; GPUStack's runs report 281,412 in Qwen's (+4.2 %), the same prompts
    counted by another tokenizer."""
    ins, outs = sharegpt_lengths("vllm" if first_n is None else "first-turns")
    if first_n is not None:
        ins, outs = ins[:first_n], outs[:first_n]
    a, b = np.asarray(ins, dtype=np.float64), np.asarray(outs, dtype=np.float64)
    a = np.maximum(1, np.rint(a * (mean_in / a.mean()))).astype(np.int64)
    b = np.maximum(1, np.rint(b * (mean_out / b.mean()))).astype(np.int64)
    return tuple(int(x) for x in a), tuple(int(x) for x in b)


def read_runs(path: str | Path | None = None) -> pl.DataFrame:
    """The published runs as strings ('' = not published): the packaged copy (read once), or
    `path`."""
    if path is None:
        return _packaged_runs()
    return pl.read_csv(path, infer_schema_length=0).fill_null("")


@functools.cache
def _packaged_runs() -> pl.DataFrame:
    with resources.as_file(packaged(*PUBLIC_RUNS_FILE)) as p:
        return pl.read_csv(p, infer_schema_length=0).fill_null("")


def replay_all(
    path: str | Path | None = None,
    versioned: bool = True,
    timing: str = "client",
    rows: set[str] | None = None,
    calibration: str | None = None,
) -> pl.DataFrame:
    """One row per (case, metric): measured, simulated, error = sim/measured − 1; a case not
    replayed has one row with an empty metric and its reason in `note`. `path`: a runs.csv
    (default: the packaged copy); `calibration`: a user's calibration file (`case_of`)."""
    df = read_runs(path)
    out = []
    for r in df.iter_rows(named=True):
        if rows is not None and r["row_id"] not in rows:
            continue
        c = case_of(r, versioned, timing, calibration)
        if c.spec is None:
            out.append((c.row, c.version, math.nan, "", math.nan, math.nan, math.nan, c.reason))
            continue
        try:
            res = run_bench(c.spec).metrics(("ttft", "tpot", "itl", "e2el"), PERCENTILES)
        except Exception as exc:
            out.append((c.row, c.version, c.load, "", math.nan, math.nan, math.nan, str(exc)))
            continue
        for k, (_, key) in METRIC_COLUMNS.items():
            if k in c.measured:
                m = c.measured[k]
                s = float(res[key]) * (c.counted if k == "throughput" else 1.0)
                out.append((c.row, c.version, c.load, k, m, s, s / m - 1.0, c.approx))
    return pl.DataFrame(out, schema=REPLAY_SCHEMA, orient="row")


def family_medians(rows: pl.DataFrame, max_load: float = 0.85) -> dict[str, float]:
    """Median |error| per metric family (ttft, tpot, e2e, throughput) at load <= max_load."""
    ok = rows.filter((pl.col("load") <= max_load) & pl.col("error").is_not_nan())
    out = {}
    for fam in FAMILIES:
        v = ok.filter(pl.col("metric").str.starts_with(fam))["error"].abs().to_numpy()
        out[fam] = float(np.median(v)) if v.size else math.nan
    return out

"""The fitters recover known coefficients from synthetic data (issue #3)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sim.calibration.fit import causal_pairs, fit_step_time, holdout_mask
from sim.calibration.measured import EngineSetup, MeasuredRun, replay, step_time_model
from sim.calibration.profiles import StepSamples, fit_profile, render_entries
from sim.calibration.runs import (
    RunCase,
    fit_runs,
    fit_warnings,
    read_measured_run,
    scaled_entry,
)
from sim.cli import main
from sim.engine.catalog import StepTimeEntry, parse_step_time_catalog
from sim.engine.steptime import StepTimeModel

TRUE = dict(
    flat_s=0.008,
    knee_tokens=96.0,
    per_token_s=25e-6,
    decode_attn_s_per_token=5e-8,
    prefill_attn_s_per_pair=2e-9,
)


def _base() -> StepTimeEntry:
    return StepTimeEntry(
        model="m",
        gpu="g",
        tp=1,
        dtype="fp16",
        step=StepTimeModel(overhead_s=0.002, **TRUE),
        heldout_mape=0.0,
        residual_sd_log=0.0,
        source="synthetic",
    )


def test_fit_step_time_recovers_known_coefficients() -> None:
    rng = np.random.default_rng(7)
    n = 600
    tokens = rng.integers(1, 4096, n).astype(float)
    ctx = np.where(rng.random(n) < 0.5, tokens * rng.integers(64, 2048, n), 0.0)
    pairs = np.where(ctx == 0, causal_pairs(tokens, rng.integers(0, 2048, n)), 0.0)
    t = TRUE
    y = (
        t["flat_s"]
        + t["per_token_s"] * np.maximum(0.0, tokens - t["knee_tokens"])
        + t["decode_attn_s_per_token"] * ctx
        + t["prefill_attn_s_per_pair"] * pairs
    )
    y = y * np.exp(rng.normal(0.0, 0.002, n))  # 0.2 % measurement noise
    fit = fit_step_time(tokens, ctx, pairs, y, holdout_mask(tokens))
    for name, value in TRUE.items():
        assert getattr(fit, name) == pytest.approx(value, rel=0.03), name
    assert fit.heldout_mape < 0.005


def test_fit_profile_takes_unidentified_terms_from_base_and_renders_valid_toml() -> None:
    tokens = np.arange(1.0, 2049.0)
    y = TRUE["flat_s"] + TRUE["per_token_s"] * np.maximum(0.0, tokens - TRUE["knee_tokens"])
    zero = np.zeros_like(tokens)
    samples = StepSamples("m2", "g", 1, tokens, zero, zero, y, tokens, False, "synthetic")
    result = fit_profile(samples, _base())
    e = result.entry
    assert e.step.per_token_s == pytest.approx(TRUE["per_token_s"], rel=1e-3)
    assert e.step.decode_attn_s_per_token == _base().step.decode_attn_s_per_token
    assert e.step.overhead_s == _base().step.overhead_s
    import tomllib

    parsed = parse_step_time_catalog(tomllib.loads(render_entries([e], "test")), "x.toml")
    back = parsed[("m2", "g", 1, "fp16")]
    assert back.source == e.source
    # 6 significant digits
    assert back.step.per_token_s == pytest.approx(e.step.per_token_s, rel=1e-5)
    with pytest.raises(ValueError, match="base entry"):
        fit_profile(samples, None)


def test_an_moe_entry_keeps_its_expert_read_through_scaling_and_the_file() -> None:
    """An MoE entry's expert terms (the roofline's, then scaled by a calibration) are written
    and read back; the linear factor scales the expert read with the rest of the linear part; a
    dense entry's file has no expert keys."""
    import tomllib

    step = dataclasses.replace(_base().step, expert_read_s=0.02, expert_share=0.0625)
    moe = dataclasses.replace(_base(), model="m3", step=step)
    scaled = scaled_entry(moe, (1.0, 1.5, 1.0))
    assert scaled.step.expert_read_s == pytest.approx(0.03) and scaled.step.expert_share == 0.0625
    back = parse_step_time_catalog(tomllib.loads(render_entries([scaled], "t")), "x.toml")
    step = back[("m3", "g", 1, "fp16")].step
    assert (step.expert_read_s, step.expert_share) == (pytest.approx(0.03), 0.0625)
    assert step.linear_s(4) == pytest.approx(scaled.step.linear_s(4), rel=1e-5)
    assert "expert_read_s" not in render_entries([_base()], "t")


def _synthetic_run(entry: StepTimeEntry, engine: EngineSetup) -> MeasuredRun:
    rng = np.random.default_rng(3)
    n = 240
    arrival = np.cumsum(rng.exponential(1 / 6.0, n))
    inp = rng.integers(50, 1500, n)
    out = rng.integers(20, 400, n)
    base = MeasuredRun("syn", "syn", arrival - arrival[0], inp, out)
    sim = replay(base, engine.limits(), step_time_model(entry))
    return MeasuredRun("syn", "syn", base.arrival_s, inp, out, sim.ttft_s, sim.e2e_s)


def test_fit_runs_recovers_a_known_scale_factor() -> None:
    engine = EngineSetup("m", "g", 1, "fp16", 64, 2048, 4096, kv_blocks=4000)
    run = _synthetic_run(scaled_entry(_base(), (1.0, 1.3, 1.0)), engine)
    result = fit_runs(_base(), [RunCase(run, engine)], fit=("linear",))
    assert result.before["error"].abs().max() > 0.05
    assert result.factors[1] == pytest.approx(1.3, rel=0.02)
    assert result.factors[0] == result.factors[2] == 1.0


def test_fit_runs_recovers_known_step_times() -> None:
    """Three factors: overhead and the flat part are both constant per step, so only their sum
    is well identified; what must come back is the step time of the batches the run had."""
    engine = EngineSetup("m", "g", 1, "fp16", 64, 2048, 4096, kv_blocks=4000)
    truth = scaled_entry(_base(), (1.3, 0.8, 1.6))
    run = _synthetic_run(truth, engine)
    result = fit_runs(_base(), [RunCase(run, engine)])
    assert result.before["error"].abs().max() > 0.05
    assert result.after["error"].abs().max() < 0.02
    want, got = step_time_model(truth), step_time_model(result.entry)
    for tokens, ctx, pairs in ((1, 500, 0), (32, 32 * 800, 0), (40, 30 * 600, 10 * 1200 * 7)):
        assert got.step_s(tokens, ctx, pairs) == pytest.approx(
            want.step_s(tokens, ctx, pairs), rel=0.05
        )


def test_read_llmservingsim_run_with_meta(tmp_path: Path) -> None:
    folder = tmp_path / "GPU" / "Model" / "vllm"
    folder.mkdir(parents=True)
    rows = [
        {"input_toks": 10, "output_toks": 5, "queued_ts": 100.0, "first_token_ts": 100.2,
         "last_token_ts": 101.0},
        {"input_toks": 20, "output_toks": 3, "queued_ts": 100.5, "first_token_ts": 100.9,
         "last_token_ts": 101.5},
    ]  # fmt: skip
    (folder / "requests.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    meta = {"engine_kwargs": {"max_num_seqs": 8, "max_num_batched_tokens": 512},
            "kv_cache": {"num_gpu_blocks": 100}}  # fmt: skip
    (folder / "meta.json").write_text(json.dumps(meta))
    run, hints = read_measured_run(folder / "requests.jsonl")
    assert run.name == "GPU/Model"
    assert run.arrival_s.tolist() == [0.0, 0.5]
    assert run.ttft_s is not None and run.ttft_s.tolist() == pytest.approx([0.2, 0.4])
    assert run.e2e_s is not None and run.e2e_s.tolist() == pytest.approx([1.0, 1.0])
    assert (hints.max_num_seqs, hints.max_num_batched_tokens, hints.kv_blocks) == (8, 512, 100)


def test_cli_calibrate_runs_writes_a_catalog_entry(tmp_path: Path) -> None:
    path = tmp_path / "run.csv"
    engine = EngineSetup("m", "g", 1, "fp16", 64, 2048, 4096, kv_blocks=4000)
    run = _synthetic_run(scaled_entry(_base(), (1.2, 1.1, 1.0)), engine)
    assert run.ttft_s is not None and run.e2e_s is not None
    lines = ["arrival_s,input_tokens,output_tokens,ttft_s,e2e_s"] + [
        f"{a},{i},{o},{t},{e}"
        for a, i, o, t, e in zip(
            run.arrival_s, run.input_tokens, run.output_tokens, run.ttft_s, run.e2e_s, strict=True
        )
    ]
    path.write_text("\n".join(lines) + "\n")
    out = tmp_path / "fitted.toml"
    args = ["calibrate", "runs", str(path), "--model", "llama-3-8b", "--gpu", "a100-80gb"]
    args += ["--max-num-seqs", "64", "--max-num-batched-tokens", "2048", "--kv-blocks", "4000"]
    result = CliRunner().invoke(main, [*args, "--max-model-len", "4096", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "before" in result.output and "after" in result.output
    import tomllib

    parsed = parse_step_time_catalog(tomllib.loads(out.read_text()), str(out))
    assert ("llama-3-8b", "a100-80gb", 1, "fp16") in parsed


SUMMARY = {  # a `vllm bench serve --save-result` JSON without --save-detailed (vLLM's keys)
    "completed": 300,
    "total_input_tokens": 153_600,
    "total_output_tokens": 38_400,
    "request_rate": 8.0,
    "burstiness": 1.0,
    "max_concurrency": None,
    "mean_ttft_ms": 24.9,
    "median_ttft_ms": 24.0,
    "p99_ttft_ms": 41.0,
    "mean_tpot_ms": 10.2,
    "median_tpot_ms": 10.3,
    "p99_tpot_ms": 11.9,
    "mean_itl_ms": 10.2,
    "std_itl_ms": 1.0,
}


def test_a_summary_only_vllm_bench_json_is_a_run(tmp_path: Path) -> None:
    """No per-request lists: the workload is the mean lengths at the run's send rate, and the
    published statistics are kept (ms -> s; std is not one; the fit reads its FIT_METRICS)."""
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(SUMMARY))
    run, _ = read_measured_run(path)
    assert isinstance(run, MeasuredRun) and run.ttft_s is None and run.size == 300
    assert set(run.input_tokens.tolist()) == {512} and set(run.output_tokens.tolist()) == {128}
    assert run.arrival_s[-1] == pytest.approx(300 / 8.0) and np.all(np.diff(run.arrival_s) >= 0)
    assert run.published == pytest.approx(
        {
            "ttft_mean_s": 0.0249,
            "ttft_p50_s": 0.024,
            "ttft_p99_s": 0.041,
            "tpot_mean_s": 0.0102,
            "tpot_p50_s": 0.0103,
            "tpot_p99_s": 0.0119,
            "itl_mean_s": 0.0102,
        }
    )
    inf = tmp_path / "burst.json"
    inf.write_text(json.dumps(SUMMARY | {"request_rate": "inf"}))
    assert not read_measured_run(inf)[0].arrival_s.any()


@pytest.mark.parametrize(
    ("change", "where"),
    [
        ({"max_concurrency": 8}, "max_concurrency"),
        ({"completed": 2.5}, "completed"),
        ({"total_input_tokens": "many"}, "total_input_tokens"),
        ({"request_rate": -1}, "request_rate"),
        ({"request_rate": None}, "request_rate"),
    ],
)
def test_a_bad_summary_is_one_located_line(
    tmp_path: Path, change: dict[str, object], where: str
) -> None:
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(SUMMARY | change))
    result = CliRunner().invoke(
        main, ["calibrate", "runs", str(path), "--model", "llama-3-8b", "--gpu", "h100-80gb"]
    )
    assert result.exit_code == 2 and "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and where in lines[0] and "bad.json" in lines[0]


def test_cli_calibrates_a_summary_only_json_with_one_command(tmp_path: Path) -> None:
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(SUMMARY))
    out = tmp_path / "fitted.toml"
    args = ["calibrate", "runs", str(path), "--model", "llama-3-8b", "--gpu", "h100-80gb"]
    result = CliRunner().invoke(main, [*args, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "a summary without per-request data" in result.output
    assert "ttft_mean_s, ttft_p50_s, tpot_mean_s, tpot_p50_s of its" in result.output
    assert "(no E2E statistic and no p95" in result.output
    assert "ttft_mean_s" in result.output and out.exists()


def test_factor_standard_errors_follow_the_data() -> None:
    """Exact data pin a fitted factor down (standard error ~0, no warning); a factor not fitted
    has none; a run publishing fewer statistics than factors identifies none of them (inf, a
    'poorly identified' warning for each)."""
    engine = EngineSetup("m", "g", 1, "fp16", 64, 2048, 4096, kv_blocks=4000)
    run = _synthetic_run(scaled_entry(_base(), (1.0, 1.3, 1.0)), engine)
    exact = fit_runs(_base(), [RunCase(run, engine)], fit=("linear",))
    assert exact.se_log[0] is None and exact.se_log[2] is None
    assert exact.se_log[1] is not None and exact.se_log[1] < 0.01
    assert not [w for w in fit_warnings(exact, [RunCase(run, engine)]) if "identified" in w]
    one_stat = MeasuredRun(
        "one", "one", run.arrival_s, run.input_tokens, run.output_tokens,
        published={"ttft_mean_s": float(np.mean(run.ttft_s))},  # type: ignore[arg-type]
    )  # fmt: skip
    cases = [RunCase(one_stat, engine)]
    loose = fit_runs(_base(), cases)
    assert all(se is not None and math.isinf(se) for se in loose.se_log)
    assert sum("poorly identified" in w for w in fit_warnings(loose, cases)) >= 2


def test_standard_error_past_the_search_range_is_not_identified() -> None:
    """A factor's log-scale standard error wider than the fit's whole search range (e^±3) says
    nothing about it: printed as "not identified", never by exp (a Qwen3.5 rate row gave 800,
    past exp's range: it raised OverflowError)."""
    from sim.cli.calibrate import _se_text

    assert _se_text(None) == ""
    assert _se_text(math.log(1.021)) == " (±2.1%)"
    assert _se_text(800.0) == _se_text(math.inf) == _se_text(math.nan) == " (not identified)"

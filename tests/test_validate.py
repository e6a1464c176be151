"""`sim validate`: metric definitions, the packaged cases, gating, and the CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from sim.calibration.measured import latency_metrics
from sim.calibration.profiles import render_entries
from sim.calibration.public_runs import REPLAY_SCHEMA, read_runs, replay_all
from sim.calibration.validate import (
    GATE_MIN_SHARE,
    CaseResult,
    compare,
    judge_public,
    load_cases,
    load_unreproduced,
    parse_cases,
    summarise_public,
    validate_case,
)
from sim.cli import main
from sim.engine.catalog import load_step_time_catalog
from sim.engine.versions import CLIENT_PATH_S


def test_latency_metrics_follow_vllm_bench_definitions() -> None:
    ttft = [0.1, 0.2, 0.3]
    e2e = [1.1, 0.2, 2.3]
    out = [11, 1, 5]  # the 1-token request has no TPOT
    m = latency_metrics(ttft, e2e, out)
    tpot = np.array([1.0 / 10, 2.0 / 4])
    assert m["tpot_p50_s"] == pytest.approx(np.percentile(tpot, 50))
    assert m["tpot_mean_s"] == pytest.approx(tpot.mean())
    assert m["itl_mean_s"] == pytest.approx(3.0 / 14)  # pooled over tokens
    assert m["ttft_p95_s"] == pytest.approx(np.percentile(ttft, 95))
    assert m["e2e_p99_s"] == pytest.approx(np.percentile(e2e, 99))


def test_every_packaged_case_parses_and_has_its_data() -> None:
    cases = load_cases()
    assert len(cases) >= 6
    for case in cases:
        run = case.run()
        assert run.size > 0 and np.all(np.diff(run.arrival_s) >= 0)
        assert case.source
    assert load_unreproduced(), "the published numbers not reproduced must be listed"


def test_bad_case_file_is_a_located_error() -> None:
    from sim.errors import ConfigError

    doc = {"case": [{"name": "x", "data": "y.csv", "source": "s", "engine": {"tp": "one"}, "z": 1}]}
    doc["case"][0]["timing"] = "wall"
    with pytest.raises(ConfigError) as err:
        parse_cases(doc, "cases.toml")
    text = str(err.value)
    assert "cases.toml: case[0].z: unknown key" in text
    assert "case[0].engine.tp" in text
    assert "case[0].timing: must be engine or client" in text


def test_a_client_side_case_carries_the_client_path() -> None:
    """The Lambda cases are client-side (`timing = "client"`): their replay's TTFT and E2E
    are the engine's plus `CLIENT_PATH_S`, as `sim bench --timing client`."""
    case = next(c for c in load_cases() if c.name == CI_CASE)
    assert case.timing == "client"
    client = validate_case(case).rows
    engine = validate_case(dataclasses.replace(case, timing="engine")).rows
    for metric in ("ttft_p50_s", "e2e_mean_s"):
        got = client.filter(pl.col("metric") == metric)["simulated_s"][0]
        base = engine.filter(pl.col("metric") == metric)["simulated_s"][0]
        assert got == pytest.approx(base + CLIENT_PATH_S, rel=1e-9), metric


def test_gating_applies_targets_only_to_gated_cases() -> None:
    measured = {"tpot_p50_s": 0.010, "ttft_p95_s": 0.100, "e2e_p95_s": 1.0}
    sim = {"tpot_p50_s": 0.0106, "ttft_p95_s": 0.110, "e2e_p95_s": 1.05}
    gated = compare("c", measured, sim, load=0.5, gated=True)
    assert gated.filter(pl.col("metric") == "tpot_p50_s")["ok"][0] is False  # 6 % > 5 %
    assert gated.filter(pl.col("metric") == "ttft_p95_s")["ok"][0] is True  # 10 % <= 15 %
    ungated = compare("c", measured, sim, load=0.95, gated=False)
    assert ungated["ok"].is_null().all()
    case = load_cases()[0]
    assert not CaseResult(case, 0.5, gated, "").passed or not case.gate
    assert CaseResult(case, 0.95, ungated, "").passed


# Regression guard for the CI case. No shipped case is gated yet (docs/validation.md says why),
# so these bounds are today's errors plus about 5 points: a change to the engine or the catalog
# that makes the A100 replay worse fails here. The issue-#3 targets are in
# sim.calibration.validate.TARGETS.
CI_CASE = "lambda-a100-llama3-8b-burst10"
CI_BOUNDS = {"tpot_p50_s": 0.08, "ttft_p95_s": 0.22, "e2e_p50_s": 0.07, "e2e_p99_s": 0.11}
"""Today +2.4 / −16.6 / +1.2 / +5.2 % (V0 multi-step of 10 steps, its CPU time paid once per
group; the client path on TTFT and E2E); +14 / −21 / +13 / +19 % while the case ran V1 steps,
each with the 1.84 ms overhead, at engine timing."""


def test_ci_case_replays_fast_and_does_not_regress() -> None:
    case = next(c for c in load_cases() if c.name == CI_CASE)
    start = time.perf_counter()
    result = validate_case(case)
    assert time.perf_counter() - start < 30.0
    assert not result.skipped
    assert result.load < 0.85
    errors = dict(zip(result.rows["metric"], result.rows["error"], strict=True))
    for metric, bound in CI_BOUNDS.items():
        assert abs(errors[metric]) <= bound, (metric, errors[metric])


def test_cli_validate_prints_the_table_and_lists_what_is_not_reproduced() -> None:
    result = CliRunner().invoke(main, ["validate", "--all", "--case", CI_CASE])
    assert result.exit_code == 0, result.output
    assert "tpot_p50" in result.output and "not reproducible: vllm-ci-dashboard" in result.output


def test_cli_validate_bad_catalog_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "cat.toml"
    bad.write_text("[[entry]]\nmodel = 1\n")
    result = CliRunner().invoke(main, ["validate", "--catalog", str(bad)])
    assert result.exit_code == 2
    assert str(bad) in result.output and "Traceback" not in result.output


@pytest.mark.parametrize(
    ("name", "content", "needle"),
    [
        ("run.json", "{not json", "not valid JSON"),
        ("run.json", json.dumps({"input_lens": [3], "output_lens": [2]}), "ttfts"),
        ("requests.jsonl", '{"input_toks": 3}\n', "missing field"),
        ("run.csv", "arrival_s,input_tokens\n0,3\n", "output_tokens"),
    ],
)
def test_cli_calibrate_runs_bad_file_is_one_line(
    tmp_path: Path, name: str, content: str, needle: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    args = ["calibrate", "runs", str(path), "--model", "llama-3-8b", "--gpu", "a100-80gb"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and str(path) in lines[0] and needle in lines[0]
    assert "Traceback" not in result.output


def test_cli_calibrate_missing_file() -> None:
    result = CliRunner().invoke(
        main,
        ["calibrate", "runs", "/no/such/run.json", "--model", "llama-3-8b", "--gpu", "a100-80gb"],
    )
    assert result.exit_code == 2
    assert "error: /no/such/run.json: no such file" in result.output


def test_cli_calibrate_profiles_missing_file() -> None:
    args = ["calibrate", "profiles", "splitwise", "/no/perf.csv", "--model", "m", "--gpu", "g"]
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert "error: /no/perf.csv: no such file" in result.output


# ------------------------------------------------------------------ published runs (issue #12)


def _replayed(rows: list[tuple[str, str, float, str, float]]) -> pl.DataFrame:
    """`replay_all`-shaped rows from (run, version, load, metric, error)."""
    return pl.DataFrame(
        [
            (run, ver, load, metric, 1.0, 1.0 + err, err, "" if metric else "why not")
            for run, ver, load, metric, err in rows
        ],
        schema=REPLAY_SCHEMA,
        orient="row",
    )


def test_published_values_are_gated_only_for_v1_runs_at_low_load_on_targeted_metrics() -> None:
    judged = judge_public(
        _replayed(
            [
                ("A", "0.11", 0.5, "tpot_p50", 0.04),  # gated, within 5 %
                ("A", "0.11", 0.5, "ttft_mean", 0.50),  # no target on means
                ("B", "0.6", 0.5, "tpot_p50", 0.01),  # V0 engine: reported
                ("C", "0.11", 0.9, "throughput", 0.01),  # above 85 % load
                ("D", "", 0.5, "e2e_p95", 0.01),  # version not stated
                ("E", "0.17", 0.2, "e2e_p95", -0.12),  # gated, misses 10 %
                ("E", "0.17", 0.2, "ttft_p95", 0.149),  # gated, within 15 %
                ("F", "0.11", math.nan, "", math.nan),  # not replayed
            ]
        )
    )
    targets = dict(zip(judged["row"] + "/" + judged["metric"], judged["target"], strict=True))
    assert targets == {
        "A/tpot_p50": 0.05,
        "A/ttft_mean": None,
        "B/tpot_p50": None,
        "C/throughput": None,
        "D/e2e_p95": None,
        "E/e2e_p95": 0.10,
        "E/ttft_p95": 0.15,
        "F/": None,
    }
    assert judged["ok"].to_list() == [True, None, None, None, None, False, True, None]
    s = summarise_public(judged)
    assert (s.runs, s.replayed, s.gated_runs, s.gated, s.within) == (6, 5, 2, 3, 2)
    assert s.share == pytest.approx(2 / 3) and not s.passed
    assert s.medians["tpot"] == pytest.approx(0.025)  # A and B (any version) at <= 85 %
    assert s.share < GATE_MIN_SHARE


def test_published_runs_pass_at_the_issues_share_of_gated_values() -> None:
    rows = [("A", "0.11", 0.5, "throughput", 0.01)] * 4 + [("A", "0.11", 0.5, "tpot_p50", 0.2)]
    s = summarise_public(judge_public(_replayed(rows)))
    assert s.share == pytest.approx(0.8) and s.passed
    s = summarise_public(judge_public(_replayed(rows[1:])))
    assert s.share == pytest.approx(0.75) and not s.passed


def test_packaged_public_runs_are_the_shared_table() -> None:
    shared = Path(__file__).resolve().parents[1] / "../shared/data/vllm-public-runs/runs.csv"
    if not shared.exists():
        pytest.skip("shared/data absent (the packaged copy is what every run reads)")
    assert read_runs().equals(pl.read_csv(shared, infer_schema_length=0).fill_null(""))


def test_cli_validate_one_published_run_prints_every_metric_and_its_verdict() -> None:
    result = CliRunner().invoke(main, ["validate", "--case", "P096"])
    assert "P096" in result.output and "e2e_p95" in result.output and "tok/s" in result.output
    assert "lambda" not in result.output  # only the named run
    judged = judge_public(replay_all(rows={"P096"}))
    missed = bool((judged["ok"] == False).any())  # noqa: E712 (polars comparison)
    assert judged["target"].is_not_null().any()  # the run is gated
    assert result.exit_code == (1 if missed else 0), result.output
    assert ("missed targets: P096" in result.output) == missed


def test_cli_validate_unknown_published_run_is_one_line() -> None:
    result = CliRunner().invoke(main, ["validate", "--case", "P999"])
    assert result.exit_code == 2
    assert "P999" in result.output and "Traceback" not in result.output


def test_a_case_without_a_fitted_entry_replays_on_the_roofline_and_says_so() -> None:
    case = next(c for c in load_cases() if c.name == "llmservingsim-rtxpro6000-llama3.1-8b")
    result = validate_case(case)
    assert not result.skipped and result.rows.height > 0
    assert result.step_time_source.startswith("uncalibrated")


def test_a_case_whose_kv_estimate_falls_short_of_what_vllm_served_replays_at_its_context() -> None:
    """LLMServingSim's Qwen3-30B-A3B server ran at the model's 262,144-token context; the KV
    estimate holds 252,048 tokens (expert parallelism, which halves the experts a GPU holds, is
    not modelled). Its 300 requests fit that, so it replays there and says so; a case whose
    requests would not fit is still not replayed."""
    case = next(c for c in load_cases() if c.name == "llmservingsim-rtxpro6000-qwen3-30b-a3b")
    with pytest.raises(ValueError, match="cannot hold one request"):
        case.engine.limits()
    result = validate_case(case)
    assert not result.skipped and result.rows.height > 0
    assert result.note.startswith("max_model_len 252,048: the KV estimate's")
    tiny = dataclasses.replace(case, engine=dataclasses.replace(case.engine, kv_blocks=100))
    assert validate_case(tiny).skipped.startswith("engine does not fit")
    out = CliRunner().invoke(main, ["validate", "--case", case.name]).output
    assert "replayed with: llmservingsim-rtxpro6000-qwen3-30b-a3b: max_model_len" in out


@pytest.mark.slow
def test_cli_validate_exits_by_the_share_of_gated_published_values() -> None:
    result = CliRunner().invoke(main, ["validate"])
    line = next(x for x in result.output.splitlines() if x.startswith("published runs:"))
    share = float(line.split("within target (")[1].split("%")[0]) / 100
    assert "not replayed (12): speculative decoding" in result.output
    assert result.exit_code == (0 if share >= GATE_MIN_SHARE else 1)


def test_a_case_that_names_its_vllm_version_runs_that_versions_cpu_time() -> None:
    """vLLM 0.19 schedules asynchronously: its steps carry no CPU term, where an unversioned
    replay keeps the Vidur-era 1.84 ms per step (`sim.engine.versions`)."""
    case = next(c for c in load_cases() if c.name == "llmservingsim-rtxpro6000-llama3.1-8b")
    assert case.engine.vllm_version == "0.19.0"
    bare = dataclasses.replace(case, engine=dataclasses.replace(case.engine, vllm_version=None))
    tpot = {}
    for label, c in (("versioned", case), ("bare", bare)):
        rows = validate_case(c).rows
        tpot[label] = rows.filter(pl.col("metric") == "tpot_p50_s")["simulated_s"][0]
    assert 0.0005 < tpot["bare"] - tpot["versioned"] < 0.0025


def test_a_users_catalog_reaches_the_published_runs(tmp_path: Path) -> None:
    """`sim validate --catalog FILE` replays the published runs on the user's entries too (as
    `sim bench --calibration`): with every step twice as long (and the entry's own CPU time,
    which a user's entry keeps) a light run's E2E more than doubles."""
    key = ("llama-2-7b", "h100-80gb", 1, "fp16")  # BLIS's P181 (5 req/s, 7 % load)
    base = load_step_time_catalog()[key]
    cal = tmp_path / "mine.toml"
    cal.write_text(render_entries([dataclasses.replace(base, step=base.step.scaled(2.0))], "x2"))
    e2e = {}
    for label, calibration in (("packaged", None), ("user", str(cal))):
        df = replay_all(rows={"P181"}, calibration=calibration)
        e2e[label] = df.filter(pl.col("metric") == "e2e_mean")["simulated"][0]
    assert e2e["user"] > 2.0 * e2e["packaged"]
    result = CliRunner().invoke(main, ["validate", "--case", "P181", "--catalog", str(cal)])
    assert f"{e2e['user']:,.1f} ms" in result.output

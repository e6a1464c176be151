"""`sim validate`: metric definitions, the packaged cases, gating, and the CLI."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from sim.calibration.measured import latency_metrics
from sim.calibration.validate import (
    CaseResult,
    compare,
    load_cases,
    load_unreproduced,
    parse_cases,
    validate_case,
)
from sim.cli import main


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
    with pytest.raises(ConfigError) as err:
        parse_cases(doc, "cases.toml")
    text = str(err.value)
    assert "cases.toml: case[0].z: unknown key" in text
    assert "case[0].engine.tp" in text


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
CI_BOUNDS = {"tpot_p50_s": 0.20, "ttft_p95_s": 0.26, "e2e_p50_s": 0.19, "e2e_p99_s": 0.25}


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

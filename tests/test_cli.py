"""The `sim` command through click's CliRunner: output, exit codes, and the files a run writes."""

from __future__ import annotations

import hashlib
import json
import shutil
from importlib import metadata
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from sim.cli import main
from sim.records import HOURLY_SCHEMA, MONTH_SCHEMA, SUMMARY_SCHEMA

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO / "traces"

TINY = f"""\
name = "tiny"
seed = 7
months = 2

[monte_carlo]
replications = 2

[workload]
base_requests_per_day = 300
weekly_profile = "{TRACES.as_posix()}/servegen_weekly_profile.csv"
lengths = "{TRACES.as_posix()}/azure_conv_2023.csv"

[workload.growth]
mean_monthly = 0.20
sd_log = 0.10

[workload.burst]
kind = "markov"
mean_calm_s = 480.0
mean_burst_s = 960.0
burst_ratio = 2.0

[engine]
model = "llama-3-8b"
dtype = "fp16"
tp = 1
max_num_seqs = 256
max_num_batched_tokens = 2048
max_model_len = 8192
gpu_memory_utilization = 0.9

[[fleet.months]]
pools = [{{ name = "base", gpu = "a100-80gb", count = 1 }}]
[[fleet.months]]
pools = [{{ name = "base", gpu = "a100-80gb", count = 1 }}]

[cost]
ops_usd_per_month = 500.0

[slo]
ttft_s = 1.5
tpot_s = 0.1
"""

# Two problems, so the test also sees that all of them are printed, one line each.
BAD = TINY.replace("seed = 7", "sed = 7").replace("count = 1 }]\n[[", "count = -1 }]\n[[", 1)


def invoke(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def no_traceback(result: Result) -> None:
    assert "Traceback" not in result.output
    assert "Traceback" not in result.stderr


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Result, Path]:
    """`sim run` of the tiny experiment (2 months × 2 replications), shared by the tests."""
    folder = tmp_path_factory.mktemp("tiny")
    exp = folder / "tiny.toml"
    exp.write_text(TINY, encoding="utf-8")
    out = folder / "out"
    return invoke("run", str(exp), "--out", str(out)), out


def digest(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def test_check_ok(tmp_path: Path) -> None:
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY, encoding="utf-8")
    result = invoke("check", str(exp))
    assert result.exit_code == 0, result.output
    assert result.stdout == (
        f"{exp}: ok (tiny: 2 months, 2 replications, seed 7, llama-3-8b on a100-80gb)\n"
    )
    assert result.stderr == ""


def test_check_bad_file_exits_2_with_one_line_per_problem(tmp_path: Path) -> None:
    exp = tmp_path / "bad.toml"
    exp.write_text(BAD, encoding="utf-8")
    result = invoke("check", str(exp))
    assert result.exit_code == 2
    assert result.stdout == ""
    assert result.stderr == (
        f"error: {exp}: seed: is required (an integer)\n"
        f"error: {exp}: fleet.months[0].pools[0].count: must be >= 0, got -1\n"
        f"error: {exp}: sed: unknown key (did you mean 'seed'?)\n"
    )
    no_traceback(result)


def test_check_missing_file_exits_2(tmp_path: Path) -> None:
    exp = tmp_path / "absent.toml"
    result = invoke("check", str(exp))
    assert result.exit_code == 2
    assert result.stderr == f"error: {exp}: cannot read file: No such file or directory\n"
    no_traceback(result)


def test_check_malformed_trace_exits_2(tmp_path: Path) -> None:
    csv = tmp_path / "lengths.csv"
    csv.write_text("TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46,0,5\n")
    exp = tmp_path / "exp.toml"
    exp.write_text(TINY.replace(f"{TRACES.as_posix()}/azure_conv_2023.csv", "lengths.csv"))
    result = invoke("check", str(exp))
    assert result.exit_code == 2
    assert result.stderr == (
        f"error: {csv.resolve()}: row 1: column ContextTokens: token count must be >= 1, got '0'\n"
    )
    no_traceback(result)


def test_run_writes_a_self_describing_folder(tiny_run: tuple[Result, Path]) -> None:
    result, out = tiny_run
    assert result.exit_code == 0, result.output
    no_traceback(result)
    assert {"manifest.json", "months.parquet", "summary.parquet", "hourly.parquet"} <= set(
        digest(out)
    )
    assert (out / "report.html").stat().st_size > 1000

    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["seed"] == 7
    assert manifest["version"] == metadata.version("sim")
    assert manifest["replications_done"] == [0, 1]
    assert manifest["errors"] == {}
    assert manifest["interrupted"] is False
    assert manifest["config"]["name"] == "tiny"
    assert manifest["config"]["months"] == 2
    assert manifest["config"]["workload"]["base_requests_per_day"] == 300

    months = pl.read_parquet(out / "months.parquet")
    assert months.schema == pl.Schema(MONTH_SCHEMA)
    assert months.select("replication", "month").rows() == [(0, 1), (0, 2), (1, 1), (1, 2)]
    assert (months["requests"] > 0).all()
    assert manifest["simulated_requests"] == months["requests"].sum()

    summary = pl.read_parquet(out / "summary.parquet")
    assert summary.schema == pl.Schema(SUMMARY_SCHEMA)
    assert "p_ttft_p95_above_slo" in summary["metric"].to_list()
    assert summary["month"].unique().sort().to_list() == [1, 2]

    hourly = pl.read_parquet(out / "hourly.parquet")
    assert hourly.schema == pl.Schema(HOURLY_SCHEMA)
    assert hourly.height == 2 * 2 * 168


def test_run_prints_the_month_table(tiny_run: tuple[Result, Path]) -> None:
    result, out = tiny_run
    assert "tiny: median across 2 replications" in result.stdout
    assert "month 1" in result.stdout
    assert "month 2" in result.stdout
    assert "month 3" not in result.stdout
    assert "p95 TTFT" in result.stdout
    assert "P(p95 TTFT > 1.5 s)" in result.stdout
    assert f"wrote {out}/" in result.stdout


def test_bad_file_leaves_the_previous_report_untouched(
    tiny_run: tuple[Result, Path], tmp_path: Path
) -> None:
    _, good = tiny_run
    out = tmp_path / "out"
    shutil.copytree(good, out)
    before = digest(out)
    exp = tmp_path / "bad.toml"
    exp.write_text(BAD, encoding="utf-8")
    result = invoke("run", str(exp), "--out", str(out))
    assert result.exit_code == 2
    assert result.stderr.splitlines() == [
        f"error: {exp}: seed: is required (an integer)",
        f"error: {exp}: fleet.months[0].pools[0].count: must be >= 0, got -1",
        f"error: {exp}: sed: unknown key (did you mean 'seed'?)",
    ]
    no_traceback(result)
    assert digest(out) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml", "out"]  # no temp folders


def test_replications_override_and_default_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "tiny.toml").write_text(TINY, encoding="utf-8")
    monkeypatch.chdir(tmp_path)
    result = invoke("run", "tiny.toml", "--replications", "1")
    assert result.exit_code == 0, result.output
    out = tmp_path / "reports" / "tiny"  # default: reports/<experiment name>
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["replications_requested"] == 1
    assert manifest["replications_done"] == [0]
    months = pl.read_parquet(out / "months.parquet")
    assert months.select("replication", "month").rows() == [(0, 1), (0, 2)]
    assert "median across 1 replications" in result.stdout


def test_replications_override_must_be_positive(tmp_path: Path) -> None:
    exp = tmp_path / "tiny.toml"
    exp.write_text(TINY, encoding="utf-8")
    result = invoke("run", str(exp), "--replications", "0", "--out", str(tmp_path / "out"))
    assert result.exit_code == 2  # click's usage error
    assert "--replications" in result.stderr
    assert not (tmp_path / "out").exists()

"""Calibrating to a user's stack: round trips from every input format, the shipped samples,
the real LLMServingSim runs (held out), `--calibration`, and bad inputs (issue #13)."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from sim.calibration.bench import BenchSpec, run_bench
from sim.calibration.measured import MeasuredRun
from sim.calibration.profiles import render_entries
from sim.calibration.runs import fit_runs, run_case, run_errors, scaled_entry
from sim.calibration.samples import mean_rate, write_all
from sim.cli import main
from sim.engine.catalog import load_step_time_catalog, load_user_calibration

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sim" / "data" / "samples"
KEY = ("llama-3-8b", "h100-80gb", 1, "fp16")
TRUE = (1.25, 0.85, 1.15)
LSS = Path("/work/shared/data/llmservingsim/examples")
# Three shapes so that the three factors are identified: decode-heavy, prefill-heavy, long
# context at a larger batch. Constant gaps (burstiness inf), so a scrape's even replay is exact.
SHAPES = (
    dict(input_len=128, output_len=256, request_rate=4.0),
    dict(input_len=2048, output_len=32, request_rate=4.0),
    dict(input_len=1024, output_len=512, request_rate=12.0),
)


@pytest.fixture(scope="module")
def round_trip(tmp_path_factory: pytest.TempPathFactory) -> dict[str, list[tuple[Path, float]]]:
    """Every format of three `sim bench` runs of the catalog entry scaled by TRUE."""
    folder = tmp_path_factory.mktemp("rt")
    truth = scaled_entry(load_step_time_catalog()[KEY], TRUE)
    cal = folder / "true.toml"
    cal.write_text(render_entries([truth], "known entry"), encoding="utf-8")
    files: dict[str, list[tuple[Path, float]]] = {}
    for i, shape in enumerate(SHAPES):
        spec = BenchSpec(
            model=KEY[0], gpu=KEY[1], num_prompts=150, burstiness=math.inf,
            calibration=str(cal), seed=i, **shape,  # type: ignore[arg-type]
        )  # fmt: skip
        result = run_bench(spec)
        for fmt, path in write_all(result, folder, f"run{i}").items():
            files.setdefault(fmt, []).append((path, mean_rate(result)))
    return files


@pytest.mark.slow
@pytest.mark.parametrize(
    "fmt",
    [
        "vllm-bench-json",
        "guidellm-json",
        "request-csv",
        pytest.param(
            "metrics-scrape",
            # Measured: overhead -6.4 %, linear +1.6 %, attention +1.6 %. The histograms' means
            # and bucket p50/p95 leave the overhead weakly identified (issue #13: open).
            marks=pytest.mark.xfail(reason="scrape fit: overhead off by 6.4 %", strict=False),
        ),
    ],
)
def test_round_trip_recovers_factors(
    round_trip: dict[str, list[tuple[Path, float]]], fmt: str
) -> None:
    # A scrape cannot tell when requests were sent: the test passes each run's send rate, as a
    # user who ran the load generator would (`sim calibrate runs --request-rate`).
    cases = [
        run_case(p, model=KEY[0], gpu=KEY[1], request_rate=rate if "scrape" in fmt else None)
        for p, rate in round_trip[fmt]
    ]
    fit = fit_runs(load_step_time_catalog()[KEY], cases)
    errors = [f / t - 1 for f, t in zip(fit.factors, TRUE, strict=True)]
    print(fmt, [f"{e:+.3%}" for e in errors])
    assert max(abs(e) for e in errors) < 0.02


@pytest.mark.slow
@pytest.mark.parametrize(
    "sample",
    sorted(p.name for p in SAMPLES.iterdir() if p.is_file() and not p.name.endswith(".md")),
)
def test_every_generated_sample_calibrates_with_one_command(sample: str) -> None:
    res = CliRunner().invoke(
        main, ["calibrate", "runs", str(SAMPLES / sample), "--model", "llama-3-8b", "--gpu",
               "h100-80gb"],
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "[[entry]]" in res.stdout and "factors:" in res.stderr


@pytest.mark.slow
def test_real_llmservingsim_sample_calibrates_with_one_command() -> None:
    path = SAMPLES / "llmservingsim-rtx4090-llama-3.1-8b" / "requests.jsonl"
    res = CliRunner().invoke(
        main, ["calibrate", "runs", str(path), "--model", "llama-3.1-8b", "--gpu", "rtx-4090"]
    )
    assert res.exit_code == 0, res.output
    assert "starting from the roofline" in res.stderr


def _half(run: MeasuredRun, first: bool) -> MeasuredRun:
    n = run.size // 2
    sl = slice(0, n) if first else slice(n, None)
    assert run.ttft_s is not None and run.e2e_s is not None
    t = run.arrival_s[sl]
    return dataclasses.replace(
        run, name=run.name + ("/first" if first else "/second"), arrival_s=t - t[0],
        input_tokens=run.input_tokens[sl], output_tokens=run.output_tokens[sl],
        ttft_s=run.ttft_s[sl], e2e_s=run.e2e_s[sl],
    )  # fmt: skip


HELD_OUT = [
    ("RTX4090/Llama-3.1-8B", "llama-3.1-8b", "rtx-4090"),
    ("RTXPRO6000/Llama-3.1-8B", "llama-3.1-8b", "rtx-pro-6000"),
]


@pytest.mark.slow
@pytest.mark.skipif(not LSS.is_dir(), reason="shared LLMServingSim data not present")
@pytest.mark.parametrize(("run", "model", "gpu"), HELD_OUT)
def test_llmservingsim_held_out(run: str, model: str, gpu: str) -> None:
    """Fit on the first 150 requests of a real vLLM 0.19 run, predict the other 150 (the
    shared runs have one rate each, so the held-out half is the later, more queued, window)."""
    case = run_case(LSS / run / "vllm" / "requests.jsonl", model=model, gpu=gpu, dtype="fp16")
    train = dataclasses.replace(case, run=_half(case.run, True))
    test = dataclasses.replace(case, run=_half(case.run, False))
    from sim.calibration.runs import start_entry

    fit = fit_runs(start_entry(dict(load_step_time_catalog()), (model, gpu, 1, "fp16")), [train])
    held = run_errors(fit.entry, [test])
    errs = {r["metric"]: r["error"] for r in held.iter_rows(named=True)}
    print(run, "factors", fit.factors, {k: f"{v:+.1%}" for k, v in errs.items()})
    assert all(math.isfinite(v) for v in errs.values())
    assert abs(errs["tpot_p50_s"]) < 0.25


def test_calibration_scales_results_exactly(tmp_path: Path) -> None:
    """All requests at t = 0 on an entry scaled by 2 in every term: every latency doubles."""
    base = load_step_time_catalog()[KEY]
    doubled = dataclasses.replace(base, step=base.step.scaled(2.0))
    cal = tmp_path / "mine.toml"
    cal.write_text(render_entries([doubled], "x2"), encoding="utf-8")
    spec = BenchSpec(model=KEY[0], gpu=KEY[1], num_prompts=30, input_len=300, output_len=20)
    a = run_bench(spec)
    b = run_bench(dataclasses.replace(spec, calibration=str(cal)))
    # rtol: the calibration file holds coefficients to 6 significant digits (render_entries)
    assert np.allclose(b.ttfts_s, 2 * a.ttfts_s, rtol=1e-5)
    assert np.allclose(b.e2els_s, 2 * a.e2els_s, rtol=1e-5)
    label = load_user_calibration(cal).label
    assert label in b.step_time.source and "sha256" in label
    assert b.result_json()["sim_step_time_source"].startswith(f"calibration file {label}")


def test_experiment_calibration_in_manifest_engine(tmp_path: Path) -> None:
    from sim.cli.options import with_calibration
    from sim.experiment import load_experiment

    exp = load_experiment(ROOT / "experiments" / "growth20pct.toml")
    gpu = sorted(exp.engine.per_gpu)[0]
    key = (exp.spec.engine.model, gpu, exp.spec.engine.tp, exp.spec.engine.dtype)
    entry = load_step_time_catalog()[key]
    cal = tmp_path / "mine.toml"
    cal.write_text(render_entries([scaled_entry(entry, (1.0, 1.5, 1.0))], "x"), encoding="utf-8")
    mine = with_calibration(exp, cal)
    got, want = mine.engine.step_time(gpu).step, exp.engine.step_time(gpu).step
    # rel: the file holds coefficients to 6 significant digits (render_entries)
    assert got.per_token_s == pytest.approx(1.5 * want.per_token_s, rel=1e-5)
    assert got.overhead_s == pytest.approx(want.overhead_s, rel=1e-5)
    manifest_engine = json.dumps(mine.engine.as_dict(), default=str)
    assert str(cal) in manifest_engine and load_user_calibration(cal).sha256[:12] in manifest_engine
    assert mine.spec.engine.calibration == str(cal.resolve())


# ------------------------------------------------------------------------------ bad inputs


def _one_line(args: list[str]) -> str:
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2, res.output
    assert "Traceback" not in res.output
    lines = [line for line in res.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, res.stderr
    return lines[0]


def _calibrate(path: Path, model: str = "llama-3-8b", gpu: str = "h100-80gb") -> list[str]:
    return ["calibrate", "runs", str(path), "--model", model, "--gpu", gpu]


def test_truncated_json(tmp_path: Path) -> None:
    text = (SAMPLES / "llama-3-8b-h100.guidellm.json").read_text()
    bad = tmp_path / "cut.json"
    bad.write_text(text[: len(text) // 2])
    line = _one_line(_calibrate(bad))
    assert "cut.json" in line and "not valid JSON" in line


def test_histogram_without_buckets(tmp_path: Path) -> None:
    text = (SAMPLES / "llama-3-8b-h100.metrics.prom").read_text()
    keep = [ln for ln in text.splitlines() if "time_to_first_token_seconds_bucket" not in ln]
    bad = tmp_path / "nobuckets.prom"
    bad.write_text("\n".join(keep) + "\n")
    line = _one_line(_calibrate(bad))
    assert "vllm:time_to_first_token_seconds" in line and "without buckets" in line


def test_counters_going_backwards(tmp_path: Path) -> None:
    text = (SAMPLES / "llama-3-8b-h100.metrics.prom").read_text()
    stamp = text.split("\nprocess_start_time_seconds ")[1].split()[1]  # ms, every sample's
    later = text.replace(stamp, str(int(stamp) + 360_000))  # the second snapshot, 6 min later
    first = text.replace("_count 100.0", "_count 900.0")
    bad = tmp_path / "restart.prom"
    bad.write_text(first + "# EOF\n" + later)
    line = _one_line(_calibrate(bad))
    assert "restart.prom" in line and "backwards" in line


def test_mismatched_model_gpu() -> None:
    line = _one_line(_calibrate(SAMPLES / "llama-3-8b-h100.requests.csv", gpu="tpu-v9"))
    assert "tpu-v9" in line


def test_bad_calibration_file(tmp_path: Path) -> None:
    bad = tmp_path / "mine.toml"
    text = render_entries([load_step_time_catalog()[KEY]], "x").replace("tp = 1", "tp = 0")
    bad.write_text(text, encoding="utf-8")
    line = _one_line(["bench", "--model", "llama-3-8b", "--gpu", "h100-80gb", "--calibration",
                      str(bad), "--num-prompts", "5"])  # fmt: skip
    assert "mine.toml" in line and "entry[0].tp" in line

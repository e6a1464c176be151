"""Workloads from production: mapped request logs, OpenTelemetry GenAI spans, Prometheus range
exports of vLLM's counters (sim/traces/columns.py, otel.py, prometheus.py)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from click.testing import CliRunner

from sim.cli import main
from sim.config import parse_workload_file
from sim.errors import TraceError
from sim.experiment import load_lengths
from sim.traces import RateTrace, RequestTrace, read_trace
from sim.traces.columns import parse_columns

SAMPLES = Path(__file__).resolve().parents[1] / "traces" / "production"
MAP = "arrival=timestamp,input=prompt_tokens,output=completion_tokens"
COLUMNS = parse_columns(MAP)


def one_line_error(result: object, *needles: str) -> str:
    out = result.output  # type: ignore[attr-defined]
    assert result.exit_code == 2, out  # type: ignore[attr-defined]
    assert "Traceback" not in out
    lines = [line for line in out.splitlines() if line.strip()]
    assert len(lines) == 1 and len(lines[0]) <= 400, out
    for needle in needles:
        assert needle in lines[0], out
    return lines[0]


# ------------------------------------------------------------------------------ mapped logs


def test_mapped_csv_with_iso_timestamps_and_time_zones(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text(
        "id,timestamp,prompt_tokens,completion_tokens,model\n"
        "a,2025-03-03T10:00:00Z,100,20,x\n"
        "b,2025-03-03T10:00:01.5Z,200,30,x\n"
        "c,2025-03-03T11:00:02+01:00,50,10,x\n"
    )
    t = read_trace(log, columns=COLUMNS)
    assert isinstance(t, RequestTrace) and t.columns == COLUMNS
    assert t.frame["arrival_s"].to_list() == [0.0, 1.5, 2.0]
    assert t.frame["input_tokens"].to_list() == [100, 200, 50]


@pytest.mark.parametrize(
    ("unit", "stamps", "expected"),
    [
        ("s", ["1741000000", "1741000001.25"], [0.0, 1.25]),
        ("ms", ["1741000000000", "1741000000500"], [0.0, 0.5]),
        ("ns", ["1741000000000000000", "1741000000000000001"], [0.0, 1e-9]),
    ],
)
def test_numeric_epochs_in_each_unit(
    tmp_path: Path, unit: str, stamps: list[str], expected: list[float]
) -> None:
    log = tmp_path / "log.csv"
    log.write_text("t,i,o\n" + "".join(f"{s},10,5\n" for s in stamps))
    t = read_trace(log, columns=parse_columns("arrival=t,input=i,output=o", unit))
    assert t.frame["arrival_s"].to_list() == pytest.approx(expected, abs=1e-12)


def test_mapped_json_lines_and_parquet(tmp_path: Path) -> None:
    jl = tmp_path / "log.jsonl"
    jl.write_text(
        '{"ts": "2025-03-03 10:00:00", "p": 5, "c": 7, "extra": {"x": 1}}\n'
        '{"ts": "2025-03-03 10:00:02", "p": 6, "c": 8}\n'
    )
    m = parse_columns("arrival=ts,input=p,output=c")
    assert read_trace(jl, columns=m).frame["arrival_s"].to_list() == [0.0, 2.0]
    pq = tmp_path / "log.parquet"
    pl.DataFrame(
        {
            "ts": pl.Series(["2025-03-03 10:00:00", "2025-03-03 10:00:03"]).str.to_datetime(),
            "p": [5, 6],
            "c": [7, 8],
        }
    ).write_parquet(pq)
    assert read_trace(pq, columns=m).frame["arrival_s"].to_list() == [0.0, 3.0]


def test_mapping_without_arrival_is_length_only(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("p,c\n5,7\n6,8\n")
    t = read_trace(log, columns=parse_columns("input=p,output=c"))
    assert isinstance(t, RequestTrace) and not t.has_arrivals and t.size == 2


@pytest.mark.parametrize(
    ("body", "mapping", "needles"),
    [
        ("timestamp,p,c\n1,5,7\n", "arrival=ts,input=p,output=c", ["column ts", "missing column"]),
        (
            "ts,p,c\n2025-03-03T10:00:00Z,5,7\nyesterday,5,7\n",
            "arrival=ts,input=p,output=c",
            ["row 2", "column ts", "ISO-8601", "'yesterday'"],
        ),
        (
            "ts,p,c\n2025-03-03T10:00:00Z,5,7\n2025-03-03T10:00:01,5,7\n",
            "arrival=ts,input=p,output=c",
            ["row 2", "time zone"],
        ),
        ("ts,p,c\n5,5,7\n3,5,7\n", "arrival=ts,input=p,output=c", ["row 2", "non-decreasing"]),
        ("ts,p,c\n5,5,7\n6,x,7\n", "arrival=ts,input=p,output=c", ["row 2", "column p"]),
    ],
)
def test_bad_mapped_logs_are_one_located_line(
    tmp_path: Path, body: str, mapping: str, needles: list[str]
) -> None:
    log = tmp_path / "log.csv"
    log.write_text(body)
    result = CliRunner().invoke(
        main,
        [
            "trace",
            "inspect",
            str(log),
            "--columns",
            mapping,
            "--no-png",
            "--out",
            str(tmp_path / "r"),
        ],
    )
    one_line_error(result, "log.csv", *needles)


def test_bad_columns_option_is_a_usage_error(tmp_path: Path) -> None:
    log = tmp_path / "log.csv"
    log.write_text("a,b\n1,2\n")
    for option in ("nope=a", "arrival", "input=a,input=b"):
        result = CliRunner().invoke(main, ["trace", "inspect", str(log), "--columns", option])
        assert result.exit_code == 2 and "--columns" in result.output, result.output


def test_sample_log_reads_and_config_carries_the_mapping(tmp_path: Path) -> None:
    t = read_trace(SAMPLES / "requests-log.csv", columns=COLUMNS)
    assert isinstance(t, RequestTrace) and t.size > 5000
    assert t.frame["arrival_s"][-1] == pytest.approx(26 * 3600, rel=0.01)
    workload = tmp_path / "w.toml"
    workload.write_text(
        "[workload]\nbase_requests_per_day = 1000\nweekly_profile = ["
        + ", ".join(["1"] * 168)
        + f']\n[workload.lengths]\nfile = "{(SAMPLES / "requests-log.csv").as_posix()}"\n'
        'columns = {arrival = "timestamp", input = "prompt_tokens", output = "completion_tokens"}\n'
        'time_unit = "ms"\n[workload.burst]\nkind = "none"\n'
    )
    spec = parse_workload_file(workload)
    assert spec.lengths_columns is not None and spec.lengths_columns.time_unit == "ms"
    lengths, _ = load_lengths(
        spec.lengths_file, spec.lengths_format, spec.lengths_smoothing, spec.lengths_columns
    )
    assert lengths.size == t.size  # type: ignore[attr-defined]


def test_config_rejects_unknown_column_keys(tmp_path: Path) -> None:
    workload = tmp_path / "w.toml"
    workload.write_text(
        "[workload]\nbase_requests_per_day = 1000\nweekly_profile = ["
        + ", ".join(["1"] * 168)
        + f']\n[workload.lengths]\nfile = "{(SAMPLES / "requests-log.csv").as_posix()}"\n'
        'format = "azure"\ncolumns = {arival = "timestamp"}\n'
    )
    result = CliRunner().invoke(main, ["check", str(workload)])
    assert "columns.arival" in result.output or "arival" in result.output, result.output


# ---------------------------------------------------------------------------- OpenTelemetry


def _span(start_ns: int, attrs: dict[str, object]) -> dict[str, object]:
    return {
        "startTimeUnixNano": str(start_ns),
        "attributes": [
            {"key": k, "value": {"intValue": str(v)} if isinstance(v, int) else {"stringValue": v}}
            for k, v in attrs.items()
        ],
    }


def _envelope(spans: list[dict[str, object]]) -> str:
    return json.dumps({"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]})


def test_otel_sample_is_detected_and_counts_what_it_skips() -> None:
    t = read_trace(SAMPLES / "otel-genai-spans.jsonl")
    assert isinstance(t, RequestTrace) and t.format == "otel"
    reasons = dict(t.skipped)
    assert reasons["failed GenAI calls (error.type set)"] == 1
    assert reasons["spans without gen_ai.* attributes"] == t.size + 1  # one HTTP span each
    assert np.all(np.diff(t.arrival_s()) >= 0)


def test_otel_spans_sorted_by_start_and_legacy_names(tmp_path: Path) -> None:
    f = tmp_path / "spans.jsonl"
    chat = {"gen_ai.operation.name": "chat"}
    f.write_text(
        _envelope(
            [
                _span(
                    3_000_000_000,
                    chat | {"gen_ai.usage.input_tokens": 9, "gen_ai.usage.output_tokens": 4},
                ),
                _span(
                    1_000_000_000,
                    {"gen_ai.usage.prompt_tokens": 7, "gen_ai.usage.completion_tokens": 2},
                ),
                _span(
                    2_000_000_000,
                    {"gen_ai.operation.name": "embeddings", "gen_ai.usage.input_tokens": 5},
                ),
            ]
        )
        + "\n"
    )
    t = read_trace(f)
    assert t.frame.rows() == [(0.0, 7, 2), (2.0, 9, 4)]


def test_otel_span_without_tokens_is_located(tmp_path: Path) -> None:
    f = tmp_path / "spans.jsonl"
    ok = _span(1, {"gen_ai.usage.input_tokens": 3, "gen_ai.usage.output_tokens": 3})
    f.write_text(
        _envelope([ok]) + "\n" + _envelope([ok, _span(2, {"gen_ai.operation.name": "chat"})])
    )
    with pytest.raises(TraceError) as err:
        read_trace(f, "otel")
    assert "row 2" in str(err.value) and "spans[1]" in str(err.value)
    assert "gen_ai.usage.input_tokens" in str(err.value)


# ------------------------------------------------------------------------------- Prometheus


def _export(series: list[tuple[dict[str, str], list[tuple[float, str]]]]) -> str:
    result = [{"metric": m, "values": [[t, v] for t, v in vals]} for m, vals in series]
    return json.dumps({"status": "success", "data": {"resultType": "matrix", "result": result}})


def test_prometheus_counters_with_a_reset(tmp_path: Path) -> None:
    f = tmp_path / "range.json"
    req = {"__name__": "vllm:request_success_total"}
    f.write_text(
        _export(
            [
                (req, [(0, "10"), (60, "16"), (120, "3"), (180, "9")]),  # restart before 120
                (
                    {"__name__": "vllm:prompt_tokens_total"},
                    [(0, "0"), (60, "600"), (120, "300"), (180, "900")],
                ),
            ]
        )
    )
    t = read_trace(f)
    assert isinstance(t, RateTrace) and t.format == "prometheus" and t.window_s == 60
    assert t.frame["rate_per_s"].to_list() == pytest.approx([6 / 60, 3 / 60, 6 / 60])
    assert t.frame["mean_input_tokens"].to_list() == pytest.approx([100, 100, 100])


def test_prometheus_scrape_gap_spreads_the_increase(tmp_path: Path) -> None:
    f = tmp_path / "range.json"
    req = {"__name__": "vllm:request_success_total"}
    f.write_text(_export([(req, [(0, "0"), (60, "6"), (180, "12")])]))
    t = read_trace(f)
    assert t.frame["rate_per_s"].to_list() == pytest.approx([0.1, 0.05, 0.05])


@pytest.mark.parametrize(
    ("values", "metric", "needles"),
    [
        ([(0, "5"), (60, "-1")], None, ["values[1]", "'-1'"]),
        ([(0, "5"), (60, "NaN")], None, ["values[1]", "'NaN'"]),
        ([(60, "5"), (0, "6")], None, ["values[1]", "increase"]),
        ([(0, "5"), (60, "6")], {"model_name": "x"}, ["__name__"]),
    ],
)
def test_prometheus_bad_counters_are_located(
    tmp_path: Path,
    values: list[tuple[float, str]],
    metric: dict[str, str] | None,
    needles: list[str],
) -> None:
    f = tmp_path / "range.json"
    f.write_text(_export([(metric or {"__name__": "vllm:request_success_total"}, values)]))
    result = CliRunner().invoke(
        main, ["trace", "inspect", str(f), "--no-png", "--out", str(tmp_path / "r")]
    )
    one_line_error(result, "range.json", "data.result[0]", *needles)


def test_prometheus_instant_query_is_refused(tmp_path: Path) -> None:
    f = tmp_path / "q.json"
    f.write_text(json.dumps({"status": "success", "data": {"resultType": "vector", "result": []}}))
    with pytest.raises(TraceError, match="matrix"):
        read_trace(f)


def test_prometheus_sample_reads_with_its_restart() -> None:
    t = read_trace(SAMPLES / "vllm-prometheus-range.json")
    assert isinstance(t, RateTrace) and t.size == 26 * 60
    assert any("4 counter resets" in n for n in t.notes)
    log = read_trace(SAMPLES / "requests-log.csv", columns=COLUMNS)
    # The restart loses the requests of the minute before it (not scraped), as in Prometheus.
    assert t.expected_requests() == pytest.approx(log.size, rel=0.01)
    means = t.frame["mean_input_tokens"].drop_nulls().to_numpy()
    assert means.mean() == pytest.approx(log.frame["input_tokens"].mean(), rel=0.05)


@pytest.mark.slow
def test_fit_from_a_prometheus_export(tmp_path: Path) -> None:
    out = tmp_path / "w.toml"
    result = CliRunner().invoke(
        main,
        [
            "trace",
            "fit",
            str(SAMPLES / "vllm-prometheus-range.json"),
            "--out",
            str(out),
            "--lengths",
            str(SAMPLES / "otel-genai-spans.jsonl"),
            "--samples",
            "5000",
        ],
    )
    assert result.exit_code == 0, result.output
    spec = parse_workload_file(out)
    assert spec.lengths_format is None and spec.base_requests_per_day > 5000

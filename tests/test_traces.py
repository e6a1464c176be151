"""Trace readers (sim.traces): every format read exactly, every malformed file a located error.

Round trips write small files by hand and check every value read; the error table pins exact
messages; hypothesis mutates valid files of every format (truncated lines, wrong types,
negative tokens, unsorted timestamps, missing fields) and requires a located `TraceError` or a
valid trace — never another exception.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import lzma
from collections.abc import Callable
from pathlib import Path

import numpy as np
import polars as pl
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sim.errors import TraceError
from sim.traces import (
    FORMATS,
    REQUEST_SCHEMA,
    RateTrace,
    RequestTrace,
    detect_format,
    read_trace,
    superposed_interarrival_cv,
    write_rate_csv,
)

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO / "traces"


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(text, encoding="utf-8")
    return path


def requests(trace: RequestTrace | RateTrace) -> RequestTrace:
    assert isinstance(trace, RequestTrace)
    return trace


# --------------------------------------------------------------------------- round trips


def test_mooncake_round_trip_keeps_hash_ids(tmp_path: Path) -> None:
    lines = [
        {"timestamp": 0, "input_length": 6758, "output_length": 500, "hash_ids": [0, 1, 2]},
        {"timestamp": 1500, "input_length": 12, "output_length": 1, "hash_ids": [0, 3]},
        {"timestamp": 1500, "input_length": 7, "output_length": 9, "hash_ids": []},
    ]
    path = write(tmp_path, "m.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    assert detect_format(path) == "mooncake"
    t = requests(read_trace(path))
    assert t.format == "mooncake" and t.has_arrivals and t.skipped == ()
    assert t.frame["arrival_s"].to_list() == [0.0, 1.5, 1.5]
    assert t.frame["input_tokens"].to_list() == [6758, 12, 7]
    assert t.frame["output_tokens"].to_list() == [500, 1, 9]
    assert t.frame["hash_ids"].to_list() == [[0, 1, 2], [0, 3], []]
    assert t.frame.select(list(REQUEST_SCHEMA)).schema == pl.Schema(REQUEST_SCHEMA)


def test_vidur_with_and_without_arrivals(tmp_path: Path) -> None:
    timed = write(
        tmp_path,
        "v.csv",
        "arrived_at,num_prefill_tokens,num_decode_tokens\n0.0,374,44\n4.3,396,1\n",
    )
    t = requests(read_trace(timed))
    assert t.format == "vidur" and t.has_arrivals
    assert t.frame["arrival_s"].to_list() == [0.0, 4.3]
    assert t.frame["output_tokens"].to_list() == [44, 1]
    lengths = write(
        tmp_path,
        "l.csv",
        "num_prefill_tokens,num_decode_tokens,num_total_tokens,pd_ratio\n74,918,992,0.08\n5,5,10,1\n",
    )
    t = requests(read_trace(lengths))
    assert not t.has_arrivals and t.size == 2
    assert t.frame["arrival_s"].null_count() == 2
    assert t.lengths().input_tokens.tolist() == [74, 5]
    with pytest.raises(TraceError, match="has no arrival times"):
        t.arrival_s()


def test_generic_csv_parquet_jsonl_agree(tmp_path: Path) -> None:
    rows = [(0.0, 10, 3, "a"), (0.5, 20, 4, "b"), (0.5, 30, 5, "a"), (7.25, 1, 1, "c")]
    csv = write(
        tmp_path,
        "g.csv",
        "arrival_s,input_tokens,output_tokens,tenant\n"
        + "".join(f"{a},{i},{o},{te}\n" for a, i, o, te in rows),
    )
    frame = pl.DataFrame(
        rows, schema=["arrival_s", "input_tokens", "output_tokens", "tenant"], orient="row"
    )
    parquet = tmp_path / "g.parquet"
    frame.write_parquet(parquet)
    jsonl = write(
        tmp_path,
        "g.jsonl",
        "".join(
            json.dumps({"arrival_s": a, "input_tokens": i, "output_tokens": o}) + "\n"
            for a, i, o, _ in rows
        ),
    )
    for path in (csv, parquet, jsonl):
        assert detect_format(path) == "generic"
        t = requests(read_trace(path))
        assert t.frame["arrival_s"].to_list() == [0.0, 0.5, 0.5, 7.25]
        assert t.frame["input_tokens"].to_list() == [10, 20, 30, 1]
        assert t.frame["output_tokens"].to_list() == [3, 4, 5, 1]
    assert requests(read_trace(csv)).frame["tenant"].to_list() == ["a", "b", "a", "c"]
    assert requests(read_trace(parquet)).frame["tenant"].to_list() == ["a", "b", "a", "c"]


def test_vllm_bench_skips_and_counts_failed_requests(tmp_path: Path) -> None:
    result = {
        "date": "20250101-000000",
        "input_lens": [100, 200, 300, 400],
        "output_lens": [10, 0, 30, 40],
        "start_times": [1000.0, 1000.5, 1001.0, 1003.0],
        "errors": ["", "Server disconnected", "", ""],
        "ttfts": [0.1, 0.0, 0.2, 0.3],
    }
    path = write(tmp_path, "bench.json", json.dumps(result))
    assert detect_format(path) == "vllm-bench"
    t = requests(read_trace(path))
    assert t.size == 3 and t.skipped_rows == 1
    assert t.skipped[0][0].startswith("failed requests")
    assert t.frame["arrival_s"].to_list() == [0.0, 1.0, 3.0]
    assert t.frame["input_tokens"].to_list() == [100, 300, 400]
    del result["start_times"]
    t = requests(read_trace(write(tmp_path, "nostart.json", json.dumps(result))))
    assert not t.has_arrivals and t.size == 3 and t.skipped_rows == 1


def test_llmservingsim_log_is_rebased(tmp_path: Path) -> None:
    lines = [
        {"request_id": "bench-0", "input_toks": 2358, "output_toks": 531, "arrival_time": 1787.5},
        {"request_id": "bench-1", "input_toks": 1034, "output_toks": 769, "arrival_time": 1788.0},
    ]
    path = write(tmp_path, "requests.jsonl", "".join(json.dumps(x) + "\n" for x in lines))
    t = requests(read_trace(path))
    assert t.format == "llmservingsim"
    assert t.frame["arrival_s"].to_list() == [0.0, 0.5]


@pytest.mark.parametrize("suffix", [".gz", ".xz"])
def test_compressed_files_read_like_plain_ones(tmp_path: Path, suffix: str) -> None:
    plain = (TRACES / "azure_code_2023.csv").read_bytes()[:20_000].rsplit(b"\n", 1)[0] + b"\n"
    pack = gzip.compress if suffix == ".gz" else lzma.compress
    packed = write(tmp_path, "code.csv" + suffix, pack(plain))
    unpacked = write(tmp_path, "code.csv", plain)
    a, b = requests(read_trace(packed)), requests(read_trace(unpacked))
    assert a.format == b.format == "azure"
    assert a.frame.equals(b.frame)
    broken = write(tmp_path, "broken.csv" + suffix, b"not compressed at all")
    with pytest.raises(TraceError, match=f"not a valid {suffix[1:]} file"):
        read_trace(broken, "azure")


def servegen_client(rows: list[tuple[int, float, float, str, float, float]]) -> str:
    return "".join(f"{t},{r},{cv},{p},{a},{b}\n" for t, r, cv, p, a, b in rows)


def test_servegen_clients_are_aggregated(tmp_path: Path) -> None:
    folder = tmp_path / "m-test"
    folder.mkdir()
    write(
        folder,
        "chunk-0-trace.csv",
        servegen_client(
            [
                (0, 1.5, 2.0, "Gamma", 0.25, 2.6667),
                (600, 0, 0, "", 0, 0),
                (1200, 2.0, 1.0, "Weibull", 1.0, 0.5),
            ]
        ),
    )
    write(
        folder,
        "chunk-10-trace.csv",
        servegen_client(
            [
                (0, 0.5, 1.0, "Gamma", 1.0, 2.0),
                (600, 1.0, 3.0, "Weibull", 0.4, 0.3),
                (1200, 0, 0, "", 0, 0),
            ]
        ),
    )
    write(folder, "notes.txt", "ignored: not a chunk file\n")
    assert detect_format(folder) == "servegen"
    t = read_trace(folder)
    assert isinstance(t, RateTrace) and t.window_s == 600.0
    assert t.frame["start_s"].to_list() == [0.0, 600.0, 1200.0]
    assert t.frame["rate_per_s"].to_list() == [2.0, 1.0, 2.0]
    assert t.frame["active_clients"].to_list() == [2, 1, 1]
    assert t.frame["rate_weighted_cv"].to_list() == pytest.approx([1.75, 3.0, 1.0])
    assert t.expected_requests() == pytest.approx(5.0 * 600)
    assert t.clients is not None and sorted(set(t.clients["client"].to_list())) == [0, 10]
    # The generic rate CSV holds the aggregate: write it, read it back.
    out = tmp_path / "rates.csv"
    write_rate_csv(t, out)
    back = read_trace(out)
    assert isinstance(back, RateTrace) and back.format == "rates"
    assert back.frame["rate_per_s"].to_list() == [2.0, 1.0, 2.0]
    cv = superposed_interarrival_cv(t, np.random.default_rng(0), windows=3)
    assert cv is not None and cv > 1.0  # Gamma shape 0.25 alone has CV 2
    assert superposed_interarrival_cv(back, np.random.default_rng(0)) is None


def test_shipped_traces() -> None:
    """Every shipped trace reads; the Mooncake archive is byte-identical to upstream."""
    mooncake = TRACES / "mooncake_conversation_trace.jsonl.xz"
    digest = hashlib.sha256(lzma.decompress(mooncake.read_bytes())).hexdigest()
    source = (TRACES / "SOURCE.md").read_text(encoding="utf-8")
    assert digest in source  # the checksum SOURCE.md records for the upstream file
    t = requests(read_trace(mooncake))
    assert t.size == 12_031 and t.frame["arrival_s"][-1] == 3_536_999 / 1000
    assert t.frame["hash_ids"].null_count() == 0
    assert any("quantised" in note for note in t.notes)
    rates = read_trace(TRACES / "servegen_m_large_rates.csv")
    assert isinstance(rates, RateTrace) and rates.size == 2016 and rates.window_s == 600.0
    assert rates.frame["rate_per_s"].mean() == pytest.approx(195.8, abs=0.05)
    for name in ("azure_conv_2023.csv", "azure_code_2023.csv"):
        assert requests(read_trace(TRACES / name)).format == "azure"
    total = sum(p.stat().st_size for p in TRACES.iterdir() if p.name != "SOURCE.md")
    assert total < 3_000_000  # keep the repository lean


def test_formats_and_detection_errors(tmp_path: Path) -> None:
    assert set(FORMATS) == {
        "azure",
        "mooncake",
        "servegen",
        "vidur",
        "vllm-bench",
        "llmservingsim",
        "generic",
        "rates",
        "otel",
        "prometheus",
    }
    path = write(tmp_path, "odd.csv", "a,b\n1,2\n")
    with pytest.raises(TraceError, match="cannot tell the trace format; name one of azure"):
        read_trace(path)
    with pytest.raises(TraceError, match="unknown trace format"):
        read_trace(path, "azur")
    with pytest.raises(TraceError, match="cannot read file"):
        read_trace(tmp_path / "absent.csv")


# --------------------------------------------------------------------------- located errors

LOCATED = [
    pytest.param(
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5, "output_length": 3}\n{"timestamp": 10, "input_len',
        "mooncake",
        "m.jsonl: row 2: not valid JSON (Unterminated string starting at), got "
        '\'{"timestamp": 10, "input_len\'',
        id="mooncake-truncated-line",
    ),
    pytest.param(
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5, "output_length": 3}\n'
        '{"timestamp": 10, "input_length": "5", "output_length": 3}\n',
        "mooncake",
        "m.jsonl: row 2: column input_length: not an integer, got '5'",
        id="mooncake-wrong-type",
    ),
    pytest.param(
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5, "output_length": 3}\n'
        '{"timestamp": 10, "input_length": 5, "output_length": -3}\n',
        "mooncake",
        "m.jsonl: row 2: column output_length: token count must be >= 1, got -3",
        id="mooncake-negative-tokens",
    ),
    pytest.param(
        "m.jsonl",
        '{"timestamp": 10, "input_length": 5, "output_length": 3}\n'
        '{"timestamp": 9, "input_length": 5, "output_length": 3}\n',
        "mooncake",
        "m.jsonl: row 2: column timestamp: timestamps must be non-decreasing, previous row has "
        "10.0, got 9.0",
        id="mooncake-unsorted",
    ),
    pytest.param(
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5, "output_length": 3}\n\n',
        "mooncake",
        "m.jsonl: row 2: blank line, got ''",
        id="mooncake-blank-line",
    ),
    pytest.param(
        "m.jsonl",
        '{"timestamp": 0, "input_length": 5}\n',
        "mooncake",
        "m.jsonl: row 1: column output_length: missing field (or null), got None",
        id="mooncake-missing-field",
    ),
    pytest.param(
        "v.csv",
        "num_prefill_tokens,num_decode_tokens,num_total_tokens\n3,4,7\n3,4,8\n",
        "vidur",
        "v.csv: row 2: column num_total_tokens: must equal num_prefill_tokens + "
        "num_decode_tokens, got '8'",
        id="vidur-total-mismatch",
    ),
    pytest.param(
        "v.csv",
        "arrived_at,num_prefill_tokens,num_decode_tokens\n0.5,3,4\n-1,3,4\n",
        "vidur",
        "v.csv: row 2: column arrived_at: must be >= 0 (s from the trace start), got '-1'",
        id="vidur-negative-time",
    ),
    pytest.param(
        "g.csv",
        "arrival_s,input_tokens,output_tokens\n0,3,4\n1,x,4\n",
        "generic",
        "g.csv: row 2: column input_tokens: not an integer, got 'x'",
        id="generic-wrong-type",
    ),
    pytest.param(
        "g.csv",
        "arrival_s,input_tokens,output_tokens,tenant\n0,3,4,a\n1,3,4,\n",
        "generic",
        "g.csv: row 2: column tenant: missing value, got None",
        id="generic-missing-tenant",
    ),
    pytest.param(
        "g.csv",
        "arrival_s,input_tokens,output_tokens\n0,3,4\n1,3,4,5\n",
        "generic",
        "g.csv: row 2: expected 3 fields, got '1,3,4,5'",
        id="generic-ragged",
    ),
    pytest.param(
        "b.json",
        json.dumps({"input_lens": [3, 4], "output_lens": [5]}),
        "vllm-bench",
        "b.json: column output_lens: must have one entry per request (2), got 1",
        id="vllm-bench-lengths-differ",
    ),
    pytest.param(
        "b.json",
        json.dumps({"input_lens": [3, 4.5], "output_lens": [5, 6]}),
        "vllm-bench",
        "b.json: row 2: column input_lens: not an integer, got 4.5",
        id="vllm-bench-wrong-type",
    ),
    pytest.param(
        "b.json",
        json.dumps({"input_lens": [3, 4], "output_lens": [5, 6], "start_times": [2.0, 1.0]}),
        "vllm-bench",
        "b.json: row 2: column start_times: timestamps must be non-decreasing, previous request "
        "has 2.0, got 1.0",
        id="vllm-bench-unsorted",
    ),
    pytest.param(
        "b.json",
        json.dumps({"output_lens": [5]}),
        "vllm-bench",
        "b.json: column input_lens: missing field (run vllm bench with --save-detailed), got None",
        id="vllm-bench-not-detailed",
    ),
    pytest.param(
        "chunk-3-trace.csv",
        "0,1.5,2.0,Gamma,0.25,2.6\n600,1.0,1.0,,0,0\n",
        "servegen",
        "chunk-3-trace.csv: row 2: column pattern: missing for a window with rate > 0, got None",
        id="servegen-missing-pattern",
    ),
    pytest.param(
        "chunk-3-trace.csv",
        "0,1.5,2.0,Gamma,0.25,2.6\n600,1.0,1.0,Gamma,1,1\n1800,1.0,1.0,Gamma,1,1\n",
        "servegen",
        "chunk-3-trace.csv: row 3: column t_seconds: windows must be contiguous: expected "
        "t_seconds = 0 + k × 600, got '1800'",
        id="servegen-gap",
    ),
    pytest.param(
        "chunk-3-trace.csv",
        "0,1.5,2.0,Gamma,0.25,2.6\n600,-1.0,1.0,Gamma,1,1\n1200,1,1,Gamma,1,1\n",
        "servegen",
        "chunk-3-trace.csv: row 2: column rate: must be >= 0 (req/s), got '-1.0'",
        id="servegen-negative-rate",
    ),
    pytest.param(
        "r.csv",
        "start_s,rate_per_s\n0,1\n600,2\n1300,1\n",
        "rates",
        "r.csv: row 3: column start_s: windows must be equally spaced (600 s apart), got '1300'",
        id="rates-uneven",
    ),
]


@pytest.mark.parametrize(("name", "text", "fmt", "message"), LOCATED)
def test_located_errors(tmp_path: Path, name: str, text: str, fmt: str, message: str) -> None:
    path = write(tmp_path, name, text)
    with pytest.raises(TraceError) as info:
        read_trace(path, fmt)
    assert str(info.value) == f"{tmp_path}/{message}"
    with pytest.raises(TraceError):  # detection agrees and fails the same way
        read_trace(path)


def test_servegen_clients_must_share_windows(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    write(folder, "chunk-1-trace.csv", "0,1,1,Gamma,1,1\n600,1,1,Gamma,1,1\n")
    write(folder, "chunk-2-trace.csv", "0,1,1,Gamma,1,1\n")
    with pytest.raises(TraceError) as info:
        read_trace(folder)
    assert str(info.value).startswith(f"{folder}/chunk-2-trace.csv: column t_seconds: windows ")


# --------------------------------------------------------------------------- fuzzing

Row = tuple[float, int, int]


def render_azure(rows: list[Row]) -> str:
    base = np.datetime64("2023-11-16T18:15:46.000000")
    lines = ["TIMESTAMP,ContextTokens,GeneratedTokens"]
    for t, i, o in rows:
        stamp = str(base + np.timedelta64(round(t * 1e6), "us")).replace("T", " ")
        lines.append(f"{stamp},{i},{o}")
    return "\n".join(lines) + "\n"


def render_mooncake(rows: list[Row]) -> str:
    return "".join(
        json.dumps(
            {
                "timestamp": int(t * 1000),
                "input_length": i,
                "output_length": o,
                "hash_ids": [k, k + 1],
            }
        )
        + "\n"
        for k, (t, i, o) in enumerate(rows)
    )


def render_generic(rows: list[Row]) -> str:
    return "arrival_s,input_tokens,output_tokens\n" + "".join(f"{t},{i},{o}\n" for t, i, o in rows)


def render_vidur(rows: list[Row]) -> str:
    return "arrived_at,num_prefill_tokens,num_decode_tokens\n" + "".join(
        f"{t},{i},{o}\n" for t, i, o in rows
    )


def render_llmservingsim(rows: list[Row]) -> str:
    return "".join(
        json.dumps({"input_toks": i, "output_toks": o, "arrival_time": 1.7e9 + t}) + "\n"
        for t, i, o in rows
    )


def render_vllm(rows: list[Row]) -> str:
    return json.dumps(
        {
            "input_lens": [i for _, i, _ in rows],
            "output_lens": [o for _, _, o in rows],
            "start_times": [t for t, _, _ in rows],
            "errors": [""] * len(rows),
        },
        indent=1,
    )


def render_servegen(rows: list[Row]) -> str:
    return "".join(
        f"{600 * k},{i / 100},{o / 10},Gamma,{1 + o},{1 / (i / 100) / (1 + o)}\n"
        for k, (_, i, o) in enumerate(rows)
    )


def render_rates(rows: list[Row]) -> str:
    return "start_s,rate_per_s\n" + "".join(
        f"{600 * k},{i / 10}\n" for k, (_, i, _) in enumerate(rows)
    )


RENDERERS: dict[str, tuple[str, Callable[[list[Row]], str]]] = {
    "azure": ("t.csv", render_azure),
    "mooncake": ("t.jsonl", render_mooncake),
    "generic": ("t.csv", render_generic),
    "vidur": ("t.csv", render_vidur),
    "llmservingsim": ("t.jsonl", render_llmservingsim),
    "vllm-bench": ("t.json", render_vllm),
    "servegen": ("chunk-7-trace.csv", render_servegen),
    "rates": ("t.csv", render_rates),
}


@st.composite
def valid_rows(draw: st.DrawFn) -> list[Row]:
    n = draw(st.integers(2, 12))
    gaps = draw(st.lists(st.integers(0, 5000), min_size=n, max_size=n))
    times = np.cumsum(gaps) / 1000.0
    tokens = draw(
        st.lists(st.tuples(st.integers(1, 9000), st.integers(1, 900)), min_size=n, max_size=n)
    )
    return [(float(t), i, o) for t, (i, o) in zip(times, tokens, strict=True)]


MUTATIONS = ("truncate", "wrong-type", "negative", "swap-times", "drop-field", "garbage-line")
JUNK = st.sampled_from(["abc", "", "-7", "1.5", "null", "1e999", '"x"', "[]", "{", "NaN", "😀"])


def mutate(text: str, how: str, data: st.DataObject) -> str:
    lines = text.splitlines(keepends=True)
    if how == "truncate":
        return text[: data.draw(st.integers(0, max(0, len(text) - 1)))]
    k = data.draw(st.integers(0, len(lines) - 1))
    line = lines[k]
    if how == "garbage-line":
        lines.insert(k, data.draw(JUNK) + "\n")
        return "".join(lines)
    fields = line.rstrip("\n").split(",")
    j = data.draw(st.integers(0, len(fields) - 1))
    if how == "wrong-type":
        fields[j] = data.draw(JUNK)
    elif how == "negative":
        digits = "".join(c for c in fields[j] if c.isdigit()) or "5"
        fields[j] = fields[j].replace(digits, "-" + digits, 1)
    elif how == "drop-field":
        del fields[j]
    elif how == "swap-times" and len(lines) > 2:
        a, b = data.draw(st.integers(0, len(lines) - 1)), data.draw(st.integers(0, len(lines) - 1))
        lines[a], lines[b] = lines[b], lines[a]
        return "".join(lines)
    lines[k] = ",".join(fields) + ("\n" if line.endswith("\n") else "")
    return "".join(lines)


def check_valid(trace: RequestTrace | RateTrace) -> None:
    """What a successful read guarantees, whatever the input."""
    if isinstance(trace, RateTrace):
        rates = trace.frame["rate_per_s"].to_numpy()
        assert np.all(np.isfinite(rates)) and rates.min() >= 0 and rates.max() > 0
        return
    f = trace.frame
    assert f.select(list(REQUEST_SCHEMA)).schema == pl.Schema(REQUEST_SCHEMA)
    assert f["input_tokens"].min() >= 1 and f["output_tokens"].min() >= 1  # type: ignore[operator]
    if trace.has_arrivals:
        t = f["arrival_s"].to_numpy()
        assert np.all(np.isfinite(t)) and t.min() >= 0 and np.all(np.diff(t) >= 0)


@pytest.mark.parametrize("fmt", sorted(RENDERERS))
@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(rows=valid_rows(), how=st.sampled_from(MUTATIONS), data=st.data())
def test_fuzzed_files_give_located_errors_never_tracebacks(
    tmp_path: Path, fmt: str, rows: list[Row], how: str, data: st.DataObject
) -> None:
    name, render = RENDERERS[fmt]
    good = render(rows)
    path = write(tmp_path, name, good)
    check_valid(read_trace(path, fmt))  # the unmutated file is valid
    path.write_bytes(mutate(good, how, data).encode("utf-8"))
    try:
        trace = read_trace(path, fmt)
    except TraceError as err:  # located: names the file; anything else fails the test
        assert err.file == str(path)
        assert str(err).startswith(str(path))
        if how in ("negative", "swap-times") and err.row is not None:
            assert err.column is not None or "fields" in str(err) or "JSON" in str(err)
        return
    check_valid(trace)

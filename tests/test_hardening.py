"""Issue #15: every reproducer of "Hardened" as a test — a located one-line error (exit 2, no
traceback) or correct behaviour; no file contents in messages; resume heals; run-size refusals.

Experiment files are copies of experiments/growth20pct.toml with one edit, written to
`tmp_path` with absolute data paths. Every file a test reads is one it wrote itself.
"""

from __future__ import annotations

import ast
import gzip
import json
import os
import time
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner, Result

from sim.cli import main

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO / "traces"
LENGTHS = f"{TRACES.as_posix()}/azure_conv_2023.csv"
PROFILE = f"{TRACES.as_posix()}/servegen_weekly_profile.csv"


def base_text() -> str:
    text = (REPO / "experiments" / "growth20pct.toml").read_text(encoding="utf-8")
    return text.replace('"../traces/', f'"{TRACES.as_posix()}/')


def write(tmp_path: Path, text: str, name: str = "x.toml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def edited(tmp_path: Path, old: str, new: str) -> Path:
    text = base_text()
    assert text.count(old) >= 1, old
    return write(tmp_path, text.replace(old, new, 1))


def one_pool(text: str, months: int) -> str:
    """`text` with `months` months of one A100 (`[fleet] pools`)."""
    start, end = text.index("[[fleet.months]]"), text.index("[cost]")
    pool = '[fleet]\npools = [{ name = "base", gpu = "a100-80gb", count = 1 }]\n\n'
    return (text[:start] + pool + text[end:]).replace("months = 6", f"months = {months}")


def cli(*args: str) -> Result:
    return CliRunner().invoke(main, list(args))


def assert_located(result: Result, *parts: str, max_lines: int = 1) -> str:
    """Exit 2, no traceback, at most `max_lines` `error:` lines naming every part."""
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert "Traceback" not in result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert 1 <= len(lines) <= max_lines + 3, result.output  # usage errors carry 3 lines of help
    for part in parts:
        assert part in result.output, (part, result.output)
    assert all(len(line) <= 410 for line in lines)
    return result.output


# ------------------------------------------------------------------ tracebacks → located errors


def test_invalid_utf8_experiment_is_located(tmp_path: Path) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(base_text().encode().replace(b"name =", b"\xff\xfe =", 1))
    out = assert_located(cli("check", str(path)), str(path), "not UTF-8")
    assert "\\xff" not in out or "0xff" in out


def test_nul_byte_in_path_is_a_usage_error() -> None:
    assert_located(cli("check", "/tmp/a\0b.toml"), "NUL byte", max_lines=1)


def test_over_long_path_component_is_located(tmp_path: Path) -> None:
    out = assert_located(cli("check", str(tmp_path / ("a" * 300 + ".toml"))), "longer than 255")
    assert len(out) < 420


def test_long_experiment_name_is_refused_by_check(tmp_path: Path) -> None:
    path = edited(tmp_path, 'name = "growth20pct"', f'name = "{"n" * 300}"')
    assert_located(cli("check", str(path)), "name: must be at most 100 characters")


def test_huge_ops_cost_is_refused_by_check(tmp_path: Path) -> None:
    path = edited(tmp_path, "ops_usd_per_month = 500.0", "ops_usd_per_month = 1.7e308")
    assert_located(cli("check", str(path)), "cost.ops_usd_per_month: must be <= 1e+10", "1.7e+308")


@pytest.mark.parametrize(
    ("old", "new", "where"),
    [
        ("count = 1 }", "count = 1000000000000 }", "pools[0].count: must be <= 10000"),
        ("tpot_s = 0.1", "tpot_s = 1e9", "slo.tpot_s: must be <= 60"),
        ("base_requests_per_day = 5000", "base_requests_per_day = 1e308", "must be <= 1e+10"),
        ('"a100-80gb" = 1.64', '"a100-80gb" = 3.7e33', "gpu_usd_per_hour.a100-80gb: must be <="),
        ('name = "base"', 'name = ""', "pools[0].name: must be 1 to 100 letters"),
        ("mean_monthly = 0.20 ", "mean_monthly = 2.5 ", "grows traffic"),
    ],
    ids=["count", "tpot", "volume", "gpu-price", "empty-pool-name", "total-growth"],
)
def test_nonsense_numbers_get_located_errors(
    tmp_path: Path, old: str, new: str, where: str
) -> None:
    text = one_pool(base_text(), 36 if "grows" in where else 6)
    path = write(tmp_path, text.replace(old, new, 1))
    assert_located(cli("check", str(path)), where, max_lines=6)


def test_percentage_written_for_a_fraction_gets_a_did_you_mean(tmp_path: Path) -> None:
    path = edited(tmp_path, "mean_monthly = 0.20", "mean_monthly = 20")
    out = assert_located(cli("check", str(path)), "workload.growth.mean_monthly")
    assert "did you mean 0.20 (20 %)?" in out


def test_tiny_volume_runs_and_prints_its_summary(tmp_path: Path) -> None:
    text = one_pool(base_text(), 1)
    text = text.replace("base_requests_per_day = 5000", "base_requests_per_day = 1e-9")
    path = write(tmp_path, text)
    out = tmp_path / "out"
    result = cli("run", str(path), "-n", "1", "--out", str(out))
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in (0, 1), result.output  # 1 only if a replication failed
    assert "Traceback" not in result.output
    if result.exit_code == 0:
        assert not (tmp_path / "out.parts").exists()


def trace_experiment(tmp_path: Path, trace: Path) -> Path:
    return write(tmp_path, base_text().replace(LENGTHS, trace.as_posix()), "t.toml")


def test_sparse_csv_is_refused_quickly(tmp_path: Path) -> None:
    sparse = tmp_path / "sparse.csv"
    with open(sparse, "wb") as handle:
        handle.truncate(2**30)
    t0 = time.perf_counter()
    assert_located(cli("check", str(trace_experiment(tmp_path, sparse))), "not a text file")
    assert time.perf_counter() - t0 < 5


def test_gzip_of_nuls_is_refused_quickly(tmp_path: Path) -> None:
    bomb = tmp_path / "nul.csv.gz"
    with gzip.open(bomb, "wb") as handle:
        handle.write(b"\0" * (8 * 2**20))
    assert_located(cli("check", str(trace_experiment(tmp_path, bomb))), "not a text file")


def test_parquet_with_uint64_tokens_is_located(tmp_path: Path) -> None:
    trace = tmp_path / "u.parquet"
    pl.DataFrame(
        {
            "arrival_s": [0.0, 1.0],
            "input_tokens": pl.Series([5, 2**64 - 1], dtype=pl.UInt64),
            "output_tokens": pl.Series([5, 5], dtype=pl.UInt64),
        }
    ).write_parquet(trace)
    assert_located(
        cli("check", str(trace_experiment(tmp_path, trace))), "row 2", "input_tokens", "<="
    )


def test_parquet_with_uint64_tokens_in_range_is_read(tmp_path: Path) -> None:
    from sim.traces import read_trace

    trace = tmp_path / "u.parquet"
    pl.DataFrame(
        {
            "arrival_s": [0.0, 1.0],
            "input_tokens": pl.Series([5, 7], dtype=pl.UInt64),
            "output_tokens": pl.Series([5, 5], dtype=pl.UInt32),
        }
    ).write_parquet(trace)
    assert read_trace(trace).frame["input_tokens"].to_list() == [5, 7]


def test_vllm_bench_token_count_of_2_pow_70_is_located(tmp_path: Path) -> None:
    trace = tmp_path / "b.json"
    trace.write_text(json.dumps({"input_lens": [5, 2**70], "output_lens": [5, 5]}))
    assert_located(cli("check", str(trace_experiment(tmp_path, trace))), "row 2", "input_lens")


def test_weekly_profile_of_1e308_is_located(tmp_path: Path) -> None:
    profile = tmp_path / "p.csv"
    profile.write_text("hour_of_week,multiplier\n" + "".join(f"{h},1e308\n" for h in range(168)))
    path = write(tmp_path, base_text().replace(PROFILE, profile.as_posix()))
    assert_located(cli("check", str(path)), "workload.weekly_profile")


def test_inline_weekly_profile_of_1e308_is_located(tmp_path: Path) -> None:
    values = ", ".join(["1e308"] * 168)
    path = write(tmp_path, base_text().replace(f'"{PROFILE}"', f"[{values}]"))
    assert_located(cli("check", str(path)), "workload.weekly_profile: multipliers must be <=")


# ------------------------------------------------------------------------------------- hangs


def test_twenty_thousand_pools_parse_fast(tmp_path: Path) -> None:
    from sim.config import load_experiment_spec

    pools = ",".join(f'{{ name = "p{i}", gpu = "a100-80gb", count = 1 }}' for i in range(20_000))
    text = one_pool(base_text(), 6).replace(
        'pools = [{ name = "base", gpu = "a100-80gb", count = 1 }]', f"pools = [{pools}]"
    )
    path = write(tmp_path, text)
    t0 = time.perf_counter()
    spec = load_experiment_spec(path)
    assert len(spec.fleet[0].pools) == 20_000
    assert time.perf_counter() - t0 < 5


def test_duplicate_pool_names_still_reported(tmp_path: Path) -> None:
    pool = '{ name = "a", gpu = "a100-80gb", count = 1 }'
    text = one_pool(base_text(), 6).replace(
        'pools = [{ name = "base", gpu = "a100-80gb", count = 1 }]', f"pools = [{pool}, {pool}]"
    )
    path = write(tmp_path, text)
    assert_located(
        cli("check", str(path)), "fleet.pools[1].name: is used by another pool of this month"
    )


def replay_text(trace: Path) -> str:
    text = base_text()
    head, rest = text.split("[workload]", 1)
    engine = rest[rest.index("[engine]") :]
    return (
        head
        + f'[workload]\nkind = "replay"\ntrace = "{trace.as_posix()}"\n'
        + "[workload.growth]\nmean_monthly = 0.2\n\n"
        + engine
    )


@pytest.mark.parametrize(
    "rows", [["5,10,10"], ["5,10,10", "5,10,10", "5,10,10"]], ids=["one-row", "equal-times"]
)
def test_degenerate_replay_trace_is_refused_fast(tmp_path: Path, rows: list[str]) -> None:
    trace = tmp_path / "r.csv"
    trace.write_text("arrival_s,input_tokens,output_tokens\n" + "\n".join(rows) + "\n")
    t0 = time.perf_counter()
    assert_located(
        cli("check", str(write(tmp_path, replay_text(trace)))), "workload.trace", "loops"
    )
    assert time.perf_counter() - t0 < 5


# ------------------------------------------------------------------------- file disclosure

SECRET = "root:$6$s3cr3tHASHs3cr3t:19000:0:99999:7:::"


@pytest.mark.parametrize("suffix", [".csv", ".jsonl", ".json", ".csv.gz", ""])
def test_unparsable_file_contents_never_echoed(tmp_path: Path, suffix: str) -> None:
    secret = tmp_path / f"shadow{suffix}"
    data = (SECRET + "\nAWS_SECRET_ACCESS_KEY=abcdefSECRET\n").encode()
    secret.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    for fmt in (None, "azure", "mooncake", "generic", "vllm-bench", "rates"):
        text = base_text().replace(f'lengths = "{LENGTHS}"', "")
        table = f'[workload.lengths]\nfile = "{secret.as_posix()}"\n'
        if fmt is not None:
            table += f'format = "{fmt}"\n'
        text = text.replace("[workload.growth]", table + "\n[workload.growth]")
        result = cli("check", str(write(tmp_path, text)))
        assert result.exit_code == 2, result.output
        assert "s3cr3t" not in result.output and "SECRET" not in result.output, result.output


@pytest.mark.parametrize(
    "target", ["/proc/self/environ", "/proc/self/status", "/dev/zero", "/sys/kernel/notes"]
)
def test_system_files_are_refused(tmp_path: Path, target: str) -> None:
    path = write(tmp_path, base_text().replace(LENGTHS, target))
    assert_located(cli("check", str(path)), "workload.lengths: refused")


def test_symlink_to_proc_is_refused(tmp_path: Path) -> None:
    link = tmp_path / "innocent.csv"
    link.symlink_to("/proc/self/environ")
    path = write(tmp_path, base_text().replace(LENGTHS, link.as_posix()))
    assert_located(cli("check", str(path)), "refused: resolves under /proc")


def test_fifo_is_refused_without_blocking(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe.csv"
    os.mkfifo(fifo)
    path = write(tmp_path, base_text().replace(LENGTHS, fifo.as_posix()))
    assert_located(cli("check", str(path)), "not a regular file")


def test_include_of_system_file_is_refused(tmp_path: Path) -> None:
    text = base_text()
    head, rest = text.split("[workload]", 1)
    engine = rest[rest.index("[engine]") :]
    text = head + '[workload]\ninclude = "/proc/self/environ"\n\n' + engine
    assert_located(cli("check", str(write(tmp_path, text))), "workload.include: refused")


def test_relative_dotdot_and_absolute_paths_are_allowed(tmp_path: Path) -> None:
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    data = tmp_path / "data.csv"
    data.write_bytes(Path(LENGTHS).read_bytes())
    text = base_text().replace(LENGTHS, "../../data.csv")
    result = cli("check", str(write(sub, text)))
    assert result.exit_code == 0, result.output


FORBIDDEN_CALLS = {"eval", "exec", "compile", "__import__"}
FORBIDDEN_MODULES = {"pickle", "marshal", "shelve", "dill", "cloudpickle", "yaml"}


def test_no_code_execution_path_on_user_data() -> None:
    """An audit of sim/: no eval/exec/compile, no pickle/marshal/shelve/yaml imports or calls
    (parts and reports are parquet and JSON). A new one fails here until reviewed."""
    found = []
    for file in sorted((REPO / "sim").rglob("*.py")):
        tree = ast.parse(file.read_text(encoding="utf-8"), str(file))
        for node in ast.walk(tree):
            line = f"{file}:{getattr(node, 'lineno', 0)}"
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Name)
                and node.func.id in FORBIDDEN_CALLS
            ):
                found.append(f"{line}: {node.func.id}()")
            if isinstance(node, ast.Import):
                found += [
                    f"{line}: import {a.name}"
                    for a in node.names
                    if a.name.split(".")[0] in FORBIDDEN_MODULES
                ]
            module = node.module if isinstance(node, ast.ImportFrom) else None
            if module and module.split(".")[0] in FORBIDDEN_MODULES:
                found.append(f"{line}: from {module}")
            if (
                isinstance(node, ast.Attribute)
                and node.attr in ("load", "loads")
                and isinstance(node.value, ast.Name)
                and node.value.id in FORBIDDEN_MODULES
            ):
                found.append(f"{line}: {node.value.id}.{node.attr}")
    assert found == []


# --------------------------------------------------------------------------------- filesystem


def test_out_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    path = write(tmp_path, one_pool(base_text(), 1))
    out = tmp_path / "file" / "report"
    assert_located(cli("run", str(path), "-n", "1", "--out", str(out)), "is a file, not a folder")


def test_parts_path_that_is_a_file_is_one_line_in_the_cli(tmp_path: Path) -> None:
    path = write(tmp_path, one_pool(base_text(), 1))
    (tmp_path / "out.parts").write_text("")
    result = cli("run", str(path), "-n", "1", "--out", str(tmp_path / "out"))
    assert_located(result, "exists and is not a folder")


def test_stale_report_temporaries_are_cleaned(tmp_path: Path) -> None:
    from sim.report.results import clean_stale

    out = tmp_path / "report"
    out.mkdir()
    dead = [tmp_path / ".report.tmp-999999999", tmp_path / ".report.old-999999998"]
    for d in dead:
        d.mkdir()
    alive = tmp_path / f".report.tmp-{os.getppid()}"  # a running process: left alone
    alive.mkdir()
    other = tmp_path / ".other.tmp-999999999"
    other.mkdir()
    clean_stale(out)
    assert not any(d.exists() for d in dead)
    assert alive.exists() and other.exists()


# ----------------------------------------------------------------------------- run size


@pytest.mark.parametrize(
    ("old", "new", "knob"),
    [
        ("replications = 20", "replications = 1000000", "monte_carlo.replications"),
        (
            "base_requests_per_day = 5000",
            "base_requests_per_day = 1e10",
            "workload.base_requests_per_day",
        ),
        ("count = 1 }", "count = 10000 }", "pools[0].count: a fleet of"),
    ],
    ids=["replications", "volume", "fleet"],
)
def test_oversized_runs_are_refused_naming_the_knob(
    tmp_path: Path, old: str, new: str, knob: str
) -> None:
    text = one_pool(base_text(), 6).replace(old, new)
    if "fleet" in knob:  # 100 pools of 10,000 replicas: a fleet of 10**6
        pools = ", ".join(
            f'{{ name = "p{i}", gpu = "a100-80gb", count = 10000 }}' for i in range(100)
        )
        text = one_pool(base_text(), 6).replace(
            'pools = [{ name = "base", gpu = "a100-80gb", count = 1 }]', f"pools = [{pools}]"
        )
    path = write(tmp_path, text)
    for args in (["check", str(path)], ["run", str(path), "--out", str(tmp_path / "o")]):
        out = assert_located(cli(*args), knob, max_lines=3)
        assert "--force" in out
    assert not (tmp_path / "o.parts").exists()


def test_run_prints_its_size_with_the_horizon(tmp_path: Path) -> None:
    path = write(tmp_path, one_pool(base_text(), 1).replace("= 5000", "= 200"))
    result = cli("run", str(path), "-n", "1", "--out", str(tmp_path / "o"))
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert lines[0].startswith("horizon: ") and lines[1].startswith("size: ~")
    assert "per replication" in lines[1]


# ------------------------------------------------------------------- hypothesis fuzz suite

from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from sim.errors import SimError  # noqa: E402
from sim.traces import read_trace  # noqa: E402

HOSTILE_VALUES = [
    "0", "-1", "1e308", "-1e308", "1e-9", "20", "100", "9223372036854775807", "1e30", "nan",
    "inf", "true", '""', '"' + "n" * 300 + '"', '"/proc/self/environ"', '"/dev/zero"',
    '"../../x"', '"\\u0000"', "[]", "[1, 2]", "{}", "{ a = 1 }", "1979-05-27T07:32:00Z",
]  # fmt: skip
FUZZ = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def fuzz_check(path: Path) -> None:
    """`sim check` on `path`: accepted, or every line a located `error:` line; never a
    traceback."""
    result = CliRunner().invoke(main, ["check", str(path)])
    assert result.exception is None or isinstance(result.exception, SystemExit), repr(
        result.exception
    )
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = [line for line in result.output.splitlines() if line.strip()]
        assert lines and all(line.startswith("error: ") for line in lines), result.output
        assert all(len(line) <= 400 for line in lines)


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(0, 10**6), st.sampled_from(HOSTILE_VALUES)), min_size=1, max_size=3
    )
)
def test_fuzz_mutated_configs(tmp_path: Path, edits: list[tuple[int, str]]) -> None:
    lines = one_pool(base_text(), 2).replace(LENGTHS, SMALL_LENGTHS.as_posix()).splitlines()
    keyed = [i for i, line in enumerate(lines) if "=" in line and not line.startswith("#")]
    for pick, value in edits:
        i = keyed[pick % len(keyed)]
        lines[i] = lines[i].split("=", 1)[0] + "= " + value
    path = tmp_path / "fuzz.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    fuzz_check(path)


SMALL_LENGTHS = Path(LENGTHS)  # replaced by a 200-row copy in a temp folder (fixture below)


@pytest.fixture(autouse=True, scope="module")
def _small_lengths(tmp_path_factory: pytest.TempPathFactory) -> None:
    """A 200-row lengths trace (so a fuzzed `check` takes milliseconds), in a temp folder."""
    global SMALL_LENGTHS
    folder = tmp_path_factory.mktemp("fuzz")
    rows = Path(LENGTHS).read_text(encoding="utf-8").splitlines()[:201]
    SMALL_LENGTHS = folder / "lengths.csv"
    SMALL_LENGTHS.write_text("\n".join(rows) + "\n", encoding="utf-8")


@FUZZ
@given(
    data=st.binary(max_size=3000),
    suffix=st.sampled_from([".csv", ".jsonl", ".json", ".csv.gz", ".txt"]),
    fmt=st.sampled_from([None, "azure", "generic", "mooncake", "vllm-bench", "rates", "vidur"]),
)
def test_fuzz_random_bytes_as_traces(
    tmp_path: Path, data: bytes, suffix: str, fmt: str | None
) -> None:
    trace = tmp_path / f"t{suffix}"
    trace.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    try:
        read_trace(trace, fmt)
    except SimError as err:
        assert len(str(err)) < 600
        assert "\n" not in str(err)


CELLS = ["", "-1", "0", "nan", "inf", "1e308", "99999999999999999999", "1.5", "abc", "\x00", "é"]


@FUZZ
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["0", "1.5", "3", *CELLS]),
            st.sampled_from(["10", "200", *CELLS]),
            st.sampled_from(["5", "50", *CELLS]),
        ),
        min_size=0,
        max_size=8,
    ),
    header=st.sampled_from(
        ["arrival_s,input_tokens,output_tokens", "arrival_s,input_tokens", "a,b,c", ""]
    ),
)
def test_fuzz_malformed_csv_cells(tmp_path: Path, rows: list[tuple[str, ...]], header: str) -> None:
    trace = tmp_path / "t.csv"
    text = header + "\n" + "".join(",".join(r) + "\n" for r in rows)
    trace.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        trace_obj = read_trace(trace)
    except SimError as err:
        assert "\n" not in str(err) and len(str(err)) < 600
    else:
        assert trace_obj.frame.height == len(rows)


@FUZZ
@given(
    rows=st.lists(
        st.tuples(
            st.sampled_from(["0", "1.5", "3", "7", *CELLS]),
            st.sampled_from(["10", "200", *CELLS]),
            st.sampled_from(["5", "50", *CELLS]),
        ),
        min_size=1,
        max_size=6,
    ),
    replay=st.booleans(),
)
def test_fuzz_malformed_traces_through_check(
    tmp_path: Path, rows: list[tuple[str, ...]], replay: bool
) -> None:
    trace = tmp_path / "t.csv"
    text = "arrival_s,input_tokens,output_tokens\n" + "".join(",".join(r) + "\n" for r in rows)
    trace.write_text(text, encoding="utf-8")
    if replay:
        path = write(tmp_path, replay_text(trace))
    else:
        path = write(tmp_path, base_text().replace(LENGTHS, trace.as_posix()))
    fuzz_check(path)


def test_rate_trace_with_huge_rates_is_located(tmp_path: Path) -> None:
    trace = tmp_path / "r.csv"
    trace.write_text("start_s,rate_per_s\n0,1\n600,1e308\n1200,1e308\n")
    text = replay_text(trace).replace('kind = "replay"', f'kind = "replay"\nlengths = "{LENGTHS}"')
    assert_located(cli("check", str(write(tmp_path, text))), "row 2", "rate_per_s")

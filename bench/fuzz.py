"""Fuzz the user-facing entry points in-process: mutated experiment files and malformed traces.

Usage: python bench/fuzz.py [--configs 10000] [--traces 2000] [--seed 15] [--timeout 20]

Each case runs `sim check` through click's CliRunner (the real CLI, in this process) on a file
written to a temporary folder, and is counted by outcome:

- `accepted`: exit 0;
- `located`: exit 2, every line an `error:` line (or click's usage error) of at most 400
  characters, naming the file (a located, one-line-per-problem rejection);
- `unlocated`: exit 2, but some line does not name the file or is too long;
- `traceback`: any exception other than SystemExit (a bug);
- `hang`: over `--timeout` seconds (SIGALRM);
- `other-exit`: any other exit code.

Configs: growth20pct.toml (with a 300-row lengths trace, so a case takes milliseconds) mutated
by 1-3 of: a value replaced from a palette of hostile values (huge, tiny, negative, wrong type,
long or path-like strings, arrays, tables), a key deleted, renamed or duplicated, an unknown key
added, a line duplicated or dropped, bytes flipped, NUL or invalid UTF-8 inserted, truncation.
Traces: small valid files of every format (azure, generic CSV/JSONL/Parquet, mooncake,
llmservingsim, vllm-bench, vidur, rates, weekly profile) with a cell, a line or bytes corrupted,
read as a generated workload's lengths, as a replay's trace or as the weekly profile, with the
format detected or named. Prints the counts and up to 5 examples of every bad outcome.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import re
import signal
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path
from types import FrameType

import polars as pl
from click.testing import CliRunner

from sim.cli import main

ROOT = Path(__file__).resolve().parents[1]
MAX_LINE = 400


class Hang(Exception):
    pass


def _alarm(signum: int, frame: FrameType | None) -> None:
    raise Hang


PALETTE = [
    "0",
    "-1",
    "1",
    "-0.0",
    "1e308",
    "-1e308",
    "1.7e308",
    "1e-9",
    "1e-300",
    "20",
    "100",
    "0.5",
    "9223372036854775807",
    "-9223372036854775808",
    "1e30",
    "3.7e33",
    "nan",
    "inf",
    "-inf",
    "true",
    "false",
    '""',
    '"x"',
    '"' + "n" * 300 + '"',
    '"../../../etc/passwd"',
    '"/proc/self/environ"',
    '"/dev/zero"',
    '"/sys/kernel/notes"',
    '"\\u0000"',
    '"a\\nb"',
    '"nonexistent.csv"',
    "[]",
    "[1, 2, 3]",
    '["a"]',
    "[[1]]",
    "{}",
    "{ a = 1 }",
    '{ name = "", gpu = "a100-80gb", count = 1 }',
    "1979-05-27T07:32:00Z",
    "0x7fffffff",
    '"markov"',
    '"ou"',
    '"product"',
    '"replay"',
    '"spot"',
    '"sampled"',
    '"full"',
]
KEY_LINE = re.compile(r'^(\s*)("?[A-Za-z0-9_.-]+"?)(\s*=\s*)(.*)$')


def base_config(tmp: Path) -> str:
    text = (ROOT / "experiments" / "growth20pct.toml").read_text(encoding="utf-8")
    lengths = tmp / "lengths.csv"
    rows = (ROOT / "traces" / "azure_conv_2023.csv").read_text(encoding="utf-8").splitlines()
    lengths.write_text("\n".join(rows[:301]) + "\n", encoding="utf-8")
    text = text.replace('"../traces/azure_conv_2023.csv"', f'"{lengths.as_posix()}"')
    return text.replace('"../traces/', f'"{(ROOT / "traces").as_posix()}/')


def mutate_config(text: str, rng: random.Random) -> bytes:
    lines = text.splitlines()
    for _ in range(rng.randint(1, 3)):
        keyed = [i for i, line in enumerate(lines) if KEY_LINE.match(line)]
        op = rng.random()
        if op < 0.55 and keyed:
            i = rng.choice(keyed)
            m = KEY_LINE.match(lines[i])
            assert m is not None
            lines[i] = m.group(1) + m.group(2) + m.group(3) + rng.choice(PALETTE)
        elif op < 0.65 and keyed:
            del lines[rng.choice(keyed)]
        elif op < 0.72 and keyed:
            i = rng.choice(keyed)
            m = KEY_LINE.match(lines[i])
            assert m is not None
            key = m.group(2).strip('"')
            typo = key[:-1] if len(key) > 1 and rng.random() < 0.5 else key + rng.choice("sx_")
            lines[i] = m.group(1) + typo + m.group(3) + m.group(4)
        elif op < 0.78:
            lines.insert(rng.randrange(len(lines) + 1), f"unknown_{rng.randint(0, 9)} = 1")
        elif op < 0.84 and lines:
            i = rng.randrange(len(lines))
            lines.insert(i, lines[i])
        elif op < 0.88 and lines:
            del lines[rng.randrange(len(lines))]
        else:
            data = bytearray("\n".join(lines).encode())
            kind = rng.random()
            if kind < 0.3:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif kind < 0.5:
                data.insert(rng.randrange(len(data)), 0)
            elif kind < 0.7:
                data[rng.randrange(len(data)) :] = b""
            else:
                data.insert(rng.randrange(len(data)), 0xFF)
            return bytes(data)
    return ("\n".join(lines) + "\n").encode()


# ------------------------------------------------------------------------------------- traces

HOSTILE_CELLS = [
    "",
    "-1",
    "0",
    "nan",
    "inf",
    "1e308",
    "99999999999999999999999",
    "18446744073709551615",
    "1.5",
    "abc",
    "\x00",
    "é",
    '"',
    "2023-13-45 99:99:99",
    "-0",
    " 7 ",
    "1e2",
    "0x10",
    "1180591620717411303424",
]


def valid_traces() -> dict[str, tuple[str, bytes]]:
    """name → (suffix, bytes) of small valid traces of every format."""
    azure = "TIMESTAMP,ContextTokens,GeneratedTokens\n" + "".join(
        f"2023-11-16 18:{m:02d}:{s:02d}.000000,{100 + s},{20 + m}\n"
        for m in range(10)
        for s in range(0, 60, 7)
    )
    generic = "arrival_s,input_tokens,output_tokens\n" + "".join(
        f"{i * 3.5},{50 + i},{10 + i % 7}\n" for i in range(80)
    )
    mooncake = "".join(
        json.dumps(
            {
                "timestamp": i * 1000,
                "input_length": 100 + i,
                "output_length": 9,
                "hash_ids": [i, i + 1],
            }
        )
        + "\n"
        for i in range(60)
    )
    servingsim = "".join(
        json.dumps({"arrival_time": 1.7e9 + i, "input_toks": 30 + i, "output_toks": 5}) + "\n"
        for i in range(60)
    )
    generic_jsonl = "".join(
        json.dumps({"arrival_s": i * 2.0, "input_tokens": 30 + i, "output_tokens": 5}) + "\n"
        for i in range(60)
    )
    bench = json.dumps(
        {
            "input_lens": [100 + i for i in range(50)],
            "output_lens": [10 + i for i in range(50)],
            "start_times": [1000.0 + i for i in range(50)],
            "errors": [""] * 50,
        }
    )
    vidur = "arrived_at,num_prefill_tokens,num_decode_tokens\n" + "".join(
        f"{i * 1.5},{200 + i},{30 + i}\n" for i in range(60)
    )
    rates = "start_s,rate_per_s\n" + "".join(f"{i * 600},{1 + i % 5}\n" for i in range(300))
    profile = "hour_of_week,multiplier\n" + "".join(f"{h},{1 + h % 24 / 10}\n" for h in range(168))
    return {
        "azure": (".csv", azure.encode()),
        "generic": (".csv", generic.encode()),
        "mooncake": (".jsonl", mooncake.encode()),
        "llmservingsim": (".jsonl", servingsim.encode()),
        "generic-jsonl": (".jsonl", generic_jsonl.encode()),
        "vllm-bench": (".json", bench.encode()),
        "vidur": (".csv", vidur.encode()),
        "rates": (".csv", rates.encode()),
        "profile": (".csv", profile.encode()),
    }


def mutate_trace(data: bytes, suffix: str, rng: random.Random) -> bytes:
    text = data.decode()
    op = rng.random()
    if suffix == ".json" and op < 0.5:
        obj = json.loads(text)
        key = rng.choice(list(obj))
        choice = rng.random()
        if choice < 0.3:
            del obj[key]
        elif choice < 0.7 and obj[key]:
            obj[key][rng.randrange(len(obj[key]))] = rng.choice(
                [2**70, -5, 0, 1.5, None, "x", [], {}, 1e308, True, 10**400]
            )
        else:
            obj[key] = rng.choice([None, 3, "x", {}, []])
        return json.dumps(obj).encode()
    lines = text.splitlines()
    if op < 0.55 and len(lines) > 1:
        i = rng.randrange(len(lines))
        if suffix == ".jsonl":
            lines[i] = lines[i].replace(
                rng.choice(re.findall(r"\d+", lines[i]) or ["1"]), rng.choice(HOSTILE_CELLS), 1
            )
        else:
            cells = lines[i].split(",")
            cells[rng.randrange(len(cells))] = rng.choice(HOSTILE_CELLS)
            lines[i] = ",".join(cells)
    elif op < 0.65 and lines:
        del lines[rng.randrange(len(lines))]
    elif op < 0.72 and len(lines) > 2:
        i, j = rng.randrange(1, len(lines)), rng.randrange(1, len(lines))
        lines[i], lines[j] = lines[j], lines[i]
    elif op < 0.77:
        lines = lines[: rng.randint(0, 2)]
    elif op < 0.82:
        lines.insert(rng.randrange(len(lines) + 1), rng.choice(["", ",,,", "{", "[1,2]", "a,b"]))
    else:
        raw = bytearray(data)
        kind = rng.random()
        if kind < 0.4:
            raw[rng.randrange(len(raw))] = rng.randrange(256)
        elif kind < 0.6:
            raw[rng.randrange(len(raw)) :] = b""
        elif kind < 0.8:
            raw.insert(rng.randrange(len(raw)), 0)
        else:
            raw = bytearray(rng.randbytes(rng.randint(0, 4096)))
        return bytes(raw)
    return ("\n".join(lines) + "\n").encode()


def trace_experiment(base: str, trace: Path, name: str, fmt: str | None, rng: random.Random) -> str:
    """An experiment that reads `trace` as lengths, replay trace or weekly profile."""
    lengths_line = next(line for line in base.splitlines() if line.startswith("lengths ="))
    profile_line = next(line for line in base.splitlines() if line.startswith("weekly_profile ="))
    fmt_line = f'format = "{fmt}"\n' if fmt else ""
    if name == "profile":
        return base.replace(profile_line, f'weekly_profile = "{trace.as_posix()}"')
    if name not in ("vidur-lengths",) and rng.random() < 0.5:
        head, rest = base.split("[workload]", 1)
        engine = rest[rest.index("[engine]") :]
        replay = f'[workload]\nkind = "replay"\ntrace = "{trace.as_posix()}"\n{fmt_line}'
        if name == "rates":
            replay += f"lengths = {lengths_line.split('=', 1)[1].strip()}\n"
        return head + replay + "\n[workload.growth]\nmean_monthly = 0.2\n\n" + engine
    table = f'[workload.lengths]\nfile = "{trace.as_posix()}"\n{fmt_line}'
    return base.replace(lengths_line, "").replace(
        "[workload.growth]", table + "\n[workload.growth]"
    )


# ---------------------------------------------------------------------------------- running


def classify(runner: CliRunner, args: list[str], file: Path, timeout: float) -> tuple[str, str]:
    signal.signal(signal.SIGALRM, _alarm)
    signal.setitimer(signal.ITIMER_REAL, timeout)
    t0 = time.perf_counter()
    try:
        result = runner.invoke(main, args, catch_exceptions=True)
    except Hang:
        return "hang", f"{args}: over {timeout:g} s"
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    if isinstance(result.exception, Hang):
        return "hang", f"{args}: over {timeout:g} s"
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        tb = "".join(traceback.format_exception(*result.exc_info)[-3:])
        return "traceback", f"{file}: {tb}"
    if result.exit_code == 0:
        return "accepted", f"{time.perf_counter() - t0:.2f} s"
    if result.exit_code != 2:
        return "other-exit", f"{file}: exit {result.exit_code}: {result.output[-300:]}"
    lines = [line for line in result.output.splitlines() if line.strip()]
    usage = any(line.startswith("Error:") for line in lines)
    located = usage or (
        bool(lines)
        and all(line.startswith("error: ") for line in lines)
        and all(len(line) <= MAX_LINE for line in lines)
        and all(str(file)[:40] in line or "/" in line for line in lines)
    )
    return ("located" if located else "unlocated"), f"{file}: {result.output[:300]!r}"


def main_(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", type=int, default=10_000)
    parser.add_argument("--traces", type=int, default=2_000)
    parser.add_argument("--seed", type=int, default=15)
    parser.add_argument("--timeout", type=float, default=20.0)
    parser.add_argument("--verbose", action="store_true", help="show the slowest trace case")
    args = parser.parse_args(argv)
    rng = random.Random(args.seed)
    runner = CliRunner()
    bad: dict[str, list[str]] = {}
    slowest = 0.0
    slowest_case = ""
    with tempfile.TemporaryDirectory(prefix="sim-fuzz-") as tmp_name:
        tmp = Path(tmp_name)
        base = base_config(tmp)
        counts: dict[str, Counter[str]] = {"configs": Counter(), "traces": Counter()}
        t0 = time.perf_counter()
        for i in range(args.configs):
            path = tmp / f"c{i % 50}.toml"
            path.write_bytes(mutate_config(base, rng))
            t = time.perf_counter()
            outcome, detail = classify(runner, ["check", str(path)], path, args.timeout)
            slowest = max(slowest, time.perf_counter() - t)
            counts["configs"][outcome] += 1
            if outcome not in ("accepted", "located"):
                bad.setdefault(outcome, []).append(detail)
        config_s = time.perf_counter() - t0
        traces = valid_traces()
        names = sorted(traces)
        t0 = time.perf_counter()
        for i in range(args.traces):
            name = rng.choice(names)
            suffix, data = traces[name]
            mutated = mutate_trace(data, suffix, rng)
            if rng.random() < 0.1 and suffix != ".json":
                mutated, suffix = gzip.compress(mutated), suffix + ".gz"
            if name == "generic" and rng.random() < 0.15:
                suffix = ".parquet"
                try:
                    mutated = _parquet_bytes(mutated, tmp, rng)
                except Exception:
                    suffix = ".csv"
            trace = tmp / f"t{i % 50}{suffix}"
            trace.write_bytes(mutated)
            fmt = None
            if rng.random() < 0.4 and name != "profile":
                fmt = rng.choice(
                    [name.replace("-jsonl", ""), "generic", "azure", "mooncake", "rates"]
                )
            exp = tmp / f"e{i % 50}.toml"
            exp.write_text(trace_experiment(base, trace, name, fmt, rng), encoding="utf-8")
            t = time.perf_counter()
            outcome, detail = classify(runner, ["check", str(exp)], exp, args.timeout)
            if time.perf_counter() - t > slowest:
                slowest = time.perf_counter() - t
                slowest_case = f"{name} {fmt} {exp.read_text(encoding='utf-8')[-600:]!r}"
            counts["traces"][outcome] += 1
            if outcome not in ("accepted", "located"):
                bad.setdefault(outcome, []).append(detail)
        trace_s = time.perf_counter() - t0
    order = ("accepted", "located", "unlocated", "traceback", "hang", "other-exit")
    for family, seconds in (("configs", config_s), ("traces", trace_s)):
        c = counts[family]
        total = sum(c.values())
        shown = ", ".join(f"{k} {c[k]:,}" for k in order)
        print(f"{family}: {total:,} cases in {seconds:.0f} s: {shown}")
    print(f"slowest case: {slowest:.2f} s (hang limit {args.timeout:g} s)")
    if args.verbose:
        print(slowest_case)
    for outcome, details in bad.items():
        print(f"--- {outcome}: {len(details)} (first 5)")
        for d in details[:5]:
            print(d)
    failures = sum(counts[f][k] for f in counts for k in ("unlocated", "traceback", "hang"))
    return 1 if failures else 0


def _parquet_bytes(csv: bytes, tmp: Path, rng: random.Random) -> bytes:
    import io

    frame = pl.read_csv(io.BytesIO(csv), infer_schema_length=0)
    casts = [pl.Int64, pl.UInt64, pl.Float64, pl.String, pl.Int8, pl.UInt32]
    frame = frame.with_columns(
        pl.col(c).cast(rng.choice(casts), strict=False) for c in frame.columns
    )
    path = tmp / "p.parquet"
    frame.write_parquet(path)
    return path.read_bytes()


if __name__ == "__main__":
    sys.exit(main_())

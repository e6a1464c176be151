"""Write the synthetic production-workload samples in traces/production/ (seeded, deterministic).

    python scripts/make_production_samples.py [--out traces/production]

One made-up service, 26 hours from Monday 2025-03-03 00:00 UTC, a diurnal rate (0.03 req/s at
night, 0.15 at 14:00) with log-normal lengths, written three ways:
- `requests-log.csv`: a request log with its own column names and ISO-8601 timestamps
  (`sim trace fit … --columns arrival=timestamp,input=prompt_tokens,output=completion_tokens`);
- `otel-genai-spans.jsonl`: the first 2 hours as OTLP/JSON lines of GenAI `chat` spans (batches
  of 50 per line), with an HTTP parent span per request and one failed call;
- `vllm-prometheus-range.json`: a range-query export (60 s step) of `vllm:request_success_total`
  (two `finished_reason` series), `vllm:prompt_tokens_total`, `vllm:generation_tokens_total`
  and the `vllm:num_requests_running` gauge, with one server restart at 13:00 (every counter
  drops to its count since the restart).
Nothing here is measured: the files exist to show the formats and to test the readers.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path

import numpy as np

START = dt.datetime(2025, 3, 3, tzinfo=dt.UTC)  # a Monday: trace time 0 = Monday 00:00
SPAN_S = 26 * 3600
STEP_S = 60
RESTART_S = 13 * 3600


def arrivals(rng: np.random.Generator) -> np.ndarray:
    """A non-homogeneous Poisson process by thinning: rate 0.09 − 0.06·cos(2π(h − 2)/24) req/s."""
    peak = 0.15
    n = rng.poisson(peak * SPAN_S)
    t = np.sort(rng.uniform(0.0, SPAN_S, n))
    hours = t / 3600.0
    rate = 0.09 - 0.06 * np.cos(2 * np.pi * (hours - 2.0) / 24.0)
    return t[rng.random(n) < rate / peak]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("traces/production"))
    out: Path = parser.parse_args().out
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(20250303)
    t = arrivals(rng)
    inp = np.clip(np.round(rng.lognormal(6.5, 0.8, t.size)), 1, 16000).astype(int)
    outp = np.clip(np.round(rng.lognormal(5.0, 0.7, t.size)), 1, 4000).astype(int)

    lines = ["request_id,timestamp,prompt_tokens,completion_tokens,status"]
    for i, (s, a, b) in enumerate(zip(t, inp, outp, strict=True)):
        stamp = (START + dt.timedelta(seconds=float(s))).isoformat(timespec="milliseconds")
        lines.append(f"req-{i:05d},{stamp.replace('+00:00', 'Z')},{a},{b},200")
    (out / "requests-log.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    spans = []
    for i in np.flatnonzero(t < 2 * 3600):
        start_ns = int(START.timestamp()) * 10**9 + int(round(t[i] * 1e9))  # noqa: RUF046
        trace_id = f"{i:032x}"
        http = {
            "traceId": trace_id,
            "spanId": f"{2 * i:016x}",
            "name": "POST /v1/chat/completions",
            "kind": 2,
            "startTimeUnixNano": str(start_ns - 2_000_000),
            "endTimeUnixNano": str(start_ns + 5 * 10**9),
            "attributes": [{"key": "http.request.method", "value": {"stringValue": "POST"}}],
        }
        attrs = [
            {"key": "gen_ai.operation.name", "value": {"stringValue": "chat"}},
            {"key": "gen_ai.request.model", "value": {"stringValue": "llama-3-8b"}},
            {"key": "gen_ai.usage.input_tokens", "value": {"intValue": str(inp[i])}},
            {"key": "gen_ai.usage.output_tokens", "value": {"intValue": str(outp[i])}},
        ]
        if i == 7:  # one failed call: no usage, error.type set (skipped and counted)
            attrs = [*attrs[:2], {"key": "error.type", "value": {"stringValue": "timeout"}}]
        chat = {
            "traceId": trace_id,
            "spanId": f"{2 * i + 1:016x}",
            "parentSpanId": http["spanId"],
            "name": "chat llama-3-8b",
            "kind": 3,
            "startTimeUnixNano": str(start_ns),
            "endTimeUnixNano": str(start_ns + 4 * 10**9),
            "attributes": attrs,
        }
        spans += [http, chat]
    with (out / "otel-genai-spans.jsonl").open("w", encoding="utf-8") as f:
        for k in range(0, len(spans), 100):
            envelope = {
                "resourceSpans": [
                    {
                        "resource": {
                            "attributes": [
                                {"key": "service.name", "value": {"stringValue": "chat-api"}}
                            ]
                        },
                        "scopeSpans": [
                            {"scope": {"name": "synthetic"}, "spans": spans[k : k + 100]}
                        ],
                    }
                ]
            }
            f.write(json.dumps(envelope, separators=(",", ":")) + "\n")

    grid = np.arange(0, SPAN_S + 1, STEP_S)
    stop = rng.random(t.size) < 0.9

    def counter(weights: np.ndarray) -> list[list[object]]:
        total = np.concatenate(([0.0], np.cumsum(weights)))
        at = total[np.searchsorted(t, grid, side="right")]
        at = np.where(grid >= RESTART_S, at - total[np.searchsorted(t, RESTART_S)], at)
        base = int(START.timestamp())
        return [[base + int(g), f"{v:.0f}"] for g, v in zip(grid, at, strict=True)]

    def series(name: str, values: list[list[object]], **labels: str) -> dict[str, object]:
        metric = {"__name__": name, "instance": "vllm-0:8000", "model_name": "llama-3-8b"}
        return {"metric": metric | labels, "values": values}

    running = [[int(START.timestamp()) + int(g), str(int(rng.poisson(4)))] for g in grid]
    result = [
        series("vllm:request_success_total", counter(stop.astype(float)), finished_reason="stop"),
        series(
            "vllm:request_success_total", counter((~stop).astype(float)), finished_reason="length"
        ),
        series("vllm:prompt_tokens_total", counter(inp.astype(float))),
        series("vllm:generation_tokens_total", counter(outp.astype(float))),
        series("vllm:num_requests_running", running),
    ]
    export = {"status": "success", "data": {"resultType": "matrix", "result": result}}
    (out / "vllm-prometheus-range.json").write_text(
        json.dumps(export, separators=(",", ":")) + "\n", encoding="utf-8"
    )
    print(f"{t.size} requests; wrote {out}/")


if __name__ == "__main__":
    main()

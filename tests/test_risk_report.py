"""The risk page: charts from small synthetic tables, offline HTML with and without a timeline."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from sim.records import PAIRED_SCHEMA, TIMELINE_EVENTS_SCHEMA, TIMELINE_SCHEMA
from sim.risk_report import render_risk_html, timeline_chart, write_risk_report

PLANS = ("baseline", "hybrid")


def _summary() -> pl.DataFrame:
    rows = []
    for plan in PLANS:
        for month in (1, 2):
            rows.append((plan, month, "cost_usd", 100.0, 90.0, 100.0, 120.0))
            rows.append((plan, month, "p_ttft_p95_above_slo", 0.25, 0.25, 0.25, 0.25))
    return pl.DataFrame(
        rows, schema=["plan", "month", "metric", "mean", "p5", "p50", "p95"], orient="row"
    )


def _months() -> pl.DataFrame:
    cols = [
        "spot_preemptions",
        "requeued",
        "api_requests",
        "api_dropped",
        "gpu_cost_on_demand_usd",
        "gpu_cost_spot_usd",
        "api_cost_usd",
        "cost_usd",
        "savings_vs_all_api_usd",
    ]
    return pl.DataFrame(
        [
            {"plan": p, "replication": 0, "month": m, **{c: 7.0 for c in cols}}
            for p in PLANS
            for m in (1, 2)
        ]
    )


def _timeline() -> tuple[pl.DataFrame, pl.DataFrame]:
    tl = pl.DataFrame(
        [("hybrid", 600.0 + 10 * i, 2 if i < 30 else 1, i % 4, 3, 0, i // 6) for i in range(60)],
        schema=TIMELINE_SCHEMA,
        orient="row",
    )
    ev = pl.DataFrame(
        [("hybrid", 1, "notice", 870.0), ("hybrid", 1, "down", 900.0), ("hybrid", 1, "up", 2000.0)],
        schema=TIMELINE_EVENTS_SCHEMA,
        orient="row",
    )
    return tl, ev


def test_timeline_marks_every_reclaim_event_and_counts_spills_per_minute() -> None:
    tl, ev = _timeline()
    spec = timeline_chart(tl, ev).to_dict()
    layers = spec["vconcat"][0]["layer"]

    def values(layer: dict) -> list[dict]:
        data = layer["data"]
        return data["values"] if "values" in data else spec["datasets"][data["name"]]

    rules = values(layers[1])
    assert sorted(r["event"] for r in rules) == ["down", "notice", "up"]
    assert rules[0]["t_min"] == (870.0 - 600.0) / 60
    spills = [r for r in values(layers[0]) if r["series"] == "API spills / min"]
    assert sum(r["value"] for r in spills) == 9  # cumulative 0 → 9 over the window


def test_risk_page_renders_offline_with_and_without_a_timeline(tmp_path: Path) -> None:
    tl, ev = _timeline()
    paired = pl.DataFrame(
        [("hybrid", "baseline", 1, "cost_usd", 5.0, 1.0, 5.0, 9.0, 0.0)],
        schema=PAIRED_SCHEMA,
        orient="row",
    )
    meta = {
        "experiment": "x",
        "budget_usd_per_month": 110.0,
        "slo_ttft_s": 1.5,
        "step_times": {"l4": "uncalibrated"},
    }
    page = render_risk_html(_months(), _summary(), paired, tl, ev, meta)
    assert "<script src=" not in page.lower()  # offline: the JavaScript is inlined
    assert "UNCALIBRATED" in page
    assert 'id="chart-risk_timeline"' in page and "minus <b>baseline</b>" in page
    empty = render_risk_html(
        _months(),
        _summary(),
        pl.DataFrame(schema=PAIRED_SCHEMA),
        pl.DataFrame(schema=TIMELINE_SCHEMA),
        pl.DataFrame(schema=TIMELINE_EVENTS_SCHEMA),
        {"experiment": "x"},
    )
    assert "No timeline" in empty and "chart-risk_timeline" not in empty
    out = write_risk_report(tmp_path, _months(), _summary(), paired, tl, ev, meta, pngs=False)
    assert out.read_text(encoding="utf-8") == page

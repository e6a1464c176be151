"""Report tests: chart encodings via ``to_dict()`` (not pixels), an offline page, atomic writes."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pytest

from sim import report
from sim.records import PAIRED_SCHEMA, TIMELINE_EVENTS_SCHEMA, TIMELINE_SCHEMA
from sim.report import page as report_page

PLANS = ("steady-2xL40S", "spot-burst")
REPLICATIONS = 3
MONTHS = 6
SLO_TTFT_S = 1.5

Frames = tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]  # months, summary, hourly

KPIS = (
    "ttft_p50_s",
    "ttft_p95_s",
    "ttft_p95_se_s",
    "ttft_p99_s",
    "tpot_p50_s",
    "tpot_p95_s",
    "e2e_p50_s",
    "e2e_p95_s",
    "e2e_p99_s",
    "slo_attainment",
    "gpu_utilisation",
    "gpu_hours",
    "gpu_cost_usd",
    "ops_cost_usd",
    "cost_usd",
    "usd_per_million_tokens",
)


def make_months(seed: int = 7) -> pl.DataFrame:
    """2 plans × 3 replications × 6 months of plausible, growing KPIs."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, Any]] = []
    for p, plan in enumerate(PLANS):
        for rep in range(REPLICATIONS):
            for month in range(1, MONTHS + 1):
                growth = 1.2 ** (month - 1) * rng.uniform(0.9, 1.1)
                ttft95 = (0.4 + 0.25 * growth) * (1.6 if p else 1.0) * rng.uniform(0.8, 1.2)
                gpu_cost = 2 * 730 * 1.6 * (1 + p * 0.3 * growth)
                requests = int(500_000 * growth)
                rows.append(
                    {
                        "plan": plan,
                        "replication": rep,
                        "month": month,
                        "requests": requests,
                        "finished": requests - 10,
                        "rejected": 10,
                        "ttft_p50_s": ttft95 / 3,
                        "ttft_p95_s": ttft95,
                        "ttft_p95_se_s": ttft95 * 0.01,  # as if on the sampled horizon
                        "ttft_p99_s": ttft95 * 1.5,
                        "tpot_p50_s": 0.03,
                        "tpot_p95_s": 0.05 * growth,
                        "e2e_p50_s": 4.0,
                        "e2e_p95_s": 6.0 + ttft95,
                        "e2e_p99_s": 9.0 + ttft95,
                        "slo_attainment": max(0.0, 1.0 - 0.05 * growth),
                        "gpu_utilisation": min(1.0, 0.3 * growth),
                        "gpu_hours": 1460.0,
                        "gpu_cost_usd": gpu_cost,
                        "ops_cost_usd": 500.0,
                        "cost_usd": gpu_cost + 500.0 + (120.0 * growth if p else 0.0),
                        "usd_per_million_tokens": 3.0 / growth,
                        "input_tokens": requests * 800,
                        "output_tokens": requests * 300,
                        "growth_factor": growth,
                    }
                )
    return pl.DataFrame(rows)


def make_summary(months: pl.DataFrame, slo_ttft_s: float = SLO_TTFT_S) -> pl.DataFrame:
    """The runner's long summary: quantiles across replications, plus P(p95 TTFT > SLO)."""
    long = months.unpivot(
        index=["plan", "replication", "month"], on=list(KPIS), variable_name="metric"
    )
    stats = long.group_by("plan", "month", "metric", maintain_order=True).agg(
        pl.col("value").mean().alias("mean"),
        pl.col("value").quantile(0.05, "linear").alias("p5"),
        pl.col("value").quantile(0.50, "linear").alias("p50"),
        pl.col("value").quantile(0.95, "linear").alias("p95"),
    )
    risk = (
        months.group_by("plan", "month", maintain_order=True)
        .agg((pl.col("ttft_p95_s") > slo_ttft_s).mean().alias("mean"))
        .with_columns(
            pl.lit(report.P_ABOVE_SLO).alias("metric"),
            pl.col("mean").alias("p5"),
            pl.col("mean").alias("p50"),
            pl.col("mean").alias("p95"),
        )
        .select(stats.columns)
    )
    return pl.concat([stats, risk])  # plans in config order, as the runner writes them


def make_hourly(seed: int = 11) -> pl.DataFrame:
    """Diurnal utilisation, busier on weekdays and in later months."""
    rng = np.random.default_rng(seed)
    how = np.arange(168)
    hour, day = how % 24, how // 24
    shape = 0.15 + 0.6 * np.exp(-(((hour - 14) / 4.0) ** 2)) * np.where(day < 5, 1.0, 0.5)
    parts = []
    for plan in PLANS:
        for rep in range(REPLICATIONS):
            for month in range(1, MONTHS + 1):
                util = np.clip(shape * 1.1 ** (month - 1) + rng.normal(0, 0.03, 168), 0, 1)
                parts.append(
                    pl.DataFrame(
                        {
                            "plan": [plan] * 168,
                            "replication": [rep] * 168,
                            "month": [month] * 168,
                            "hour_of_week": how,
                            "utilisation": util,
                        }
                    )
                )
    return pl.concat(parts)


META: dict[str, Any] = {
    "experiment": "growth20pct-test",
    "seed": 20240601,
    "replications": REPLICATIONS,
    "version": "0.1.0",
    "wall_time_s": 83.4,
    "slo_ttft_s": SLO_TTFT_S,
    "slo_tpot_s": 0.1,
    "config": {"name": "growth20pct-test", "horizon": {"months": MONTHS}},
}


@pytest.fixture(scope="module")
def frames() -> Frames:
    months = make_months()
    return months, make_summary(months), make_hourly()


@pytest.fixture(scope="module")
def page(frames: Frames) -> str:
    return report.render_report_html(*frames, META)


def data_values(spec: dict[str, Any], node: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of a data node, inline or (as altair consolidates them) in top-level datasets."""
    rows = node["values"] if "values" in node else spec["datasets"][node["name"]]
    return list(rows)


def layer_by_mark(spec: dict[str, Any], mark: str) -> list[dict[str, Any]]:
    def mark_type(layer: dict[str, Any]) -> str:
        m = layer["mark"]
        return str(m["type"] if isinstance(m, dict) else m)

    return [layer for layer in spec["layer"] if mark_type(layer) == mark]


# --------------------------------------------------------------------------- charts


def test_ttft_fan_chart_encodes_band_median_and_slo_rule(frames: Frames) -> None:
    _, summary, _ = frames
    spec = report.ttft_fan_chart(summary, SLO_TTFT_S).to_dict()

    (band,) = layer_by_mark(spec, "area")
    assert band["encoding"]["x"]["field"] == "month"
    assert band["encoding"]["y"]["field"] == "p5"
    assert band["encoding"]["y2"]["field"] == "p95"
    assert band["encoding"]["color"]["field"] == "plan"
    assert band["encoding"]["color"]["scale"]["domain"] == list(PLANS)

    (line,) = layer_by_mark(spec, "line")
    assert line["encoding"]["y"]["field"] == "p50"
    assert line["encoding"]["y"]["title"] == "p95 TTFT (s)"
    assert line["encoding"]["color"]["field"] == "plan"

    (rule,) = layer_by_mark(spec, "rule")
    assert rule["encoding"]["y"]["datum"] == SLO_TTFT_S
    (text,) = layer_by_mark(spec, "text")
    assert text["encoding"]["y"]["datum"] == SLO_TTFT_S
    assert "1.5 s" in data_values(spec, text["data"])[0]["label"]

    # The shared data are exactly the metric's rows: 2 plans × 6 months, no NaN.
    values = data_values(spec, spec["data"])
    assert len(values) == len(PLANS) * MONTHS
    assert {v["plan"] for v in values} == set(PLANS)
    expected = summary.filter(
        (pl.col("metric") == "ttft_p95_s") & (pl.col("plan") == PLANS[1]) & (pl.col("month") == 3)
    ).row(0, named=True)
    got = next(v for v in values if v["plan"] == PLANS[1] and v["month"] == 3)
    assert got["p50"] == pytest.approx(expected["p50"])


def test_fan_chart_without_slo_has_no_rule_and_cost_uses_dollars(frames: Frames) -> None:
    _, summary, _ = frames
    spec = report.cost_fan_chart(summary).to_dict()
    assert layer_by_mark(spec, "rule") == []
    (line,) = layer_by_mark(spec, "line")
    assert line["encoding"]["y"]["title"] == "Cost (USD / month)"
    assert line["encoding"]["y"]["axis"]["format"] == "$,.0f"
    assert all(v["p95"] > 2000 for v in data_values(spec, spec["data"]))


def test_fan_chart_rejects_unknown_metric_and_writes_nan_as_null(frames: Frames) -> None:
    _, summary, _ = frames
    with pytest.raises(ValueError, match="no rows for metric 'nope'"):
        report.fan_chart(summary, "nope", "t", "y")
    holed = summary.with_columns(
        pl.when((pl.col("month") == 2) & (pl.col("metric") == "ttft_p95_s"))
        .then(float("nan"))
        .otherwise(pl.col("p95"))
        .alias("p95")
    )
    spec = report.ttft_fan_chart(holed, SLO_TTFT_S).to_dict()
    assert [v["p95"] for v in data_values(spec, spec["data"]) if v["month"] == 2] == [None, None]
    json.dumps(spec, allow_nan=False)


def test_utilisation_heatmap_is_day_by_hour_mean_across_replications(frames: Frames) -> None:
    _, _, hourly = frames
    spec = report.utilisation_heatmap(hourly).to_dict()
    blocks = spec["vconcat"]
    assert len(blocks) == len(PLANS)
    block = blocks[0]
    assert block["facet"]["field"] == "month"
    inner = block["spec"]
    assert inner["mark"]["type"] == "rect"
    enc = inner["encoding"]
    assert enc["x"]["field"] == "hour"
    assert enc["y"]["field"] == "day"
    assert enc["y"]["sort"] == list(report.DAYS)
    assert enc["color"]["field"] == "utilisation"
    assert enc["color"]["scale"]["domain"] == [0, 1]

    cells = data_values(spec, block["data"])
    assert len(cells) == MONTHS * 168  # one cell per month × hour of week, replications averaged
    assert {c["plan"] for c in cells} == {PLANS[0]}
    # hour_of_week 0 is Monday 00:00; 167 is Sunday 23:00.
    first = next(c for c in cells if c["month"] == 2 and c["hour_of_week"] == 0)
    last = next(c for c in cells if c["month"] == 2 and c["hour_of_week"] == 167)
    assert (first["day"], first["hour"], last["day"], last["hour"]) == ("Mon", 0, "Sun", 23)
    expected = hourly.filter(
        (pl.col("plan") == PLANS[0]) & (pl.col("month") == 2) & (pl.col("hour_of_week") == 0)
    )["utilisation"].mean()
    assert first["utilisation"] == pytest.approx(expected)


def test_cost_breakdown_shows_other_only_when_material(frames: Frames) -> None:
    months, _, _ = frames
    spec = report.cost_breakdown_chart(months).to_dict()
    components = {v["component"] for v in data_values(spec, spec["data"])}
    assert components == {"GPU", "Operations", "Other"}  # plan 2 has API overflow cost
    no_other = months.with_columns(
        (pl.col("gpu_cost_usd") + pl.col("ops_cost_usd")).alias("cost_usd")
    )
    spec = report.cost_breakdown_chart(no_other).to_dict()
    assert {v["component"] for v in data_values(spec, spec["data"])} == {"GPU", "Operations"}
    assert spec["spec"]["encoding"]["y"]["stack"] == "zero"


# --------------------------------------------------------------------------- tables


def test_slo_risk_table_has_quantiles_and_probability(frames: Frames) -> None:
    months, summary, _ = frames
    table = report.slo_risk_table(summary)
    assert table.height == len(PLANS) * MONTHS
    assert table["plan"].unique(maintain_order=True).to_list() == list(PLANS)
    present = set(summary["metric"].to_list())
    for metric, _, _ in report.RISK_METRICS:
        for q in ("p5", "p50", "p95"):
            assert (f"{metric}_{q}" in table.columns) == (metric in present)
    row = table.filter((pl.col("plan") == PLANS[1]) & (pl.col("month") == 6)).row(0, named=True)
    ttft = months.filter((pl.col("plan") == PLANS[1]) & (pl.col("month") == 6))["ttft_p95_s"]
    share = sum(v > SLO_TTFT_S for v in ttft.to_list()) / ttft.len()
    assert 0 < share <= 1  # the synthetic plan breaches the SLO by month 6
    assert row[report.P_ABOVE_SLO] == pytest.approx(share)
    assert row["ttft_p95_s_p5"] <= row["ttft_p95_s_p50"] <= row["ttft_p95_s_p95"]


def test_summary_table_html_formats_and_escapes(frames: Frames) -> None:
    _, summary, _ = frames
    evil = summary.with_columns(
        pl.when(pl.col("plan") == PLANS[0]).then(pl.lit("<b>x</b>")).otherwise("plan").alias("plan")
    )
    table = report.summary_table_html(evil, SLO_TTFT_S)
    assert table.count("<tr>") == 2 + len(PLANS) * MONTHS
    assert "&lt;b&gt;x&lt;/b&gt;" in table and "<b>x</b>" not in table
    assert "P(p95 TTFT &gt; SLO 1.5 s)" in table
    assert "$" in table and "%" in table


# --------------------------------------------------------------------------- page


def test_report_html_is_self_contained(page: str) -> None:
    lower = page.lower()
    assert "<script src=" not in lower
    assert not re.search(r"<script[^>]*\bsrc\s*=", lower)
    assert not re.search(r"<link[^>]*\bhref\s*=", lower)
    assert "cdn" not in lower
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", lower)
    assert not re.search(r"""import\s*\(\s*["']https?://""", lower)
    # vega, vega-lite and vega-embed come inlined once, however many charts there are.
    assert page.count("<script") == page.count("</script>")
    assert lower.count('<script type="text/javascript">') == 2  # bundle + embed loop
    assert page.count(report._vega_bundle()) == 1
    assert "vegaEmbed" in report._vega_bundle()


def test_report_html_has_header_table_and_one_embed_per_chart(page: str, frames: Frames) -> None:
    charts = report.report_charts(*frames, META) | report.risk_charts(frames[1], META)
    assert list(charts) == [
        "ttft_fan",
        "cost_fan",
        "cost_breakdown",
        "utilisation_heatmap",
        "cost_vs_budget",
        "slo_breach",
    ]
    assert "<h1>growth20pct-test</h1>" in page
    for fact in ("20240601", "0.1.0", "1 min 23 s", "p95 TTFT ≤ 1.5 s · p95 TPOT ≤ 0.1 s"):
        assert fact in page
    assert page.count('<table class="summary">') == 1  # old tables: no risk-section table
    specs = re.findall(
        r'<script type="application/json" data-vega-spec="chart-(\w+)">(.*?)</script>', page, re.S
    )
    assert [key for key, _ in specs] == list(charts)
    for key, body in specs:
        assert f'<div class="chart" id="chart-{key}"></div>' in page
        assert json.loads(body) == json.loads(json.dumps(charts[key].to_dict()))


def test_header_reads_the_runner_manifest_keys(frames: Frames) -> None:
    manifest = {
        "experiment": "m",
        "wall_s": 12.34,
        "replications_done": [0, 1],
        "replications_requested": 3,
        "errors": {"2": "Traceback ..."},
        "interrupted": True,
        "slo_ttft_s": SLO_TTFT_S,
    }
    page = report.render_report_html(*frames, manifest)
    assert "12.3 s" in page
    assert "<dd>2 of 3 requested</dd>" in page
    assert "1 replication(s) failed" in page and "interrupted" in page
    assert "p95 TTFT ≤ 1.5 s</dd>" in page  # no TPOT SLO given: not invented


def test_meta_text_cannot_break_out_of_the_page(frames: Frames) -> None:
    meta = {**META, "experiment": "</script><script>alert(1)</script>"}
    page = report.render_report_html(*frames, meta)
    assert "<script>alert(1)" not in page
    assert "&lt;/script&gt;" in page


# --------------------------------------------------------------------------- saving


def test_write_report_writes_html_and_pngs(tmp_path: Path, frames: Frames) -> None:
    path = report.write_report(tmp_path / "exp", *frames, META)
    assert path == tmp_path / "exp" / "report.html"
    assert "growth20pct-test" in path.read_text(encoding="utf-8")
    pngs = sorted(p.name for p in path.parent.glob("*.png"))
    charts = report.report_charts(*frames, META) | report.risk_charts(frames[1], META)
    assert pngs == sorted(f"{k}.png" for k in charts)
    assert (path.parent / "ttft_fan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []


def _boom(*args: object, **kwargs: object) -> str:
    raise RuntimeError("renderer failed")


def test_write_report_failure_while_rendering_keeps_old_report(
    tmp_path: Path, frames: Frames, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "report.html"
    old.write_text("<html>previous good report</html>", encoding="utf-8")
    monkeypatch.setattr(report_page, "render_report_html", _boom)
    with pytest.raises(RuntimeError, match="renderer failed"):
        report.write_report(tmp_path, *frames, META, pngs=False)
    assert old.read_text(encoding="utf-8") == "<html>previous good report</html>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_write_report_failure_while_replacing_leaves_no_temp_file(
    tmp_path: Path, frames: Frames, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "report.html"
    old.write_text("previous", encoding="utf-8")
    monkeypatch.setattr(report_page, "render_report_html", lambda *a, **k: "<html>new</html>")

    def failing_replace(src: object, dst: object) -> None:
        assert Path(str(src)).exists()  # the complete new page was on disk beside the target
        raise OSError("disk went away")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk went away"):
        report.write_report(tmp_path, *frames, META, pngs=False)
    assert old.read_text(encoding="utf-8") == "previous"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_wall_time_formatting() -> None:
    assert report._wall_time(12.34) == "12.3 s"
    assert report._wall_time(125) == "2 min 5 s"
    assert report._wall_time(None) == "—"


def test_summary_table_shows_the_estimator_error_only_when_sampled(frames: Frames) -> None:
    _, summary, _ = frames
    assert "s.e. of p95 TTFT" in report.summary_table_html(summary, SLO_TTFT_S)
    full = summary.with_columns(
        [
            pl.when(pl.col("metric") == "ttft_p95_se_s")
            .then(float("nan"))
            .otherwise(pl.col(q))
            .alias(q)
            for q in ("mean", "p5", "p50", "p95")
        ]
    )
    assert "s.e. of p95 TTFT" not in report.summary_table_html(full, SLO_TTFT_S)


# --------------------------------------------------------------------------- risk section
#
# Three plans as in experiments/hybrid_burst.toml: an on-demand baseline; the same plus a spot
# pool; the same plus API overflow. One reclaim in the timeline: notice at t = 1,900 s, the
# instance down at 1,930 s, its replacement up at 2,530 s.

HPLANS = ("baseline", "baseline+spot", "hybrid")
HREPS = 4
HMONTHS = 3
BUDGET_USD = 4000.0
NOTICE_S, DOWN_S, UP_S = 1900.0, 1930.0, 2530.0
HKPIS = (
    "ttft_p95_s",
    "slo_attainment",
    "gpu_cost_usd",
    "gpu_cost_on_demand_usd",
    "gpu_cost_spot_usd",
    "api_cost_usd",
    "ops_cost_usd",
    "cost_usd",
    "savings_vs_all_api_usd",
    "spot_preemptions",
    "requeued",
    "api_requests",
    "api_dropped",
)
HMETA: dict[str, Any] = {
    "experiment": "hybrid-test",
    "seed": 1,
    "replications_done": list(range(HREPS)),
    "replications_requested": HREPS,
    "slo_ttft_s": SLO_TTFT_S,
    "plans": list(HPLANS),
    "budget_usd_per_month": BUDGET_USD,
    "step_times": {"a100-80gb": "calibrated", "l4": "uncalibrated"},
}


def make_hybrid_months() -> pl.DataFrame:
    """Replication k of month m: on-demand $2,000, spot $600 + 10·k, API $100·k (hybrid),
    ops $500; reclaims k + m for the spot plans, re-queued 5 per reclaim, API requests 50·k."""
    rows: list[dict[str, Any]] = []
    for p, plan in enumerate(HPLANS):
        for k in range(HREPS):
            for m in range(1, HMONTHS + 1):
                spot = 600.0 + 10 * k if p else 0.0
                api = 100.0 * k if p == 2 else 0.0
                reclaims = k + m if p else 0
                cost = 2000.0 + spot + api + 500.0
                rows.append(
                    {
                        "plan": plan,
                        "replication": k,
                        "month": m,
                        "ttft_p95_s": 1.0 + 0.3 * k * (1 if p < 2 else 0.2),
                        "slo_attainment": 0.99 - 0.01 * k * (2 - p),
                        "gpu_cost_usd": 2000.0 + spot,
                        "gpu_cost_on_demand_usd": 2000.0,
                        "gpu_cost_spot_usd": spot,
                        "api_cost_usd": api,
                        "ops_cost_usd": 500.0,
                        "cost_usd": cost,
                        "all_api_cost_usd": 5000.0,
                        "savings_vs_all_api_usd": 5000.0 - cost,
                        "spot_preemptions": reclaims,
                        "requeued": 5 * reclaims,
                        "api_requests": 50 * k if p == 2 else 0,
                        "api_dropped": k if p == 2 else 0,
                    }
                )
    return pl.DataFrame(rows)


def make_hybrid_summary(months: pl.DataFrame) -> pl.DataFrame:
    long = months.unpivot(
        index=["plan", "replication", "month"],
        on=list(HKPIS),
        variable_name="metric",
    ).with_columns(pl.col("value").cast(pl.Float64))
    stats = long.group_by("plan", "month", "metric", maintain_order=True).agg(
        pl.col("value").mean().alias("mean"),
        *(
            pl.col("value").quantile(q, "linear").alias(name)
            for q, name in ((0.05, "p5"), (0.5, "p50"), (0.95, "p95"))
        ),
    )
    risk = (
        months.group_by("plan", "month", maintain_order=True)
        .agg((pl.col("ttft_p95_s") > SLO_TTFT_S).mean().alias("mean"))
        .with_columns(
            pl.lit(report.P_ABOVE_SLO).alias("metric"),
            pl.col("mean").alias("p5"),
            pl.col("mean").alias("p50"),
            pl.col("mean").alias("p95"),
        )
        .select(stats.columns)
    )
    return pl.concat([stats, risk])


def make_paired() -> pl.DataFrame:
    rows = []
    for plan in HPLANS[1:]:
        for m in range(1, HMONTHS + 1):
            rows += [
                (plan, HPLANS[0], m, "cost_usd", 615.0, 600.0, 615.0, 630.0, 0.0),
                (plan, HPLANS[0], m, "ttft_p95_s", -0.25, -0.5, -0.2, 0.0, 0.95),
                (plan, HPLANS[0], m, "slo_attainment", 0.012, 0.0, 0.01, 0.03, 0.5),
                (plan, HPLANS[0], m, "ttft_p95_above_slo", -0.25, -1.0, 0.0, 0.0, 0.25),
                (plan, HPLANS[0], m, "gpu_cost_usd", 1.0, 1.0, 1.0, 1.0, 0.0),  # not shown
            ]
    return pl.DataFrame(rows, schema=PAIRED_SCHEMA, orient="row")


def make_timeline() -> tuple[pl.DataFrame, pl.DataFrame]:
    """Every 10 s from 1,000 s to 4,600 s. The spot plans lose one of 2 replicas from DOWN_S to
    UP_S: baseline+spot queues 1 more request per sample (then drains), hybrid spills 1 request
    per sample to the API instead; the baseline has 1 replica all along and never changes."""
    rows = []
    for plan in HPLANS:
        spilled = queue = 0
        for i in range(361):
            t = 1000.0 + 10 * i
            out = DOWN_S <= t < UP_S
            if plan == "baseline+spot":
                queue = queue + 1 if out else max(0, queue - 3)
            if plan == "hybrid" and out:
                spilled += 1
            healthy = 1 if plan == "baseline" else (1 if out else 2)
            rows.append((plan, t, healthy, queue, 20, 2 if queue else 0, spilled))
    timeline = pl.DataFrame(rows, schema=TIMELINE_SCHEMA, orient="row")
    events = pl.DataFrame(
        [
            (plan, 3, event, t)
            for plan in HPLANS[1:]
            for event, t in (("notice", NOTICE_S), ("down", DOWN_S), ("up", UP_S))
        ],
        schema=TIMELINE_EVENTS_SCHEMA,
        orient="row",
    )
    return timeline, events


@pytest.fixture(scope="module")
def hybrid() -> dict[str, pl.DataFrame]:
    months = make_hybrid_months()
    timeline, events = make_timeline()
    return {
        "months": months,
        "summary": make_hybrid_summary(months),
        "hourly": make_hourly_for(HPLANS, months=HMONTHS),
        "paired": make_paired(),
        "timeline": timeline,
        "timeline_events": events,
    }


def make_hourly_for(plans: tuple[str, ...], months: int) -> pl.DataFrame:
    return pl.concat(
        pl.DataFrame(
            {
                "plan": [plan] * 168,
                "replication": [0] * 168,
                "month": [m] * 168,
                "hour_of_week": list(range(168)),
                "utilisation": [0.5] * 168,
            }
        )
        for plan in plans
        for m in range(1, months + 1)
    )


def hybrid_page(h: dict[str, pl.DataFrame], meta: dict[str, Any] = HMETA) -> str:
    return report.render_report_html(
        h["months"],
        h["summary"],
        h["hourly"],
        meta,
        paired=h["paired"],
        timeline=h["timeline"],
        timeline_events=h["timeline_events"],
    )


def assert_offline(page: str) -> None:
    lower = page.lower()
    assert not re.search(r"<script[^>]*\bsrc\s*=", lower)
    assert not re.search(r"<link[^>]*\bhref\s*=", lower)
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", lower)
    assert page.count(report._vega_bundle()) == 1
    assert lower.count('<script type="text/javascript">') == 2


def embedded(page: str) -> dict[str, dict[str, Any]]:
    specs = re.findall(
        r'<script type="application/json" data-vega-spec="chart-(\w+)">(.*?)</script>', page, re.S
    )
    return {key: json.loads(body) for key, body in specs}


def test_cost_budget_chart_shows_range_median_and_budget(hybrid: dict[str, pl.DataFrame]) -> None:
    spec = report.cost_budget_chart(hybrid["summary"], BUDGET_USD).to_dict()
    (bar,) = layer_by_mark(spec, "bar")
    assert (bar["encoding"]["y"]["field"], bar["encoding"]["y2"]["field"]) == ("p5", "p95")
    assert bar["encoding"]["xOffset"]["field"] == "plan"
    assert bar["encoding"]["color"]["scale"]["domain"] == list(HPLANS)
    (point,) = layer_by_mark(spec, "point")
    assert point["encoding"]["y"]["field"] == "p50"
    (rule,) = layer_by_mark(spec, "rule")
    assert rule["encoding"]["y"]["datum"] == BUDGET_USD
    (text,) = layer_by_mark(spec, "text")
    assert data_values(spec, text["data"])[0]["label"] == "Budget $4,000 / month"
    values = data_values(spec, spec["data"])
    assert len(values) == len(HPLANS) * HMONTHS
    hybrid_m1 = next(v for v in values if v["plan"] == "hybrid" and v["month"] == 1)
    # cost = 3,100 + 110·k for k = 0..3: median 3,265
    assert hybrid_m1["p50"] == pytest.approx(3265.0)
    no_budget = report.cost_budget_chart(hybrid["summary"], None).to_dict()
    assert layer_by_mark(no_budget, "rule") == [] and layer_by_mark(no_budget, "text") == []


def test_breach_chart_is_share_of_replications_per_plan(hybrid: dict[str, pl.DataFrame]) -> None:
    spec = report.breach_chart(hybrid["summary"], SLO_TTFT_S).to_dict()
    (bar,) = layer_by_mark(spec, "bar")
    (tick,) = layer_by_mark(spec, "tick")  # a 0 % month is a line, not nothing
    assert tick["encoding"]["y"]["field"] == "mean"
    enc = bar["encoding"]
    assert enc["y"]["field"] == "mean"
    assert enc["y"]["scale"]["domain"] == [0, 1]
    assert enc["xOffset"]["field"] == "plan" and enc["color"]["scale"]["domain"] == list(HPLANS)
    assert "1.5 s" in enc["y"]["title"]
    got = {(v["plan"], v["month"]): v["mean"] for v in data_values(spec, spec["data"])}
    # p95 TTFT = 1 + 0.3k > 1.5 for k = 2, 3 (half the replications); hybrid: 1 + 0.06k never
    assert got[("baseline", 2)] == pytest.approx(0.5)
    assert got[("hybrid", 2)] == 0.0
    without = hybrid["summary"].filter(pl.col("metric") != report.P_ABOVE_SLO)
    with pytest.raises(ValueError, match="p_ttft_p95_above_slo"):
        report.breach_chart(without, SLO_TTFT_S)


def test_spills_per_minute_differences_the_cumulative_count() -> None:
    # cumulative spills sampled every 20 s from the origin (counted since an earlier warm-up,
    # so not from 0): 3 samples per minute
    cumulative = [7, 7, 8, 11, 11, 13, 13, 13, 13]
    timeline = pl.DataFrame(
        [("p", 20.0 * i, 1, 0, 0, 0, c) for i, c in enumerate(cumulative)],
        schema=TIMELINE_SCHEMA,
        orient="row",
    )
    spills = report.spills_per_minute(timeline, origin_s=0.0)
    assert spills["minute"].to_list() == [0, 1, 2]
    # minute 0: last − first = 1; minute 1: 6 − 1 = 5; minute 2: 6 − 6 = 0
    assert spills["spills"].to_list() == [1, 5, 0]


def test_timeline_chart_marks_reclaim_events_in_every_panel(
    hybrid: dict[str, pl.DataFrame],
) -> None:
    spec = report.timeline_chart(hybrid["timeline"], hybrid["timeline_events"]).to_dict()
    rows = spec["vconcat"]
    assert len(rows) == 4  # healthy replicas; requests running; requests waiting; API spills
    expected_events = {
        (plan, label, t)
        for plan in HPLANS[1:]
        for label, t in (
            ("reclaim notice", 0.0),  # minutes from the first notice
            ("instance down", round((DOWN_S - NOTICE_S) / 60, 6)),
            ("replacement up", round((UP_S - NOTICE_S) / 60, 6)),
        )
    }
    titles = []
    for row in rows:
        assert row["facet"]["column"]["field"] == "plan"
        assert row["facet"]["column"]["sort"] == list(HPLANS)
        series, rules = row["spec"]["layer"]
        assert rules["mark"]["type"] == "rule"
        assert rules["encoding"]["x"]["field"] == "t_min"
        assert rules["encoding"]["color"]["field"] == "key"
        titles.append(series["encoding"]["y"]["title"])
        values = data_values(spec, row["data"])
        events = {
            (v["plan"], v["event"], round(v["t_min"], 6)) for v in values if v["series"] == "event"
        }
        assert events == expected_events
        assert not any(v["plan"] == "baseline" and v["series"] == "event" for v in values)
    assert titles == [
        "Healthy replicas",
        "Requests running",
        "Requests waiting",
        "API spills / min",
    ]

    values = data_values(spec, rows[0]["data"])
    spot = [v for v in values if v["plan"] == "baseline+spot" and v["series"] != "event"]
    during = [v["value"] for v in spot if 0.5 < v["t_min"] < (UP_S - NOTICE_S) / 60 - 0.5]
    assert set(during) == {1.0}  # one replica gone between down and up
    # the queue: waiting + router backlog peaks at the replacement
    requests = data_values(spec, rows[2]["data"])
    waiting = [
        v["value"]
        for v in requests
        if v["plan"] == "baseline+spot" and v["series"] == "requests waiting (replicas + router)"
    ]
    assert max(waiting) == 60 + 2
    # the spill absorbs it: 6 per minute on the hybrid plan while the instance is down
    spills = data_values(spec, rows[3]["data"])
    per_min = {v["t_min"]: v["value"] for v in spills if v["plan"] == "hybrid" and v["value"]}
    assert max(per_min.values()) == 6.0
    assert min(per_min) >= 0.0 and max(per_min) < (UP_S - NOTICE_S) / 60
    assert rows[3]["spec"]["layer"][0]["mark"]["type"] == "bar"
    json.dumps(spec, allow_nan=False)


def test_timeline_chart_without_events_and_with_empty_timeline(
    hybrid: dict[str, pl.DataFrame],
) -> None:
    spec = report.timeline_chart(hybrid["timeline"], hybrid["timeline_events"].clear()).to_dict()
    values = data_values(spec, spec["vconcat"][0]["data"])
    assert not any(v["series"] == "event" for v in values)
    assert min(v["t_min"] for v in values) == 0.0  # no notice: from the first sample
    with pytest.raises(ValueError, match="timeline has no rows"):
        report.timeline_chart(hybrid["timeline"].clear(), hybrid["timeline_events"])


def test_timeline_table_shows_the_drop_the_queue_and_the_spill(
    hybrid: dict[str, pl.DataFrame],
) -> None:
    table = report.timeline_table(hybrid["timeline"], hybrid["timeline_events"])
    rows = {r["plan"]: r for r in table.iter_rows(named=True)}
    assert list(rows) == list(HPLANS)
    assert (rows["baseline"]["notices"], rows["baseline"]["spills"]) == (0, 0)
    spot, hyb = rows["baseline+spot"], rows["hybrid"]
    assert (spot["replicas_max"], spot["replicas_min"], spot["notices"]) == (2, 1, 1)
    assert spot["waiting_max"] == 62 and spot["spills"] == 0
    assert hyb["waiting_max"] == 0 and hyb["spills"] == 60 and hyb["spills_peak_min"] == 6


def test_cost_and_activity_tables_are_medians_and_p95(hybrid: dict[str, pl.DataFrame]) -> None:
    costs = report.cost_table(hybrid["months"], BUDGET_USD)
    assert costs is not None
    assert costs["plan"].unique(maintain_order=True).to_list() == list(HPLANS)
    row = costs.filter((pl.col("plan") == "hybrid") & (pl.col("month") == 2)).row(0, named=True)
    assert row["gpu_cost_spot_usd"] == pytest.approx(615.0)  # median of 600..630
    assert row["api_cost_usd"] == pytest.approx(150.0)  # median of 0, 100, 200, 300
    assert row["p_over_budget"] == 0.0
    assert row["savings_p50"] == pytest.approx(5000.0 - 3265.0)
    over = report.cost_table(hybrid["months"], 3200.0)
    assert over is not None
    hyb = over.filter(pl.col("plan") == "hybrid")["p_over_budget"].to_list()
    assert hyb == [0.75] * HMONTHS  # 3,210, 3,320, 3,430 of 3,100..3,430 exceed 3,200

    activity = report.activity_table(hybrid["months"])
    assert activity is not None
    row = activity.filter((pl.col("plan") == "hybrid") & (pl.col("month") == 1)).row(0, named=True)
    assert row["spot_preemptions_p50"] == pytest.approx(2.5)  # k + 1 for k = 0..3
    assert row["spot_preemptions_p95"] == pytest.approx(3.85)
    assert row["api_requests_p50"] == pytest.approx(75.0)

    old = make_months()  # before spot and API: no split, no activity
    assert report.cost_table(old) is None and report.activity_table(old) is None


def test_paired_table_keeps_shown_metrics_and_formats_differences(
    hybrid: dict[str, pl.DataFrame],
) -> None:
    table = report.paired_table(hybrid["paired"])
    assert table is not None
    assert table["plan"].unique(maintain_order=True).to_list() == list(HPLANS[1:])
    assert "gpu_cost_usd_mean" not in table.columns
    assert report.paired_table(hybrid["paired"].clear()) is None
    page = hybrid_page(hybrid)
    section = page[page.index('<h2 id="risk">') :]
    assert "Paired differences against baseline" in section
    assert "hybrid − baseline" in section
    assert "+$615" in section and "+$600 … +$630" in section
    assert "−0.25" in section and "+1.2 pp" in section and "−25.0 pp" in section
    assert '<td class="num better-high">95.0%</td>' in section  # ttft better in 95 %
    assert '<td class="num better-low">0.0%</td>' in section  # never cheaper


def test_cost_breakdown_splits_gpu_by_market_and_shows_api(
    hybrid: dict[str, pl.DataFrame],
) -> None:
    spec = report.cost_breakdown_chart(hybrid["months"]).to_dict()
    values = data_values(spec, spec["data"])
    assert spec["spec"]["encoding"]["color"]["scale"]["domain"] == [
        "On-demand GPU",
        "Spot GPU",
        "API",
        "Operations",
    ]  # "Other" is immaterial: the parts add up to the total
    assert spec["facet"]["sort"] == list(HPLANS)
    parts = sum(v["usd"] for v in values if v["plan"] == "hybrid" and v["month"] == 1)
    total = hybrid["months"].filter((pl.col("plan") == "hybrid") & (pl.col("month") == 1))
    assert parts == pytest.approx(total["cost_usd"].mean())
    baseline = {v["component"] for v in values if v["plan"] == "baseline" and v["usd"] > 0}
    assert baseline == {"On-demand GPU", "Operations"}


def test_report_with_risk_tables_is_offline_and_shows_every_part(
    hybrid: dict[str, pl.DataFrame],
) -> None:
    page = hybrid_page(hybrid)
    assert_offline(page)
    specs = embedded(page)
    assert list(specs)[-3:] == ["cost_vs_budget", "slo_breach", "reclaim_timeline"]
    risk = page[page.index('<h2 id="risk">Risk</h2>') : page.index('<h2 id="config">')]
    for chart in ("cost_vs_budget", "slo_breach", "reclaim_timeline"):
        assert f'id="chart-{chart}"' in risk
    for heading in (
        "Cost against the budget",
        "Probability of missing the TTFT SLO",
        "Where the money goes",
        "Spot reclaims and API traffic per month",
        "Paired differences against baseline",
        "One spot reclaim, replayed",
    ):
        assert f"<h3>{heading}</h3>" in risk
    assert "No budget given" not in risk
    assert "P(cost &gt; budget)" in risk and "Saving vs all-API" in risk
    assert "API spills in the window" in risk
    assert "<dd>baseline, baseline+spot, hybrid (paired differences against baseline)</dd>" in page
    assert "<dd>$4,000 / month</dd>" in page


def test_uncalibrated_step_times_are_flagged_in_the_header(
    hybrid: dict[str, pl.DataFrame],
) -> None:
    page = hybrid_page(hybrid)
    banner = re.search(r'<p class="uncalibrated">(.*?)</p>', page, re.S)
    assert banner is not None and "UNCALIBRATED" in banner.group(1) and "l4" in banner.group(1)
    assert "a100-80gb" not in banner.group(1)
    assert page.index('class="uncalibrated"') < page.index('<h2 id="slo-risk">')
    calibrated = {**HMETA, "step_times": {"a100-80gb": "calibrated"}}
    assert 'class="uncalibrated"' not in hybrid_page(hybrid, calibrated)
    assert 'class="uncalibrated"' not in report.render_report_html(*make_frames(), META)


def make_frames() -> Frames:
    months = make_months()
    return months, make_summary(months), make_hourly()


def test_report_without_risk_tables_says_what_it_cannot_show(page: str) -> None:
    assert_offline(page)
    risk = page[page.index('<h2 id="risk">Risk</h2>') : page.index('<h2 id="config">')]
    assert "One plan only: no paired differences." in risk
    assert "no reclaim timeline" in risk.lower() or "no reclaim to replay" in risk
    assert "No budget given" in risk
    assert "chart-reclaim_timeline" not in page
    assert "Where the money goes" not in risk  # no cost split in old tables


def test_spot_without_reclaim_says_so_in_one_sentence(hybrid: dict[str, pl.DataFrame]) -> None:
    calm = hybrid["months"].with_columns(pl.lit(0).alias("spot_preemptions"))
    page = report.render_report_html(
        calm,
        hybrid["summary"],
        hybrid["hourly"],
        HMETA,
        paired=hybrid["paired"],
        timeline=hybrid["timeline"].clear(),
        timeline_events=hybrid["timeline_events"].clear(),
    )
    assert "No replication had a spot reclaim, so there is no reclaim to replay." in page
    assert "chart-reclaim_timeline" not in page
    no_spot = calm.with_columns(pl.lit(0.0).alias("gpu_cost_spot_usd"))
    page = report.render_report_html(no_spot, hybrid["summary"], hybrid["hourly"], HMETA)
    assert "No plan has spot pools, so there is no reclaim to replay." in page


def test_write_report_with_risk_tables_writes_their_pngs(
    tmp_path: Path, hybrid: dict[str, pl.DataFrame]
) -> None:
    path = report.write_report(
        tmp_path,
        hybrid["months"],
        hybrid["summary"],
        hybrid["hourly"],
        HMETA,
        paired=hybrid["paired"],
        timeline=hybrid["timeline"],
        timeline_events=hybrid["timeline_events"],
    )
    pngs = {p.name for p in path.parent.glob("*.png")}
    assert {"cost_vs_budget.png", "slo_breach.png", "reclaim_timeline.png"} <= pngs
    assert (path.parent / "reclaim_timeline.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

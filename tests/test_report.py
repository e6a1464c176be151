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
    for metric, _, _ in report.RISK_METRICS:
        for q in ("p5", "p50", "p95"):
            assert f"{metric}_{q}" in table.columns
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
    charts = report.report_charts(*frames, META)
    assert list(charts) == ["ttft_fan", "cost_fan", "cost_breakdown", "utilisation_heatmap"]
    assert "<h1>growth20pct-test</h1>" in page
    for fact in ("20240601", "0.1.0", "1 min 23 s", "p95 TTFT ≤ 1.5 s · p95 TPOT ≤ 0.1 s"):
        assert fact in page
    assert page.count('<table class="summary">') == 1
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
    assert pngs == sorted(f"{k}.png" for k in report.report_charts(*frames, META))
    assert (path.parent / "ttft_fan.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in path.parent.iterdir() if p.name.startswith(".")) == []


def _boom(*args: object, **kwargs: object) -> str:
    raise RuntimeError("renderer failed")


def test_write_report_failure_while_rendering_keeps_old_report(
    tmp_path: Path, frames: Frames, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "report.html"
    old.write_text("<html>previous good report</html>", encoding="utf-8")
    monkeypatch.setattr(report, "render_report_html", _boom)
    with pytest.raises(RuntimeError, match="renderer failed"):
        report.write_report(tmp_path, *frames, META, pngs=False)
    assert old.read_text(encoding="utf-8") == "<html>previous good report</html>"
    assert [p.name for p in tmp_path.iterdir()] == ["report.html"]


def test_write_report_failure_while_replacing_leaves_no_temp_file(
    tmp_path: Path, frames: Frames, monkeypatch: pytest.MonkeyPatch
) -> None:
    old = tmp_path / "report.html"
    old.write_text("previous", encoding="utf-8")
    monkeypatch.setattr(report, "render_report_html", lambda *a: "<html>new</html>")

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

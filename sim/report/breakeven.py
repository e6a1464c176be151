"""The break-even page: the answer in words, then monthly cost against volume.

`breakeven_lines` says where self-hosting starts to pay (with its p5–p95 across replications)
beside the fixed-fleet arithmetic; `breakeven_chart` draws the all-API line, the self-hosted
step curve and the hybrid curve on a log volume axis with the crossover marked.
"""

from __future__ import annotations

import html
import math
from pathlib import Path

import altair as alt
import polars as pl

from sim.planning.breakeven import Breakeven
from sim.report.plan import line_html
from sim.report.shell import Chart, _atomic_write, _inline, chart_blocks, html_page


def breakeven_lines(result: Breakeven) -> list[str]:
    """The decision in words."""
    p5, p50, p95 = (_volume(x) for x in result.quantiles())
    naive = _volume(result.naive_crossover)
    lines = []
    if result.points and result.points[0].self_hosted is None:
        lines.append(
            f"Fixed-fleet arithmetic (no queueing, bursts, weekly profile or SLO): self-hosting "
            f"beats {result.api} above {naive} requests a month."
        )
    elif math.isnan(result.quantiles()[1]):
        lines.append(f"Self-hosting never beats {result.api} inside the volumes swept.")
    else:
        lines.append(
            f"Self-hosting beats {result.api} above {p50} requests a month "
            f"(p5–p95 {p5}–{p95} across replications), for the cheapest fleet "
            f"meeting the SLO at each volume; the fixed-fleet arithmetic says {naive}."
        )
    return lines


def breakeven_chart(table: pl.DataFrame, crossover: float) -> alt.LayerChart:
    """Monthly cost vs monthly volume (log axis): API, self-hosted, hybrid; crossover rule."""
    long = (
        table.unpivot(
            index="requests_per_month",
            on=[c for c in ("self_hosted_usd", "hybrid_usd", "all_api_usd") if c in table.columns],
            variable_name="option",
            value_name="usd",
        )
        .with_columns(
            pl.col("option").replace(
                {
                    "self_hosted_usd": "self-hosted",
                    "hybrid_usd": "self-hosted + API spill",
                    "all_api_usd": "all-API",
                }
            )
        )
        .filter(pl.col("usd").is_not_nan())
    )
    base = alt.Chart(data=_inline(long)).encode(
        x=alt.X("requests_per_month:Q", scale=alt.Scale(type="log"), title="requests per month"),
        y=alt.Y("usd:Q", scale=alt.Scale(type="log"), title="USD per month"),
        color=alt.Color("option:N", title=""),
        tooltip=["option:N", "requests_per_month:Q", "usd:Q"],
    )
    # A fleet's bill is a step function of volume; the API's is proportional to it.
    steps = base.transform_filter(alt.datum.option != "all-API").mark_line(
        point=True, interpolate="step-after"
    )
    api = base.transform_filter(alt.datum.option == "all-API").mark_line(point=True)
    layers: list[alt.Chart] = [steps, api]
    if not math.isnan(crossover):
        rule = (
            alt.Chart(data={"values": [{"x": crossover}]})
            .mark_rule(strokeDash=[4, 4])
            .encode(x="x:Q")
        )
        layers.append(rule)
    return alt.LayerChart(layer=layers).properties(
        title="Monthly cost vs volume (dashed: the crossover)", width=560, height=320
    )


def write_breakeven_report(result: Breakeven, out_dir: Path) -> Path:
    """Write `breakeven.html` into `out_dir`."""
    out_dir.mkdir(parents=True, exist_ok=True)
    table = result.table()
    crossing = result.quantiles()[1]
    if math.isnan(crossing):
        crossing = result.naive_crossover
    charts: dict[str, Chart] = {"breakeven": breakeven_chart(table, crossing)}
    rows = "".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(_fmt(r[c]))}</td>"
            for c in (
                "requests_per_month",
                "self_hosted",
                "self_hosted_usd",
                "hybrid",
                "hybrid_usd",
                "all_api_usd",
            )
        )
        + "</tr>"
        for r in table.iter_rows(named=True)
    )
    body = (
        '<section id="recommendation"><h2>Break-even</h2>'
        + "".join(line_html(line) for line in breakeven_lines(result))
        + "</section>"
        + chart_blocks(charts)
        + '<h2>By volume</h2><table class="summary"><thead><tr><th>requests/month</th>'
        "<th>self-hosted</th><th>$/month</th><th>hybrid</th><th>$/month</th>"
        "<th>all-API $/month</th></tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )
    page = out_dir / "breakeven.html"
    _atomic_write(page, html_page(f"Break-even for {result.spec.name}", body).encode("utf-8"))
    return page


def _volume(x: float) -> str:
    """A monthly volume to 3 significant figures: 5,455,007 → "5.46M"."""
    if math.isnan(x):
        return "–"
    for div, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(x) >= div:
            return f"{x / div:.3g}{unit}"
    return f"{x:.3g}"


def _fmt(v: object) -> str:
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:,.0f}"
    return str(v)

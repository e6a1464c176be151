"""Charts and the offline page of `sim trace inspect` / `compare`: frames → altair → HTML.

Each chart is a pure function of one long frame with a `source` column (the trace, and for a
comparison the generated sample), so real and generated share every chart. `trace_frames`
builds those frames from `TraceStats`; `render_trace_html` lays out one self-contained page
with the page shell of `sim.report` (Vega bundle inlined once, no network).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import altair as alt
import polars as pl

from sim.report.shell import Chart, _atomic_write, _inline, chart_blocks, html_page, write_png
from sim.traces.compare import Check
from sim.traces.stats import TraceStats

_WIDTH: Final = 640
_HEIGHT: Final = 260
_DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


def trace_frames(stats: Sequence[TraceStats]) -> dict[str, pl.DataFrame]:
    """Long frames (with `source`) for every chart, from one or more `TraceStats`."""

    def tagged(frame: pl.DataFrame, source: str) -> pl.DataFrame:
        return frame.with_columns(pl.lit(source).alias("source"))

    out: dict[str, list[pl.DataFrame]] = {"series": [], "gaps": [], "lengths": [], "profile": []}
    for s in stats:
        if s.series.height:
            out["series"].append(tagged(s.series, s.name))
        if s.gaps.height:
            out["gaps"].append(tagged(s.gaps, s.name))
        if s.lengths.height:
            out["lengths"].append(tagged(s.lengths, s.name))
        profile, period = (s.hour_of_week, "week") if s.hour_of_week else (s.hour_of_day, "day")
        if profile:
            out["profile"].append(
                pl.DataFrame(
                    {
                        "hour": list(range(len(profile))),
                        "multiplier": list(profile),
                        "period": [period] * len(profile),
                        "source": [s.name] * len(profile),
                    }
                )
            )
    return {k: pl.concat(v, how="vertical_relaxed") for k, v in out.items() if v}


def _colour(frame: pl.DataFrame) -> alt.Color:
    sources = frame.get_column("source").unique(maintain_order=True).to_list()
    return alt.Color("source:N", title="Source", scale=alt.Scale(domain=sources))


def rate_chart(series: pl.DataFrame) -> alt.Chart:
    """Requests per minute over the trace (the first generated window beside it)."""
    chart: alt.Chart = (
        alt.Chart(_inline(series), title="Requests per minute")
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("t_min:Q", title="Minutes from the start"),
            y=alt.Y("rate_per_min:Q", title="Requests per minute"),
            color=_colour(series),
            tooltip=["source:N", "t_min:Q", "rate_per_min:Q"],
        )
        .properties(width=_WIDTH, height=_HEIGHT)
    )
    return chart


def rate_distribution_chart(series: pl.DataFrame) -> alt.Chart:
    """Empirical CDF of the per-minute rate."""
    chart: alt.Chart = (
        alt.Chart(_inline(series), title="Distribution of the per-minute rate")
        .transform_window(ecdf="cume_dist()", sort=[{"field": "rate_per_min"}], groupby=["source"])
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("rate_per_min:Q", title="Requests per minute"),
            y=alt.Y("ecdf:Q", title="Share of minutes ≤ x", axis=alt.Axis(format="%")),
            color=_colour(series),
        )
        .properties(width=_WIDTH, height=_HEIGHT)
    )
    return chart


def profile_chart(profile: pl.DataFrame) -> alt.Chart:
    """Hour-of-week (or hour-of-day) profile: mean arrivals per slot over the overall mean."""
    period = str(profile.get_column("period")[0])
    title = "Hour-of-week profile" if period == "week" else "Hour-of-day profile"
    axis = (
        alt.Axis(values=list(range(0, 168, 24)), labelExpr=_day_labels())
        if period == "week"
        else alt.Axis(tickMinStep=1)
    )
    chart: alt.Chart = (
        alt.Chart(_inline(profile), title=title)
        .mark_line(point=period == "day")
        .encode(
            x=alt.X("hour:Q", title="Hour of the " + period, axis=axis),
            y=alt.Y("multiplier:Q", title="Rate / mean rate"),
            color=_colour(profile),
            tooltip=["source:N", "hour:Q", alt.Tooltip("multiplier:Q", format=".3f")],
        )
        .properties(width=_WIDTH, height=_HEIGHT)
    )
    return chart


def _day_labels() -> str:
    cases = " : ".join(f"datum.value == {24 * i} ? '{d}'" for i, d in enumerate(_DAYS))
    return f"{cases} : ''"


def gap_chart(gaps: pl.DataFrame) -> alt.Chart:
    """Complementary CDF of inter-arrival gaps over their mean (log–log): burstiness shows as a
    heavier tail than the exponential's (Poisson arrivals)."""
    positive = gaps.filter(pl.col("gap_over_mean") > 0)
    chart: alt.Chart = (
        alt.Chart(_inline(positive), title="Inter-arrival gaps: P(gap > x · mean)")
        .mark_line()
        .encode(
            x=alt.X("gap_over_mean:Q", title="Gap / mean gap", scale=alt.Scale(type="log")),
            y=alt.Y("ccdf:Q", title="P(gap > x)", scale=alt.Scale(type="log")),
            color=_colour(positive),
        )
        .properties(width=_WIDTH, height=_HEIGHT)
    )
    return chart


def lengths_chart(lengths: pl.DataFrame) -> alt.Chart:
    """Input vs output tokens of a sample of requests (log scales)."""
    chart: alt.Chart = (
        alt.Chart(_inline(lengths), title="Input vs output tokens (sample of requests)")
        .mark_circle(size=8, opacity=0.35)
        .encode(
            x=alt.X("input_tokens:Q", title="Input tokens", scale=alt.Scale(type="log")),
            y=alt.Y("output_tokens:Q", title="Output tokens", scale=alt.Scale(type="log")),
            color=_colour(lengths),
        )
        .properties(width=_WIDTH, height=_HEIGHT)
    )
    return chart


def token_cdf_chart(lengths: pl.DataFrame) -> alt.FacetChart:
    """Empirical CDFs of input and output tokens, side by side."""
    long = lengths.unpivot(
        index="source", on=["input_tokens", "output_tokens"], variable_name="tokens"
    )
    chart: alt.FacetChart = (
        alt.Chart(_inline(long))
        .transform_window(
            ecdf="cume_dist()", sort=[{"field": "value"}], groupby=["source", "tokens"]
        )
        .mark_line(interpolate="step-after")
        .encode(
            x=alt.X("value:Q", title="Tokens", scale=alt.Scale(type="log")),
            y=alt.Y("ecdf:Q", title="Share of requests ≤ x", axis=alt.Axis(format="%")),
            color=_colour(long),
        )
        .properties(width=_WIDTH // 2 - 20, height=_HEIGHT)
        .facet(column=alt.Column("tokens:N", title=None), title="Token distributions")
    )
    return chart


def trace_charts(stats: Sequence[TraceStats]) -> dict[str, Chart]:
    """Every chart the data allows, by name (also the PNG file stems), in page order."""
    frames = trace_frames(stats)
    charts: dict[str, Chart] = {}
    if "series" in frames:
        charts["rate"] = rate_chart(frames["series"])
        charts["rate_distribution"] = rate_distribution_chart(frames["series"])
    if "profile" in frames:
        charts["profile"] = profile_chart(frames["profile"])
    if "gaps" in frames:
        charts["gaps"] = gap_chart(frames["gaps"])
    if "lengths" in frames:
        charts["lengths"] = lengths_chart(frames["lengths"])
        charts["token_cdf"] = token_cdf_chart(frames["lengths"])
    return charts


def _fmt(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    if math.isinf(value):
        return "∞"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def stats_table_html(stats: Sequence[TraceStats]) -> str:
    """The statistics of each source side by side (with the relative difference to the first)."""
    rows = [s.rows() for s in stats]
    head = "".join(f"<th>{html.escape(s.name)}</th>" for s in stats)
    diff = "<th>difference</th>" if len(stats) == 2 else ""
    body = []
    for i, (label, first) in enumerate(rows[0]):
        cells = [f'<td class="num">{_fmt(r[i][1])}</td>' for r in rows]
        if len(stats) == 2:
            other = rows[1][i][1]
            rel = (
                f"{other / first - 1:+.1%}"
                if first not in (None, 0) and other is not None and math.isfinite(first)
                else ""
            )
            cells.append(f'<td class="num">{rel}</td>')
        body.append(f"<tr><td>{html.escape(label)}</td>{''.join(cells)}</tr>")
    return (
        f'<table class="summary"><thead><tr><th>statistic</th>{head}{diff}</tr></thead>'
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def checks_table_html(checks: Sequence[Check]) -> str:
    """The acceptance checks: real, generated, tolerance, verdict."""
    body = []
    for c in checks:
        verdict = "n/a" if c.ok is None else ("pass" if c.ok else "FAIL")
        klass = "" if c.ok is None else ("" if c.ok else ' class="risk-high"')
        rel = "" if c.relative_error is None else f"{c.relative_error:+.1%}"
        body.append(
            f"<tr><td>{html.escape(c.statistic)}</td><td class='num'>{_fmt(c.real)}</td>"
            f"<td class='num'>{_fmt(c.generated)}</td><td class='num'>{rel}</td>"
            f"<td>{html.escape(c.tolerance)}</td><td{klass}>{verdict}</td></tr>"
        )
    return (
        '<table class="summary"><thead><tr><th>check</th><th>real</th><th>generated</th>'
        "<th>difference</th><th>tolerance</th><th>verdict</th></tr></thead>"
        f"<tbody>{''.join(body)}</tbody></table>"
    )


def render_trace_html(
    title: str,
    stats: Sequence[TraceStats],
    notes: Sequence[str] = (),
    checks: Sequence[Check] | None = None,
) -> str:
    """One self-contained page: notes, statistics side by side, checks, charts (offline)."""
    notes_html = "".join(f"<li>{html.escape(n)}</li>" for n in notes)
    checks_html = (
        f"<h2>Acceptance (issue #4 tolerances)</h2>\n{checks_table_html(checks)}"
        if checks is not None
        else ""
    )
    body = f"""<h1>{html.escape(title)}</h1>
<ul>{notes_html}</ul>
<h2>Statistics</h2>
{stats_table_html(stats)}
{checks_html}
<h2>Charts</h2>
{chart_blocks(trace_charts(stats))}"""
    return html_page(title, body)


def write_trace_report(
    out_dir: Path,
    title: str,
    stats: Sequence[TraceStats],
    notes: Sequence[str] = (),
    checks: Sequence[Check] | None = None,
    *,
    pngs: bool = True,
) -> Path:
    """Write `out_dir/report.html` (and one PNG per chart); returns the page's path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = out_dir / "report.html"
    _atomic_write(page, render_trace_html(title, stats, notes, checks).encode("utf-8"))
    if pngs:
        for key, chart in trace_charts(stats).items():
            write_png(chart, out_dir / f"{key}.png")
    return page

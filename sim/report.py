"""Reports: result frames -> altair charts -> one self-contained, offline ``report.html``.

Every chart is a pure function of a polars frame (``DataFrame -> chart``); nothing here imports
the simulation, and saving is kept apart from building. The frames are the runner's:

- ``months``: one row per (plan, replication, month) with that month's KPIs;
- ``summary``: long format, one row per (plan, month, metric) with ``mean, p5, p50, p95`` of the
  metric *across replications*, plus the metric ``p_ttft_p95_above_slo`` (the share of
  replications whose month p95 TTFT exceeded the SLO);
- ``hourly``: GPU utilisation (0..1) by (plan, replication, month, hour_of_week), where
  ``hour_of_week`` 0 is Monday 00:00–01:00 and 167 is Sunday 23:00–24:00.

``meta`` is the run manifest. Keys read (all optional): ``experiment`` (or ``name``), ``seed``,
``replications`` (or ``replications_done``) and ``replications_requested``, ``version``,
``wall_s`` (or ``wall_time_s``), ``slo_ttft_s``, ``slo_tpot_s``, ``errors`` (failed replications,
a list or a dict), ``interrupted`` and ``config`` (the resolved experiment, shown verbatim).

The page works offline: the Vega, Vega-Lite and vega-embed JavaScript comes from
``vl_convert.javascript_bundle()`` and is inlined once, whatever the number of charts; each chart
is a JSON spec in a ``<script type="application/json">`` block embedded by one small loop.
"""

from __future__ import annotations

import contextlib
import functools
import html
import json
import math
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeAlias

import altair as alt
import polars as pl
import vl_convert as vlc

Chart: TypeAlias = alt.Chart | alt.LayerChart | alt.FacetChart | alt.VConcatChart

DAYS: Final = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")
P_ABOVE_SLO: Final = "p_ttft_p95_above_slo"

# (metric, column heading, kind) of the SLO-risk table; kind picks the number format.
RISK_METRICS: Final = (
    ("ttft_p95_s", "p95 TTFT (s)", "seconds"),
    # the sampled horizon's own error (shown only when some month was sampled)
    ("ttft_p95_se_s", "s.e. of p95 TTFT (s)", "seconds"),
    ("tpot_p95_s", "p95 TPOT (s)", "seconds"),
    ("e2e_p95_s", "p95 E2E latency (s)", "seconds"),
    ("slo_attainment", "SLO attainment", "share"),
    ("gpu_utilisation", "GPU utilisation", "share"),
    ("cost_usd", "Cost (USD / month)", "usd"),
)

_FAN_WIDTH: Final = 640
_FAN_HEIGHT: Final = 300
_SLO_COLOUR: Final = "#222222"  # not red: the third plan colour is red
_HEAT_COLUMNS: Final = 6
_EMBED_OPTIONS: Final = {
    # "editor" would open vega.github.io; keep every action that works offline.
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
    "renderer": "svg",
}


# --------------------------------------------------------------------------- helpers


def _inline(frame: pl.DataFrame) -> dict[str, Any]:
    """Rows as inline Vega-Lite data, NaN turned into null (JSON has no NaN).

    Inline values bypass altair's data transformer and its 5,000-row limit. NOTE: a plain
    ``{"values": rows}`` dict, not ``alt.InlineData``, which validates every row on
    construction (0.55 s for the 2,016-cell heatmap of the tests vs 10 ms).
    """
    clean = frame.with_columns(pl.col(pl.Float32, pl.Float64).fill_nan(None))
    return {"values": clean.to_dicts()}


def _plans(frame: pl.DataFrame) -> list[str]:
    """Plans in order of first appearance, so each plan keeps its colour in every chart."""
    return [str(p) for p in frame.get_column("plan").unique(maintain_order=True).to_list()]


def _metric_rows(summary: pl.DataFrame, metric: str) -> pl.DataFrame:
    rows = summary.filter(pl.col("metric") == metric).select(
        "plan", "month", "mean", "p5", "p50", "p95"
    )
    if rows.is_empty():
        raise ValueError(f"summary has no rows for metric {metric!r}")
    return rows.sort("month", maintain_order=True)


def _month_axis(rows: pl.DataFrame) -> alt.X:
    first, last = int(rows.get_column("month").min()), int(rows.get_column("month").max())  # type: ignore[arg-type]
    return alt.X(
        "month:Q",
        title="Month",
        scale=alt.Scale(domain=[first, max(last, first + 1)], nice=False),
        axis=alt.Axis(tickMinStep=1, format="d"),
    )


# --------------------------------------------------------------------------- charts


def fan_chart(
    summary: pl.DataFrame,
    metric: str,
    title: str,
    y_title: str,
    slo: float | None = None,
    *,
    slo_label: str | None = None,
    y_format: str | None = None,
) -> alt.LayerChart:
    """Fan chart of one metric by month: a p5–p95 band and the p50 line, one colour per plan.

    The band spans the 5th to 95th percentile of the monthly value across replications; the
    line is the median. ``slo`` adds a dashed horizontal rule at that y value, labelled
    ``slo_label`` (default ``"SLO {slo}"``); the y scale always includes it.
    """
    rows = _metric_rows(summary, metric)
    x = _month_axis(rows)
    axis = alt.Axis(format=y_format) if y_format else alt.Axis()
    plan_scale = alt.Scale(domain=_plans(rows))
    # One legend for both layers; drawn as strokes so it matches the median lines.
    legend = alt.Legend(symbolType="stroke", symbolStrokeWidth=3, symbolOpacity=1)
    colour = alt.Color("plan:N", title="Plan", scale=plan_scale, legend=legend)
    fmt = y_format or ",.4~g"
    band = (
        alt.Chart()
        .mark_area(opacity=0.22)
        .encode(
            x=x,
            y=alt.Y("p5:Q", title=y_title, axis=axis),
            y2="p95:Q",
            color=colour,
        )
    )
    line = (
        alt.Chart()
        .mark_line(point=True)
        .encode(
            x=x,
            y=alt.Y("p50:Q", title=y_title, axis=axis),
            color=colour,
            tooltip=[
                alt.Tooltip("plan:N", title="Plan"),
                alt.Tooltip("month:Q", title="Month"),
                alt.Tooltip("p5:Q", title="p5", format=fmt),
                alt.Tooltip("p50:Q", title="p50", format=fmt),
                alt.Tooltip("p95:Q", title="p95", format=fmt),
                alt.Tooltip("mean:Q", title="mean", format=fmt),
            ],
        )
    )
    layers: list[alt.Chart] = [band, line]
    if slo is not None:
        label = slo_label or f"SLO {slo:g}"
        one_row = {"values": [{"label": label}]}
        y_slo = alt.Y(datum=slo, title=y_title, axis=axis)
        layers.append(
            alt.Chart(one_row)
            .mark_rule(color=_SLO_COLOUR, strokeDash=[6, 4], size=2)
            .encode(y=y_slo)
        )
        layers.append(
            alt.Chart(one_row)
            .mark_text(align="left", dx=4, dy=-8, color=_SLO_COLOUR, fontWeight="bold")
            .encode(y=y_slo, x=alt.value(0), text="label:N")
        )
    subtitle = "Band: 5th–95th percentile across replications · line: median"
    return alt.LayerChart(
        layer=layers,
        data=_inline(rows),
        title=alt.TitleParams(title, subtitle=subtitle, anchor="start"),
        width=_FAN_WIDTH,
        height=_FAN_HEIGHT,
    )


def ttft_fan_chart(summary: pl.DataFrame, slo_ttft_s: float | None) -> alt.LayerChart:
    """Fan chart of each month's p95 time to first token, with the TTFT SLO as a rule."""
    return fan_chart(
        summary,
        "ttft_p95_s",
        "p95 time to first token by month",
        "p95 TTFT (s)",
        slo=slo_ttft_s,
        slo_label=None if slo_ttft_s is None else f"SLO: p95 TTFT ≤ {slo_ttft_s:g} s",
    )


def cost_fan_chart(summary: pl.DataFrame) -> alt.LayerChart:
    """Fan chart of total monthly cost (GPU + operations + any API overflow), in USD."""
    return fan_chart(summary, "cost_usd", "Monthly cost", "Cost (USD / month)", y_format="$,.0f")


def utilisation_heatmap(hourly: pl.DataFrame) -> alt.VConcatChart:
    """Mean GPU utilisation by hour of week: a day × hour grid per month, one block per plan.

    Utilisation is averaged across replications; the colour scale is fixed to 0–100 % so that
    panels, months and plans compare directly.
    """
    if hourly.is_empty():
        raise ValueError("hourly has no rows")
    cells = (
        hourly.group_by("plan", "month", "hour_of_week", maintain_order=True)
        .agg(pl.col("utilisation").mean())
        .with_columns(
            (pl.col("hour_of_week") % 24).alias("hour"),
            pl.col("hour_of_week")
            .floordiv(24)
            .replace_strict(list(range(7)), list(DAYS), return_dtype=pl.String)
            .alias("day"),
        )
        .sort("month", "hour_of_week", maintain_order=True)
    )
    panel = (
        alt.Chart()
        .mark_rect()
        .encode(
            x=alt.X(
                "hour:O", title="Hour of day", axis=alt.Axis(values=[0, 6, 12, 18], labelAngle=0)
            ),
            y=alt.Y("day:O", title=None, sort=list(DAYS)),
            color=alt.Color(
                "utilisation:Q",
                title="GPU utilisation",
                scale=alt.Scale(domain=[0, 1], scheme="orangered"),
                legend=alt.Legend(format=".0%"),
            ),
            tooltip=[
                alt.Tooltip("plan:N", title="Plan"),
                alt.Tooltip("month:O", title="Month"),
                alt.Tooltip("day:N", title="Day"),
                alt.Tooltip("hour:O", title="Hour"),
                alt.Tooltip("utilisation:Q", title="Mean utilisation", format=".1%"),
            ],
        )
        .properties(width=24 * 8, height=7 * 14)
    )
    blocks = [
        panel.facet(
            facet=alt.Facet(
                "month:O",
                title=None,
                header=alt.Header(labelExpr="'Month ' + datum.value", labelFontWeight="bold"),
            ),
            columns=min(_HEAT_COLUMNS, cells.get_column("month").n_unique()),
            data=_inline(cells.filter(pl.col("plan") == plan)),
            title=alt.TitleParams(f"Plan: {plan}", anchor="start"),
        )
        for plan in _plans(hourly)
    ]
    return alt.vconcat(*blocks).properties(
        title=alt.TitleParams(
            "Mean GPU utilisation by hour of week",
            subtitle="Mean across replications · hour of week 0 = Monday 00:00",
            anchor="start",
        )
    )


def cost_breakdown_chart(months: pl.DataFrame) -> alt.FacetChart:
    """Mean monthly cost by component (GPU, operations, other = total − GPU − operations).

    Means across replications, stacked by month, one panel per plan. "Other" is shown only
    when it is material (API overflow, for instance); means are linear, so the parts add up.
    """
    mean = (
        months.group_by("plan", "month", maintain_order=True)
        .agg(pl.col("gpu_cost_usd", "ops_cost_usd", "cost_usd").mean())
        .with_columns(
            (pl.col("cost_usd") - pl.col("gpu_cost_usd") - pl.col("ops_cost_usd"))
            .clip(lower_bound=0.0)
            .alias("other_cost_usd")
        )
    )
    parts = {"gpu_cost_usd": "GPU", "ops_cost_usd": "Operations", "other_cost_usd": "Other"}
    total = float(mean.get_column("cost_usd").abs().sum())
    if float(mean.get_column("other_cost_usd").sum()) <= 0.005 * total:
        del parts["other_cost_usd"]
    long = (
        mean.unpivot(index=["plan", "month"], on=list(parts), variable_name="part")
        .with_columns(
            pl.col("part").replace_strict(parts, return_dtype=pl.String).alias("component")
        )
        .select("plan", "month", "component", pl.col("value").alias("usd"))
    )
    chart: alt.FacetChart = (
        alt.Chart()
        .mark_bar()
        .encode(
            x=alt.X("month:O", title="Month", axis=alt.Axis(labelAngle=0)),
            y=alt.Y(
                "usd:Q",
                title="Mean cost (USD / month)",
                stack="zero",
                axis=alt.Axis(format="$,.0f"),
            ),
            color=alt.Color(
                "component:N", title="Component", scale=alt.Scale(domain=list(parts.values()))
            ),
            order=alt.Order("component:N"),
            tooltip=[
                alt.Tooltip("plan:N", title="Plan"),
                alt.Tooltip("month:O", title="Month"),
                alt.Tooltip("component:N", title="Component"),
                alt.Tooltip("usd:Q", title="Mean USD", format="$,.0f"),
            ],
        )
        .properties(width=280, height=220)
        .facet(
            facet=alt.Facet("plan:N", title=None, sort=_plans(mean)),
            columns=3,
            data=_inline(long),
            title=alt.TitleParams(
                "Mean monthly cost by component",
                subtitle="Mean across replications",
                anchor="start",
            ),
        )
    )
    return chart


# --------------------------------------------------------------------------- tables


def slo_risk_table(summary: pl.DataFrame) -> pl.DataFrame:
    """Wide per-(plan, month) table: ``{metric}_{p5,p50,p95}`` for each of ``RISK_METRICS``
    present in ``summary``, plus ``p_ttft_p95_above_slo``; plans in first-appearance order."""
    keys = summary.select("plan", "month").unique(maintain_order=True)
    table = keys
    for metric, _, _ in RISK_METRICS:
        part = summary.filter(pl.col("metric") == metric).select(
            "plan",
            "month",
            *(pl.col(q).alias(f"{metric}_{q}") for q in ("p5", "p50", "p95")),
        )
        if not part.is_empty():
            table = table.join(part, on=["plan", "month"], how="left", maintain_order="left")
    risk = summary.filter(pl.col("metric") == P_ABOVE_SLO).select(
        "plan", "month", pl.col("mean").alias(P_ABOVE_SLO)
    )
    if not risk.is_empty():
        table = table.join(risk, on=["plan", "month"], how="left", maintain_order="left")
    order = {plan: i for i, plan in enumerate(_plans(keys))}
    return (
        table.with_columns(pl.col("plan").replace_strict(order, return_dtype=pl.Int64).alias("_o"))
        .sort("_o", "month")
        .drop("_o")
    )


def _format(value: object, kind: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    number = float(value)  # type: ignore[arg-type]
    if kind == "seconds":
        return f"{number:.3g}" if abs(number) < 1000 else f"{number:,.0f}"
    if kind == "share":
        return f"{number:.1%}"
    if kind == "usd":
        return f"${number:,.0f}"
    return f"{number:.4g}"


def _risk_class(p: object) -> str:
    if not isinstance(p, float) or math.isnan(p):
        return ""
    if p >= 0.5:
        return "risk-high"
    if p >= 0.1:
        return "risk-mid"
    return "risk-low" if p > 0 else "risk-none"


def summary_table_html(summary: pl.DataFrame, slo_ttft_s: float | None = None) -> str:
    """The SLO-risk table as an HTML ``<table>``: per plan and month, p5 / p50 / p95 across
    replications of each of ``RISK_METRICS`` and P(p95 TTFT > SLO), shaded by risk
    (≥ 50 % red, ≥ 10 % amber, > 0 yellow)."""
    table = slo_risk_table(summary)
    shown = [
        m
        for m in RISK_METRICS
        if f"{m[0]}_p50" in table.columns
        and not table[f"{m[0]}_p50"].fill_nan(None).is_null().all()
    ]
    slo_text = "SLO" if slo_ttft_s is None else f"SLO {slo_ttft_s:g} s"
    head1 = ['<th rowspan="2">Plan</th>', '<th rowspan="2">Month</th>']
    head1 += [f'<th colspan="3">{html.escape(title)}</th>' for _, title, _ in shown]
    head1.append(f'<th rowspan="2">P(p95 TTFT &gt; {html.escape(slo_text)})</th>')
    head2 = ["<th>p5</th><th>p50</th><th>p95</th>"] * len(shown)
    body = []
    for row in table.iter_rows(named=True):
        cells = [f"<td>{html.escape(str(row['plan']))}</td>", f"<td>{row['month']}</td>"]
        for metric, _, kind in shown:
            cells += [
                f'<td class="num">{_format(row[f"{metric}_{q}"], kind)}</td>'
                for q in ("p5", "p50", "p95")
            ]
        p = row.get(P_ABOVE_SLO)
        cells.append(f'<td class="num {_risk_class(p)}">{_format(p, "share")}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    return (
        '<table class="summary">\n<thead>\n<tr>'
        + "".join(head1)
        + "</tr>\n<tr>"
        + "".join(head2)
        + "</tr>\n</thead>\n<tbody>\n"
        + "\n".join(body)
        + "\n</tbody>\n</table>"
    )


# --------------------------------------------------------------------------- page


def _vl_version() -> str | None:
    """The Vega-Lite version vl-convert should use: the one altair's schema targets."""
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return major_minor if major_minor in vlc.get_vegalite_versions() else None


@functools.cache
def _vega_bundle() -> str:
    """vega + vega-lite + vega-embed as one script (≈ 0.9 MB; ~2 s to build, then cached)."""
    # The stub marks `snippet` required; at run time None (the default) exposes `vegaEmbed`.
    js = vlc.javascript_bundle(None, vl_version=_vl_version())  # type: ignore[arg-type]
    # Neither can close or re-open the inline <script> early (both absent from vl-convert 1.9).
    return js.replace("</script", "<\\/script").replace("<!--", "<\\!--")


def _script_json(obj: object) -> str:
    """JSON safe inside a <script> element: ``</`` and ``<!--`` cannot end or confuse it."""
    text = json.dumps(obj, allow_nan=False, sort_keys=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def report_charts(
    months: pl.DataFrame, summary: pl.DataFrame, hourly: pl.DataFrame, meta: Mapping[str, Any]
) -> dict[str, Chart]:
    """The report's charts by name (also the PNG file stems), in page order."""
    slo = meta.get("slo_ttft_s")
    charts: dict[str, Chart] = {
        "ttft_fan": ttft_fan_chart(summary, None if slo is None else float(slo)),
        "cost_fan": cost_fan_chart(summary),
    }
    if {"gpu_cost_usd", "ops_cost_usd", "cost_usd"} <= set(months.columns) and months.height:
        charts["cost_breakdown"] = cost_breakdown_chart(months)
    if hourly.height:
        charts["utilisation_heatmap"] = utilisation_heatmap(hourly)
    return charts


def _wall_time(seconds: object) -> str:
    if not isinstance(seconds, int | float):
        return "—"
    minutes, secs = divmod(float(seconds), 60.0)
    return f"{secs:.1f} s" if minutes < 1 else f"{int(minutes)} min {secs:.0f} s"


def _replications(meta: Mapping[str, Any]) -> str:
    done = meta.get("replications", meta.get("replications_done"))
    requested = meta.get("replications_requested")
    if isinstance(done, list | tuple):  # the runner's manifest lists the finished ids
        done = len(done)
    if done is None:
        return "—"
    return f"{done} of {requested} requested" if requested not in (None, done) else str(done)


_CSS: Final = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1500px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
table.summary { border-collapse: collapse; font-size: .85rem; }
table.summary th, table.summary td { border: 1px solid #ccc; padding: .25rem .5rem; }
table.summary th { background: #f3f3f3; } td.num { text-align: right;
  font-variant-numeric: tabular-nums; }
td.risk-high { background: #f4a6a6; } td.risk-mid { background: #fbd38d; }
td.risk-low { background: #fdf2b3; }
.chart { margin: 1rem 0; } .errors { color: #b00020; }
pre.config { background: #f7f7f7; padding: .8rem; overflow: auto; font-size: .8rem; }
"""

_EMBED_LOOP: Final = """
document.querySelectorAll('script[data-vega-spec]').forEach(function (node) {
  var target = document.getElementById(node.getAttribute('data-vega-spec'));
  vegaEmbed(target, JSON.parse(node.textContent), EMBED_OPTIONS).catch(function (err) {
    target.textContent = 'Chart failed to render: ' + err;
  });
});
"""


def render_report_html(
    months: pl.DataFrame, summary: pl.DataFrame, hourly: pl.DataFrame, meta: Mapping[str, Any]
) -> str:
    """One self-contained HTML page: run header, SLO-risk table and the charts.

    No network reference: the JavaScript is inlined once (see the module docstring), specs carry
    their data inline. The output depends only on the arguments (no clock), so the same results
    give the same bytes.
    """
    charts = report_charts(months, summary, hourly, meta)
    name = str(meta.get("experiment", meta.get("name", "experiment")))
    slo_ttft, slo_tpot = meta.get("slo_ttft_s"), meta.get("slo_tpot_s")
    slo_text = " · ".join(
        f"{what} ≤ {value:g} s"
        for what, value in (("p95 TTFT", slo_ttft), ("p95 TPOT", slo_tpot))
        if isinstance(value, int | float)
    )
    facts = [
        ("Seed", meta.get("seed", "—")),
        ("Replications", _replications(meta)),
        ("Plans", ", ".join(_plans(summary))),
        ("Months", summary.get_column("month").n_unique()),
        ("SLO", slo_text or "—"),
        ("Version", meta.get("version", "—")),
        ("Wall time", _wall_time(meta.get("wall_s", meta.get("wall_time_s")))),
    ]
    dl = "".join(f"<dt>{html.escape(k)}</dt><dd>{html.escape(str(v))}</dd>" for k, v in facts)
    errors = meta.get("errors") or ()
    warnings = [f"{len(errors)} replication(s) failed; see manifest.json."] if errors else []
    if meta.get("interrupted"):
        warnings.append("The run was interrupted: results cover the replications that finished.")
    error_html = "".join(f'<p class="errors">{html.escape(w)}</p>' for w in warnings)
    sections = []
    for key, chart in charts.items():
        spec = chart.to_dict()
        sections.append(
            f'<div class="chart" id="chart-{key}"></div>\n'
            f'<script type="application/json" data-vega-spec="chart-{key}">'
            f"{_script_json(spec)}</script>"
        )
    config = html.escape(json.dumps(meta.get("config", {}), indent=2, default=str))
    slo_for_table = None if slo_ttft is None else float(slo_ttft)
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(name)} — capacity report</title>
<style>{_CSS}</style>
<script type="text/javascript">
{_vega_bundle()}
</script>
</head>
<body>
<h1>{html.escape(name)}</h1>
<p>Monte Carlo capacity report: each figure is a distribution across replications.</p>
<dl class="meta">{dl}</dl>
{error_html}
<h2>SLO risk by month</h2>
{summary_table_html(summary, slo_for_table)}
<h2>Charts</h2>
{chr(10).join(sections)}
<h2>Resolved configuration</h2>
<details><summary>Show</summary><pre class="config">{config}</pre></details>
<script type="text/javascript">
var EMBED_OPTIONS = {_script_json(_EMBED_OPTIONS)};
{_EMBED_LOOP}
</script>
</body>
</html>
"""


# --------------------------------------------------------------------------- saving


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``, so a
    reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_png(chart: Chart, path: Path, *, scale: float = 2.0) -> Path:
    """Render ``chart`` to a PNG at ``path`` with vl-convert (no browser), atomically."""
    png = vlc.vegalite_to_png(chart.to_dict(), vl_version=_vl_version(), scale=scale)
    _atomic_write(Path(path), png)
    return Path(path)


def write_report(
    out_dir: Path,
    months: pl.DataFrame,
    summary: pl.DataFrame,
    hourly: pl.DataFrame,
    meta: Mapping[str, Any],
    *,
    pngs: bool = True,
) -> Path:
    """Write ``out_dir/report.html`` (and, with ``pngs``, one ``<chart>.png`` per chart).

    The page is rendered fully in memory first and then replaces any previous report
    atomically: a failure leaves the old report untouched and no temp file behind.
    """
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    page = render_report_html(months, summary, hourly, meta)
    target = out_dir / "report.html"
    _atomic_write(target, page.encode("utf-8"))
    if pngs:
        for key, chart in report_charts(months, summary, hourly, meta).items():
            write_png(chart, out_dir / f"{key}.png")
    return target


__all__ = [
    "DAYS",
    "RISK_METRICS",
    "cost_breakdown_chart",
    "cost_fan_chart",
    "fan_chart",
    "render_report_html",
    "report_charts",
    "slo_risk_table",
    "summary_table_html",
    "ttft_fan_chart",
    "utilisation_heatmap",
    "write_png",
    "write_report",
]

"""The report's SLO-risk table: per plan and month, quantiles across replications of each KPI.

``slo_risk_table`` is the wide frame, ``summary_table_html`` its HTML; ``_format`` and
``_risk_class`` are shared with the risk section's tables.
"""

from __future__ import annotations

import html
import math
from typing import Final

import polars as pl

from sim.report.shell import _plans

P_ABOVE_SLO: Final = "p_ttft_p95_above_slo"
P_MISS: Final = "p_miss_slo"

# (metric, column heading, kind) of the SLO-risk table; kind picks the number format.
RISK_METRICS: Final = (
    ("ttft_p95_s", "p95 TTFT (s)", "seconds"),
    # the sampled horizon's own error (shown only when some month was sampled)
    ("ttft_p95_se_s", "s.e. of p95 TTFT (s)", "seconds"),
    ("tpot_p95_s", "p95 TPOT (s)", "seconds"),
    ("e2e_p95_s", "p95 E2E latency (s)", "seconds"),
    ("slo_attainment", "SLO attainment", "share"),
    ("gpu_utilisation", "GPU busy time", "share"),
    ("token_utilisation", "Token utilisation (of capacity at the SLO)", "share"),
    ("cost_usd", "Cost (USD / month)", "usd"),
)


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
    for share in (P_MISS, P_ABOVE_SLO):
        risk = summary.filter(pl.col("metric") == share).select(
            "plan", "month", pl.col("mean").alias(share)
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
    """One table cell's number; ``kind``: seconds, share, usd, count, or a signed difference
    (``d-seconds``, ``d-usd``, ``d-pp``: a difference of shares in percentage points)."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "—"
    number = float(value)  # type: ignore[arg-type]
    if kind == "seconds":
        return f"{number:.3g}" if abs(number) < 1000 else f"{number:,.0f}"
    if kind == "share":
        return f"{number:.1%}"
    if kind == "usd":
        return f"${number:,.0f}" if number >= 0 else f"−${-number:,.0f}"
    if kind == "count":
        return f"{number:,.0f}"
    if kind.startswith("d-"):
        sign = "+" if number > 0 else "−" if number < 0 else "±"
        size = abs(number)
        if kind == "d-usd":
            return f"{sign}${size:,.0f}"
        if kind == "d-pp":
            return f"{sign}{100 * size:.1f} pp"
        return f"{sign}{size:.3g}"
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
    misses = P_MISS in table.columns
    if misses:
        head1.append('<th rowspan="2">P(miss SLO): p95 TTFT or TPOT over</th>')
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
        if misses:
            q = row.get(P_MISS)
            cells.append(f'<td class="num {_risk_class(q)}">{_format(q, "share")}</td>')
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

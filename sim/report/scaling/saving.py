"""The saving against the baseline: per month, the paired difference of the monthly cost (same
traffic: common random numbers) and P(miss SLO) of both, as a table and in plain words."""

from __future__ import annotations

import html
from collections.abc import Sequence
from typing import Final

import polars as pl

from sim.config import SloSpec
from sim.report.risk_tables import _num, _ordered, _table
from sim.report.scaling.fleet import _in_order
from sim.report.shell import _plans
from sim.report.tables import _format
from sim.stats.risk import risk_table
from sim.stats.summary import paired_differences

_SAME_USD: Final = 0.5  # a median paired difference below this is "the same cost"


# --------------------------------------------------------------------------- the saving


def saving_table(
    months: pl.DataFrame,
    paired: pl.DataFrame | None,
    slo: SloSpec | None,
    plans: Sequence[str],
) -> pl.DataFrame | None:
    """Per (plan, month) of every plan but the baseline (``plans[0]``): the paired difference
    of the monthly cost against the baseline (``d_cost_p5/p50/p95``, from ``paired``, else
    computed from ``months``) and, with an ``slo``, SLO misses of the plan and the baseline
    (``n``, ``k_plan``, ``k_base``, ``p_plan``, ``p_base``) and ``d_p_miss`` = p_plan − p_base.
    ``None`` with fewer than two plans or no cost difference."""
    if len(plans) < 2 or "cost_usd" not in months.columns or not months.height:
        return None
    if paired is None or paired.filter(pl.col("metric") == "cost_usd").is_empty():
        slo_ttft = slo.ttft_s if slo is not None else float("inf")
        paired = paired_differences(months, slo_ttft, plans)
    cost = paired.filter(pl.col("metric") == "cost_usd")
    if cost.is_empty():
        return None
    table = cost.select(
        "plan",
        "baseline",
        "month",
        *(pl.col(q).alias(f"d_cost_{q}") for q in ("p5", "p50", "p95")),
    )
    needed = {"finished", "in_flight_at_end", "ttft_p95_s", "tpot_p95_s"}
    if slo is not None and needed <= set(months.columns):
        risk = risk_table(months, slo).select("plan", "month", "n", "k_miss", "p_miss")
        table = (
            table.join(
                risk.rename({"k_miss": "k_plan", "p_miss": "p_plan"}),
                on=["plan", "month"],
                how="left",
                maintain_order="left",
            )
            .join(
                risk.select(
                    pl.col("plan").alias("baseline"),
                    "month",
                    pl.col("k_miss").alias("k_base"),
                    pl.col("p_miss").alias("p_base"),
                ),
                on=["baseline", "month"],
                how="left",
                maintain_order="left",
            )
            .with_columns((pl.col("p_plan") - pl.col("p_base")).alias("d_p_miss"))
        )
    return _ordered(table, _in_order(table, plans))


def _months_text(months: Sequence[int]) -> str:
    """[1, 2, 3, 5] -> "months 1–3 and 5"; [4] -> "month 4"."""
    runs: list[list[int]] = []
    for m in sorted(months):
        if runs and m == runs[-1][-1] + 1:
            runs[-1].append(m)
        else:
            runs.append([m])
    parts = [f"{r[0]}–{r[-1]}" if len(r) > 1 else f"{r[0]}" for r in runs]
    text = parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + " and " + parts[-1]
    return ("months " if len(months) > 1 else "month ") + text


def _usd_span(values: Sequence[float]) -> str:
    lo, hi = min(values), max(values)
    return f"${lo:,.0f}" if round(lo) == round(hi) else f"${lo:,.0f}–${hi:,.0f}"


def _worst(rows: pl.DataFrame, k: str) -> str:
    worst = rows.sort(k, "month", descending=[True, False]).row(0, named=True)
    if not worst[k]:
        return f"0 of {worst['n']} in every month"
    return f"{worst[k]} of {worst['n']} at worst (month {worst['month']})"


def saving_sentences(table: pl.DataFrame) -> list[str]:
    """One sentence per plan of ``saving_table``: where it costs less (or more) than the
    baseline, by how much a month (the range of the monthly medians of the paired
    differences), and P(miss SLO) of both."""
    lines = []
    for plan in _plans(table):
        rows = table.filter(pl.col("plan") == plan)
        base = str(rows["baseline"][0])
        d = (
            rows.select("month", "d_cost_p50")
            .drop_nulls()
            .filter(pl.col("d_cost_p50").is_not_nan())
        )
        less = d.filter(pl.col("d_cost_p50") <= -_SAME_USD)
        more = d.filter(pl.col("d_cost_p50") >= _SAME_USD)
        same = d.filter(pl.col("d_cost_p50").abs() < _SAME_USD)
        clauses = []
        if less.height:
            span = _usd_span([-v for v in less["d_cost_p50"].to_list()])
            where = _months_text(less["month"].to_list())
            clauses.append(f"{span} a month less than {base} in {where}")
        if more.height:
            span = _usd_span(more["d_cost_p50"].to_list())
            where = _months_text(more["month"].to_list())
            clauses.append(f"{span} a month more than {base} in {where}")
        if not clauses:
            text = f"Plan {plan} costs the same as {base} in every month"
        else:
            text = f"Plan {plan} costs " + ", and ".join(clauses)
            if same.height:
                text += f", and the same in {_months_text(same['month'].to_list())}"
        text += " (median paired difference on the same traffic)"
        if "k_plan" in rows.columns and rows["k_plan"].is_not_null().all():
            k_plan, k_base = _worst(rows, "k_plan"), _worst(rows, "k_base")
            if k_plan == k_base and k_plan.endswith("every month"):
                text += f"; P(miss SLO) {k_plan} for both"
            else:
                text += f"; P(miss SLO) {k_plan} for {plan}, {k_base} for {base}"
        lines.append(text + ".")
    return lines


def _identical(table: pl.DataFrame) -> pl.Expr:
    """Rows of ``saving_table`` where the plan costs what the baseline costs in every
    replication (p5 = p50 = p95 = 0) and misses the SLO as often (when known)."""
    same = pl.all_horizontal((pl.col(f"d_cost_{q}") == 0) for q in ("p5", "p50", "p95"))
    if "d_p_miss" in table.columns:
        same = same & (pl.col("d_p_miss") == 0)
    return same.fill_null(False)


def identical_months(table: pl.DataFrame) -> dict[str, list[int]]:
    """Per plan of ``saving_table``, the months identical to the baseline (``_identical``)."""
    rows = table.filter(_identical(table))
    return {p: rows.filter(pl.col("plan") == p)["month"].to_list() for p in _plans(rows)}


def saving_table_html(table: pl.DataFrame) -> str:
    risk = "k_plan" in table.columns
    head1 = ['<th rowspan="2">Plan</th>', '<th rowspan="2">Month</th>']
    head1.append('<th colspan="2">Δ cost against the baseline (USD / month)</th>')
    if risk:
        head1.append('<th colspan="3">P(miss SLO): k of n replications</th>')
    head2 = ["<th>median</th><th>p5 … p95</th>"]
    if risk:
        head2.append("<th>plan</th><th>baseline</th><th>Δ P(miss)</th>")
    body = []
    for row in table.iter_rows(named=True):
        plan = f"{html.escape(str(row['plan']))} − {html.escape(str(row['baseline']))}"
        span = f"{_format(row['d_cost_p5'], 'd-usd')} … {_format(row['d_cost_p95'], 'd-usd')}"
        cells = [f"<td>{plan}</td>", f"<td>{row['month']}</td>"]
        cells += [_num(_format(row["d_cost_p50"], "d-usd")), _num(span)]
        if risk:
            n = row["n"]
            cells += [
                _num("—" if row["k_plan"] is None else f"{row['k_plan']} of {n}"),
                _num("—" if row["k_base"] is None else f"{row['k_base']} of {n}"),
                _num(_format(row["d_p_miss"], "d-pp")),
            ]
        body.append("<tr>" + "".join(cells) + "</tr>")
    return _table(head1, head2, body)


def saving_html(saving: pl.DataFrame, baseline: str) -> str:
    """The saving's heading, a note on how to read it, and ``saving_table`` as HTML without
    the months identical to the baseline (``identical_months``, named in a note instead)."""
    parts = [f"<h3>Saving against {html.escape(baseline)}</h3>"]
    parts.append(
        '<p class="note">Each plan minus the baseline, replication by replication on the '
        "same traffic (common random numbers): the median and the 5th–95th percentile "
        "across replications. P(miss SLO): replications whose month p95 TTFT or TPOT "
        "exceeded its SLO.</p>"
    )
    same = identical_months(saving)
    if same:
        parts.append(
            f'<p class="note">Left out, identical to {html.escape(baseline)} in every '
            "replication (cost and SLO misses): "
            + html.escape("; ".join(f"{p}, {_months_text(m)}" for p, m in same.items()))
            + ".</p>"
        )
    kept = saving.filter(~_identical(saving))
    parts.append(saving_table_html(kept) if kept.height else "")
    return "\n".join(p for p in parts if p)

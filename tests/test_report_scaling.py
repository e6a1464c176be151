"""The report's "Fleets that move" section, on small synthetic frames with known answers.

Two plans on the same traffic: ``static`` (the baseline) and ``auto`` (an autoscaled pool).
``auto`` costs the same in month 1 and $600 (month 2) and $650 (month 3) less by the median of
the paired differences; it misses the SLO once, in month 3 of replication 0. Every replica
has tp = 2 GPUs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl
import pytest

from sim.config import SloSpec
from sim.records import FLEET_WEEK_SCHEMA, MONTH_SCHEMA, SCALE_EVENTS_SCHEMA
from sim.report import page as report_page
from sim.report import scaling
from sim.stats.summary import paired_differences, summarise

SLO = SloSpec(ttft_s=1.5, tpot_s=0.1)
PLANS = ["static", "auto"]
REPS = 4
TP = 2
WEEK_START_S = 4 * 168 * 3600.0  # Monday 00:00 of week 5 of the plan clock
SAVING_USD = {1: [0, 0, 0, 0], 2: [590, 600, 600, 610], 3: [640, 650, 650, 660]}

CONFIG: dict[str, Any] = {
    "engine": {"tp": TP},
    "plans": [
        {"name": "static", "fleet": [{"pools": [{"count": 2, "schedule": [], "autoscale": None}]}]},
        {
            "name": "auto",
            "fleet": [{"pools": [{"count": 1, "schedule": [], "autoscale": {"max": 2}}]}],
        },
    ],
}
META: dict[str, Any] = {
    "experiment": "scaling-test",
    "slo_ttft_s": SLO.ttft_s,
    "slo_tpot_s": SLO.tpot_s,
    "plans": PLANS,
    "config": CONFIG,
}


def _row(plan: str, rep: int, month: int) -> dict[str, Any]:
    row: dict[str, Any] = {
        k: (0.0 if dtype == pl.Float64 else 0) for k, dtype in MONTH_SCHEMA.items()
    }
    auto = plan == "auto"
    gpu_hours = 730.0 * TP * (1 if month == 1 else 1.5 if auto else 2)
    row |= {
        "plan": plan,
        "replication": rep,
        "month": month,
        "requests": 100_000,
        "finished": 100_000,
        "ttft_p95_s": 2.0 if auto and month == 3 and rep == 0 else 0.5,
        "tpot_p95_s": 0.05,
        "slo_attainment": 0.99,
        "replicas": 1 if month == 1 else 2,
        "gpu_hours": gpu_hours,
        "gpu_hours_on_demand": gpu_hours,
        "gpu_cost_usd": gpu_hours * 1.0,
        "gpu_cost_on_demand_usd": gpu_hours * 1.0,
        "cost_usd": 2000.0 - (SAVING_USD[month][rep] if auto else 0.0),
        "scale_ups": (10 + 2 * rep) if auto and month > 1 else 0,
        "cold_start_delayed": 100 * (rep + 1) if auto and month > 1 else 0,
    }
    return row


def make_months(**changes: Any) -> pl.DataFrame:
    """The runner's months table (sorted by plan name, as the runner writes it)."""
    rows = [_row(p, r, m) for p in PLANS for r in range(REPS) for m in (1, 2, 3)]
    frame = pl.DataFrame(rows, schema=MONTH_SCHEMA).sort("plan", "replication", "month")
    return frame.with_columns(**changes) if changes else frame


def make_week() -> pl.DataFrame:
    """Hourly probes of ``auto`` over one week: two replicas Tuesday 18:00–24:00, else one."""
    rows = []
    for hour in range(168):
        serving = 2 if hour // 24 == 1 and hour % 24 >= 18 else 1
        rows.append(("auto", WEEK_START_S + 3600.0 * hour, serving, 3 * serving, 10, 1, hour))
    return pl.DataFrame(rows, schema=FLEET_WEEK_SCHEMA, orient="row")


def make_events() -> pl.DataFrame:
    tue_18 = WEEK_START_S + 3600.0 * 42
    rows = [
        ("auto", tue_18 - 600, "base", 1, "launch", 1),
        ("auto", tue_18 - 300, "base", 1, "up", 1),
        ("auto", tue_18, "base", 1, "serve", 2),
        ("auto", tue_18 + 6 * 3600, "base", 1, "release", 1),
        ("auto", tue_18 + 7 * 3600, "base", 2, "launch", 1),
    ]
    return pl.DataFrame(rows, schema=SCALE_EVENTS_SCHEMA, orient="row")


def render(months: pl.DataFrame, meta: dict[str, Any] = META, **kwargs: Any) -> str:
    # the summary of the full table: an old run's summary has rows for every KPI it had
    summary = summarise(make_months(), SLO)
    hourly = pl.DataFrame(schema={"plan": pl.String, "month": pl.Int64})
    return report_page.render_report_html(months, summary, hourly, meta, **kwargs)


@pytest.fixture(scope="module")
def months() -> pl.DataFrame:
    return make_months()


@pytest.fixture(scope="module")
def page(months: pl.DataFrame) -> str:
    paired = paired_differences(months, SLO.ttft_s, PLANS)
    return render(months, paired=paired, fleet_week=make_week(), scale_events=make_events())


SENTENCE = (
    "Plan auto costs $600–$650 a month less than static in months 2–3, and the same in month 1 "
    "(median paired difference on the same traffic); P(miss SLO) 1 of 4 at worst (month 3) "
    "for auto, 0 of 4 in every month for static."
)


def section(page: str) -> str:
    return page[page.index('<h2 id="scaling">') : page.index('<h2 id="risk">')]


# --------------------------------------------------------------------------- the page


def test_section_appears_with_chart_tables_and_sentence(page: str) -> None:
    body = section(page)
    assert "Fleets that move" in body
    assert 'id="chart-fleet_week"' in body
    assert f"<b>{SENTENCE}</b>" in body
    assert '<a href="#scaling">Fleets that move</a>' in page
    # the answer at the top says it too, before the section
    answer = page[page.index('<section id="answer">') : page.index("</section>")]
    assert SENTENCE in answer
    for heading in ("Saving against static", "Instance-hours and cost by market"):
        assert heading in body
    assert "Autoscaler launches and cold starts" in body
    assert page.index('id="charts"') < page.index('id="scaling"') < page.index('id="risk"')


def test_saving_table_rows_are_paired_medians_and_misses(page: str) -> None:
    body = section(page)
    # month 2 of auto − static: median −$600, p5..p95 of [-610, -600, -600, -590]
    assert "<td>auto − static</td><td>2</td>" in body
    # month 1 is the same fleet in every replication: left out of the table, said in a note
    assert "<td>auto − static</td><td>1</td>" not in body
    assert "identical to static in every replication (cost and SLO misses): auto, month 1." in body
    row3 = body[body.index("<td>auto − static</td><td>3</td>") :].split("</tr>")[0]
    assert "−$650" in row3 and "1 of 4" in row3 and "0 of 4" in row3 and "+25.0 pp" in row3


def test_no_moving_plan_leaves_the_page_unchanged(months: pl.DataFrame) -> None:
    still = make_months(scale_ups=pl.lit(0, pl.Int64), cold_start_delayed=pl.lit(0, pl.Int64))
    meta = META | {"config": {"engine": {"tp": TP}}}
    plain = render(still, meta)
    with_empty = render(
        still,
        meta,
        fleet_week=pl.DataFrame(schema=FLEET_WEEK_SCHEMA),
        scale_events=pl.DataFrame(schema=SCALE_EVENTS_SCHEMA),
    )
    assert plain == with_empty
    assert 'id="scaling"' not in plain and "#scaling" not in plain
    assert "a month less than" not in plain


def test_a_schedule_in_the_config_alone_shows_the_section(months: pl.DataFrame) -> None:
    still = make_months(scale_ups=pl.lit(0, pl.Int64), cold_start_delayed=pl.lit(0, pl.Int64))
    config = CONFIG | {
        "plans": [
            {"name": "static", "fleet": [{"pools": [{"schedule": []}]}]},
            {"name": "auto", "fleet": [{"pools": [{"schedule": [{"count": 2}]}]}]},
        ]
    }
    body = section(render(still, META | {"config": config}))
    assert "change within a month (a schedule or an autoscaler): auto." in body
    assert "chart-fleet_week" not in body  # no week sampled: no chart, but the tables
    assert "No autoscaler launched a replica" in body


def test_reserved_instances_alone_show_the_section_with_the_market_split() -> None:
    months = make_months(
        scale_ups=pl.lit(0, pl.Int64),
        cold_start_delayed=pl.lit(0, pl.Int64),
        gpu_hours_on_demand=pl.col("gpu_hours") / 4,
        gpu_hours_reserved=pl.col("gpu_hours") * 3 / 4,
        gpu_cost_reserved_usd=pl.col("gpu_hours") * 0.5,
    )
    body = section(render(months, META | {"config": {"engine": {"tp": TP}}}))
    assert "(a schedule or an autoscaler): no plan." in body
    assert "<th>On-demand</th><th>Reserved</th><th>Total</th>" in body
    assert "<th>Spot</th>" not in body  # no spot hour in any row


def test_old_months_without_the_new_columns_do_not_crash() -> None:
    new = [
        "gpu_hours_on_demand",
        "gpu_hours_spot",
        "gpu_hours_reserved",
        "gpu_cost_on_demand_usd",
        "gpu_cost_spot_usd",
        "gpu_cost_reserved_usd",
        "scale_ups",
        "cold_start_delayed",
        "replicas",
    ]
    old = make_months().drop(new)
    body = section(render(old, fleet_week=make_week()))
    assert "chart-fleet_week" in body
    assert "Autoscaler launches" not in body and "Most replicas up" not in body
    assert ">GPU-hours</th>" in body and "On-demand" not in body  # totals, no market split
    # the section functions on empty inputs
    assert scaling.market_table(old.clear()) is None
    assert scaling.cold_start_table(old.clear()) is None
    assert scaling.week_table(pl.DataFrame(schema=FLEET_WEEK_SCHEMA), None) is None
    assert scaling.scaling_charts(pl.DataFrame(schema=FLEET_WEEK_SCHEMA)) == {}
    assert scaling.saving_table(old.clear(), None, SLO, PLANS) is None


def test_write_report_writes_the_week_chart_png(tmp_path: Path, months: pl.DataFrame) -> None:
    summary = summarise(months, SLO)
    hourly = pl.DataFrame(schema={"plan": pl.String, "month": pl.Int64})
    report_page.write_report(
        tmp_path, months, summary, hourly, META, fleet_week=make_week(), scale_events=make_events()
    )
    assert (tmp_path / "fleet_week.png").stat().st_size > 1000
    assert 'id="scaling"' in (tmp_path / "report.html").read_text()


# --------------------------------------------------------------------------- tables and sentences


def test_saving_is_the_same_from_paired_or_from_months(months: pl.DataFrame) -> None:
    paired = paired_differences(months, SLO.ttft_s, PLANS)
    given = scaling.saving_table(months, paired, SLO, PLANS)
    computed = scaling.saving_table(months, None, SLO, PLANS)
    assert given is not None and computed is not None
    assert given.equals(computed)
    assert given["d_cost_p50"].to_list() == [0.0, -600.0, -650.0]
    assert given["k_plan"].to_list() == [0, 0, 1] and given["k_base"].to_list() == [0, 0, 0]
    assert given["d_p_miss"].to_list() == [0.0, 0.0, 0.25]
    assert scaling.saving_sentences(given) == [SENTENCE]


def test_saving_sentences_for_more_cost_and_equal_cost() -> None:
    table = pl.DataFrame(
        {
            "plan": ["a", "a", "a", "b", "b"],
            "baseline": ["s"] * 5,
            "month": [1, 2, 4, 1, 2],
            "d_cost_p50": [-100.0, 40.0, -100.2, 0.0, 0.2],
        }
    )
    assert scaling.saving_sentences(table) == [
        "Plan a costs $100 a month less than s in months 1 and 4, and $40 a month more than s "
        "in month 2 (median paired difference on the same traffic).",
        "Plan b costs the same as s in every month (median paired difference on the same traffic).",
    ]


def test_market_table_mean_up_divides_by_tp_and_keeps_config_order(
    months: pl.DataFrame,
) -> None:
    table = scaling.market_table(months, TP, PLANS)
    assert table is not None
    assert table["plan"].to_list()[:3] == ["static"] * 3  # config order, not by name
    auto = table.filter(pl.col("plan") == "auto").sort("month")
    assert auto["mean_up"].to_list() == [1.0, 1.5, 1.5]
    gpus = scaling.market_table(months, None, PLANS)
    assert gpus is not None
    assert gpus.filter(pl.col("plan") == "auto")["mean_up"].to_list()[1] == 3.0
    assert "Mean GPUs up" in scaling.market_table_html(gpus, None)
    assert "Mean replicas up" in scaling.market_table_html(table, TP)


def test_cold_start_table_is_medians_and_share_of_requests(months: pl.DataFrame) -> None:
    table = scaling.cold_start_table(months, PLANS)
    assert table is not None
    row = table.filter((pl.col("plan") == "auto") & (pl.col("month") == 2)).row(0, named=True)
    assert row["scale_ups"] == 13.0 and row["cold_start_delayed"] == 250.0
    assert row["cold_share"] == pytest.approx(0.0025)
    assert "0.25 %" in scaling.cold_start_table_html(table)


def test_week_table_counts_events_and_extremes() -> None:
    table = scaling.week_table(make_week(), make_events(), PLANS)
    assert table is not None
    row = table.row(0, named=True)
    assert (row["launch"], row["up"], row["serve"], row["release"]) == (2, 1, 1, 1)
    assert (row["serving_min"], row["serving_max"], row["waiting_max"]) == (1, 2, 7)
    assert row["spills"] == 167


def test_moving_plans_from_config_week_events_and_launches(months: pl.DataFrame) -> None:
    assert scaling.configured_movers(CONFIG) == ["auto"]
    assert scaling.moving_plans(months, {}, None, None, PLANS) == ["auto"]  # scale_ups > 0
    still = make_months(scale_ups=pl.lit(0, pl.Int64))
    assert scaling.moving_plans(still, {}, None, None, PLANS) == []
    assert scaling.moving_plans(still, {}, make_week(), None, PLANS) == ["auto"]
    assert scaling.moving_plans(still, {}, None, make_events(), PLANS) == ["auto"]


# --------------------------------------------------------------------------- the chart


def test_week_frame_counts_hours_from_monday_and_labels_them() -> None:
    frame = scaling.week_frame(make_week())
    assert frame["hour"].to_list()[:2] == [0.0, 1.0]
    tue_18 = frame.filter(pl.col("hour") == 42.0).row(0, named=True)
    assert tue_18["when"] == "Tue 18:00" and tue_18["serving_replicas"] == 2
    assert tue_18["waiting"] == 7  # waiting on replicas + at the router
    late = make_week().with_columns(pl.col("t_s") + 5 * 60 + 6 * 3600)  # Mon 06:05 on
    assert scaling.week_frame(late)["when"][0] == "Mon 06:05"


def test_fleet_week_chart_is_step_lines_with_integer_replicas_and_plan_colours() -> None:
    spec = scaling.fleet_week_chart(make_week(), PLANS).to_dict()
    top, bottom = spec["vconcat"]
    for panel in (top, bottom):
        assert panel["mark"]["type"] == "line"
        assert panel["mark"]["interpolate"] == "step-after"
        # only the plans drawn are in the legend; auto keeps its colour (the run's 2nd)
        assert panel["encoding"]["color"]["scale"] == {"domain": ["auto"], "range": ["#f58518"]}
    assert top["encoding"]["y"]["field"] == "serving_replicas"
    assert top["encoding"]["y"]["axis"]["values"] == [0, 1, 2]
    assert bottom["encoding"]["y"]["field"] == "waiting"
    x = bottom["encoding"]["x"]
    assert x["axis"]["values"] == [0, 24, 48, 72, 96, 120, 144]
    assert "'Mon','Tue'" in x["axis"]["labelExpr"]
    assert len(spec["datasets"][spec["data"]["name"]]) == 168
    with pytest.raises(ValueError, match="no rows"):
        scaling.fleet_week_chart(pl.DataFrame(schema=FLEET_WEEK_SCHEMA))

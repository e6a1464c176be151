"""Reports: result frames -> altair charts -> one self-contained, offline ``report.html``, and
the run folder that holds them (``write_results``: manifest, parquet tables, report, atomically).

Every chart is a pure function of a polars frame (``DataFrame -> chart``); only ``results``
touches the run (its ``Results``), and saving is kept apart from building. The frames are the
runner's (``sim.records`` has their schemas, ``docs/glossary.md`` every column):

- ``months``: one row per (plan, replication, month) with that month's KPIs;
- ``summary``: long format, one row per (plan, month, metric) with ``mean, p5, p50, p95`` of the
  metric *across replications*, plus the metric ``p_ttft_p95_above_slo`` (the share of
  replications whose month p95 TTFT exceeded the SLO);
- ``hourly``: GPU utilisation (0..1) by (plan, replication, month, hour_of_week), where
  ``hour_of_week`` 0 is Monday 00:00–01:00 and 167 is Sunday 23:00–24:00;
- optional, for the risk section: ``paired`` (plan − baseline differences across
  replications), ``timeline`` and ``timeline_events`` (one sampled replication around a spot
  reclaim). Runs without several plans or spot pools have none; the section says so.

Plans keep the order of the frames (config order: the first is the baseline) and one colour
(or panel) each in every chart.

``meta`` is the run manifest. Keys read (all optional): ``experiment`` (or ``name``), ``seed``,
``replications`` (or ``replications_done``) and ``replications_requested``, ``version``,
``wall_s`` (or ``wall_time_s``), ``slo_ttft_s``, ``slo_tpot_s``, ``errors`` (failed replications,
a list or a dict), ``interrupted``, ``plans``, ``budget_usd_per_month``, ``step_times``
(``{gpu: "calibrated" | "uncalibrated"}``: any uncalibrated one is flagged in the header) and
``config`` (the resolved experiment, shown verbatim).

Modules: ``shell`` (page shell, shared by every page: inlined Vega bundle, CSS, embedding,
atomic writes, PNGs), ``charts`` (main charts), ``tables`` (SLO-risk table), ``risk`` and
``risk_tables`` (the risk section), ``page`` (the page and ``write_report``), ``results`` (a
run's folder: ``write_results``), ``trace`` (the page of ``sim trace inspect|compare``).
"""

from sim.report.charts import (
    COST_PARTS,
    DAYS,
    cost_breakdown_chart,
    cost_fan_chart,
    fan_chart,
    ttft_fan_chart,
    utilisation_heatmap,
)
from sim.report.page import (
    _wall_time,
    render_report_html,
    report_charts,
    risk_charts,
    risk_section_html,
    write_report,
)
from sim.report.results import resolved_config, write_results
from sim.report.risk import (
    EVENTS,
    breach_chart,
    cost_budget_chart,
    spills_per_minute,
    timeline_chart,
    timeline_frame,
)
from sim.report.risk_tables import (
    activity_table,
    cost_table,
    paired_table,
    timeline_table,
)
from sim.report.shell import (
    _CSS,
    _EMBED_LOOP,
    _EMBED_OPTIONS,
    Chart,
    _atomic_write,
    _inline,
    _plans,
    _script_json,
    _vega_bundle,
    chart_blocks,
    html_page,
    write_png,
)
from sim.report.tables import P_ABOVE_SLO, RISK_METRICS, slo_risk_table, summary_table_html
from sim.report.trace import write_trace_report

__all__ = [
    "COST_PARTS",
    "DAYS",
    "EVENTS",
    "P_ABOVE_SLO",
    "RISK_METRICS",
    "_CSS",
    "_EMBED_LOOP",
    "_EMBED_OPTIONS",
    "Chart",
    "_atomic_write",
    "_inline",
    "_plans",
    "_script_json",
    "_vega_bundle",
    "_wall_time",
    "activity_table",
    "breach_chart",
    "chart_blocks",
    "cost_breakdown_chart",
    "cost_budget_chart",
    "cost_fan_chart",
    "cost_table",
    "fan_chart",
    "html_page",
    "paired_table",
    "render_report_html",
    "report_charts",
    "resolved_config",
    "risk_charts",
    "risk_section_html",
    "slo_risk_table",
    "spills_per_minute",
    "summary_table_html",
    "timeline_chart",
    "timeline_frame",
    "timeline_table",
    "ttft_fan_chart",
    "utilisation_heatmap",
    "write_png",
    "write_report",
    "write_results",
    "write_trace_report",
]

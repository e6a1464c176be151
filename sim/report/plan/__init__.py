"""What `sim plan` found, for a person: the decision in words first, then the evidence.

`recommendation_lines(plan)` is the plain-words answer (also the page's first screen and the
terminal's first lines); `plan_months_table` the month-by-month table; `schedule_table` and
`autoscale_table` whether a fleet that moves pays against the cheapest static one; `tp_table`
and `tp_lines` the best plan at each tensor-parallel degree searched;
`write_plan_report` writes `plan.html` (recommendation, month table, monthly cost vs the
all-API bill, replicas per month, does scheduling / autoscaling pay, the cost–risk frontier of
the candidates tried, how the search ran) and `plan.toml`. Charts are pure functions of tables
(`cost_chart`, `replicas_chart`, `tornado_chart`).

A package with the face of the module it was (house style: ~500 lines a module): `words`
(sentences), `tables` (frames and their HTML), `charts`, `page` (the files).
"""

from sim.report.plan.charts import cost_chart, replicas_chart, tornado_chart
from sim.report.plan.page import write_plan_report
from sim.report.plan.tables import (
    AUTOSCALE_NEVER_PAYS,
    FORMATS,
    HEADINGS,
    autoscale_never_tried,
    autoscale_table,
    frontier_table,
    line_html,
    plan_months_table,
    schedule_table,
    tp_table,
)
from sim.report.plan.words import (
    api_prices,
    autoscale_lines,
    candidate_words,
    order_lines,
    recommendation_lines,
    schedule_lines,
    schedule_runs,
    tp_lines,
)

__all__ = [
    "AUTOSCALE_NEVER_PAYS",
    "FORMATS",
    "HEADINGS",
    "api_prices",
    "autoscale_lines",
    "autoscale_never_tried",
    "autoscale_table",
    "candidate_words",
    "cost_chart",
    "frontier_table",
    "line_html",
    "order_lines",
    "plan_months_table",
    "recommendation_lines",
    "replicas_chart",
    "schedule_lines",
    "schedule_runs",
    "schedule_table",
    "tornado_chart",
    "tp_lines",
    "tp_table",
    "write_plan_report",
]

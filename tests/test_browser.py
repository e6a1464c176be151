"""The HTML pages as a person sees them: rendered in headless Chromium (Debian's `chromium`,
installed by .ci/run), every chart drew an SVG, the browser logged nothing to its console, and
the decision is on the page.

Skipped only outside CI when Chromium is not installed; under CI (`CI` set) a missing browser
fails, so the check cannot silently disappear.
"""

from __future__ import annotations

import dataclasses
import os
import re
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from sim.experiment import Experiment
from sim.planning import plan_experiment
from sim.planning.breakeven import breakeven
from sim.report import write_results
from sim.report.breakeven import write_breakeven_report
from sim.report.plan import write_plan_report
from sim.runner import run_experiment

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None and not os.environ.get("CI"),
    reason="Chromium not installed (apt-get install chromium; CI installs it)",
)


def render(page: Path) -> tuple[str, list[str]]:
    """The page's DOM after its scripts ran, and every console message it logged."""
    assert CHROMIUM is not None, "CI needs Debian's chromium (see .ci/run)"
    done = subprocess.run(
        [
            CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--virtual-time-budget=20000",
            "--enable-logging=stderr",
            "--v=0",
            "--dump-dom",
            page.resolve().as_uri(),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    console = [line for line in done.stderr.splitlines() if ":CONSOLE" in line]
    return done.stdout, console


def drawn_charts(dom: str) -> dict[str, bool]:
    """Each chart container of the page → whether an <svg> was drawn inside it."""
    parts = re.split(r'id="chart-([A-Za-z0-9_-]+)"', dom)
    return {name: "<svg" in body for name, body in zip(parts[1::2], parts[2::2], strict=True)}


def check_page(page: Path, *texts: str) -> None:
    dom, console = render(page)
    charts = drawn_charts(dom)
    assert charts, "no chart on the page"
    assert all(charts.values()), f"charts that did not draw: {charts}"
    assert console == [], console
    for text in texts:
        assert text in dom, text


def test_run_report_draws_every_chart(tiny: Callable[..., Experiment], tmp_path: Path) -> None:
    results = run_experiment(tiny(requests_per_day=300.0, months=2), replications=3)
    folder = write_results(results, tmp_path / "run")
    check_page(folder / "report.html", "P(")


@pytest.mark.slow
def test_plan_page_leads_with_the_recommendation(
    tiny: Callable[..., Experiment], tmp_path: Path
) -> None:
    exp = tiny(requests_per_day=300.0)
    s = dataclasses.replace(
        exp.spec.search,
        gpus=("a100-80gb",),
        max_replicas=1,
        stages=(20, 60),
        verify_replications=10,
    )
    plan = plan_experiment(exp, s)
    page = write_plan_report(plan, tmp_path / "plan")
    check_page(page, "Recommendation", "Month 1: 1 × a100-80gb, on-demand")
    dom, _ = render(page)
    assert dom.index("Recommendation") < dom.index("Month by month")


def test_breakeven_page_draws(growth_experiment: Experiment, tmp_path: Path) -> None:
    result = breakeven(growth_experiment, [1e4, 1e6, 1e8], naive=True)
    page = write_breakeven_report(result, tmp_path / "be")
    check_page(page, "Fixed-fleet arithmetic")

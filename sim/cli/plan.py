"""`sim plan`: the cheapest month-by-month fleet meeting the SLO at a stated risk."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import polars as pl
from rich.console import Console
from rich.table import Table

from sim.cli.common import user_errors
from sim.cli.options import CALIBRATION_OPTION, say_calibration
from sim.config.plan import TP_VALUES
from sim.config.reader import hint
from sim.data import gpus
from sim.engine.catalog import gpu_named, load_user_calibration
from sim.experiment import load_experiment
from sim.planning import plan_experiment
from sim.planning.sensitivity import sensitivity, sensitivity_table
from sim.report.plan import (
    AUTOSCALE_NEVER_PAYS,
    autoscale_never_tried,
    autoscale_table,
    plan_months_table,
    recommendation_lines,
    schedule_table,
    tp_table,
    write_plan_report,
)


def _tp_option(text: str) -> tuple[int, ...]:
    """ "1,2" → (1, 2); a usage error naming the value for anything not in `TP_VALUES`."""
    out = set()
    for part in (p.strip() for p in text.split(",")):
        if not part.isdigit() or int(part) not in TP_VALUES:
            allowed = ", ".join(map(str, TP_VALUES))
            raise click.BadParameter(f"{part!r} is not one of {allowed}", param_hint="--tp")
        out.add(int(part))
    return tuple(sorted(out))


def _gpus_option(text: str, calibration: str | None) -> tuple[str, ...]:
    """ "l4, H100" → ("l4", "h100-80gb"): catalog names, the usual names of catalog GPUs
    (`sim.data.names.gpu_by_name`) or the experiment's calibration file's GPU types; a usage
    error naming any other."""
    out: list[str] = []
    for name in (g.strip() for g in text.split(",") if g.strip()):
        gpu = gpu_named(name, calibration)
        if gpu is None:
            known = set(gpus())
            if calibration is not None:
                known |= set(load_user_calibration(calibration).gpus)
            why = f"{name!r} is not a GPU type{hint(name, tuple(sorted(known)))}"
            raise click.BadParameter(why, param_hint="--gpus")
        if gpu not in out:
            out.append(gpu)
    return tuple(out)


@click.command()
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--gpus", help="Candidate GPU types, comma-separated [default: [plan] gpus, else all]."
)
@click.option(
    "--risk",
    type=click.FloatRange(0.0, 1.0, min_open=True, max_open=True),
    help="Largest acceptable P(a month misses its SLO) [default: [plan] risk, 0.05].",
)
@click.option("--price-list", help="Provider whose prices are used [default: [plan], else most].")
@click.option("--max-replicas", type=click.IntRange(1, 256), help="Most replicas of one GPU type.")
@click.option(
    "--tp",
    "tp_values",
    help="Tensor-parallel degrees to search, comma-separated, e.g. 1,2 "
    "[default: [plan] tp, else the experiment's [engine] tp].",
)
@click.option(
    "--verify-replications",
    type=click.IntRange(min=10),
    help="Replications of the independent check [default: [plan], 100].",
)
@click.option("--jobs", "-j", type=click.IntRange(min=1), default=1, show_default=True)
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--address", help="Ray cluster address [default: local].")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    help="Output folder [default: reports/<experiment name>].",
)
@click.option("--quiet", is_flag=True, help="Do not print each candidate as it is decided.")
@click.option(
    "--sensitivity",
    "sensitivity_n",
    type=click.IntRange(min=10),
    default=None,
    help="Also run the one-at-a-time sensitivity of the plan on N replications.",
)
@CALIBRATION_OPTION
@user_errors
def plan(
    file: Path,
    gpus: str | None,
    risk: float | None,
    price_list: str | None,
    max_replicas: int | None,
    tp_values: str | None,
    verify_replications: int | None,
    jobs: int,
    backend: str,
    address: str | None,
    out: Path | None,
    quiet: bool,
    calibration: Path | None,
    sensitivity_n: int | None,
) -> None:
    """Search the cheapest plan for FILE whose P(miss SLO) per month is within the risk."""
    exp = say_calibration(load_experiment(file, calibration))
    s = exp.spec.search
    changes: dict[str, object] = {}
    if gpus:
        changes["gpus"] = _gpus_option(gpus, exp.spec.engine.calibration)
    if tp_values:
        changes["tp"] = _tp_option(tp_values)
    for key, value in (
        ("risk", risk),
        ("price_list", price_list),
        ("max_replicas", max_replicas),
        ("verify_replications", verify_replications),
    ):
        if value is not None:
            changes[key] = value
    settings = dataclasses.replace(s, **changes)  # type: ignore[arg-type]
    console = Console(width=max(Console().width, 120))
    console.print(f"horizon: {exp.horizon()[1]}", highlight=False)
    try:
        result = plan_experiment(
            exp,
            settings,
            jobs=jobs,
            backend="ray" if backend == "ray" else "local",
            address=address,
            progress=None if quiet else (lambda line: console.print(line, highlight=False)),
        )
    except ValueError as err:
        raise click.UsageError(str(err)) from None
    console.print()
    for line in recommendation_lines(result):
        console.print(line, highlight=False, markup=False)  # "[plan] ..." is text
    table = plan_months_table(result)
    if not table.is_empty():
        t = Table(title="recommended plan")
        for col in (
            "month",
            "fleet",
            "API",
            "cost ($)",
            "p5–p95 ($)",
            "P(miss) [bound]",
            "misses",
            "p95 TTFT (s)",
            "p95 TPOT (s)",
            "token util.",
        ):
            t.add_column(col, justify="left" if col in ("fleet", "API") else "right")
        for r in table.iter_rows(named=True):
            t.add_row(
                str(r["month"]),
                r["fleet"],
                r["api"],
                f"{r['cost_usd']:,.0f}",
                f"{r['cost_p5_usd']:,.0f}–{r['cost_p95_usd']:,.0f}",
                f"{r['p_miss']:.1%} [≤{r['p_miss_bound']:.1%}]",
                r["misses"],
                f"{r['ttft_p95_s']:.3f}",
                f"{r['tpot_p95_s']:.4f}",
                f"{r['token_utilisation']:.0%}",
            )
        console.print(t)
    pays = schedule_table(result)
    if not pays.is_empty():
        t = Table(title="does scheduling pay? (the cheapest static fleet meeting the same risk)")
        for col in ("month", "scheduled", "P(miss) [bound]", "static", "P(miss) [bound] ", "saves"):
            t.add_column(col, justify="left" if col in ("scheduled", "static") else "right")
        for r in pays.iter_rows(named=True):
            t.add_row(
                str(r["month"]),
                f"{r['fleet']} ${r['cost_usd']:,.0f}",
                f"{r['misses']} [≤{r['p_miss_bound']:.1%}]",
                f"{r['static_fleet']} ${r['static_cost_usd']:,.0f}",
                f"{r['static_misses']} [≤{r['static_p_miss_bound']:.1%}]",
                f"${r['saving_usd']:,.0f}/month",
            )
        console.print(t)
    by_tp = tp_table(result)
    if not by_tp.is_empty():
        t = Table(title="by tensor parallelism (the best whole plan at each degree)")
        for col in ("tp", "GPU types that hold the model", "best plan", "months met", "$/month"):
            t.add_column(col, justify="right" if col in ("tp", "$/month") else "left")
        t.add_column("chosen")
        for r in by_tp.iter_rows(named=True):
            cost = r["mean_cost_usd"]
            t.add_row(
                str(r["tp"]),
                r["gpus_searched"],
                r["tp_plan"],
                r["months_met"],
                "—" if cost is None else f"{cost:,.0f}",
                r["tp_chosen"],
            )
        console.print(t)
    moving = autoscale_table(result)
    if autoscale_never_tried(moving):
        console.print(
            f"does autoscaling pay? {AUTOSCALE_NEVER_PAYS}", highlight=False, markup=False
        )
    elif not moving.is_empty():
        t = Table(title="does autoscaling pay? (cheapest static vs cheapest autoscaled, same risk)")
        for col in ("month", "static", "P(miss) [bound]", "autoscaled", "P(miss) [bound] "):
            t.add_column(col, justify="left" if col in ("static", "autoscaled") else "right")
        for col in ("launches/day", "in cold start", "saves", "chosen"):
            t.add_column(col, justify="right")

        def money(x: float | None) -> str:
            return "—" if x is None else f"${x:,.0f}"

        for r in moving.iter_rows(named=True):
            auto = r["autoscaled_fleet"] is not None
            t.add_row(
                str(r["month"]),
                f"{r['static_fleet'] or 'none'} {money(r['static_cost_usd'])}",
                "—"
                if r["static_fleet"] is None
                else f"{r['static_misses']} [≤{r['static_p_miss_bound']:.1%}]",
                f"{r['autoscaled_fleet'] or r['why_none']} {money(r['autoscaled_cost_usd'])}",
                f"{r['autoscaled_misses']} [≤{r['autoscaled_p_miss_bound']:.1%}]" if auto else "—",
                f"{r['launches_per_day']:.0f}" if auto else "—",
                f"{r['cold_start_share']:.1%}" if auto else "—",
                "—"
                if r["autoscaling_saves_usd"] is None
                else f"${r['autoscaling_saves_usd']:+,.0f}/month",
                r["chosen"] or "—",
            )
        console.print(t)
    for note in result.uncalibrated + result.overrides:
        console.print(f"note: {note}", highlight=False, markup=False)
    tornado: pl.DataFrame | None = None
    if sensitivity_n is not None and result.choices and not result.infeasible_months:
        console.print(f"sensitivity of the recommended plan on {sensitivity_n} replications:")
        baseline, rows = sensitivity(
            result.exp,
            result.recommended,
            replications=sensitivity_n,
            jobs=jobs,
            backend="ray" if backend == "ray" else "local",
            progress=None if quiet else (lambda line: console.print(line, highlight=False)),
        )
        tornado = sensitivity_table(baseline, rows)
        t = Table(
            title=f"what moves the answer (baseline: P(miss) {baseline.p_miss.words()}, "
            f"${baseline.cost_usd:,.0f}/month)"
        )
        for col in ("factor", "setting", "P(miss)", "Δ P(miss)", "cost ($)", "Δ cost ($)"):
            t.add_column(col, justify="left" if col in ("factor", "setting") else "right")
        for r in tornado.iter_rows(named=True):
            t.add_row(
                r["factor"],
                r["setting"],
                f"{r['p_miss']:.0%} ({r['misses']})",
                f"{r['d_p_miss']:+.0%}",
                f"{r['cost_usd']:,.0f}",
                f"{r['d_cost_usd']:+,.0f}",
            )
        console.print(t)
    target = out or Path("reports") / exp.spec.name
    page = write_plan_report(result, target, tornado)
    wrote = "plan.html" + (", plan.toml" if (target / "plan.toml").exists() else "")
    console.print(
        f"wrote {target}/ ({wrote}) — {result.evaluations} candidate fleets, "
        f"{result.replications} replications ({result.months_simulated} simulated months) "
        f"in {result.wall_s:.0f} s",
        highlight=False,
    )
    del page

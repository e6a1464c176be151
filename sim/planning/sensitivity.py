"""Which input moves the answer most: one-at-a-time sensitivity of a plan.

For the recommended plan (or any plan), each factor is set to a stated low and a stated high
value, one at a time, everything else at the experiment's value; the plan is run on the same
replications as the baseline (same seed: common random numbers, so the differences are the
factor's, not noise) and P(some month misses the SLO) and the mean monthly cost are compared
with the baseline. The factors and their ranges:

- growth: `workload.growth.mean_monthly` ± 10 percentage points a month;
- burst intensity: every burst layer's `burst_ratio` (markov) or `sigma` (OU) halved / doubled
  in excess over 1 (a ratio r becomes 1 + (r − 1)/2 and 1 + 2(r − 1));
- output-length tail: output tokens above the lengths' 90th percentile × 0.5 / × 1.5;
- step-time calibration error: every step time × exp(∓2σ), σ the entry's `residual_sd_log`
  (the held-out spread the catalog states for that GPU);
- spot reclaim rate: × 0.5 / × 2 (rate markets; with `[spot]` only);
- API latency: TTFT and output time × 0.5 / × 2 (with `[api]` only).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import polars as pl

from sim.config import PlanSpec
from sim.experiment import Experiment
from sim.runner import Backend, replicate, shared_workers
from sim.stats import months_frame
from sim.stats.risk import Proportion, missed_slo
from sim.workload import EmpiricalLengths
from sim.workload.from_spec import burst_process

Variant = Callable[[Experiment], Experiment]


@dataclass(frozen=True)
class SensitivityRow:
    """One factor at one end of its range, against the baseline."""

    factor: str
    end: str  # "low" or "high"
    setting: str  # the value in words
    p_miss: Proportion  # replications in which some month missed the SLO
    cost_usd: float  # mean monthly cost


def _growth(delta: float) -> Variant:
    def apply(exp: Experiment) -> Experiment:
        g = exp.spec.workload.growth
        growth = dataclasses.replace(g, mean_monthly=g.mean_monthly + delta)
        workload = dataclasses.replace(exp.spec.workload, growth=growth)
        return dataclasses.replace(exp, spec=dataclasses.replace(exp.spec, workload=workload))

    return apply


def _bursts(scale: float) -> Variant:
    def apply(exp: Experiment) -> Experiment:
        b = exp.spec.workload.burst
        layers = tuple(
            dataclasses.replace(
                layer,
                burst_ratio=1.0 + (layer.burst_ratio - 1.0) * scale,
                sigma=layer.sigma * scale,
            )
            for layer in b.layers
        )
        burst = dataclasses.replace(b, layers=layers)
        workload = dataclasses.replace(exp.spec.workload, burst=burst)
        spec = dataclasses.replace(exp.spec, workload=workload)
        return dataclasses.replace(exp, spec=spec, burst=burst_process(burst))

    return apply


def _output_tail(scale: float) -> Variant:
    def apply(exp: Experiment) -> Experiment:
        out = exp.lengths.output_tokens.astype(np.float64)
        cut = float(np.percentile(out, 90))
        tail = out > cut
        out[tail] = np.maximum(1.0, np.round(cut + (out[tail] - cut) * scale))
        lengths = EmpiricalLengths.from_arrays(
            exp.lengths.input_tokens,
            out.astype(np.int64),
            exp.lengths.name,
            exp.lengths.smoothing_log_sd,
        )
        return dataclasses.replace(exp, lengths=lengths)

    return apply


def _step_times(sign: float) -> Variant:
    def apply(exp: Experiment) -> Experiment:
        per_gpu = {}
        for gpu, e in exp.engine.per_gpu.items():
            factor = math.exp(sign * 2.0 * e.step_time.residual_sd_log)
            step = dataclasses.replace(e.step_time, step=e.step_time.step.scaled(factor))
            per_gpu[gpu] = dataclasses.replace(e, step_time=step)
        engine = dataclasses.replace(exp.engine, per_gpu=per_gpu)
        return dataclasses.replace(exp, engine=engine)

    return apply


def _spot_rate(scale: float) -> Variant:
    def apply(exp: Experiment) -> Experiment:
        spot = exp.spec.spot
        if spot is None or spot.preemptions_per_instance_hour is None:
            return exp
        spot = dataclasses.replace(
            spot, preemptions_per_instance_hour=spot.preemptions_per_instance_hour * scale
        )
        return dataclasses.replace(exp, spec=dataclasses.replace(exp.spec, spot=spot))

    return apply


def _api_latency(scale: float) -> Variant:
    def apply(exp: Experiment) -> Experiment:
        api = exp.spec.api
        if api is None:
            return exp
        api = dataclasses.replace(
            api,
            ttft_median_s=api.ttft_median_s * scale,
            ttft_p95_s=api.ttft_p95_s * scale,
            output_tokens_per_s_median=api.output_tokens_per_s_median / scale,
            output_tokens_per_s_p5=api.output_tokens_per_s_p5 / scale,
        )
        return dataclasses.replace(exp, spec=dataclasses.replace(exp.spec, api=api))

    return apply


def factors(exp: Experiment) -> list[tuple[str, str, str, Variant, Variant]]:
    """(factor, low in words, high in words, low variant, high variant) that apply to `exp`."""
    g = exp.spec.workload.growth.mean_monthly
    out = [
        ("growth", f"{g - 0.1:+.0%}/month", f"{g + 0.1:+.0%}/month", _growth(-0.1), _growth(0.1)),
    ]
    if exp.spec.workload.burst.layers:
        out.append(("burst intensity", "half", "double", _bursts(0.5), _bursts(2.0)))
    out.append(
        ("output-length tail", "p90+ × 0.5", "p90+ × 1.5", _output_tail(0.5), _output_tail(1.5))
    )
    out.append(("step-time calibration", "−2σ", "+2σ", _step_times(-1.0), _step_times(1.0)))
    spot = exp.spec.spot
    if spot is not None and spot.preemptions_per_instance_hour is not None:
        out.append(("spot reclaim rate", "× 0.5", "× 2", _spot_rate(0.5), _spot_rate(2.0)))
    if exp.spec.api is not None:
        out.append(("API latency", "× 0.5", "× 2", _api_latency(0.5), _api_latency(2.0)))
    return out


def _run(
    exp: Experiment, plan: PlanSpec, n: int, jobs: int, backend: Backend
) -> tuple[Proportion, float]:
    spec = dataclasses.replace(exp.spec, plans=(plan,), fleet=plan.fleet)
    run = dataclasses.replace(exp, spec=spec)
    outputs = replicate(run, range(n), jobs=jobs, backend=backend)
    months = months_frame([r for o in outputs if o.error is None for r in o.months])
    per_rep = (
        months.with_columns(missed_slo(exp.spec.slo, exp.spec.search.attainment_target))
        .group_by("replication")
        .agg(pl.col("missed_slo").any())
    )
    p = Proportion(int(per_rep["missed_slo"].sum()), per_rep.height)
    return p, float(months["cost_usd"].mean() or 0.0)  # type: ignore[arg-type]


def sensitivity(
    exp: Experiment,
    plan: PlanSpec,
    *,
    replications: int = 40,
    jobs: int = 1,
    backend: Backend = "local",
    progress: Callable[[str], None] | None = None,
) -> tuple[SensitivityRow, list[SensitivityRow]]:
    """The baseline and each factor's low and high (module docstring), on `replications`."""
    say = progress or (lambda _: None)
    # The plan's GPU types must be resolved before the variants change step times.
    base = exp.with_spec(dataclasses.replace(exp.spec, plans=(plan,), fleet=plan.fleet))
    with shared_workers(jobs, backend):  # one pool for every variant
        p, cost = _run(base, plan, replications, jobs, backend)
        baseline = SensitivityRow("baseline", "", "as in the experiment", p, cost)
        rows = []
        for name, low_words, high_words, low, high in factors(base):
            for end, words, variant in (("low", low_words, low), ("high", high_words, high)):
                p, cost = _run(variant(base), plan, replications, jobs, backend)
                rows.append(SensitivityRow(name, end, words, p, cost))
                say(f"{name} {words}: P(miss in some month) {p.words()}, ${cost:,.0f}/month")
    return baseline, rows


def sensitivity_table(baseline: SensitivityRow, rows: list[SensitivityRow]) -> pl.DataFrame:
    """One row per (factor, end): P(miss), its bound, cost, and the change from the baseline."""
    return pl.DataFrame(
        [
            {
                "factor": r.factor,
                "end": r.end,
                "setting": r.setting,
                "p_miss": r.p_miss.estimate,
                "misses": f"{r.p_miss.k}/{r.p_miss.n}",
                "d_p_miss": r.p_miss.estimate - baseline.p_miss.estimate,
                "cost_usd": r.cost_usd,
                "d_cost_usd": r.cost_usd - baseline.cost_usd,
            }
            for r in rows
        ]
    )

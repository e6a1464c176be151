"""SLO risk: when a month misses its SLO, and how sure we are of the probability that it does.

A month of one replication *misses its SLO* when its p95 TTFT exceeds `slo.ttft_s`, or its p95
TPOT exceeds `slo.tpot_s`, or — when a target is given — its SLO attainment (the share of
requests meeting both targets) falls below that target. A month with no accepted request has
no percentile to compare and does not count as a miss (nothing was late). `missed_slo` is the
one definition; every table and the planner use it.

P(miss) is estimated across replications as k/n, with the exact binomial (Clopper–Pearson)
interval: for k misses in n independent replications the one-sided upper bound at confidence c
is the c-quantile of Beta(k + 1, n − k), the lower bound the (1 − c)-quantile of Beta(k, n − k + 1)
(Clopper & Pearson, Biometrika 1934), computed with `scipy.special.betaincinv` (NOTE: not
`scipy.stats.beta.ppf`, the same numbers to the last bit on the tested cases but 2.3 s of
imports instead of 0.4 s). The planner accepts a candidate when the one-sided 95 %
upper bound is at most the risk target, which takes at least 59 replications at 5 %
(1 − 0.05^(1/59) = 0.0495) when no replication misses.
"""

from __future__ import annotations

from dataclasses import dataclass

import polars as pl
from scipy.special import betaincinv

from sim.config import SloSpec
from sim.records import RISK_SCHEMA


def missed_slo(slo: SloSpec, attainment_target: float | None = None) -> pl.Expr:
    """Polars expression over `months` rows: True where the month missed its SLO (see the
    module docstring); NaN percentiles of a month with accepted requests count as a miss."""
    served = pl.col("finished") + pl.col("in_flight_at_end") > 0
    # TPOT is undefined when every request has one output token: only TTFT can be late then.
    late = ~(pl.col("ttft_p95_s") <= slo.ttft_s) | (
        pl.col("tpot_p95_s").is_not_nan() & ~(pl.col("tpot_p95_s") <= slo.tpot_s)
    )
    if attainment_target is not None:
        late = late | ~(pl.col("slo_attainment") >= attainment_target)
    return (served & late).alias("missed_slo")


def upper_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson upper bound on a probability seen k times in n trials."""
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    return 1.0 if k == n else float(betaincinv(k + 1, n - k, confidence))


def lower_bound(k: int, n: int, confidence: float = 0.95) -> float:
    """One-sided Clopper–Pearson lower bound on a probability seen k times in n trials."""
    if not 0 <= k <= n or n < 1:
        raise ValueError(f"need 0 <= k <= n and n >= 1, got k={k}, n={n}")
    return 0.0 if k == 0 else float(betaincinv(k, n - k + 1, 1.0 - confidence))


@dataclass(frozen=True)
class Proportion:
    """k of n replications, the estimate k/n and its two-sided Clopper–Pearson interval
    (each side at (1 + confidence)/2, so [lo, hi] covers with probability >= confidence)."""

    k: int
    n: int
    confidence: float = 0.95

    @property
    def estimate(self) -> float:
        return self.k / self.n

    @property
    def lo(self) -> float:
        return lower_bound(self.k, self.n, (1.0 + self.confidence) / 2.0)

    @property
    def hi(self) -> float:
        return upper_bound(self.k, self.n, (1.0 + self.confidence) / 2.0)

    @property
    def bound(self) -> float:
        """The one-sided upper bound at `confidence` (what the planner compares with risk)."""
        return upper_bound(self.k, self.n, self.confidence)

    def words(self) -> str:
        """E.g. "0 % (0 of 60; 95 % bound 4.9 %)"."""
        return (
            f"{self.estimate:.0%} ({self.k} of {self.n}; "
            f"{self.confidence:.0%} bound {self.bound:.1%})"
        )


def miss_counts(
    months: pl.DataFrame, slo: SloSpec, attainment_target: float | None = None
) -> pl.DataFrame:
    """Per (plan, month): replications `n`, SLO misses `k`, p95 TTFT and p95 TPOT over their
    SLO counted apart (`k_ttft`, `k_tpot`)."""
    return (
        months.with_columns(missed_slo(slo, attainment_target))
        .group_by("plan", "month")
        .agg(
            pl.len().alias("n"),
            pl.col("missed_slo").sum().cast(pl.Int64).alias("k"),
            (pl.col("ttft_p95_s") > slo.ttft_s).sum().cast(pl.Int64).alias("k_ttft"),
            (pl.col("tpot_p95_s") > slo.tpot_s).sum().cast(pl.Int64).alias("k_tpot"),
        )
        .sort("plan", "month")
    )


def risk_table(
    months: pl.DataFrame,
    slo: SloSpec,
    attainment_target: float | None = None,
    confidence: float = 0.95,
) -> pl.DataFrame:
    """Per (plan, month): replications `n`; for SLO misses, p95 TTFT and p95 TPOT over their
    SLO, the count `k_*`, the estimate `p_*` = k/n and its two-sided Clopper–Pearson interval
    `p_*_lo`, `p_*_hi` at `confidence`."""
    counts = miss_counts(months, slo, attainment_target)
    rows = []
    for r in counts.iter_rows(named=True):
        row: dict[str, object] = {"plan": r["plan"], "month": r["month"], "n": r["n"]}
        for name, k in (("miss", r["k"]), ("ttft", r["k_ttft"]), ("tpot", r["k_tpot"])):
            p = Proportion(int(k), int(r["n"]), confidence)
            row |= {
                f"k_{name}": p.k,
                f"p_{name}": p.estimate,
                f"p_{name}_lo": p.lo,
                f"p_{name}_hi": p.hi,
            }
        rows.append(row)
    return pl.DataFrame(rows, schema=RISK_SCHEMA)

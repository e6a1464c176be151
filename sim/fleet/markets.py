"""Spot markets: how often instances are reclaimed, with what notice, how fast they come back,
at what price (the packaged `sim/data/spot_markets.toml`, typed). `sim.fleet.spot` draws the
reclaims of a plan's slots from them.

Concepts (all times in seconds from the start of the simulated horizon, rates per instance-hour):

* A **spot market** (`SpotMarket`, one table of `sim/data/spot_markets.toml`) says how often a
  running spot instance is reclaimed, how much notice the provider gives, how long a replacement
  takes to obtain, and the spot/on-demand price ratio. Two kinds:
  - ``"rate"``: a Poisson process per running instance, its rate taken from an AWS Spot Advisor
    interruption bucket (`rate_from_advisor_bucket`);
  - ``"trace"``: the reclaim instants of a real spot fleet (Bamboo, NSDI'23), block-bootstrapped
    over the horizon. At an instant where the trace fleet lost k of its N running instances, each of
    our running instances is reclaimed with probability k/N, so correlated reclaim waves hit several
    of our instances at once, as they did in the trace.
* Cold start (`cold_start_s`): weights ÷ load bandwidth + engine start; spot prices
  (`spot_price_path`): piecewise-constant hourly levels around the market's spot ratio.

docs/spot.md gives the sources and derivations of every default.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from sim.data import read_toml
from sim.errors import ConfigError, Problem
from sim.units import HOURS_PER_MONTH, HOURS_PER_WEEK, SECONDS_PER_HOUR

MARKETS_FILE = "spot_markets.toml"

ADVISOR_BUCKET_FRACTION = {
    "<5%": 0.025,
    "5-10%": 0.075,
    "10-15%": 0.125,
    "15-20%": 0.175,
    ">20%": 0.20,
}
"""Monthly reclaimed fraction standing for each Spot Advisor bucket: the midpoint of a closed
bucket, the lower edge of the open `>20%` bucket (so that bucket's rate is a lower bound)."""

# Cold start defaults (docs/spot.md, "Cold start").
DEFAULT_LOAD_GB_PER_S = 0.33
"""Weights load bandwidth, GB/s: vLLM's default safetensors loader read Llama-3-8B (16.06 GB in
bf16) from an AWS gp3 EBS volume in 47.99 s (Run:ai Model Streamer benchmarks, NVIDIA/Run:ai
2024: g5.12xlarge). The Run:ai streamer reached 14.34 s on gp3 and 7.53 s on io2 (1.1-2.1 GB/s)."""
DEFAULT_ENGINE_INIT_S = 60.0
"""vLLM process start to first served request, excluding the weights, s: vllm-project/vllm#20264
logs 34.1 s of engine init (torch.compile from cache, CUDA-graph capture) and a first response 59 s
after start with 0.9 s of weight loading; vllm#11005 logs 14.2 s (no compile) to 39.3 s (-O3) of
engine init for Llama-3-8B alone."""


@dataclass(frozen=True)
class DelayDistribution:
    """How long until a replacement spot instance is obtained, as an empirical quantile function.

    Sampling draws u ~ U(0, 1) and interpolates linearly between the (probability, quantile)
    knots; the mean is that of the piecewise-linear quantile function (`mean_s`).

    name: key in spot_markets.toml [delays].
    probabilities: increasing knots from 0 to 1.
    quantiles_s: delay at each knot, seconds, non-decreasing.
    samples: number of observed delays behind the table.
    source: data and derivation.
    """

    name: str
    probabilities: tuple[float, ...]
    quantiles_s: tuple[float, ...]
    samples: int
    source: str

    def __post_init__(self) -> None:
        p, q = np.asarray(self.probabilities), np.asarray(self.quantiles_s)
        if (
            p.size < 2
            or p.size != q.size
            or p[0] != 0.0
            or p[-1] != 1.0
            or np.any(np.diff(p) <= 0)
            or np.any(np.diff(q) < 0)
            or q[0] < 0
        ):
            raise ValueError(f"delay {self.name!r}: bad quantile table {self.probabilities}")

    @property
    def mean_s(self) -> float:
        """Mean delay, s (exact for the piecewise-linear quantile function)."""
        p, q = np.asarray(self.probabilities), np.asarray(self.quantiles_s)
        return float(np.sum(np.diff(p) * (q[1:] + q[:-1]) / 2))

    def quantile_s(self, u: float | np.ndarray) -> Any:
        """Delay at probability u (scalar or array), s."""
        return np.interp(u, self.probabilities, self.quantiles_s)

    @classmethod
    def constant(cls, delay_s: float) -> DelayDistribution:
        """A fixed delay (tests, what-if experiments)."""
        return cls(f"constant-{delay_s:g}s", (0.0, 1.0), (delay_s, delay_s), 0, "constant")


@dataclass(frozen=True)
class ReclaimTrace:
    """Reclaim instants of a real spot fleet, the input of the block bootstrap.

    times_s: instants (s from the trace start, in [0, span_s]) where the fleet lost instances.
    reclaimed: instances lost at each instant (k).
    running_before: instances running just before each instant (N >= k).
    span_s: length of the trace, s (treated as circular by the bootstrap).
    block_s: bootstrap block length, s.
    """

    times_s: tuple[float, ...]
    reclaimed: tuple[int, ...]
    running_before: tuple[int, ...]
    span_s: float
    block_s: float

    def __post_init__(self) -> None:
        n = len(self.times_s)
        if not (n == len(self.reclaimed) == len(self.running_before)) or n == 0:
            raise ValueError("reclaim trace: times, reclaimed and running_before differ in length")
        if self.span_s <= 0 or self.block_s <= 0:
            raise ValueError("reclaim trace: span_s and block_s must be > 0")
        if any(not 0 < k <= r for k, r in zip(self.reclaimed, self.running_before, strict=True)):
            raise ValueError("reclaim trace: need 0 < reclaimed <= running_before")

    @property
    def always_up_rate_per_hour(self) -> float:
        """Expected preemptions per hour of an instance that is always running: sum(k/N) / span."""
        fractions = np.asarray(self.reclaimed) / np.asarray(self.running_before)
        return float(fractions.sum() / (self.span_s / SECONDS_PER_HOUR))


@dataclass(frozen=True)
class SpotMarket:
    """One spot market (a table of sim/data/spot_markets.toml).

    name: e.g. "aws-advisor-5-10pct", "bamboo-g4dn", "bamboo-p3", "bamboo-gcp-a100".
    kind: "rate" (Poisson per running instance) or "trace" (block bootstrap of `trace`).
    provider: "aws" or "gcp".
    preemptions_per_instance_hour: the configured (rate) or measured (trace: removals / running
        instance-hours of the trace fleet) mean preemption rate.
    notice_s: reclaim notice, s: AWS 120 (EC2 docs, Spot Instance interruption notices), GCP 30
        (GCE Scheduling.skipGuestOsShutdown: 30 s between soft and hard off for Spot VMs).
    availability_delay: time from the notice until a replacement spot instance is obtained.
    spot_ratio: spot / on-demand price, or None when no data (the experiment must set it).
    advisor_bucket: the Spot Advisor bucket of a "rate" market, else None.
    trace: the reclaim instants of a "trace" market, else None.
    source: provenance.
    """

    name: str
    kind: str
    provider: str
    preemptions_per_instance_hour: float
    notice_s: float
    availability_delay: DelayDistribution
    spot_ratio: float | None
    advisor_bucket: str | None
    trace: ReclaimTrace | None
    source: str

    def __post_init__(self) -> None:
        if self.kind not in ("rate", "trace"):
            raise ValueError(f"market {self.name!r}: kind must be 'rate' or 'trace'")
        if (self.kind == "trace") != (self.trace is not None):
            raise ValueError(f"market {self.name!r}: a trace market needs a trace, and only it")
        if self.preemptions_per_instance_hour < 0 or self.notice_s < 0:
            raise ValueError(f"market {self.name!r}: rate and notice must be >= 0")
        if self.spot_ratio is not None and not 0 < self.spot_ratio <= 1:
            raise ValueError(f"market {self.name!r}: spot_ratio must be in (0, 1]")


# ---------------------------------------------------------------- conversions and cold start


def rate_from_advisor_bucket(bucket: str) -> float:
    """Preemptions per instance-hour standing for a Spot Advisor interruption bucket.

    AWS defines the bucket as the rate at which Spot reclaimed capacity during the trailing month.
    Convention: the bucket's monthly fraction f (`ADVISOR_BUCKET_FRACTION`: midpoint, or 20% for the
    open `>20%`, a lower bound) is read as P(an instance is reclaimed within a month) under a
    Poisson process, so rate = -ln(1 - f) / 730 h. E.g. "<5%" -> 3.47e-5 /h, ">20%" -> 3.06e-4 /h.
    """
    try:
        fraction = ADVISOR_BUCKET_FRACTION[bucket]
    except KeyError:
        raise ValueError(
            f"unknown Spot Advisor bucket {bucket!r}; one of {list(ADVISOR_BUCKET_FRACTION)}"
        ) from None
    return -math.log1p(-fraction) / HOURS_PER_MONTH


def cold_start_s(
    weights_gb: float,
    load_gb_per_s: float = DEFAULT_LOAD_GB_PER_S,
    engine_init_s: float = DEFAULT_ENGINE_INIT_S,
) -> float:
    """Seconds from an obtained instance to a serving replica: weights / bandwidth + engine init.

    weights_gb: bytes of the replica's weights / 1e9 (e.g. 16.06 for Llama-3-8B in bf16).
    load_gb_per_s: storage-to-GPU load bandwidth (default: vLLM default loader from gp3 EBS).
    engine_init_s: vLLM start, profiling, KV-cache allocation, compile and CUDA-graph capture.
    Not included: VM boot and container image pull (no public measurement found; add them to
    `engine_init_s` if known). With the defaults, Llama-3-8B takes 16.06 / 0.33 + 60 = 109 s.
    """
    if weights_gb < 0 or load_gb_per_s <= 0 or engine_init_s < 0:
        raise ValueError("weights_gb and engine_init_s must be >= 0, load_gb_per_s > 0")
    return weights_gb / load_gb_per_s + engine_init_s


# ---------------------------------------------------------------- the packaged markets


def _problem(key: str, message: str, value: object = None) -> ConfigError:
    return ConfigError([Problem(f"sim/data/{MARKETS_FILE}", key, message, value)])


def _delay(name: str, table: dict[str, Any]) -> DelayDistribution:
    try:
        return DelayDistribution(
            name,
            tuple(float(x) for x in table["probabilities"]),
            tuple(float(x) for x in table["quantiles_s"]),
            int(table["samples"]),
            str(table["source"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise _problem(f"delays.{name}", f"bad delay table ({err})") from None


def _market(name: str, table: dict[str, Any], delays: dict[str, DelayDistribution]) -> SpotMarket:
    try:
        delay = delays[table["availability_delay"]]
        trace = None
        if table["kind"] == "trace":
            trace = ReclaimTrace(
                tuple(float(x) for x in table["reclaim_times_s"]),
                tuple(int(x) for x in table["reclaimed"]),
                tuple(int(x) for x in table["running_before"]),
                float(table["span_s"]),
                float(table["block_s"]),
            )
        ratio = table.get("spot_ratio")
        return SpotMarket(
            name=name,
            kind=str(table["kind"]),
            provider=str(table["provider"]),
            preemptions_per_instance_hour=float(table["preemptions_per_instance_hour"]),
            notice_s=float(table["notice_s"]),
            availability_delay=delay,
            spot_ratio=None if ratio is None else float(ratio),
            advisor_bucket=table.get("advisor_bucket"),
            trace=trace,
            source=str(table["source"]),
        )
    except (KeyError, TypeError, ValueError) as err:
        raise _problem(f"markets.{name}", f"bad market ({err!r})") from None


@functools.cache
def _load() -> tuple[dict[str, SpotMarket], dict[str, DelayDistribution], dict[str, float]]:
    doc = read_toml(MARKETS_FILE)
    delays = {k: _delay(k, v) for k, v in doc["delays"].items()}
    markets = {k: _market(k, v, delays) for k, v in doc["markets"].items()}
    price = {k: float(v) for k, v in doc["price"].items() if k != "source"}
    return markets, delays, price


def markets() -> dict[str, SpotMarket]:
    """The packaged spot markets by name (sim/data/spot_markets.toml)."""
    return dict(_load()[0])


def availability_delays() -> dict[str, DelayDistribution]:
    """The packaged availability-delay distributions by name (to swap into a market)."""
    return dict(_load()[1])


def market(name: str) -> SpotMarket:
    """One packaged market; a ValueError naming the known ones if unknown."""
    found = _load()[0]
    if name not in found:
        raise ValueError(f"unknown spot market {name!r}; known: {sorted(found)}")
    return found[name]


# ---------------------------------------------------------------- prices


def spot_price_path(
    rng: np.random.Generator,
    hours: int,
    on_demand_usd_per_hour: float,
    spot_ratio: float,
    *,
    change_probability_per_week: float | None = None,
    level_log_sd: float | None = None,
) -> np.ndarray:
    """Hourly spot price, USD per hour, around `spot_ratio` x the on-demand price.

    Model (fitted to AWS spot.js weekly snapshots, July 2022; spot_markets.toml [price]): the price
    is piecewise constant; at each hour it changes with the probability that makes a weekly change
    probability of `change_probability_per_week` (0.106 measured); a new level is drawn
    independently as ratio x on-demand x exp(X), X ~ Normal(-s^2/2, s^2) with s = `level_log_sd`
    (0.110 measured: the rms weekly log change when a price changed, 0.155, over sqrt 2), so the
    mean price is exactly ratio x on-demand. Prices are capped at the on-demand price (AWS never
    charges more for spot).
    """
    if hours < 0 or on_demand_usd_per_hour < 0 or not 0 < spot_ratio <= 1:
        raise ValueError("hours and on_demand_usd_per_hour must be >= 0, spot_ratio in (0, 1]")
    defaults = _load()[2]
    p_week = (
        defaults["change_probability_per_week"]
        if change_probability_per_week is None
        else change_probability_per_week
    )
    sd = defaults["level_log_sd"] if level_log_sd is None else level_log_sd
    if not 0 <= p_week <= 1 or sd < 0:
        raise ValueError("change_probability_per_week must be in [0, 1], level_log_sd >= 0")
    p_hour = 1.0 - (1.0 - p_week) ** (1.0 / HOURS_PER_WEEK)
    changes = rng.random(hours) < p_hour
    changes[:1] = True  # the first hour starts at a stationary level
    levels = rng.normal(-(sd**2) / 2, sd, size=int(changes.sum()))
    x = levels[np.cumsum(changes) - 1] if hours else np.empty(0)
    return np.minimum(on_demand_usd_per_hour, on_demand_usd_per_hour * spot_ratio * np.exp(x))

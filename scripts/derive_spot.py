"""Derive sim/data/spot_markets.toml: spot markets, reclaim traces and availability delays.

Inputs (read-only):
- traces/spot/bamboo_*.{csv,txt}: Bamboo spot traces (uclasystem/bamboo @
  80809293289419d40a870b4a9ccb8df0082ce3fb, MIT), copied unmodified from
  /work/shared/data/bamboo-spot-traces/traces/ (traces/spot/SOURCE.md).
- /work/shared/data/spot-traces-skypilot/: SkyPilot spot-traces (skypilot-org/spot-traces @
  221da1ab9bdfe7966da296265d7694d52dc0c5a6). It has NO licence, so nothing of it is copied into the
  repository: only the summary figures below (quantiles of unavailable spells) are derived from it.
- /work/shared/data/aws-spot-advisor-2022/: AWS Spot Advisor snapshots 2022 (bucket -> savings) and
  spot.js prices (weekly price changes).

Derivations:
1. Reclaim instants of each Bamboo trace. Event traces (`t_ms, add|remove, node`): instants with
   k removals and N instances running just before them; span = last event - first event.
   Count traces (`date, time, count`): a drop of k between two samples is k removals at the later
   sample, N = the earlier count (churn between samples is invisible, so the rate is a lower bound).
   Fleet rate = removals / integral of the running count (SOURCE.md's 0.545 and 0.611 per
   instance-hour).
2. Replacement delays of Bamboo traces: removals matched first-in-first-out to later adds (the
   autoscaling group refills its oldest deficit first); removals never refilled before the end are
   right-censored; the quantiles are Kaplan-Meier quantiles (a quantile beyond the KM support is
   the largest censoring age: a lower bound, flagged in the table).
3. SkyPilot availability delay: 1-node preemption traces aws-04-22-2023 (p3.2xlarge, 4 zones, 32-s
   ticks; 0 = running, 1 = preempted / not obtainable): every run of 1s that follows a 0 is one
   wait from a preemption to the next successful launch; length = ticks x 32 s; runs still open at
   the end of a file are dropped (1 per file at most). Cross-check:
   availability/1-node/aws-02-15-2023 (195-s ticks, 9 zones).
4. Advisor buckets: share of GPU pools and median spot/on-demand ratio (1 - savings/100) per bucket,
   Linux, newest snapshot 2022-07-23.
5. Spot price variability: spot.js snapshots 2022-07-09/16/23, per (region, instance type) with 3
   positive prices: share of weekly log changes != 0, and the sd of the non-zero changes.

Run from the repository root: `python scripts/derive_spot.py [--check]`. It prints the figures
quoted in docs/spot.md and writes sim/data/spot_markets.toml (`--check`: exit 1 if the file
differs).
"""

from __future__ import annotations

import csv
import datetime as dt
import json
import math
import sys
from collections import deque
from pathlib import Path

import numpy as np

TRACES = Path("traces/spot")
SHARED = Path("/work/shared/data")
SKYPILOT = SHARED / "spot-traces-skypilot"
ADVISOR = SHARED / "aws-spot-advisor-2022"
OUT = Path("sim/data/spot_markets.toml")

MONTH_HOURS = 730.0  # the repo's billing month (sim.cost, README: 730 h)
BLOCK_S = 3600.0  # bootstrap block: holds a whole reclaim wave (<= 15 min in these traces)
AWS_NOTICE_S = 120.0
GCP_NOTICE_S = 30.0
PROBS = (0.0, 0.05, 0.1, 0.25, 0.5, 0.75, 0.9, 0.95, 0.99, 1.0)
BUCKETS = ("<5%", "5-10%", "10-15%", "15-20%", ">20%")
BUCKET_MARKET = {
    "<5%": "aws-advisor-lt5pct",
    "5-10%": "aws-advisor-5-10pct",
    "10-15%": "aws-advisor-10-15pct",
    "15-20%": "aws-advisor-15-20pct",
    ">20%": "aws-advisor-gt20pct",
}
# The monthly reclaimed fraction that stands for each bucket: the midpoint of a closed bucket, and
# the lower edge of the open ">20%" bucket (so that market is a lower bound). Mirrors sim.spot.
BUCKET_FRACTION = {"<5%": 0.025, "5-10%": 0.075, "10-15%": 0.125, "15-20%": 0.175, ">20%": 0.20}


# ---------------------------------------------------------------- Bamboo traces


def event_trace(path: Path) -> tuple[list[tuple[float, int]], float]:
    """(time_s from the first event, +1 add / -1 remove) events and the span in seconds."""
    rows = list(csv.reader(path.open()))
    t0 = int(rows[0][0]) / 1000
    events = [(int(r[0]) / 1000 - t0, 1 if r[1].strip() == "add" else -1) for r in rows]
    return events, events[-1][0]


def count_trace(path: Path) -> tuple[list[tuple[float, int]], int, float]:
    """(time_s, change of count) at each sample whose count changed, the first count, the span."""
    samples = []
    for line in path.read_text().splitlines():
        if not line.strip():
            continue
        date, clock, count = (x.strip() for x in line.split(","))
        ts = dt.datetime.strptime(f"{date} {clock}", "%Y-%m-%d %H:%M:%S")
        samples.append((ts, int(count)))
    t0 = samples[0][0]
    out, prev = [], samples[0][1]
    for ts, c in samples[1:]:
        if c != prev:
            out.append(((ts - t0).total_seconds(), c - prev))
        prev = c
    return out, samples[0][1], (samples[-1][0] - t0).total_seconds()


def reclaim_instants(changes: list[tuple[float, int]], n0: int, span_s: float) -> dict[str, object]:
    """Reclaim instants (time, k removed, N running before) and the trace's rates."""
    n, last, integral = n0, 0.0, 0.0
    times: list[float] = []
    removed: list[int] = []
    running: list[int] = []
    for t, dn in changes:
        integral += n * (t - last)
        last = t
        if dn < 0:
            if times and times[-1] == t:  # several removals at one instant: one wave
                removed[-1] += -dn
            else:
                times.append(t)
                removed.append(-dn)
                running.append(n)
        n += dn
    integral += n * (span_s - last)
    total = sum(removed)
    nelson_aalen = sum(k / r for k, r in zip(removed, running, strict=True))
    return {
        "times_s": times,
        "removed": removed,
        "running_before": running,
        "span_s": span_s,
        "removals": total,
        "instance_hours": integral / 3600,
        "fleet_rate": total / (integral / 3600),
        "always_up_rate": nelson_aalen / (span_s / 3600),
        "mean_fleet": integral / span_s,
    }


def fifo_delays(changes: list[tuple[float, int]], span_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Removal -> refill delays, FIFO; returns (durations_s, observed) with censored at the end."""
    pending: deque[float] = deque()
    durations, observed = [], []
    for t, dn in changes:
        if dn < 0:
            pending.extend([t] * -dn)
        else:
            for _ in range(dn):
                if pending:
                    durations.append(t - pending.popleft())
                    observed.append(True)
    for t in pending:
        durations.append(span_s - t)
        observed.append(False)
    return np.array(durations, float), np.array(observed, bool)


def km_quantiles(
    durations: np.ndarray, observed: np.ndarray
) -> tuple[list[float], float, list[bool]]:
    """Kaplan-Meier quantiles at PROBS, the KM mean (restricted), and which are lower bounds."""
    order = np.lexsort((~observed, durations))  # events before censorings at ties
    d, o = durations[order], observed[order]
    at_risk = len(d)
    surv = 1.0
    steps: list[tuple[float, float]] = []  # (time, cdf after the step)
    for t, ev in zip(d, o, strict=True):
        if ev:
            surv *= 1 - 1 / at_risk
            steps.append((float(t), 1 - surv))
        at_risk -= 1
    max_t = float(d.max())
    qs, bounds = [], []
    for p in PROBS:
        if p == 0.0:
            qs.append(float(d[o].min()) if o.any() else 0.0)
            bounds.append(False)
            continue
        hit = next((t for t, c in steps if c >= p - 1e-12), None)
        qs.append(hit if hit is not None else max_t)
        bounds.append(hit is None)
    cdf_t = np.array([0.0] + [t for t, _ in steps])
    cdf_v = np.array([0.0] + [c for _, c in steps])
    mean = float(np.sum(np.diff(np.append(cdf_t, max_t)) * (1 - cdf_v)))
    return qs, mean, bounds


# ---------------------------------------------------------------- SkyPilot (derived figures only)


def skypilot_waits(pattern: str) -> tuple[np.ndarray, int, int]:
    """Unavailable spells that follow a running tick, seconds; files; open spells dropped."""
    waits: list[float] = []
    files = sorted(SKYPILOT.glob(pattern))
    dropped = 0
    for f in files:
        doc = json.loads(f.read_text())
        gap = float(doc["metadata"]["gap_seconds"])
        run, seen_up = 0, False
        for x in doc["data"]:
            if x == 1 and seen_up:
                run += 1
            elif x == 0:
                if run:
                    waits.append(run * gap)
                run, seen_up = 0, True
        dropped += 1 if run else 0
    return np.array(waits), len(files), dropped


# ---------------------------------------------------------------- AWS advisor and prices


def advisor_buckets() -> dict[str, tuple[float, float, int]]:
    """Per bucket: share of GPU pools, median spot/on-demand ratio, pools (Linux, 2022-07-23)."""
    rows = [
        r
        for r in csv.DictReader((ADVISOR / "aws_gpu_spot_advisor_2022.csv").open())
        if r["os"] == "Linux" and r["snapshot_date"] == "2022-07-23"
    ]
    out = {}
    for b in BUCKETS:
        sel = [
            1 - float(r["savings_vs_on_demand_pct"]) / 100
            for r in rows
            if r["interruption_label"] == b
        ]
        out[b] = (len(sel) / len(rows), float(np.median(sel)), len(sel))
    return out


def price_changes() -> tuple[float, float, int]:
    """Share of weekly log-price changes != 0, sd of the non-zero ones, number of pool-weeks."""
    prices: dict[tuple[str, str], dict[str, float]] = {}
    for r in csv.DictReader((ADVISOR / "aws_gpu_spot_price_2022.csv").open()):
        try:
            p = float(r["linux_spot_usd_per_hour"])
        except ValueError:
            continue
        prices.setdefault((r["spotjs_region"], r["instance_type"]), {})[r["snapshot_date"]] = p
    dates = ("2022-07-09", "2022-07-16", "2022-07-23")
    diffs: list[float] = []
    for v in prices.values():
        if all(v.get(d, 0) > 0 for d in dates):
            diffs.extend(np.diff(np.log([v[d] for d in dates])))
    ch = np.array(diffs)
    nz = ch[ch != 0]
    return float(np.mean(ch != 0)), float(np.sqrt(np.mean(nz**2))), len(ch)


# ---------------------------------------------------------------- TOML output


def fmt_list(xs: list[float] | list[int], per_line: int = 10) -> str:
    items = [f"{x:g}" if isinstance(x, float) else str(x) for x in xs]
    lines = [", ".join(items[i : i + per_line]) for i in range(0, len(items), per_line)]
    return "[\n  " + ",\n  ".join(lines) + ",\n]"


def quantile_mean(qs: list[float]) -> float:
    """Mean of the piecewise-linear quantile function through (PROBS, qs), as sim.spot samples."""
    p, q = np.asarray(PROBS), np.asarray(qs)
    return float(np.sum(np.diff(p) * (q[1:] + q[:-1]) / 2))


def delay_block(name: str, qs: list[float], n: int, bounds: list[bool], src: str) -> str:
    mean = quantile_mean(qs)
    lb = [p for p, b in zip(PROBS, bounds, strict=True) if b]
    note = f"\n# quantiles at p >= {min(lb)} are lower bounds (censored)" if lb else ""
    return (
        f"[delays.{name}]{note}\n"
        f"probabilities = {list(PROBS)}\n"
        f"quantiles_s = [{', '.join(f'{q:.0f}' for q in qs)}]\n"
        f"mean_s = {mean:.0f}  # mean of the piecewise-linear quantile function above\n"
        f"samples = {n}\n"
        f'source = "{src}"\n'
    )


def main(argv: list[str]) -> int:
    check = "--check" in argv
    pieces: list[str] = []
    traces: dict[str, dict[str, object]] = {}
    delays: dict[str, str] = {}

    # 1-2. Bamboo
    specs = [
        ("bamboo-g4dn", "bamboo_g4dn_trace.csv", "event"),
        ("bamboo-p3", "bamboo_p3_trace.csv", "event"),
        ("bamboo-gcp-a100", "bamboo_gcp_a100x1_east1b.txt", "count"),
        ("bamboo-gcp-v100", "bamboo_gcp_v100x1_east1c.txt", "count"),
    ]
    print(
        "Bamboo traces: removals, instance-hours, fleet rate, always-up (Nelson-Aalen) rate, delays"
    )
    for name, file, kind in specs:
        if kind == "event":
            changes, span = event_trace(TRACES / file)
            n0 = 0
        else:
            changes, n0, span = count_trace(TRACES / file)
        info = reclaim_instants(changes, n0, span)
        traces[name] = info
        d, o = fifo_delays(changes, span)
        qs, mean, bounds = km_quantiles(d, o)
        print(
            f"  {name}: span {span / 3600:.2f} h, removals {info['removals']}, "
            f"instance-h {info['instance_hours']:.1f}, mean fleet {info['mean_fleet']:.1f}, "
            f"fleet rate {info['fleet_rate']:.4f}/h, "
            f"always-up rate {info['always_up_rate']:.4f}/h, "
            f"instants {len(info['times_s'])}, max wave {max(info['removed'])}"  # type: ignore[arg-type]
        )
        print(
            f"    FIFO refill delay: {o.sum()} matched, {(~o).sum()} censored; KM quantiles "
            + ", ".join(
                f"p{p * 100:g}={q:.0f}{'+' if b else ''}"
                for p, q, b in zip(PROBS, qs, bounds, strict=True)
            )
            + f"; KM mean {mean:.0f} s, quantile-table mean {quantile_mean(qs):.0f} s"
        )
        delays[f"{name}-refill"] = delay_block(
            f"{name}-refill",
            qs,
            len(d),
            bounds,
            f"Bamboo {file} (MIT, traces/spot/): removals matched FIFO to later adds, "
            f"{int(o.sum())} refilled, {int((~o).sum())} censored at the trace end; Kaplan-Meier "
            "quantiles (scripts/derive_spot.py)",
        )

    # 3. SkyPilot
    waits, nfiles, dropped = skypilot_waits("preemption/1-node/aws-04-22-2023/*.json")
    qs = [float(np.quantile(waits, p)) for p in PROBS]
    mean = quantile_mean(qs)
    print(
        f"SkyPilot p3.2xlarge preemption traces: {len(waits)} waits in {nfiles} zones "
        f"({dropped} open "
        f"spells dropped); mean {waits.mean():.0f} s; quantiles "
        + ", ".join(f"p{p * 100:g}={q:.0f}" for p, q in zip(PROBS, qs, strict=True))
    )
    w2, n2, _ = skypilot_waits("availability/1-node/aws-02-15-2023/*.json")
    print(
        f"  cross-check availability 2023 (195-s ticks): {len(w2)} waits in {n2} zones, median "
        f"{np.median(w2):.0f} s, p90 {np.quantile(w2, 0.9):.0f} s, mean {w2.mean():.0f} s"
    )
    delays["skypilot-aws-v100-2023"] = delay_block(
        "skypilot-aws-v100-2023",
        qs,
        len(waits),
        [False] * len(PROBS),
        "SkyPilot spot-traces @ 221da1ab (no licence: figures derived, files not copied), "
        "preemption/1-node/aws-04-22-2023, p3.2xlarge in us-east-1c/1f, us-west-2b/2c, 32-s ticks: "
        "runs of 'unavailable' after a preemption until the next successful launch "
        "(scripts/derive_spot.py)",
    )

    # 4-5. Advisor and prices
    buckets = advisor_buckets()
    print(
        "AWS Spot Advisor GPU pools, Linux, 2022-07-23: share, median spot/on-demand ratio, pools"
    )
    for b, (share, ratio, n) in buckets.items():
        print(f"  {b}: {share:.3f}, {ratio:.2f}, {n}")
    p_change, jump_sd, n_weeks = price_changes()
    print(
        f"Spot price: {n_weeks} pool-weeks, share changed {p_change:.4f}, rms log change when "
        f"changed {jump_sd:.4f}, level sd {jump_sd / math.sqrt(2):.4f}"
    )

    # ------------------------------------------------ write the TOML
    pieces.append(
        HEADER.format(
            month_hours=MONTH_HOURS,
            p_change=p_change,
            jump_sd=jump_sd,
            level_sd=jump_sd / math.sqrt(2),
            n_weeks=n_weeks,
        )
    )
    for block in delays.values():
        pieces.append(block)
    for b in BUCKETS:
        share, ratio, n = buckets[b]
        f = BUCKET_FRACTION[b]
        rate = -math.log1p(-f) / MONTH_HOURS
        edge = "lower edge of an open bucket: a lower bound" if b == ">20%" else "bucket midpoint"
        pieces.append(
            f"[markets.{BUCKET_MARKET[b]}]\n"
            'kind = "rate"\n'
            'provider = "aws"\n'
            f'advisor_bucket = "{b}"\n'
            f"preemptions_per_instance_hour = {rate:.6g}  # -ln(1 - {f}) / {MONTH_HOURS:g} h\n"
            f"notice_s = {AWS_NOTICE_S:g}\n"
            'availability_delay = "skypilot-aws-v100-2023"\n'
            f"spot_ratio = {ratio:.2f}  # median over the bucket's {n} GPU pools "
            f"({share:.1%} of pools)\n"
            f'source = "AWS Spot Advisor bucket {b} (rate of reclaimed capacity in the trailing '
            f"month), snapshot 2022-07-23 (aws-spot-advisor-2022); monthly fraction {f} "
            f"({edge}); "
            'notice: AWS EC2 docs, Spot Instance interruption notices (two minutes)"\n'
        )
    trace_meta = {
        "bamboo-g4dn": (
            "aws",
            AWS_NOTICE_S,
            "bamboo-g4dn-refill",
            0.30,
            "g4dn.xlarge us-east-1 savings 70% (Spot Advisor 2022-07-23)",
            "Bamboo g4dn-trace.csv (AWS g4dn.xlarge autoscaling group, NSDI'23, MIT)",
        ),
        "bamboo-p3": (
            "aws",
            AWS_NOTICE_S,
            "skypilot-aws-v100-2023",
            0.30,
            "p3.2xlarge us-east-1 savings 70% (Spot Advisor 2022-07-23)",
            "Bamboo p3-trace.csv (AWS p3.2xlarge autoscaling group, NSDI'23, MIT); delay: "
            "SkyPilot p3.2xlarge relaunch waits (same instance type, direct measurement)",
        ),
        "bamboo-gcp-a100": (
            "gcp",
            GCP_NOTICE_S,
            "bamboo-gcp-a100-refill",
            None,
            "",
            "Bamboo gcloud/a100x1-east1b.txt (running preemptible a2-highgpu-1g VMs, "
            "Dec 2021, MIT); drops between samples (a lower bound on churn)",
        ),
        "bamboo-gcp-v100": (
            "gcp",
            GCP_NOTICE_S,
            "bamboo-gcp-v100-refill",
            None,
            "",
            "Bamboo gcloud/v100x1-east1c.txt (running preemptible 1xV100 VMs, Dec 2021, "
            "MIT); drops between samples (a lower bound on churn)",
        ),
    }
    for name, info in traces.items():
        provider, notice, delay, ratio, ratio_src, src = trace_meta[name]
        notice_src = (
            "AWS EC2 docs, Spot Instance interruption notices (two minutes)"
            if provider == "aws"
            else "GCE Scheduling.skipGuestOsShutdown: 30 s between ACPI G2 soft off and G3 "
            "mechanical off for Spot VMs"
        )
        ratio_line = (
            f"spot_ratio = {ratio:.2f}  # {ratio_src}\n"
            if ratio is not None
            else "# spot_ratio: no GCP price data in the repo; the experiment must set it\n"
        )
        pieces.append(
            f"[markets.{name}]\n"
            'kind = "trace"\n'
            f'provider = "{provider}"\n'
            f"preemptions_per_instance_hour = {info['fleet_rate']:.4f}"
            "  # removals / instance-hours\n"
            f"always_up_preemptions_per_hour = {info['always_up_rate']:.4f}  # sum(k/N) / span\n"
            f"notice_s = {notice:g}\n"
            f'availability_delay = "{delay}"\n' + ratio_line + f"block_s = {BLOCK_S:g}\n"
            f"span_s = {info['span_s']:g}\n"
            f"reclaim_times_s = {fmt_list(info['times_s'])}\n"  # type: ignore[arg-type]
            f"reclaimed = {fmt_list(info['removed'], 20)}\n"  # type: ignore[arg-type]
            f"running_before = {fmt_list(info['running_before'], 20)}\n"  # type: ignore[arg-type]
            f'source = "{src}; notice: {notice_src}; reclaim instants derived by '
            'scripts/derive_spot.py"\n'
        )
    text = "\n".join(pieces)
    if check:
        same = OUT.exists() and OUT.read_text() == text
        print(f"{OUT}: {'up to date' if same else 'DIFFERS'}")
        return 0 if same else 1
    OUT.write_text(text)
    print(f"wrote {OUT}")
    return 0


HEADER = """\
# Spot markets for sim.spot: preemption processes, notice periods, availability delays, prices.
# GENERATED by scripts/derive_spot.py from traces/spot/ (Bamboo, MIT), the SkyPilot spot-traces
# (figures only: that repository has no licence) and the AWS Spot Advisor 2022 snapshots; do not
# edit by hand. docs/spot.md explains every number.
#
# Units: seconds (_s), per instance-hour rates; `month_hours` converts Spot Advisor monthly buckets.
# A "rate" market is a Poisson process per running spot instance; a "trace" market replays reclaim
# instants of a real fleet, block-bootstrapped (`block_s`) over the horizon: at an instant where the
# trace reclaimed k of its N running instances, each of our running instances is reclaimed with
# probability k / N.
#
# Spot price variability (sim.spot.spot_price_path defaults): AWS spot.js snapshots
# 2022-07-09/16/23, {n_weeks} (region, GPU instance type) pool-weeks: a pool's price changed in a
# week with probability {p_change:.4f}; when it changed, the rms log change was {jump_sd:.4f}, i.e.
# a level sd of {level_sd:.4f} for independent levels around the mean.

month_hours = {month_hours:g}

[price]
change_probability_per_week = {p_change:.4f}
level_log_sd = {level_sd:.4f}
source = "AWS spot.js snapshots 2022-07-09/16/23 (aws_gpu_spot_price_2022.csv)"
"""


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

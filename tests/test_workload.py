"""Tests of the workload model (sim.workload) and the trace readers (sim.traces).

Statistical checks use fixed seeds and tolerances of about 4 standard errors of the estimate,
so they fail when a formula is off by a few percent and pass by construction otherwise.
"""

from __future__ import annotations

import math
import pickle
import re
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from sim.errors import TraceError
from sim.rng import Streams
from sim.traces import empirical_lengths, read_azure_trace, read_weekly_profile
from sim.units import HOURS_PER_MONTH, HOURS_PER_WEEK, SECONDS_PER_MONTH
from sim.workload import (
    AZURE_CONV_BURST,
    EmpiricalLengths,
    MarkovBurst,
    NoBurst,
    WeeklyProfile,
    WorkloadModel,
    expected_arrivals,
    growth_moments,
    hour_of_week,
    month_window_s,
    sample_arrivals,
    sample_month,
    sample_monthly_growth,
)

REPO = Path(__file__).resolve().parents[1]
CONV_TRACE = REPO / "traces" / "azure_conv_2023.csv"
CODE_TRACE = REPO / "traces" / "azure_code_2023.csv"
PROFILE_CSV = REPO / "traces" / "servegen_weekly_profile.csv"
WEEK_S = HOURS_PER_WEEK * 3600.0


def rng(seed: int) -> np.random.Generator:
    return np.random.default_rng(seed)


# --- clock --------------------------------------------------------------------------------


def test_month_constants_and_hour_of_week() -> None:
    assert HOURS_PER_MONTH == 730
    assert SECONDS_PER_MONTH == 730 * 3600
    assert month_window_s(2) == (2_628_000.0, 5_256_000.0)
    assert hour_of_week([0.0, 3599.999, 3600.0, WEEK_S - 1e-6, WEEK_S]).tolist() == [
        0,
        0,
        1,
        167,
        0,
    ]
    assert int(hour_of_week(month_window_s(2)[0])) == 730 % 168  # month 2 starts Wed 10:00
    with pytest.raises(ValueError, match="1-based"):
        month_window_s(0)


# --- weekly profile -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([1.0] * 167, "needs 168 values, got 167"),
        ([1.0] * 169, "needs 168 values, got 169"),
        ([1.0] * 5 + [math.nan] + [1.0] * 162, "hour 5 must be finite, got nan"),
        ([math.inf] + [1.0] * 167, "hour 0 must be finite, got inf"),
        ([1.0] * 7 + [-0.5] + [1.0] * 160, "hour 7 must be >= 0, got -0.5"),
        ([0.0] * 168, "all zero"),
    ],
)
def test_profile_validation(values: list[float], message: str) -> None:
    with pytest.raises(ValueError, match=re.escape(message)):
        WeeklyProfile.from_values(values)
    with pytest.raises(ValueError, match=re.escape(message)):
        WeeklyProfile(tuple(values))


def test_profile_constructor_requires_mean_one_and_from_values_normalises() -> None:
    raw = [2.0] * 84 + [6.0] * 84
    with pytest.raises(ValueError, match=r"mean 1, got mean 4\.0.*from_values"):
        WeeklyProfile(tuple(raw))
    profile = WeeklyProfile.from_values(raw)
    assert profile.mean() == pytest.approx(1.0, abs=1e-12)
    assert profile.multipliers[0] == pytest.approx(0.5)
    assert profile.multipliers[-1] == pytest.approx(1.5)
    assert profile.peak_to_trough() == pytest.approx(3.0)
    assert profile.at(np.array([0.0, 84 * 3600.0, WEEK_S + 1.0])).tolist() == [0.5, 1.5, 0.5]
    assert profile.integral_s(0.0, WEEK_S) == pytest.approx(WEEK_S)
    assert profile.integral_s(83.5 * 3600, 84.5 * 3600) == pytest.approx(0.5 * 3600 * 2.0)
    assert WeeklyProfile.flat().mean() == 1.0
    with pytest.raises(ValueError, match="read-only"):
        profile.array[0] = 3.0


# --- bursts -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "burst",
    [MarkovBurst(60.0, 10.0, 8.0), MarkovBurst(480.0, 960.0, 2.0), MarkovBurst(5.0, 5.0, 1.0)],
)
def test_markov_burst_stationary_mean_is_one(burst: MarkovBurst) -> None:
    assert burst.mean() == pytest.approx(1.0, abs=1e-12)
    p = burst.p_burst
    assert (1 - p) * burst.calm_level + p * burst.burst_level == pytest.approx(1.0, abs=1e-12)
    assert burst.burst_level == pytest.approx(burst.burst_ratio * burst.calm_level)


@pytest.mark.parametrize("burst", [MarkovBurst(60.0, 10.0, 8.0), AZURE_CONV_BURST])
def test_markov_burst_time_average_matches_mean_and_variance(burst: MarkovBurst) -> None:
    span_s = 20_000 * (burst.mean_calm_s + burst.mean_burst_s)  # 20,000 calm/burst cycles
    breakpoints, levels = burst.sample_path(rng(1), 0.0, span_s)
    durations = np.diff(breakpoints)
    assert breakpoints[0] == 0.0 and breakpoints[-1] == span_s
    assert np.all(durations > 0)
    assert set(np.unique(levels)) <= {burst.calm_level, burst.burst_level}
    assert np.all(levels[1:] != levels[:-1])  # the state alternates
    time_mean = float(np.sum(durations * levels) / span_s)
    time_var = float(np.sum(durations * (levels - 1.0) ** 2) / span_s)
    # Standard error of a time average of a process with exponential autocorrelation:
    # sqrt(2 · variance · correlation_time / span).
    se = math.sqrt(2 * burst.variance() * burst.correlation_time_s / span_s)
    assert abs(time_mean - 1.0) < 4 * se
    assert time_var == pytest.approx(burst.variance(), rel=0.05)
    calm_sojourns = durations[1:-1][levels[1:-1] == burst.calm_level]
    assert calm_sojourns.mean() == pytest.approx(burst.mean_calm_s, rel=0.05)


def test_markov_burst_validation_and_no_burst() -> None:
    with pytest.raises(ValueError, match="mean_calm_s must be a finite number > 0"):
        MarkovBurst(0.0, 10.0, 2.0)
    with pytest.raises(ValueError, match="mean_burst_s"):
        MarkovBurst(10.0, math.inf, 2.0)
    with pytest.raises(ValueError, match="burst_ratio must be a finite number >= 1"):
        MarkovBurst(10.0, 10.0, 0.5)
    with pytest.raises(ValueError, match="start_s < end_s"):
        AZURE_CONV_BURST.sample_path(rng(0), 5.0, 5.0)
    breakpoints, levels = NoBurst().sample_path(rng(0), 3.0, 9.0)
    assert breakpoints.tolist() == [3.0, 9.0] and levels.tolist() == [1.0]
    assert NoBurst().mean() == 1.0 and NoBurst().variance() == 0.0


# --- arrivals -----------------------------------------------------------------------------


def test_counts_match_expected_arrivals_poisson_with_profile() -> None:
    profile = read_weekly_profile(PROFILE_CSV)
    start_s, end_s = 1000.0, 1000.0 + 2 * WEEK_S  # not hour-aligned on purpose
    times = sample_arrivals(rng(2), start_s, end_s, 2.0, profile, NoBurst())
    expected = expected_arrivals(start_s, end_s, 2.0, profile, NoBurst())
    assert expected == pytest.approx(2.0 * 2 * WEEK_S, rel=1e-9)  # profile mean is 1
    assert abs(times.size - expected) < 4 * math.sqrt(expected)
    assert times.dtype == np.float64
    assert np.all(np.diff(times) >= 0) and times[0] >= start_s and times[-1] < end_s


def test_count_mean_and_variance_with_markov_burst() -> None:
    """Var[N] = E[N] + λ² · Var[∫ burst] with Var[∫] = 2 v τ² (T/τ − 1 + e^(−T/τ))."""
    burst, rate, span_s, reps = AZURE_CONV_BURST, 3.0, 3600.0, 400
    gen = rng(3)
    counts = np.array(
        [
            sample_arrivals(gen, 0.0, span_s, rate, WeeklyProfile.flat(), burst).size
            for _ in range(reps)
        ]
    )
    mean = expected_arrivals(0.0, span_s, rate, WeeklyProfile.flat(), burst)
    tau = burst.correlation_time_s
    integral_var = 2 * burst.variance() * tau**2 * (span_s / tau - 1 + math.exp(-span_s / tau))
    variance = mean + rate**2 * integral_var
    assert abs(counts.mean() - mean) < 4 * math.sqrt(variance / reps)
    # The sample variance of ~normal counts has relative standard error sqrt(2 / (reps − 1)).
    assert counts.var(ddof=1) == pytest.approx(variance, rel=4 * math.sqrt(2 / (reps - 1)))
    assert counts.var(ddof=1) > 5 * mean  # bursts add variance far beyond Poisson


def test_hour_of_week_shape_recovered() -> None:
    profile = read_weekly_profile(PROFILE_CSV)
    weeks = 4
    times = sample_arrivals(rng(4), 0.0, weeks * WEEK_S, 1.0, profile, NoBurst())
    per_hour = np.bincount(hour_of_week(times), minlength=HOURS_PER_WEEK) / (weeks * 3600.0)
    assert np.corrcoef(per_hour, profile.array)[0, 1] > 0.995
    assert np.max(np.abs(per_hour / profile.array - 1)) < 0.06  # ≥ 7,600 arrivals per cell


def test_arrivals_land_in_the_right_hour_of_week_in_a_later_month() -> None:
    values = [0.0] * HOURS_PER_WEEK
    values[100] = 1.0  # Friday 04:00–05:00 only
    profile = WeeklyProfile.from_values(values)
    start_s, end_s = month_window_s(3)
    times = sample_arrivals(rng(5), start_s, end_s, 0.01, profile, AZURE_CONV_BURST)
    assert times.size > 0
    assert np.all(hour_of_week(times) == 100)
    expected = expected_arrivals(start_s, end_s, 0.01, profile, NoBurst())
    assert expected == pytest.approx(
        0.01 * 168 * 3600 * np.sum(hour_of_week(np.arange(start_s, end_s, 3600.0)) == 100)
    )


def test_no_clipping_of_gaps() -> None:
    n_expected = 1_000_000
    times = sample_arrivals(rng(6), 0.0, float(n_expected), 1.0, WeeklyProfile.flat(), NoBurst())
    gaps = np.diff(times)
    assert abs(times.size - n_expected) < 4 * math.sqrt(n_expected)  # no ~5% excess
    assert gaps.std() / gaps.mean() == pytest.approx(1.0, abs=0.01)
    assert gaps.max() > 3 * gaps.mean()  # expected max gap ≈ ln(10⁶) ≈ 14 means
    assert gaps.max() > 10 * gaps.mean()
    # P(gap > 3 means) = e^−3 for exponential gaps; clipping would make it 0.
    assert np.mean(gaps > 3 * gaps.mean()) == pytest.approx(math.exp(-3), abs=0.002)


def test_arrivals_are_reproducible_and_validated() -> None:
    args = (0.0, 7200.0, 4.0, WeeklyProfile.flat(), AZURE_CONV_BURST)
    assert np.array_equal(sample_arrivals(rng(7), *args), sample_arrivals(rng(7), *args))
    assert not np.array_equal(sample_arrivals(rng(7), *args), sample_arrivals(rng(8), *args))
    with pytest.raises(ValueError, match="base_rate_per_s"):
        sample_arrivals(rng(7), 0.0, 10.0, -1.0, WeeklyProfile.flat(), NoBurst())
    empty = sample_arrivals(rng(7), 0.0, 10.0, 0.0, WeeklyProfile.flat(), AZURE_CONV_BURST)
    assert empty.size == 0


# --- growth -------------------------------------------------------------------------------


def test_growth_mean_matches_compounded_mean_growth() -> None:
    months, g, sd_log, reps = 12, 0.2, 0.3, 20_000
    gen = rng(9)
    paths = np.array([sample_monthly_growth(gen, months, g, sd_log) for _ in range(reps)])
    mean, variance = growth_moments(months, g, sd_log)
    assert np.all(paths[:, 0] == 1.0)
    assert mean.tolist() == pytest.approx([(1 + g) ** m for m in range(months)])
    assert np.all(np.abs(paths.mean(axis=0) - mean) <= 4 * np.sqrt(variance / reps))
    # log-normal with mu = log(1+g) would overshoot month 12 by exp(11·0.045) ≈ 1.64
    assert paths[:, -1].mean() == pytest.approx((1 + g) ** 11, rel=0.05)


def test_growth_deterministic_and_validation() -> None:
    assert sample_monthly_growth(rng(0), 3, 0.1, 0.0).tolist() == pytest.approx([1.0, 1.1, 1.21])
    assert sample_monthly_growth(rng(0), 1, 0.1, 0.5).tolist() == [1.0]
    for bad in [(0, 0.1, 0.1), (3, -1.0, 0.1), (3, 0.1, -0.1), (3, math.nan, 0.1)]:
        with pytest.raises(ValueError):
            sample_monthly_growth(rng(0), *bad)


# --- lengths ------------------------------------------------------------------------------


def test_empirical_lengths_means_and_joint_resampling() -> None:
    trace = read_azure_trace(CONV_TRACE)
    lengths = empirical_lengths(trace, "azure conv")
    assert lengths.size == 19_366
    assert lengths.mean_input() == pytest.approx(1154.697, abs=1e-3)
    assert lengths.mean_output() == pytest.approx(211.126, abs=1e-3)
    n = 200_000
    inp, out = lengths.sample(rng(10), n)
    assert inp.dtype == np.int64 and out.dtype == np.int64 and inp.size == n
    for sample, data in ((inp, lengths.input_tokens), (out, lengths.output_tokens)):
        assert abs(sample.mean() - data.mean()) < 4 * data.std() / math.sqrt(n)
    # Joint: every sampled pair is a pair of the data, and the correlation is the data's.
    pairs = set(zip(lengths.input_tokens.tolist(), lengths.output_tokens.tolist(), strict=True))
    assert set(zip(inp[:1000].tolist(), out[:1000].tolist(), strict=True)) <= pairs
    data_corr = np.corrcoef(lengths.input_tokens, lengths.output_tokens)[0, 1]
    assert np.corrcoef(inp, out)[0, 1] == pytest.approx(data_corr, abs=0.02)


def test_models_pickle_for_worker_processes() -> None:
    profile = read_weekly_profile(PROFILE_CSV)
    lengths = EmpiricalLengths.from_arrays([3, 4], [5, 6], "toy")
    for obj in (profile, AZURE_CONV_BURST, NoBurst()):
        assert pickle.loads(pickle.dumps(obj)) == obj
    copy = pickle.loads(pickle.dumps(lengths))
    assert copy.name == "toy" and copy.input_tokens.tolist() == [3, 4]
    assert not copy.input_tokens.flags.writeable
    assert not pickle.loads(pickle.dumps(profile)).array.flags.writeable


def test_empirical_lengths_validation() -> None:
    with pytest.raises(ValueError, match=r"output_tokens\[1\] must be >= 1 token, got 0"):
        EmpiricalLengths(np.array([5, 6]), np.array([1, 0]))
    with pytest.raises(ValueError, match="differ in length"):
        EmpiricalLengths(np.array([5, 6]), np.array([1]))
    with pytest.raises(ValueError, match="at least one"):
        EmpiricalLengths(np.array([], dtype=np.int64), np.array([], dtype=np.int64))
    with pytest.raises(ValueError, match="integers"):
        EmpiricalLengths(np.array([1.5]), np.array([1]))


# --- one month ----------------------------------------------------------------------------


def test_sample_month_uses_per_month_streams() -> None:
    lengths = EmpiricalLengths(np.array([10, 20, 30]), np.array([1, 2, 3]), "toy")
    workload = WorkloadModel(0.5, WeeklyProfile.flat(), AZURE_CONV_BURST, lengths)
    week = {"duration_s": WEEK_S}
    a = sample_month(workload, 2, 1.5, Streams(42, 0).month(2), **week)
    b = sample_month(workload, 2, 1.5, Streams(42, 0).month(2), **week)
    c = sample_month(workload, 3, 1.5, Streams(42, 0).month(3), **week)
    assert np.array_equal(a.arrival_s, b.arrival_s)
    assert np.array_equal(a.input_tokens, b.input_tokens)
    assert a.arrival_s.size != c.arrival_s.size
    start_s, _ = month_window_s(2)
    assert a.arrival_s[0] >= start_s and a.arrival_s[-1] < start_s + WEEK_S
    assert len(a) == a.input_tokens.size == a.output_tokens.size
    assert np.array_equal(a.input_tokens // 10, a.output_tokens)  # pairs kept together
    expected = 0.5 * 1.5 * WEEK_S
    assert abs(len(a) - expected) < 0.2 * expected
    with pytest.raises(ValueError, match="inside the month"):
        sample_month(
            workload,
            1,
            1.0,
            Streams(42, 0).month(1),
            offset_s=SECONDS_PER_MONTH - 1.0,
            duration_s=2.0,
        )


# --- trace readers ------------------------------------------------------------------------

AZURE_HEADER = "TIMESTAMP,ContextTokens,GeneratedTokens\n"
GOOD_ROWS = (
    "2023-11-16 18:15:46.6805900,374,44\n"
    "2023-11-16 18:15:50.9951690,396,109\n"
    "2023-11-16 18:15:50.9951690,12,1\n"
)


def write(tmp_path: Path, text: str, name: str = "t.csv") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_azure_reader_round_trip(tmp_path: Path) -> None:
    frame = read_azure_trace(write(tmp_path, AZURE_HEADER + GOOD_ROWS))
    assert frame.schema == pl.Schema(
        {"arrival_s": pl.Float64, "input_tokens": pl.Int64, "output_tokens": pl.Int64}
    )
    assert frame["arrival_s"].to_list() == pytest.approx([0.0, 4.314579, 4.314579], abs=1e-9)
    assert frame["input_tokens"].to_list() == [374, 396, 12]
    assert frame["output_tokens"].to_list() == [44, 109, 1]


def test_shipped_traces_read() -> None:
    conv, code = read_azure_trace(CONV_TRACE), read_azure_trace(CODE_TRACE)
    assert conv.height == 19_366 and code.height == 8_819
    assert conv["arrival_s"][-1] == pytest.approx(3501.72, abs=0.01)
    profile = read_weekly_profile(PROFILE_CSV)
    assert profile.mean() == pytest.approx(1.0, abs=1e-12)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "t.csv: file is empty, got ''"),
        (AZURE_HEADER, "t.csv: no data rows after the header, got"),
        (
            "TIMESTAMP,ContextTokens\n2023-11-16 18:15:46,3\n",
            "t.csv: column GeneratedTokens: missing column; expected",
        ),
        (
            "TIMESTAMP,ContextTokens,GeneratedTokens,extra\n2023-11-16 18:15:46,3,4,5\n",
            "t.csv: column extra: unexpected column; expected exactly",
        ),
        (
            AZURE_HEADER + GOOD_ROWS + "2023-11-16 18:15:51,abc,4\n",
            "t.csv: row 4: column ContextTokens: not an integer, got 'abc'",
        ),
        (
            AZURE_HEADER + "2023-11-16 18:15:46,3,4.5\n",
            "t.csv: row 1: column GeneratedTokens: not an integer, got '4.5'",
        ),
        (
            AZURE_HEADER + GOOD_ROWS + "2023-11-16 18:15:51,-3,4\n",
            "t.csv: row 4: column ContextTokens: token count must be >= 1, got '-3'",
        ),
        (
            AZURE_HEADER + "2023-11-16 18:15:46,3,4\n2023-11-16 18:15:47,3,0\n",
            "t.csv: row 2: column GeneratedTokens: token count must be >= 1, got '0'",
        ),
        (
            AZURE_HEADER + "2023-11-16 18:15:46,3,4\nyesterday,3,4\n",
            "t.csv: row 2: column TIMESTAMP: not a timestamp",
        ),
        (
            AZURE_HEADER + GOOD_ROWS + "2023-11-16 18:15:50.9,3,4\n",
            "t.csv: row 4: column TIMESTAMP: timestamps must be non-decreasing, previous row "
            "has '2023-11-16 18:15:50.9951690', got '2023-11-16 18:15:50.9'",
        ),
        (
            AZURE_HEADER + "2023-11-16 18:15:46,3,4\n2023-11-16 18:15:47,3,4,9\n",
            "t.csv: row 2: expected 3 fields, got '2023-11-16 18:15:47,3,4,9'",
        ),
        (
            AZURE_HEADER + "2023-11-16 18:15:46,3,4\n2023-11-16 18:15:47,3\n",
            "t.csv: row 2: column GeneratedTokens: missing value, got None",
        ),
        (
            AZURE_HEADER + "2023-11-16 18:15:46,3,4\n\n2023-11-16 18:15:47,3,4\n",
            "t.csv: row 2: column TIMESTAMP: missing value, got None",
        ),
    ],
)
def test_azure_reader_located_errors(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(TraceError) as info:
        read_azure_trace(path)
    assert str(info.value).startswith(str(tmp_path / message))


def test_missing_file_is_a_trace_error(tmp_path: Path) -> None:
    with pytest.raises(TraceError, match="cannot read file"):
        read_azure_trace(tmp_path / "absent.csv")


def profile_csv(values: list[str], hours: list[str] | None = None) -> str:
    hours = hours if hours is not None else [str(h) for h in range(len(values))]
    rows = "".join(f"{h},{v}\n" for h, v in zip(hours, values, strict=True))
    return "hour_of_week,multiplier\n" + rows


def test_weekly_profile_reader_round_trip(tmp_path: Path) -> None:
    values = [str(1 + (h % 24) / 10) for h in range(HOURS_PER_WEEK)]
    profile = read_weekly_profile(write(tmp_path, profile_csv(values)))
    raw = np.array([float(v) for v in values])
    assert profile.array.tolist() == pytest.approx((raw / raw.mean()).tolist())


@pytest.mark.parametrize(
    ("values", "hours", "message"),
    [
        (["1"] * 167, None, "t.csv: a weekly profile needs 168 rows, got 167"),
        (["1"] * 169, None, "t.csv: a weekly profile needs 168 rows, got 169"),
        (
            ["1"] * 168,
            [str(h) for h in range(167)] + ["168"],
            "t.csv: row 168: column hour_of_week: hours must be 0, 1, …, 167 in order: "
            "expected 167, got '168'",
        ),
        (["1"] * 168, ["x"] + [str(h) for h in range(1, 168)], "row 1: column hour_of_week"),
        (["1"] * 10 + ["-1"] + ["1"] * 157, None, "t.csv: row 11: column multiplier: must be"),
        (["1"] * 10 + ["nan"] + ["1"] * 157, None, "t.csv: row 11: column multiplier: must be"),
        (["1"] * 10 + ["one"] + ["1"] * 157, None, "row 11: column multiplier: not a number"),
        (["0"] * 168, None, "t.csv: column multiplier: multipliers are all zero, got 0.0"),
    ],
)
def test_weekly_profile_reader_located_errors(
    tmp_path: Path, values: list[str], hours: list[str] | None, message: str
) -> None:
    path = write(tmp_path, profile_csv(values, hours))
    with pytest.raises(TraceError) as info:
        read_weekly_profile(path)
    assert str(info.value).startswith(str(tmp_path / "t.csv")) and message in str(info.value)

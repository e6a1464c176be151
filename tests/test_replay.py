"""Trace replay (sim.workload.replay, workload.kind = "replay"): exact round trips, scaling,
looping, time scaling, offsets, growth, and the config that drives them.

The round trip goes through the whole experiment path (TOML → load_experiment →
runner.sample_workload) for every request-trace format: at scale 1 the first loop of month 1
*is* the trace — every arrival time and every token pair, bit for bit.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from sim.errors import ConfigError
from sim.experiment import load_experiment, sample_month_requests
from sim.replication import sample_workload
from sim.rng import Streams
from sim.traces import RequestTrace, read_trace
from sim.units import SECONDS_PER_MONTH
from sim.workload import EmpiricalLengths, RateReplay, ReplayTraffic, RequestReplay

REPO = Path(__file__).resolve().parents[1]
TRACES = REPO / "traces"

ENGINE_AND_REST = """
[engine]
model = "llama-3-8b"
max_num_seqs = 256
max_num_batched_tokens = 2048
max_model_len = 8192

{fleet}
[cost]
ops_usd_per_month = 0.0

[slo]
ttft_s = 1.5
tpot_s = 0.1
"""


def experiment(tmp_path: Path, workload: str, months: int = 1, name: str = "replay") -> Path:
    fleet = '[[fleet.months]]\npools = [{ gpu = "a100-80gb", count = 1 }]\n' * months
    text = f'name = "{name}"\nseed = 5\nmonths = {months}\n\n{workload}\n'
    text += ENGINE_AND_REST.format(fleet=fleet)
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def replay_section(trace: Path, extra: str = "", growth: float = 0.2) -> str:
    return (
        f'[workload]\nkind = "replay"\ntrace = "{trace.as_posix()}"\n{extra}\n'
        f"[workload.growth]\nmean_monthly = {growth}\nsd_log = 0.1\n"
    )


def small_traces(tmp_path: Path) -> dict[str, Path]:
    """One small file per request format with arrival times (plus the shipped ones)."""
    rows = [(0.0, 10, 3), (25.0, 20, 4), (25.0, 30, 5), (350.5, 1, 1), (975.25, 7, 700)]
    out = {
        "azure": TRACES / "azure_code_2023.csv",
        "mooncake": TRACES / "mooncake_conversation_trace.jsonl.xz",
    }
    generic = tmp_path / "g.csv"
    generic.write_text(
        "arrival_s,input_tokens,output_tokens\n" + "".join(f"{a},{i},{o}\n" for a, i, o in rows)
    )
    out["generic"] = generic
    vidur = tmp_path / "v.csv"
    vidur.write_text(
        "arrived_at,num_prefill_tokens,num_decode_tokens\n"
        + "".join(f"{a},{i},{o}\n" for a, i, o in rows)
    )
    out["vidur"] = vidur
    bench = tmp_path / "bench.json"
    bench.write_text(
        json.dumps(
            {
                "input_lens": [i for _, i, _ in rows],
                "output_lens": [o for _, _, o in rows],
                "start_times": [100.0 + a for a, _, _ in rows],
                "errors": [""] * len(rows),
            }
        )
    )
    out["vllm-bench"] = bench
    log = tmp_path / "requests.jsonl"
    log.write_text(
        "".join(
            json.dumps({"input_toks": i, "output_toks": o, "arrival_time": 1.7e9 + a}) + "\n"
            for a, i, o in rows
        )
    )
    out["llmservingsim"] = log
    return out


FORMATS_WITH_ARRIVALS = ("azure", "mooncake", "generic", "vidur", "vllm-bench", "llmservingsim")


@pytest.mark.parametrize("fmt", FORMATS_WITH_ARRIVALS)
def test_replay_at_scale_one_reproduces_the_trace_exactly(tmp_path: Path, fmt: str) -> None:
    trace_path = small_traces(tmp_path)[fmt]
    trace = read_trace(trace_path)
    assert isinstance(trace, RequestTrace) and trace.format == fmt
    exp = load_experiment(experiment(tmp_path, replay_section(trace_path)))
    wl = sample_workload(exp, Streams(exp.spec.seed, 3))
    n = trace.size
    t = trace.frame["arrival_s"].to_numpy()
    # The first loop is the trace itself: times, input and output tokens, bit for bit.
    assert np.array_equal(wl.arrival_s[:n], t)
    assert np.array_equal(wl.input_tokens[:n], trace.frame["input_tokens"].to_numpy())
    assert np.array_equal(wl.output_tokens[:n], trace.frame["output_tokens"].to_numpy())
    # Looped to fill the month: loop k is the trace shifted by k periods (last arrival + mean gap).
    period = RequestReplay.default_period_s(t)
    loops = wl.arrival_s.size // n
    assert loops == math.floor(SECONDS_PER_MONTH / period) or wl.arrival_s.size % n
    assert np.allclose(wl.arrival_s[n : 2 * n], t + period, rtol=0, atol=1e-9)
    assert np.array_equal(wl.input_tokens[n : 2 * n], wl.input_tokens[:n])
    assert wl.arrival_s[-1] < SECONDS_PER_MONTH and np.all(np.diff(wl.arrival_s) >= 0)
    # Same seed, other replication: still the same (scale 1 draws nothing).
    assert np.array_equal(sample_workload(exp, Streams(exp.spec.seed, 4)).arrival_s, wl.arrival_s)


def test_a_window_of_a_month_is_the_slice_of_the_month(tmp_path: Path) -> None:
    """What a sampled horizon draws for one hour equals that hour of the full month."""
    exp = load_experiment(experiment(tmp_path, replay_section(TRACES / "azure_conv_2023.csv")))
    full = sample_month_requests(exp, Streams(exp.spec.seed, 0), 1, 1.0)
    window = sample_month_requests(
        exp, Streams(exp.spec.seed, 0), 1, 1.0, offset_s=7200.0, duration_s=3600.0
    )
    inside = (full.arrival_s >= 7200.0) & (full.arrival_s < 10_800.0)
    assert np.array_equal(window.arrival_s, full.arrival_s[inside])
    assert np.array_equal(window.output_tokens, full.output_tokens[inside])


def toy(n: int = 400, seed: int = 0) -> RequestReplay:
    rng = np.random.default_rng(seed)
    t = np.sort(rng.uniform(0.0, 100.0, n))
    return RequestReplay(t, rng.integers(1, 500, n), rng.integers(1, 50, n), 101.0, "toy")


def test_thinning_keeps_a_subset_with_binomial_count() -> None:
    src = toy()
    traffic = ReplayTraffic(src, rate_scale=0.3)
    whole = ReplayTraffic(src).sample(Streams(1, 0).month(1), 0.0, 1010.0, 1.0)
    counts = []
    for k in range(200):
        t, _, _ = traffic.sample(Streams(1, k).month(1), 0.0, 1010.0, 1.0)
        assert np.isin(t, whole[0]).all()  # thinning only removes arrivals
        counts.append(t.size)
    n, p = whole[0].size, 0.3
    assert abs(np.mean(counts) - n * p) < 4 * math.sqrt(n * p * (1 - p) / 200)
    assert np.var(counts, ddof=1) == pytest.approx(n * p * (1 - p), rel=0.3)
    assert traffic.expected_arrivals(0.0, 1010.0, 1.0) == pytest.approx(n * p)


def test_superposition_adds_shifted_copies_and_keeps_copy_zero() -> None:
    src = toy()
    traffic = ReplayTraffic(src, rate_scale=2.5)
    t, inp, out = traffic.sample(Streams(7, 0).month(1), 0.0, 1010.0, 1.0)
    original = ReplayTraffic(src).sample(Streams(7, 0).month(1), 0.0, 1010.0, 1.0)
    assert np.isin(original[0], t).all()  # copy 0 is the trace itself
    pairs = set(zip(src.input_tokens.tolist(), src.output_tokens.tolist(), strict=True))
    assert set(zip(inp.tolist(), out.tolist(), strict=True)) <= pairs  # lengths travel along
    assert np.all(np.diff(t) >= 0)
    # Two whole copies and half a copy: E = 2.5 n; only the half copy is random.
    n = original[0].size
    assert abs(t.size - 2.5 * n) < 4 * math.sqrt(0.25 * n) + 1
    assert traffic.expected_arrivals(0.0, 1010.0, 1.0) == pytest.approx(2.5 * n)
    # Each month draws its own shifts: month 2's copies differ, copy 0 does not.
    later = traffic.sample(Streams(7, 0).month(2), 0.0, 1010.0, 1.0)
    assert not np.array_equal(later[0], t)
    assert np.isin(original[0], later[0]).all()


def test_growth_scales_the_month_by_thinning_or_superposition() -> None:
    src = toy(n=300)
    traffic = ReplayTraffic(src, rate_scale=0.5)
    grown = [traffic.sample(Streams(3, k).month(2), 0.0, 10_100.0, 1.44)[0].size for k in range(60)]
    expected = traffic.expected_arrivals(0.0, 10_100.0, 1.44)
    assert expected == pytest.approx(0.72 * 300 * 100)
    assert abs(np.mean(grown) - expected) < 4 * math.sqrt(expected * 0.28 * 0.72 / 60) + 1


def test_time_scale_offset_and_no_loop() -> None:
    src = toy(n=50)
    slow = ReplayTraffic(src, time_scale=2.0, offset_s=30.0, loop=False)
    t, _, _ = slow.sample(Streams(1, 0).month(1), 0.0, 10_000.0, 1.0)
    assert np.array_equal(t, 30.0 + src.arrival_s * 2.0)  # one pass, stretched, shifted
    assert slow.period_plan_s == 202.0
    assert slow.mean_rate_per_s() == pytest.approx(50 / 202.0)
    assert slow.expected_arrivals(0.0, 10_000.0, 1.0) == 50.0
    assert slow.expected_arrivals(500.0, 10_000.0, 1.0) == 0.0


def test_rate_replay_is_poisson_with_the_trace_rates() -> None:
    rates = np.array([1.0, 0.0, 3.0])
    lengths = EmpiricalLengths.from_arrays([5, 6], [7, 8])
    traffic = ReplayTraffic(RateReplay(60.0, rates), rate_scale=2.0, lengths=lengths)
    counts = np.array(
        [
            np.histogram(
                traffic.sample(Streams(0, k).month(1), 0.0, 180.0, 1.0)[0], [0, 60, 120, 180]
            )[0]
            for k in range(300)
        ]
    )
    assert counts[:, 1].sum() == 0  # an idle window stays idle
    expected = rates * 60.0 * 2.0
    assert np.all(np.abs(counts.mean(axis=0) - expected) <= 4 * np.sqrt(expected / 300) + 1e-9)
    assert counts[:, 2].var(ddof=1) == pytest.approx(expected[2], rel=0.25)  # Poisson
    assert traffic.expected_arrivals(0.0, 180.0, 1.0) == pytest.approx(expected.sum())
    with pytest.raises(ValueError, match="no token lengths"):
        ReplayTraffic(RateReplay(60.0, rates))


def test_servegen_rate_replay_keeps_the_weekly_shape(tmp_path: Path) -> None:
    path = experiment(
        tmp_path,
        replay_section(
            TRACES / "servegen_m_large_rates.csv",
            "base_requests_per_day = 2000\n"
            f'lengths = "{(TRACES / "azure_conv_2023.csv").as_posix()}"',
        ),
        months=2,
    )
    exp = load_experiment(path)
    shipped = read_weekly(TRACES / "servegen_weekly_profile.csv")
    # 14 days looped: every hour-of-week slot sees the same two weeks, so the shape is exact
    # over whole periods; a 2-month horizon is 4.3 periods, hence "almost".
    assert np.corrcoef(exp.profile.array, shipped)[0, 1] > 0.99
    traffic = exp.traffic()
    assert isinstance(traffic, ReplayTraffic)
    month = sample_month_requests(exp, Streams(exp.spec.seed, 0), 1, 1.0)
    expected = traffic.expected_arrivals(0.0, SECONDS_PER_MONTH, 1.0)
    assert expected == pytest.approx(2000 * 730 / 24, rel=0.02)  # the volume asked for
    assert abs(len(month) - expected) < 4 * math.sqrt(expected)


def read_weekly(path: Path) -> np.ndarray:
    from sim.traces import read_weekly_profile

    return read_weekly_profile(path).array


def test_volume_from_base_requests_per_day(tmp_path: Path) -> None:
    exp = load_experiment(
        experiment(
            tmp_path,
            replay_section(TRACES / "azure_conv_2023.csv", "base_requests_per_day = 1000"),
        )
    )
    traffic = exp.traffic()
    assert isinstance(traffic, ReplayTraffic)
    assert traffic.rate_scale == pytest.approx(1000 / 86_400 / traffic.mean_rate_per_s())
    assert traffic.expected_arrivals(0.0, SECONDS_PER_MONTH, 1.0) == pytest.approx(
        1000 * 730 / 24, rel=0.01
    )


REPLAY_ERRORS = [
    pytest.param(
        "rate_scale = 2.0\nbase_requests_per_day = 10",
        "{f}: workload.rate_scale: give either rate_scale or base_requests_per_day (the volume "
        "it implies), not both, got 2.0",
        id="scale-and-volume",
    ),
    pytest.param(
        "rate_scale = 0",
        "{f}: workload.rate_scale: must be > 0, got 0",
        id="zero-scale",
    ),
    pytest.param(
        'format = "azur"',
        "{f}: workload.format: must be one of azure, mooncake, servegen, vidur, vllm-bench, "
        "llmservingsim, generic, rates, otel, prometheus (did you mean 'azure'?), got 'azur'",
        id="format-typo",
    ),
    pytest.param(
        'loop = "yes"',
        "{f}: workload.loop: must be true or false, got 'yes'",
        id="loop-not-bool",
    ),
    pytest.param(
        "time_scale = -1.0",
        "{f}: workload.time_scale: must be > 0, got -1.0",
        id="negative-time-scale",
    ),
    pytest.param(
        '[workload.burst]\nkind = "markov"',
        '{f}: workload.burst: not used with kind = "replay" (the trace gives the shape of traffic)',
        id="burst-with-replay",
    ),
]


@pytest.mark.parametrize(("extra", "message"), REPLAY_ERRORS)
def test_replay_config_errors(tmp_path: Path, extra: str, message: str) -> None:
    path = experiment(tmp_path, replay_section(TRACES / "azure_conv_2023.csv", extra))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(info.value) == message.format(f=path)


def test_replay_of_a_rate_trace_needs_lengths(tmp_path: Path) -> None:
    path = experiment(tmp_path, replay_section(TRACES / "servegen_m_large_rates.csv"))
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(info.value) == (
        f"{path}: workload.lengths: is required: a rate trace has no token lengths"
    )


def test_replay_placed_outside_the_horizon(tmp_path: Path) -> None:
    path = experiment(
        tmp_path,
        replay_section(TRACES / "azure_code_2023.csv", "offset_s = 1e8\nloop = false"),
    )
    with pytest.raises(ConfigError, match="places the trace outside the plan's horizon"):
        load_experiment(path)


def test_include_a_fitted_workload(tmp_path: Path) -> None:
    include = (REPO / "experiments" / "workloads" / "azure_conv.toml").as_posix()
    section = (
        f'[workload]\ninclude = "{include}"\nbase_requests_per_day = 300\n\n'
        "[workload.growth]\nmean_monthly = 0.1\n"
    )
    exp = load_experiment(experiment(tmp_path, section))
    w = exp.spec.workload
    assert w.base_requests_per_day == 300 and w.growth.mean_monthly == 0.1
    assert w.kind == "generated" and w.burst.kind == "ou"
    assert w.source_file == str(Path(include).resolve())
    assert len(sample_month_requests(exp, Streams(exp.spec.seed, 0), 1, 1.0)) > 0


def test_include_errors_name_the_right_file(tmp_path: Path) -> None:
    bad = tmp_path / "fitted.toml"
    bad.write_text('[workload]\nkind = "generated"\nbase_requests_per_day = -5\n', "utf-8")
    section = (
        '[workload]\ninclude = "fitted.toml"\nweekly_profile = "x.csv"\n\n'
        "[workload.growth]\nmean_monthly = 0.1\n"
    )
    path = experiment(tmp_path, section)
    with pytest.raises(ConfigError) as info:
        load_experiment(path)
    assert str(info.value).splitlines() == [
        f"{path}: workload.weekly_profile: not allowed with include (set it in fitted.toml; "
        "only base_requests_per_day and [workload.growth] may be given here)",
        f"{bad}: workload.base_requests_per_day: must be > 0, got -5",
        f"{bad}: workload.weekly_profile: is required (a CSV file or a list of 168 numbers)",
        f"{bad}: workload.lengths: is required (a trace file to resample (input, output) "
        "pairs from)",
    ]

"""Experiment-file validation (sim.config, sim.experiment): every message exact and located.

Each bad file is a copy of experiments/growth20pct.toml with one edit (or a few), written to
`tmp_path`; its `../traces/...` paths are rewritten to absolute paths into this repository so
the copy still names real files. Messages are compared as whole lines, file path included.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pytest

from sim.config import ExperimentSpec, load_experiment_spec, parse_experiment
from sim.data import gpus, models
from sim.errors import ConfigError, TraceError
from sim.experiment import load_experiment

REPO = Path(__file__).resolve().parents[1]
GROWTH = REPO / "experiments" / "growth20pct.toml"
TRACES = REPO / "traces"
GPUS = ", ".join(sorted(gpus()))
MODELS = ", ".join(sorted(models()))
A100 = '{ name = "base", gpu = "a100-80gb", count = 1 }'


def growth_text() -> str:
    """growth20pct.toml with its trace paths made absolute (so a copy anywhere is valid)."""
    text = GROWTH.read_text(encoding="utf-8")
    assert text.count('"../traces/') == 2
    return text.replace('"../traces/', f'"{TRACES.as_posix()}/')


def sub(old: str, new: str) -> Callable[[str], str]:
    """An edit replacing the one occurrence of `old` (fails loudly if the base file changed)."""

    def edit(text: str) -> str:
        assert text.count(old) == 1, f"{old!r} occurs {text.count(old)} times"
        return text.replace(old, new)

    return edit


def fleet(*pools: str) -> Callable[[str], str]:
    """An edit replacing every [[fleet.months]] entry: one `pools = [...]` per month."""

    def edit(text: str) -> str:
        start, end = text.index("[[fleet.months]]"), text.index("[cost]")
        months = "".join(f"[[fleet.months]]\npools = [{p}]\n" for p in pools)
        return text[:start] + months + "\n" + text[end:]

    return edit


def edits(*steps: Callable[[str], str]) -> Callable[[str], str]:
    def edit(text: str) -> str:
        for step in steps:
            text = step(text)
        return text

    return edit


SIX_MONTHS = (A100, A100, A100, A100, A100, A100)

# (edit of growth20pct.toml, expected lines; {f} = the file as given, {d} = its folder resolved)
BAD_FILES = [
    pytest.param(
        sub("seed = 20261122\n", "seed = 20261122\nsed = 1\n"),
        ["{f}: sed: unknown key (did you mean 'seed'?)"],
        id="unknown-top-level-key",
    ),
    pytest.param(
        sub("base_requests_per_day = 5000", "base_request_per_day = 5000"),
        [
            "{f}: workload.base_requests_per_day: is required (a number)",
            "{f}: workload.base_request_per_day: unknown key "
            "(did you mean 'base_requests_per_day'?)",
        ],
        id="unknown-nested-key-and-missing-required",
    ),
    pytest.param(
        fleet(A100, A100, A100.replace("count = 1", "count = -1"), A100, A100, A100),
        ["{f}: fleet.months[2].pools[0].count: must be >= 0, got -1"],
        id="negative-pool-count",
    ),
    pytest.param(
        fleet(A100, A100.replace("count = 1", "count = 1.5"), A100, A100, A100, A100),
        ["{f}: fleet.months[1].pools[0].count: must be an integer, got 1.5"],
        id="fractional-pool-count",
    ),
    pytest.param(
        fleet(A100, A100, A100, A100.replace("count = 1", "count = 0"), A100, A100),
        ["{f}: fleet.months[3].pools: must hold at least one replica, got 0"],
        id="month-without-replicas",
    ),
    pytest.param(
        sub("ttft_s = 1.5 ", 'ttft_s = "1.5s" '),
        ["{f}: slo.ttft_s: must be a number of seconds, got '1.5s'"],
        id="units-in-a-string",
    ),
    pytest.param(
        sub("tpot_s = 0.1 ", "tpot_s = 0 "),
        ["{f}: slo.tpot_s: must be > 0, got 0"],
        id="zero-slo",
    ),
    pytest.param(
        fleet(A100.replace("a100-80gb", "a100-80g"), *SIX_MONTHS[1:]),
        [
            f"{{f}}: fleet.months[0].pools[0].gpu: must be one of {GPUS} "
            "(did you mean 'a100-80gb'?), got 'a100-80g'"
        ],
        id="unknown-gpu",
    ),
    pytest.param(
        sub('"a100-80gb" = 1.64', '"a100_80gb" = 1.64'),
        ["{f}: cost.gpu_usd_per_hour.a100_80gb: unknown GPU (did you mean 'a100-80gb'?)"],
        id="unknown-gpu-price",
    ),
    pytest.param(
        sub('model = "llama-3-8b"', 'model = "llama-3-8B"'),
        [
            f"{{f}}: engine.model: must be one of {MODELS} "
            "(did you mean 'llama-3-8b'?), got 'llama-3-8B'"
        ],
        id="unknown-model",
    ),
    pytest.param(
        sub("\nmonths = 6\n", "\nmonths = 5\n"),
        ["{f}: fleet.months: must have one entry per month (5), got '6 entries'"],
        id="fleet-months-count",
    ),
    pytest.param(
        sub(
            f'weekly_profile = "{TRACES.as_posix()}/servegen_weekly_profile.csv"',
            "weekly_profile = [1.0, 2.0, 3.0]",
        ),
        [
            "{f}: workload.weekly_profile: must list 168 numbers >= 0 (one per hour of week), "
            "got '3 values'"
        ],
        id="profile-list-length",
    ),
    pytest.param(
        sub(f'lengths = "{TRACES.as_posix()}/azure_conv_2023.csv"', 'lengths = "no/such.csv"'),
        ["{f}: workload.lengths: file not found ({d}/no/such.csv), got 'no/such.csv'"],
        id="missing-lengths-file",
    ),
    pytest.param(
        sub("max_num_batched_tokens = 2048", "max_num_batched_tokens = 128"),
        [
            "{f}: engine.max_num_batched_tokens: must be >= max_num_seqs (256), "
            "as vLLM requires, got 128"
        ],
        id="batched-tokens-below-seqs",
    ),
    pytest.param(
        # 10% of the device's 79.25 GiB = 8.51 GB < 16.06 GB of fp16 weights: short by the
        # weights' overflow (7.55 GB) + the non-torch reserve (0.95 GB) + activations (0.32 GB)
        # + one max_model_len of KV (8192 × 128 KiB = 1.07 GB).
        sub("gpu_memory_utilization = 0.9 ", "gpu_memory_utilization = 0.1 "),
        [
            "{f}: engine: llama-3-8b (fp16, tp 1) on a100-80gb: KV cache holds 0 tokens, "
            "less than max_model_len 8192; short by 9.89 GB per GPU, got 'llama-3-8b/a100-80gb'"
        ],
        id="model-does-not-fit",
    ),
    pytest.param(
        # A measured kv_blocks override of 10 blocks: 160 tokens, short 8032 × 128 KiB.
        sub("gpu_memory_utilization = 0.9 ", "kv_blocks = 10\ngpu_memory_utilization = 0.9 "),
        [
            "{f}: engine: llama-3-8b (fp16, tp 1) on a100-80gb: KV cache holds 160 tokens, "
            "less than max_model_len 8192; short by 1.05 GB per GPU, got 'llama-3-8b/a100-80gb'"
        ],
        id="kv-blocks-override-too-small",
    ),
    pytest.param(
        # vLLM refuses to split 28 attention heads over 8 GPUs
        lambda text: sub("\ntp = 1", "\ntp = 8")(sub('"llama-3-8b"', '"qwen2.5-7b"')(text)),
        [
            "{f}: engine: qwen2.5-7b at tp 8 on a100-80gb: vLLM needs the 28 attention heads "
            "divisible by tp 8, got 'qwen2.5-7b/a100-80gb'"
        ],
        id="tp-the-heads-do-not-split-over",
    ),
    pytest.param(
        lambda text: "months = = 6\n" + text,
        ["{f}: not valid TOML: Invalid value (at line 1, column 10)"],
        id="invalid-toml",
    ),
    pytest.param(
        sub('kind = "markov"', 'kind = "markv"'),
        [
            "{f}: workload.burst.kind: must be one of none, markov, ou, product "
            "(did you mean 'markov'?), got 'markv'"
        ],
        id="burst-kind-typo",
    ),
    pytest.param(
        sub("burst_ratio = 2.0", "burst_ratio = 0.5"),
        ["{f}: workload.burst.burst_ratio: must be >= 1, got 0.5"],
        id="burst-ratio-below-one",
    ),
    pytest.param(
        sub("[workload]\n", '[workload]\nkind = "replai"\n'),
        [
            "{f}: workload.kind: must be one of generated, replay (did you mean 'replay'?), "
            "got 'replai'"
        ],
        id="workload-kind-typo",
    ),
    pytest.param(
        sub(
            'kind = "markov"\nmean_calm_s = 480.0                 # calm level 0.6x, burst level '
            "1.2x the mean rate\nmean_burst_s = 960.0\nburst_ratio = 2.0",
            'kind = "ou"\nsigma = 7.0\ncorrelation_time_s = 0',
        ),
        [
            "{f}: workload.burst.sigma: must be in [0, 5], got 7.0",
            "{f}: workload.burst.correlation_time_s: must be > 0, got 0",
        ],
        id="ou-burst-out-of-range",
    ),
    pytest.param(
        sub(
            'kind = "markov"\nmean_calm_s = 480.0                 # calm level 0.6x, burst level '
            "1.2x the mean rate\nmean_burst_s = 960.0\nburst_ratio = 2.0",
            'kind = "product"\nlayers = [{ kind = "ou", sigma = 0.3, correlation_time_s = 60.0 }]',
        ),
        [
            '{f}: workload.burst.layers: must list at least 2 layer tables ({{kind = "markov" | '
            "\"ou\", ...}}), got [{{'kind': 'ou', 'sigma': 0.3, 'correlation_time_s': 60.0}}]"
        ],
        id="product-burst-one-layer",
    ),
    pytest.param(
        sub(
            'kind = "markov"\nmean_calm_s = 480.0                 # calm level 0.6x, burst level '
            "1.2x the mean rate\nmean_burst_s = 960.0\nburst_ratio = 2.0",
            'kind = "product"\nlayers = [{ kind = "ou", sigma = 0.3, correlation_time_s = 60.0 },'
            ' { kind = "markv" }]',
        ),
        [
            "{f}: workload.burst.layers[1].kind: must be one of markov, ou "
            "(did you mean 'markov'?), got 'markv'"
        ],
        id="product-burst-layer-kind-typo",
    ),
    pytest.param(
        sub(
            f'lengths = "{TRACES.as_posix()}/azure_conv_2023.csv"',
            f'lengths = {{ file = "{TRACES.as_posix()}/azure_conv_2023.csv", format = "azur", '
            "smoothing_log_sd = 3.0, smooth = 1 }",
        ),
        [
            "{f}: workload.lengths.format: must be one of azure, mooncake, servegen, vidur, "
            "vllm-bench, llmservingsim, generic, rates, otel, prometheus "
            "(did you mean 'azure'?), got 'azur'",
            "{f}: workload.lengths.smoothing_log_sd: must be in [0, 2], got 3.0",
            "{f}: workload.lengths.smooth: unknown key",
        ],
        id="lengths-table-errors",
    ),
    pytest.param(
        sub("[workload]\n", '[workload]\ninclude = "missing.toml"\n'),
        [
            "{f}: workload.include: file not found ({d}/missing.toml), got 'missing.toml'",
            "{f}: workload.weekly_profile: not allowed with include (set it in missing.toml; "
            "only base_requests_per_day and [workload.growth] may be given here)",
            "{f}: workload.lengths: not allowed with include (set it in missing.toml; "
            "only base_requests_per_day and [workload.growth] may be given here)",
            "{f}: workload.burst: not allowed with include (set it in missing.toml; "
            "only base_requests_per_day and [workload.growth] may be given here)",
        ],
        id="include-missing-file-and-extra-keys",
    ),
    pytest.param(
        sub("\n[slo]\n", "\n[slos]\n"),
        [
            "{f}: slo.ttft_s: is required (a number of seconds)",
            "{f}: slo.tpot_s: is required (a number of seconds)",
            "{f}: slos: unknown key (did you mean 'slo'?)",
        ],
        id="misspelt-section",
    ),
    pytest.param(
        edits(
            sub("seed = 20261122\n", "seed = 20261122\nsed = 1\n"),
            sub('model = "llama-3-8b"', 'model = "llama-3-8B"'),
            sub("ttft_s = 1.5 ", 'ttft_s = "1.5s" '),
            fleet(A100, A100, A100.replace("count = 1", "count = -1"), A100, A100, A100),
        ),
        [
            f"{{f}}: engine.model: must be one of {MODELS} "
            "(did you mean 'llama-3-8b'?), got 'llama-3-8B'",
            "{f}: fleet.months[2].pools[0].count: must be >= 0, got -1",
            "{f}: slo.ttft_s: must be a number of seconds, got '1.5s'",
            "{f}: sed: unknown key (did you mean 'seed'?)",
        ],
        id="four-problems-at-once",
    ),
]


@pytest.mark.parametrize(("edit", "expected"), BAD_FILES)
def test_bad_file_reports_every_problem_located(
    tmp_path: Path, edit: Callable[[str], str], expected: list[str]
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(edit(growth_text()), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_experiment(str(path))
    want = [line.format(f=path, d=tmp_path.resolve()) for line in expected]
    assert str(info.value).splitlines() == want
    assert [str(p) for p in info.value.problems] == want  # one ConfigError holds them all


def test_unedited_copy_is_valid(tmp_path: Path) -> None:
    """The table's base file is valid, so each case fails for its own edit only."""
    path = tmp_path / "good.toml"
    path.write_text(growth_text(), encoding="utf-8")
    assert load_experiment_spec(path).months == 6


def test_engine_model_may_be_a_hugging_face_id(tmp_path: Path) -> None:
    """`[engine] model` takes a catalog name or a Hugging Face id / alias of one."""
    path = tmp_path / "hf.toml"
    path.write_text(
        sub('model = "llama-3-8b"', 'model = "meta-llama/Meta-Llama-3-8B-Instruct"')(growth_text()),
        encoding="utf-8",
    )
    assert load_experiment_spec(path).engine.model == "llama-3-8b"


def test_unreadable_file_is_a_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.toml"
    with pytest.raises(ConfigError) as info:
        load_experiment_spec(str(path))
    assert str(info.value) == f"{path}: cannot read file: No such file or directory"


def test_valid_file_parses_into_frozen_dataclasses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)  # relative paths follow the file's folder, not the cwd
    spec = load_experiment_spec(GROWTH)
    assert isinstance(spec, ExperimentSpec)
    assert (spec.name, spec.seed, spec.months, spec.replications) == (
        "growth20pct",
        20261122,
        6,
        20,
    )
    assert spec.workload.lengths_file == str(TRACES / "azure_conv_2023.csv")
    assert spec.workload.weekly_profile_file == str(TRACES / "servegen_weekly_profile.csv")
    assert spec.workload.burst.kind == "markov"
    assert spec.engine.block_size == 16  # default filled
    assert [m.replicas for m in spec.fleet] == [1, 1, 1, 2, 2, 2]
    assert spec.gpus_used() == ("a100-80gb",)
    assert spec.cost.price("a100-80gb") == 1.64  # file override of the package price
    # derived values are the experiment's, not the spec's
    kv_blocks = load_experiment(GROWTH).engine.per_gpu["a100-80gb"].kv_blocks
    assert kv_blocks * spec.engine.block_size >= spec.engine.max_model_len
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.months = 1  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.engine.tp = 2  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.fleet[0].pools[0].count = 3  # type: ignore[misc]


def test_inline_weekly_profile_of_168_numbers(tmp_path: Path) -> None:
    values = ", ".join(str(1.0 + (h % 24) / 10) for h in range(168))
    text = sub(
        f'weekly_profile = "{TRACES.as_posix()}/servegen_weekly_profile.csv"',
        f"weekly_profile = [{values}]",
    )(growth_text())
    spec = parse_experiment(text, str(tmp_path / "inline.toml"))
    assert spec.workload.weekly_profile_file is None
    assert spec.workload.weekly_profile_values is not None
    assert len(spec.workload.weekly_profile_values) == 168
    assert spec.workload.weekly_profile_values[25] == 1.1


def test_malformed_lengths_csv_is_a_located_trace_error(tmp_path: Path) -> None:
    csv = tmp_path / "lengths.csv"
    csv.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n"
        "2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,396,lots\n",
        encoding="utf-8",
    )
    text = sub(f'lengths = "{TRACES.as_posix()}/azure_conv_2023.csv"', 'lengths = "lengths.csv"')(
        growth_text()
    )
    path = tmp_path / "exp.toml"
    path.write_text(text, encoding="utf-8")
    load_experiment_spec(path)  # the experiment file itself is valid...
    with pytest.raises(TraceError) as info:  # ...the CSV it names is not
        load_experiment(path)
    resolved = csv.resolve()
    assert (
        str(info.value) == f"{resolved}: row 2: column GeneratedTokens: not an integer, got 'lots'"
    )
    assert (info.value.file, info.value.row, info.value.column) == (
        str(resolved),
        2,
        "GeneratedTokens",
    )

"""Tests of the step-time fitting library and of the packaged step-time catalog."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from sim.calibration.fit import (
    causal_pairs,
    fit_affine,
    fit_piecewise_linear,
    fit_through_origin,
    holdout_mask,
    mape,
    max_ape,
    nnls_relative,
    piecewise_linear,
    wape,
)
from sim.engine.catalog import StepTimeEntry, load_step_time_catalog, parse_step_time_catalog
from sim.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
DATA = REPO.parent / "shared" / "data"

# Token counts laid out like Vidur's mlp.csv: 1, 2, 4, then every 8 up to 1024, then 64 per octave.
_PIECES: list[np.ndarray] = [np.array([1.0, 2.0, 4.0]), np.arange(8.0, 1025.0, 8.0)]
_PIECES += [np.linspace(2.0**k, 2.0 ** (k + 1), 65)[1:] for k in range(10, 13)]
PROFILE_TOKENS: np.ndarray = np.unique(np.concatenate(_PIECES))


# ------------------------------------------------------------------ fitting library


@pytest.mark.parametrize(
    ("flat_s", "knee", "per_token_s"),
    [(0.011, 80.0, 6.7e-5), (0.030, 300.0, 1.8e-4), (0.006, 20.0, 2.0e-5)],
)
def test_piecewise_fit_recovers_known_coefficients_from_noisy_data(
    flat_s: float, knee: float, per_token_s: float
) -> None:
    rng = np.random.default_rng(20240917)
    truth = piecewise_linear(PROFILE_TOKENS, flat_s, knee, per_token_s)
    noisy = truth * rng.lognormal(0.0, 0.03, size=truth.size)  # 3 % multiplicative noise
    fit = fit_piecewise_linear(PROFILE_TOKENS, noisy)
    assert fit.flat_s == pytest.approx(flat_s, rel=0.03)
    assert fit.per_token_s == pytest.approx(per_token_s, rel=0.03)
    assert fit.knee_tokens == pytest.approx(knee, abs=max(0.15 * knee, 8.0))
    assert mape(piecewise_linear(PROFILE_TOKENS, *fit), truth) < 0.02


def test_piecewise_fit_is_exact_on_noiseless_data() -> None:
    truth = piecewise_linear(PROFILE_TOKENS, 0.01, 123.4, 5e-5)
    fit = fit_piecewise_linear(PROFILE_TOKENS, truth)
    assert fit.flat_s == pytest.approx(0.01, rel=1e-4)
    assert fit.knee_tokens == pytest.approx(123.4, abs=0.5)
    assert fit.per_token_s == pytest.approx(5e-5, rel=1e-4)


def test_piecewise_fit_of_flat_data_has_no_slope() -> None:
    fit = fit_piecewise_linear(PROFILE_TOKENS, np.full(PROFILE_TOKENS.size, 0.02))
    assert fit.flat_s == pytest.approx(0.02, rel=1e-9)
    assert fit.per_token_s == pytest.approx(0.0, abs=1e-15)


def test_piecewise_fit_rejects_non_positive_times() -> None:
    with pytest.raises(ValueError, match="positive"):
        fit_piecewise_linear([1, 2, 3], [0.1, 0.0, 0.2])


def test_fit_through_origin_and_with_offset() -> None:
    x = np.array([1.0, 10.0, 100.0, 1000.0])
    assert fit_through_origin(x, 3e-9 * x) == pytest.approx(3e-9, rel=1e-12)
    assert fit_through_origin(x, 1e-5 + 3e-9 * x, offset=1e-5) == pytest.approx(3e-9, rel=1e-9)


def test_fit_affine_recovers_line_and_respects_non_negativity() -> None:
    x = np.linspace(0, 5000, 50)
    aff = fit_affine(x, 1.5e-5 + 1.3e-9 * x)
    assert aff.intercept == pytest.approx(1.5e-5, rel=1e-9)
    assert aff.slope == pytest.approx(1.3e-9, rel=1e-9)
    # Truth with a negative intercept: the constrained fit must clamp it to 0, not go negative.
    x2 = np.linspace(10, 100, 20)
    clamped = fit_affine(x2, 2.0 * x2 - 5.0)
    assert clamped.intercept == 0.0
    assert clamped.slope > 0


def test_nnls_relative_weights_each_row_by_its_size() -> None:
    # Two inconsistent rows, y = 1 and y = 100 for the same x. Relative LS minimises
    # (b - 1)^2 + ((b - 100) / 100)^2, so b = 1.01 / 1.0001; absolute LS would give 50.5.
    coef, _ = nnls_relative(np.array([[1.0], [1.0]]), np.array([1.0, 100.0]))
    assert coef[0] == pytest.approx(1.01 / 1.0001, rel=1e-9)


def test_error_metrics() -> None:
    obs = np.array([1.0, 2.0, 4.0])
    pred = np.array([1.1, 2.0, 3.0])
    assert mape(pred, obs) == pytest.approx((0.1 + 0.0 + 0.25) / 3)
    assert max_ape(pred, obs) == pytest.approx(0.25)
    assert wape(pred, obs) == pytest.approx(1.1 / 7.0)


def test_causal_pairs() -> None:
    assert causal_pairs(1, 0) == 1.0
    assert causal_pairs(4, 0) == 10.0  # 1 + 2 + 3 + 4
    assert causal_pairs(2, 3) == 2 * 3 + 3


def test_holdout_mask_keeps_ends_and_groups_duplicates() -> None:
    keys = np.array([1, 2, 2, 3, 4, 5, 6, 7, 7, 8, 9, 10, 11, 12])
    held = holdout_mask(keys, every=5, offset=2)
    assert not held[0] and not held[-1]
    for k in np.unique(keys):
        assert len(set(held[keys == k])) == 1
    assert set(keys[held]) == {3, 8}


# ------------------------------------------------------------------ packaged catalog

CATALOG = load_step_time_catalog()
# A two-piece line cannot follow the GEMM tile-quantisation steps of real profiles: every Vidur
# profile here leaves a held-out MAPE of 3-5 % over 1..8192 tokens. A wrong knee or a ms/s unit
# slip gives >= 20 % (or orders of magnitude), so 8 % separates "fitted" from "broken".
MAX_HELDOUT_MAPE = 0.08


def decode_step_s(e: StepTimeEntry, batch: int, context_tokens: int) -> float:
    """Step time of `batch` sequences each decoding one token over `context_tokens` of KV."""
    return e.step.step_s(batch, batch * context_tokens, 0)


def prefill_step_s(e: StepTimeEntry, chunk: int) -> float:
    """Step time of a single fresh prefill chunk (no cached prefix)."""
    return e.step.step_s(chunk, 0, int(causal_pairs(chunk, 0)))


def test_catalog_has_required_entries() -> None:
    for gpu in ("a100-80gb", "h100-80gb"):
        assert ("llama-3-8b", gpu, 1, "fp16") in CATALOG


def test_catalog_is_cached() -> None:
    assert load_step_time_catalog() is CATALOG


@pytest.mark.parametrize("key", sorted(CATALOG))
def test_every_entry_is_complete_and_well_fitted(key: tuple[str, str, int, str]) -> None:
    e = CATALOG[key]
    assert e.key == key
    for name in (
        "overhead_s",
        "flat_s",
        "per_token_s",
        "decode_attn_s_per_token",
        "prefill_attn_s_per_pair",
    ):
        assert getattr(e.step, name) > 0, name
    assert e.step.knee_tokens >= 0
    assert e.source.strip()
    assert 0 < e.heldout_mape < MAX_HELDOUT_MAPE


def test_llama3_8b_a100_decode_step_is_plausible() -> None:
    # Lower bound: streaming 16.06 GB of fp16 weights at the A100-80GB's 2.039 TB/s is 7.9 ms.
    # Upper bound: published vLLM light-load TPOT for Llama-3-8B on one A100-80GB is 12-13 ms
    # (shared/data/vllm-published-benchmarks); the profile alone sums to ~11 ms of GPU time at
    # 1 token. 16 ms allows ~30 % above the published figure.
    e = CATALOG[("llama-3-8b", "a100-80gb", 1, "fp16")]
    step_ms = decode_step_s(e, batch=1, context_tokens=1024) * 1e3
    assert 7.9 <= step_ms <= 16.0


def test_h100_is_faster_than_a100_but_not_beyond_physics() -> None:
    a = CATALOG[("llama-3-8b", "a100-80gb", 1, "fp16")]
    h = CATALOG[("llama-3-8b", "h100-80gb", 1, "fp16")]
    for batch, ctx in ((1, 1024), (32, 2048), (128, 512)):
        assert decode_step_s(h, batch, ctx) < decode_step_s(a, batch, ctx)
    for chunk in (512, 2048, 8192):
        assert prefill_step_s(h, chunk) < prefill_step_s(a, chunk)
    # 16.06 GB of weights at the H100 SXM's 3.35 TB/s: no decode step can beat 4.8 ms.
    assert decode_step_s(h, 1, 1024) >= 4.8e-3


def test_catalog_parser_reports_every_problem_with_its_location() -> None:
    good = {
        "model": "m",
        "gpu": "g",
        "tp": 1,
        "dtype": "fp16",
        "overhead_s": 0.001,
        "flat_s": 0.01,
        "knee_tokens": 64.0,
        "per_token_s": 1e-5,
        "decode_attn_s_per_token": 1e-8,
        "prefill_attn_s_per_pair": 1e-9,
        "heldout_mape": 0.03,
        "source": "test",
    }
    assert parse_step_time_catalog({"entry": [good]})[("m", "g", 1, "fp16")].step.flat_s == 0.01
    bad = dict(good, flat_s=-1.0, colour="red")
    del bad["source"]
    with pytest.raises(ConfigError) as err:
        parse_step_time_catalog({"entry": [good, bad, good]}, "x.toml")
    msg = str(err.value)
    assert "x.toml: entry[1].flat_s: must be finite and >= 0, got -1.0" in msg
    assert "entry[1].colour: unknown key" in msg
    assert "entry[1].source: missing" in msg
    assert "entry[2]: duplicate" in msg


def test_packaged_toml_matches_the_dataclass_fields() -> None:
    doc = tomllib.loads((REPO / "sim" / "data" / "step_time.toml").read_text())
    row_keys = set(next(iter(load_step_time_catalog().values())).as_row())
    assert {k for e in doc["entry"] for k in e} == row_keys


@pytest.mark.skipif(not (DATA / "vidur-profiling").is_dir(), reason="shared/data not present")
def test_packaged_catalog_is_what_the_script_produces(tmp_path: Path) -> None:
    out = tmp_path / "step_time.toml"
    subprocess.run(
        [sys.executable, str(REPO / "scripts" / "fit_vidur_step_time.py"), "--out", str(out)],
        check=True,
        capture_output=True,
        cwd=REPO,
    )
    assert out.read_text() == (REPO / "sim" / "data" / "step_time.toml").read_text()

"""Nothing lost on interruption: parts on disk, --resume, fingerprints, kill -9."""

from __future__ import annotations

import dataclasses
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import pytest
from click.testing import CliRunner

import sim.runner as runner
from sim.cli import main
from sim.experiment import Experiment, load_experiment
from sim.store import PartStore, StoreError, fingerprint

ROOT = Path(__file__).resolve().parents[1]


def tiny_toml(tmp_path: Path, requests_per_day: float = 3000.0, seed: int = 7) -> Path:
    """growth20pct cut to one month, with absolute data paths."""
    text = (ROOT / "experiments" / "growth20pct.toml").read_text()
    text = text.replace("../traces/", f"{ROOT / 'traces'}/")
    text = text.replace("months = 6", "months = 1").replace("seed = 20261122", f"seed = {seed}")
    text = text.replace(
        "base_requests_per_day = 5000", f"base_requests_per_day = {requests_per_day}"
    )
    head, _, rest = text.partition("[[fleet.months]]")
    plan = '[[fleet.months]]\npools = [{ name = "base", gpu = "a100-80gb", count = 1 }]\n'
    tail = rest[rest.index("[cost]") :]
    path = tmp_path / "tiny.toml"
    path.write_text(head + plan + "\n" + tail)
    return path


@pytest.mark.slow
def test_resume_after_interrupt_equals_uninterrupted(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = load_experiment(tiny_toml(tmp_path))
    whole = runner.run_experiment(exp, replications=4)

    real = runner._safe_replication

    def interrupted_at_2(e: Experiment, k: int) -> runner.ReplicationOutput:
        if k == 2:
            raise KeyboardInterrupt
        return real(e, k)

    fp = fingerprint(exp.spec, exp.engine, runner.version())
    store = PartStore.open(tmp_path / "x.parts", fp, resume=False, fresh=False)
    monkeypatch.setattr(runner, "_safe_replication", interrupted_at_2)
    first = runner.run_experiment(exp, replications=4, store=store)
    assert first.interrupted and store.finished() == [0, 1]
    monkeypatch.setattr(runner, "_safe_replication", real)
    store = PartStore.open(tmp_path / "x.parts", fp, resume=True, fresh=False)
    calls: list[int] = []
    monkeypatch.setattr(runner, "_safe_replication", lambda e, k: (calls.append(k), real(e, k))[1])
    second = runner.run_experiment(exp, replications=4, store=store)
    assert calls == [2, 3]  # the finished ones were not rerun
    assert second.months.equals(whole.months)
    assert second.hourly.equals(whole.hourly)
    assert second.summary.equals(whole.summary)


def test_store_refuses_another_configuration_and_unasked_reuse(tmp_path: Path) -> None:
    root = tmp_path / "x.parts"
    PartStore.open(root, "aaaa", resume=False, fresh=False)
    with pytest.raises(StoreError, match="an unfinished run of this experiment is here"):
        PartStore.open(root, "aaaa", resume=False, fresh=False)
    with pytest.raises(StoreError, match="written by a different configuration"):
        PartStore.open(root, "bbbb", resume=True, fresh=False)
    assert PartStore.open(root, "bbbb", resume=False, fresh=True).finished() == []


def test_fingerprint_follows_config_and_data_not_the_count(
    tmp_path: Path, scale_step_times: Callable[..., Experiment]
) -> None:
    exp = load_experiment(tiny_toml(tmp_path))
    base = fingerprint(exp.spec, exp.engine, "1")
    # the resolved engine (a refitted catalog entry, say) decides results too
    assert fingerprint(exp.spec, scale_step_times(exp, flat_s=2.0).engine, "1") != base
    more = dataclasses.replace(exp.spec, replications=999)
    assert fingerprint(more, exp.engine, "1") == base
    assert fingerprint(dataclasses.replace(exp.spec, seed=1), exp.engine, "1") != base
    assert fingerprint(exp.spec, exp.engine, "2") != base


@pytest.mark.slow
def test_kill_9_then_resume_gives_the_uninterrupted_tables(tmp_path: Path) -> None:
    toml = tiny_toml(tmp_path)
    out = tmp_path / "killed"
    parts = tmp_path / "killed.parts"
    cmd = [sys.executable, "-m", "sim", "run", str(toml), "-n", "6", "--out", str(out)]
    proc = subprocess.Popen(
        cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        done = list(parts.glob("rep-*")) if parts.exists() else []
        if len(done) >= 2 or proc.poll() is not None:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    kept = sorted(p.name for p in parts.glob("rep-*"))
    assert 2 <= len(kept) < 6, kept  # killed mid-run, with finished parts on disk
    assert not out.exists()

    cli = CliRunner()
    refused = cli.invoke(main, ["run", str(toml), "-n", "6", "--out", str(out)])
    assert refused.exit_code == 2 and "--resume" in refused.output
    resumed = cli.invoke(main, ["run", str(toml), "-n", "6", "--out", str(out), "--resume"])
    assert resumed.exit_code == 0, resumed.output
    assert not parts.exists()  # removed once the report is written
    clean = cli.invoke(main, ["run", str(toml), "-n", "6", "--out", str(tmp_path / "clean")])
    assert clean.exit_code == 0, clean.output
    for name in ("months.parquet", "summary.parquet", "hourly.parquet"):
        assert pl.read_parquet(out / name).equals(pl.read_parquet(tmp_path / "clean" / name))

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
from sim.replication import ReplicationOutput, Scope
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

    def interrupted_at_2(e: Experiment, k: int, scope: Scope) -> ReplicationOutput:
        if k == 2:
            raise KeyboardInterrupt
        return real(e, k, scope)

    fp = fingerprint(exp.spec, exp.engine, runner.version())
    store = PartStore.open(tmp_path / "x.parts", fp, resume=False, fresh=False)
    monkeypatch.setattr(runner, "_safe_replication", interrupted_at_2)
    first = runner.run_experiment(exp, replications=4, store=store)
    assert first.interrupted and store.finished() == [0, 1]
    monkeypatch.setattr(runner, "_safe_replication", real)
    store = PartStore.open(tmp_path / "x.parts", fp, resume=True, fresh=False)
    calls: list[int] = []

    def counted(e: Experiment, k: int, scope: Scope) -> ReplicationOutput:
        calls.append(k)
        return real(e, k, scope)

    monkeypatch.setattr(runner, "_safe_replication", counted)
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


# ------------------------------------------------------------------ issue #15: resume heals


def _corrupt(root: Path) -> None:
    """Part 1 truncated, 2 with info.json not JSON, 3 without hourly.parquet, 4 empty."""
    months = root / "rep-000001" / "months.parquet"
    months.write_bytes(months.read_bytes()[: months.stat().st_size // 2])
    (root / "rep-000002" / "info.json").write_text("{not json")
    (root / "rep-000003" / "hourly.parquet").unlink()
    for f in (root / "rep-000004").iterdir():
        f.unlink()


@pytest.mark.slow
def test_resume_heals_bad_parts_and_keeps_good_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    exp = load_experiment(tiny_toml(tmp_path, requests_per_day=500.0))
    fp = fingerprint(exp.spec, exp.engine, runner.version())
    root = tmp_path / "x.parts"
    store = PartStore.open(root, fp, resume=False, fresh=False)
    whole = runner.run_experiment(exp, replications=5, store=store)
    assert store.finished() == [0, 1, 2, 3, 4]
    _corrupt(root)
    (root / ".tmp-000009-999999999").mkdir()  # a killed writer's leftover (no such process)
    store = PartStore.open(root, fp, resume=True, fresh=False)
    assert len(store.healed) == 4
    assert all("discarded, its replication will be simulated again" in h for h in store.healed)
    assert "months.parquet is truncated or corrupt" in store.healed[0]
    assert "info.json is not JSON" in store.healed[1]
    assert "hourly.parquet is missing" in store.healed[2]
    assert "months.parquet is missing" in store.healed[3]
    assert not (root / ".tmp-000009-999999999").exists()
    real = runner._safe_replication
    calls: list[int] = []

    def counted(e: Experiment, k: int, scope: Scope) -> ReplicationOutput:
        calls.append(k)
        return real(e, k, scope)

    monkeypatch.setattr(runner, "_safe_replication", counted)
    healed = runner.run_experiment(exp, replications=5, store=store)
    assert sorted(calls) == [1, 2, 3, 4]  # part 0 was kept
    assert healed.months.equals(whole.months)
    assert healed.hourly.equals(whole.hourly)
    assert healed.summary.equals(whole.summary)


@pytest.mark.slow
def test_cli_resume_reports_each_discarded_part_in_one_line(tmp_path: Path) -> None:
    path = tiny_toml(tmp_path, requests_per_day=300.0)
    out = tmp_path / "out"
    exp = load_experiment(path)
    fp = fingerprint(exp.spec, exp.engine, runner.version())
    store = PartStore.open(tmp_path / "out.parts", fp, resume=False, fresh=False)
    runner.run_experiment(exp, replications=2, store=store)
    (tmp_path / "out.parts" / "rep-000001" / "info.json").write_text("\x00garbage")
    result = CliRunner().invoke(main, ["run", str(path), "-n", "2", "--out", str(out), "--resume"])
    assert result.exit_code == 0, result.output
    notes = [line for line in result.output.splitlines() if line.startswith("note:")]
    assert len(notes) == 1 and "rep-000001: info.json is not JSON" in notes[0]
    assert (out / "months.parquet").exists() and not (tmp_path / "out.parts").exists()


def test_parts_of_another_configuration_say_so(tmp_path: Path) -> None:
    root = tmp_path / "x.parts"
    PartStore.open(root, "aaaa", resume=False, fresh=False)
    with pytest.raises(StoreError, match="an unfinished run of a different configuration"):
        PartStore.open(root, "bbbb", resume=False, fresh=False)


def test_run_json_not_json_is_one_line(tmp_path: Path) -> None:
    root = tmp_path / "x.parts"
    PartStore.open(root, "aaaa", resume=False, fresh=False)
    (root / "run.json").write_text("nope")
    with pytest.raises(StoreError, match=r"run\.json: missing or unreadable; add --fresh"):
        PartStore.open(root, "aaaa", resume=True, fresh=False)


def test_parts_path_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "x.parts").write_text("")
    with pytest.raises(StoreError, match="exists and is not a folder"):
        PartStore.open(tmp_path / "x.parts", "aaaa", resume=False, fresh=False)


def test_parent_of_out_that_is_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("")
    with pytest.raises(StoreError, match="is a file, not a folder"):
        PartStore.open(tmp_path / "file" / "x.parts", "aaaa", resume=False, fresh=False)


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores directory permissions")
def test_read_only_folder_is_one_line(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        with pytest.raises(StoreError, match="Permission denied"):
            PartStore.open(ro / "x.parts", "aaaa", resume=False, fresh=False)
    finally:
        ro.chmod(0o700)


def test_fresh_never_deletes_through_a_symlink(tmp_path: Path) -> None:
    target = tmp_path / "precious"
    target.mkdir()
    (target / "keep.txt").write_text("mine")
    (tmp_path / "x.parts").symlink_to(target)
    with pytest.raises(StoreError, match="symbolic link; --fresh never deletes through one"):
        PartStore.open(tmp_path / "x.parts", "aaaa", resume=False, fresh=True)
    assert (target / "keep.txt").read_text() == "mine"


def test_save_failure_is_a_store_error(tmp_path: Path) -> None:
    store = PartStore.open(tmp_path / "x.parts", "aaaa", resume=False, fresh=False)
    (tmp_path / "x.parts" / "rep-000000").write_text("a file where the part goes")
    frame = pl.DataFrame({"a": [1]})
    store.root = tmp_path / "missing" / "x.parts"  # the folder vanished under the run
    with pytest.raises(StoreError, match="cannot save replication 0"):
        store.save(0, frame, frame, {"requests": 1, "simpy_events": 1, "wall_s": 0.0})

"""Finished replications on disk, so that no interruption loses work.

A run keeps a parts folder beside its report (`reports/<name>.parts/`): `run.json` records the
run's fingerprint (a hash of the resolved experiment, the bytes of every data file it reads and
the package version — not the replication count, so a resumed run may ask for more), and each
finished replication is a folder `rep-000007/` holding `months.parquet`, `hourly.parquet` and
`info.json`. A part is written under a temporary name and renamed into place (an atomic
rename), so a crash or `kill -9` leaves whole parts or none. `--resume` reuses the parts of a
run with the same fingerprint and refuses any other.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
from pathlib import Path
from typing import Any

import polars as pl

from sim.config import ExperimentSpec
from sim.engine import ResolvedEngine
from sim.errors import SimError
from sim.records import HOURLY_SCHEMA, MONTH_SCHEMA

PART_PREFIX = "rep-"


def fingerprint(spec: ExperimentSpec, engine: ResolvedEngine, version: str) -> str:
    """A hash of everything that decides a replication's result, except the count: the spec,
    the engine it resolved to (step times, KV blocks), the version and the data files."""
    resolved = dataclasses.asdict(dataclasses.replace(spec, replications=0, file=""))
    digest = hashlib.sha256()
    digest.update(json.dumps(resolved, sort_keys=True, default=str).encode())
    digest.update(json.dumps(engine.as_dict(), sort_keys=True, default=str).encode())
    digest.update(version.encode())
    for name in spec.workload.data_files():
        path = Path(name)
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for file in files:
            digest.update(file.read_bytes())
    return digest.hexdigest()[:16]


class StoreError(SimError):
    """A parts folder that cannot be used as asked (exit code 2, one line)."""


class PartStore:
    """The parts folder of one run: load what is finished, save each new replication."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.root = Path(root)
        self.fingerprint = fingerprint

    @classmethod
    def open(cls, root: Path, fingerprint: str, *, resume: bool, fresh: bool) -> PartStore:
        """Create the folder, or reuse it with `resume`, or discard it with `fresh`."""
        root = Path(root)
        meta = root / "run.json"
        if root.exists():
            if fresh:
                shutil.rmtree(root)
            elif not resume:
                n = len(cls(root, fingerprint).finished())
                raise StoreError(
                    f"{root}: an unfinished run of this experiment is here ({n} replications "
                    "done): add --resume to complete it or --fresh to discard it"
                )
            else:
                try:
                    found = json.loads(meta.read_text())["fingerprint"]
                except (OSError, ValueError, KeyError):
                    raise StoreError(f"{meta}: unreadable; add --fresh to start over") from None
                if found != fingerprint:
                    raise StoreError(
                        f"{root}: written by a different configuration (fingerprint {found}, "
                        f"this one {fingerprint}); cannot resume: add --fresh to start over"
                    )
        root.mkdir(parents=True, exist_ok=True)
        if not meta.exists():
            _atomic_write_text(meta, json.dumps({"fingerprint": fingerprint}) + "\n")
        return cls(root, fingerprint)

    def finished(self) -> list[int]:
        """Replications whose part is complete on disk, ascending."""
        if not self.root.exists():
            return []
        done = []
        for path in self.root.iterdir():
            name = path.name
            if (
                path.is_dir()
                and name.startswith(PART_PREFIX)
                and name[len(PART_PREFIX) :].isdigit()
            ):
                done.append(int(name[len(PART_PREFIX) :]))
        return sorted(done)

    def save(
        self, replication: int, months: pl.DataFrame, hourly: pl.DataFrame, info: dict[str, object]
    ) -> None:
        """Write one replication's part atomically."""
        final = self.root / f"{PART_PREFIX}{replication:06d}"
        tmp = self.root / f".tmp-{replication:06d}-{os.getpid()}"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir()
        months.write_parquet(tmp / "months.parquet")
        hourly.write_parquet(tmp / "hourly.parquet")
        (tmp / "info.json").write_text(json.dumps(info) + "\n")
        _fsync_dir(tmp)
        if final.exists():  # a replication recomputed after a crash: same seed, same content
            shutil.rmtree(final)
        tmp.rename(final)
        _fsync_dir(self.root)

    def load(self, replication: int) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
        part = self.root / f"{PART_PREFIX}{replication:06d}"
        months = pl.read_parquet(part / "months.parquet").cast(MONTH_SCHEMA)  # type: ignore[arg-type]
        hourly = pl.read_parquet(part / "hourly.parquet").cast(HOURLY_SCHEMA)  # type: ignore[arg-type]
        info = json.loads((part / "info.json").read_text())
        return months, hourly, info

    def remove(self) -> None:
        shutil.rmtree(self.root, ignore_errors=True)


def _atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)

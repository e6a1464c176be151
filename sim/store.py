"""Finished replications on disk, so that no interruption loses work.

A run keeps a parts folder beside its report (`reports/<name>.parts/`): `run.json` records the
run's fingerprint (a hash of the resolved experiment, the bytes of every data file it reads and
the package version — not the replication count, so a resumed run may ask for more), and each
finished replication is a folder `rep-000007/` holding `months.parquet`, `hourly.parquet` and
`info.json`. A part is written under a temporary name and renamed into place (an atomic
rename), so a crash or `kill -9` leaves whole parts or none. `--resume` reuses the parts of a
run with the same fingerprint and refuses any other.

A resumed run heals its folder first (`PartStore.heal`): a part that cannot be read back whole —
a truncated or corrupt parquet, an `info.json` that is not JSON, a missing file, an empty
`rep-*` folder — is reported in one line and discarded, and its replication (deterministic:
same seed, same streams) is simulated again; the good parts are kept. Temporary folders left by
a killed writer (`.tmp-*` of a process no longer alive) are removed. The store never deletes
through a symbolic link, and every filesystem failure is a `StoreError` (one line, exit 2).
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
    """The parts folder of one run: load what is finished, save each new replication.

    `healed`: one line per part `heal` discarded (for the CLI to print)."""

    def __init__(self, root: Path, fingerprint: str) -> None:
        self.root = Path(root)
        self.fingerprint = fingerprint
        self.healed: list[str] = []

    @classmethod
    def open(cls, root: Path, fingerprint: str, *, resume: bool, fresh: bool) -> PartStore:
        """Create the folder, or reuse it with `resume` (healed), or discard it with `fresh`."""
        root = Path(root)
        try:
            return cls._open(root, fingerprint, resume=resume, fresh=fresh)
        except OSError as err:
            raise StoreError(_os_message(root, err)) from None

    @classmethod
    def _open(cls, root: Path, fingerprint: str, *, resume: bool, fresh: bool) -> PartStore:
        meta = root / "run.json"
        if root.is_symlink() and fresh:
            raise StoreError(
                f"{root}: is a symbolic link; --fresh never deletes through one: remove the "
                "link yourself or choose another --out"
            )
        if root.exists() and not root.is_dir():
            raise StoreError(
                f"{root}: exists and is not a folder (the parts folder of this run goes there): "
                "move it or choose another --out"
            )
        for parent in root.parents:
            if parent.exists() and not parent.is_dir():
                raise StoreError(f"{parent}: is a file, not a folder: choose another --out")
        if root.exists():
            found = _read_fingerprint(meta)
            if fresh:
                shutil.rmtree(root)
            elif not resume:
                if found is not None and found != fingerprint:
                    raise StoreError(
                        f"{root}: holds the parts of an unfinished run of a different "
                        f"configuration (fingerprint {found}, this one {fingerprint}): add "
                        "--fresh to discard them"
                    )
                n = len(cls(root, fingerprint).finished())
                raise StoreError(
                    f"{root}: an unfinished run of this experiment is here ({n} replications "
                    "done): add --resume to complete it or --fresh to discard it"
                )
            elif found is None:
                raise StoreError(f"{meta}: missing or unreadable; add --fresh to start over")
            elif found != fingerprint:
                raise StoreError(
                    f"{root}: written by a different configuration (fingerprint {found}, "
                    f"this one {fingerprint}); cannot resume: add --fresh to start over"
                )
        root.mkdir(parents=True, exist_ok=True)
        if not meta.exists():
            _atomic_write_text(meta, json.dumps({"fingerprint": fingerprint}) + "\n")
        store = cls(root, fingerprint)
        store.clean_temporaries()
        if resume:
            store.heal()
        return store

    def clean_temporaries(self) -> None:
        """Remove `.tmp-*` folders and files of writers that are no longer running."""
        for path in self.root.iterdir():
            if path.name.startswith((".tmp-", ".run.json.tmp-")) and not _writer_alive(path.name):
                _remove(path)

    def heal(self) -> list[str]:
        """Discard every part that cannot be read back whole (one line each in `healed`)."""
        for path in sorted(self.root.iterdir()):
            name = path.name
            if not name.startswith(PART_PREFIX):
                continue
            number = name[len(PART_PREFIX) :]
            why = None
            if path.is_symlink() or not path.is_dir() or not number.isdigit():
                why = "not a part folder"
            else:
                why = _part_problem(path)
            if why is not None:
                _remove(path)
                self.healed.append(
                    f"{path}: {why}; discarded, its replication will be simulated again"
                )
        return self.healed

    def finished(self) -> list[int]:
        """Replications whose part is complete on disk, ascending."""
        if not self.root.exists():
            return []
        done = []
        for path in self.root.iterdir():
            name = path.name
            if (
                path.is_dir()
                and not path.is_symlink()
                and name.startswith(PART_PREFIX)
                and name[len(PART_PREFIX) :].isdigit()
            ):
                done.append(int(name[len(PART_PREFIX) :]))
        return sorted(done)

    def save(
        self, replication: int, months: pl.DataFrame, hourly: pl.DataFrame, info: dict[str, object]
    ) -> None:
        """Write one replication's part atomically (a `StoreError` when the disk refuses)."""
        final = self.root / f"{PART_PREFIX}{replication:06d}"
        tmp = self.root / f".tmp-{replication:06d}-{os.getpid()}"
        try:
            shutil.rmtree(tmp, ignore_errors=True)
            tmp.mkdir()
            months.write_parquet(tmp / "months.parquet")
            hourly.write_parquet(tmp / "hourly.parquet")
            (tmp / "info.json").write_text(json.dumps(info) + "\n")
            _fsync_dir(tmp)
            if final.exists() or final.is_symlink():  # recomputed after a crash: same content
                _remove(final)
            tmp.rename(final)
            _fsync_dir(self.root)
        except OSError as err:
            shutil.rmtree(tmp, ignore_errors=True)
            raise StoreError(
                f"cannot save replication {replication}: {_os_message(self.root, err)}"
            ) from None

    def load(self, replication: int) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any]]:
        part = self.root / f"{PART_PREFIX}{replication:06d}"
        months = pl.read_parquet(part / "months.parquet").cast(MONTH_SCHEMA)  # type: ignore[arg-type]
        hourly = pl.read_parquet(part / "hourly.parquet").cast(HOURLY_SCHEMA)  # type: ignore[arg-type]
        info = json.loads((part / "info.json").read_text())
        return months, hourly, info

    def remove(self) -> None:
        """Delete the parts folder (a symbolic link is unlinked, never followed)."""
        _remove(self.root)


PART_FILES = ("months.parquet", "hourly.parquet", "info.json")
INFO_KEYS = ("requests", "simpy_events", "wall_s")


def _part_problem(part: Path) -> str | None:
    """Why the part folder cannot be loaded whole, or None when it can."""
    for name in PART_FILES:
        if not (part / name).is_file():
            return f"{name} is missing"
    for name, schema in (("months.parquet", MONTH_SCHEMA), ("hourly.parquet", HOURLY_SCHEMA)):
        try:
            pl.read_parquet(part / name).cast(schema)  # type: ignore[arg-type]
        except (OSError, pl.exceptions.PolarsError, ValueError):
            return f"{name} is truncated or corrupt"
    try:
        info = json.loads((part / "info.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "info.json is not JSON"
    if not isinstance(info, dict) or any(
        not isinstance(info.get(k), int | float) or isinstance(info.get(k), bool) for k in INFO_KEYS
    ):
        return f"info.json lacks {', '.join(INFO_KEYS)}"
    return None


def _read_fingerprint(meta: Path) -> str | None:
    try:
        found = json.loads(meta.read_text(encoding="utf-8"))["fingerprint"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return found if isinstance(found, str) else None


def _writer_alive(name: str) -> bool:
    """Whether the process whose id ends the temporary name `name` is still running."""
    pid = name.rsplit("-", 1)[-1]
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, OSError):
        return True
    return True


def _remove(path: Path) -> None:
    """Delete a file, a link (never what it points to) or a folder tree."""
    if path.is_symlink() or path.is_file():
        path.unlink(missing_ok=True)
    elif path.is_dir():
        shutil.rmtree(path, ignore_errors=True)


def _os_message(root: Path, err: OSError) -> str:
    where = err.filename if err.filename is not None else root
    return f"{where}: {err.strerror or err}"


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

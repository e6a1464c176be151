"""`kernel`: numba's `njit(cache=True)` with a cache that knows the kernels span several files.

numba keys a function's on-disk cache on the source of the file that defines it, and a cached
kernel embeds the machine code of every kernel it calls; so a change to `replica.py` alone
would leave `fleet.route` running the old replica code from the cache. The locator below gives
every function of this package one stamp: the hash of all its kernel files together.
"""

from __future__ import annotations

import functools
import hashlib
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from numba import njit
from numba.core import caching

_HERE = Path(__file__).resolve().parent
_FILES = ("_jit.py", "layout.py", "replica.py", "fleet.py", "control.py")


@functools.cache
def _package_stamp() -> str:
    digest = hashlib.sha256()
    for name in _FILES:
        digest.update((_HERE / name).read_bytes())
    return digest.hexdigest()


class _PackageStamp:
    """Mixin: every function of this package gets the package's stamp, and its cache files go
    to a folder named after it (an index left by other sources is never even read: numba
    unpickles an index before it compares stamps, which fails on a type since renamed)."""

    def get_source_stamp(self) -> Any:
        return _package_stamp()

    def get_cache_path(self) -> str:
        base: str = super().get_cache_path()  # type: ignore[misc]
        return os.path.join(base, f"sim-kernels-{_package_stamp()[:16]}")

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> Any:
        if Path(py_file).resolve().parent != _HERE:
            return None
        return super().from_function(py_func, py_file)  # type: ignore[misc]


class _InTree(_PackageStamp, caching.InTreeCacheLocator):
    """numba's default: `__pycache__` beside the source."""


class _UserDir(_PackageStamp, caching.UserProvidedCacheLocator):
    """`NUMBA_CACHE_DIR`, where the user set one."""


for _locator in (_InTree, _UserDir):  # before numba's own, in numba's order
    if _locator not in caching.CacheImpl._locator_classes:
        caching.CacheImpl._locator_classes.insert(0, _locator)

F = TypeVar("F", bound=Callable[..., Any])


def kernel(inline: bool = False, allocates: bool = False) -> Callable[[F], F]:
    """`numba.njit(cache=True)`, inlined into its callers when `inline`.

    Kernels that do not `allocate` arrays are compiled without numba's reference counting
    (`_nrt=False`): their array arguments are borrowed from the caller, which owns them.

    NOTE: a compiled function increments and decrements the reference count of each array
    argument (an atomic operation through a function pointer) on every call; for the replica
    kernels, which take up to nine arrays and are called a few times per request, that was
    ~200 ns per call and ~80% of the run time: the Vidur scenario's `route` went from 1.03 to
    0.22 µs per request without it. Inlining the small helpers (numba IR inlining) removes
    their calls altogether (2.7 → 2.0 µs per request before the change above).
    """

    def wrap(func: F) -> F:
        inlining = "always" if inline else "never"
        options: dict[str, Any] = {"cache": True, "inline": inlining, "_nrt": allocates}
        compiled: F = njit(**options)(func)
        return compiled

    return wrap

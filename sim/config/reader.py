"""The located-error machinery of the experiment reader.

`Table` wraps one TOML table: typed getters that record a `Problem` (file, dotted key path,
value) instead of raising, and `close()` reports every key nobody asked for, with a
"did you mean". A section reader asks for every key it knows (present or not), so the keys a
table was asked for are exactly the keys it accepts.
"""

from __future__ import annotations

import difflib
import math
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from sim.errors import ConfigError, Problem, path_refusal, short_path

T = TypeVar("T")
Rule = str | Callable[[Any], str]  # "must be <rule>": fixed, or from the offending value
MISSING: Any = object()
_INDEX = re.compile(r"\[\d+\]")


class Context:
    """The problems found in one file, and every key path the readers asked for (`asked`, with
    list indices as `[]`: the keys the reader accepts, for docs/config.md's completeness test)."""

    def __init__(self, file: str, asked: set[str] | None = None) -> None:
        self.file = file
        self.problems: list[Problem] = []
        self.asked: set[str] = set() if asked is None else asked

    def add(
        self, key_path: str, message: str, value: object = None, has_value: bool = True
    ) -> None:
        self.problems.append(Problem(self.file, key_path, message, value, has_value))


def join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


class Table:
    """One TOML table being read: typed getters, and unknown keys reported when `close`d."""

    def __init__(self, ctx: Context, data: object, path: str) -> None:
        self.ctx = ctx
        self.path = path
        self.ok = isinstance(data, dict)
        if not self.ok and data is not MISSING:
            ctx.add(path, "must be a table", data)
        self.data: dict[str, Any] = data if isinstance(data, dict) else {}
        self.seen: set[str] = set()

    def raw(self, key: str) -> Any:
        self.seen.add(key)
        self.ctx.asked.add(_INDEX.sub("[]", join(self.path, key)))
        return self.data.get(key, MISSING)

    def table(self, key: str) -> Table:
        return Table(self.ctx, self.raw(key), join(self.path, key))

    def _get(
        self,
        key: str,
        default: Any,
        convert: Callable[[Any], T | None],
        expected: str,
        check: Callable[[T], bool] | None,
        rule: Rule,
        suggest: Callable[[T], str] | None = None,
    ) -> T:
        value = self.raw(key)
        where = join(self.path, key)
        if value is MISSING:
            if default is MISSING:
                self.ctx.add(where, f"is required ({expected})", has_value=False)
            return default  # type: ignore[no-any-return]
        converted = convert(value)
        if converted is None:
            self.ctx.add(where, f"must be {expected}", value)
            return default if default is not MISSING else None  # type: ignore[return-value]
        if check is not None and not check(converted):
            extra = suggest(converted) if suggest is not None else ""
            text = rule(converted) if callable(rule) else rule
            self.ctx.add(where, f"must be {text}{extra}", value)
        return converted

    def number(
        self,
        key: str,
        default: Any = MISSING,
        check: Callable[[float], bool] | None = None,
        rule: Rule = "",
        expected: str = "a number",
        suggest: Callable[[float], str] | None = None,
    ) -> float:
        return self._get(key, default, as_float, expected, check, rule, suggest)

    def integer(
        self,
        key: str,
        default: Any = MISSING,
        check: Callable[[int], bool] | None = None,
        rule: Rule = "",
    ) -> int:
        return self._get(key, default, as_int, "an integer", check, rule)

    def boolean(self, key: str, default: Any = MISSING) -> bool:
        return self._get(key, default, as_bool, "true or false", None, "")

    def string(
        self,
        key: str,
        default: Any = MISSING,
        choices: tuple[str, ...] | None = None,
        alias: Callable[[str], str | None] | None = None,
    ) -> str:
        """The string at `key`; `alias` maps another name of a choice to it (None: no such
        name), before the value is checked against `choices`."""
        value: str = self._get(key, default, as_str, "a string", None, "")
        if alias is not None and isinstance(value, str):
            value = alias(value) or value
        if choices is not None and isinstance(value, str) and value not in choices:
            self.ctx.add(
                join(self.path, key),
                f"must be one of {', '.join(choices)}{hint(value, choices)}",
                value,
            )
        return value

    def close(self) -> None:
        known = sorted(self.seen)
        for key in self.data:
            if key not in self.seen:
                self.ctx.add(
                    join(self.path, key), f"unknown key{hint(key, known)}", has_value=False
                )


def hint(word: str, choices: list[str] | tuple[str, ...]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def as_float(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, int | float):
        return None
    f = float(v)
    return f if math.isfinite(f) else None


def as_int(v: Any) -> int | None:
    if isinstance(v, bool) or not isinstance(v, int):
        return None
    return v


def as_bool(v: Any) -> bool | None:
    return v if isinstance(v, bool) else None


def as_str(v: Any) -> str | None:
    return v if isinstance(v, str) else None


def within(
    lo: float, hi: float, unit: str = "", *, open_low: bool = False
) -> tuple[Callable[[float], bool], Callable[[float], str]]:
    """(check, rule) of a plausible range `lo <= x <= hi` (`lo < x` with `open_low`); the rule
    names the side that was crossed (`> 0`, or `<= 10000 (replicas)`). Pass as
    `t.number(key, default, *within(0, 1e4, "replicas"))`."""
    suffix = f" ({unit})" if unit else ""

    def rule(x: float) -> str:
        if x > hi:
            return f"<= {hi:g}{suffix}"
        return f"> {lo:g}" if open_low else f">= {lo:g}"

    if open_low:
        return (lambda x: lo < x <= hi), rule
    return (lambda x: lo <= x <= hi), rule


def percent_hint(value: object) -> str:
    """ " (did you mean 0.20 (20 %)?)" when `value` looks like a percentage written where a
    fraction is meant (a number in (1, 100])."""
    if isinstance(value, int | float) and not isinstance(value, bool) and 1 < value <= 100:
        return f" (did you mean {value / 100:.2f} ({value:g} %)?)"
    return ""


def positive(x: float) -> bool:
    return x > 0


def non_negative(x: float) -> bool:
    return x >= 0


def existing_file(
    ctx: Context, where: str, value: str, base_dir: Path, *, folder_ok: bool = False
) -> str | None:
    """The absolute path of the data file `value` names (relative to `base_dir`, the experiment
    file's folder), or None with a located problem: not found, or refused by the path policy
    (`sim.errors.path_refusal`: NUL bytes, /proc, /sys, /dev, devices, FIFOs)."""
    refusal = path_refusal(value) or path_refusal(base_dir / value, folder_ok=folder_ok)
    if refusal is not None:
        ctx.add(where, refusal, value)
        return None
    try:
        path = (base_dir / value).resolve()
        found = path.is_file() or (folder_ok and path.is_dir())
    except (OSError, RuntimeError):  # a symlink loop, a permission error on a parent
        found = False
        path = base_dir / value
    if not found:
        ctx.add(where, f"file not found ({short_path(path)})", value)
        return None
    return str(path)


def all_numbers(*values: object) -> bool:
    return all(isinstance(v, float | int) and not isinstance(v, bool) for v in values)


MAX_NAME = 100  # experiment, plan and pool names: a report folder name must fit any filesystem
MAX_FILE_BYTES = 64 * 2**20  # an experiment or workload file (20,000 pools are ~1 MiB)


def read_user_text(path: str | Path) -> str:
    """The UTF-8 text of a user's TOML file, or a `ConfigError` located at the file that quotes
    none of its contents."""
    file = str(path)

    def fail(message: str) -> ConfigError:
        return ConfigError([Problem(file, "", message, has_value=False)])

    refusal = path_refusal(path)
    if refusal is not None:
        raise fail(refusal)
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as err:
        raise fail(f"cannot read file: {err.strerror or err}") from None
    if len(data) > MAX_FILE_BYTES:
        raise fail(f"larger than {MAX_FILE_BYTES // 2**20} MiB: not an experiment file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        raise fail(f"not UTF-8 text (byte {data[err.start]:#04x} on line {line})") from None

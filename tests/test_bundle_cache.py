"""The Vega bundle's cache between runs (`sim.report.shell._vega_bundle`): used when whole,
rebuilt when missing or damaged, skipped when it cannot be written."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from sim.report import shell


@pytest.fixture
def built(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[list[int]]:
    """A stand-in builder that counts its calls; the cache in a fresh folder."""
    calls: list[int] = []

    def fake_bundle(snippet: object, vl_version: object = None) -> str:
        calls.append(1)
        return "var vegaEmbed = 1; // </script> <!-- x"

    monkeypatch.setattr(shell.vlc, "javascript_bundle", fake_bundle)
    monkeypatch.setenv("SIM_CACHE_DIR", str(tmp_path / "cache"))
    shell._vega_bundle.cache_clear()
    yield calls
    shell._vega_bundle.cache_clear()


def test_built_once_then_read_from_the_cache(built: list[int], tmp_path: Path) -> None:
    first = shell._vega_bundle()
    assert first == "var vegaEmbed = 1; // <\\/script> <\\!-- x"
    assert len(list((tmp_path / "cache").glob("vega-bundle-*.js"))) == 1
    shell._vega_bundle.cache_clear()  # a new process: only the file remains
    assert shell._vega_bundle() == first
    assert len(built) == 1


def test_damaged_cache_is_rebuilt_not_inlined(built: list[int], tmp_path: Path) -> None:
    shell._vega_bundle()
    (path,) = (tmp_path / "cache").glob("vega-bundle-*.js")
    path.write_text(path.read_text()[:-5])  # truncated
    shell._vega_bundle.cache_clear()
    assert shell._vega_bundle() == "var vegaEmbed = 1; // <\\/script> <\\!-- x"
    assert len(built) == 2
    path.write_bytes(b"\xff\xfe not text")
    shell._vega_bundle.cache_clear()
    assert shell._vega_bundle().startswith("var vegaEmbed")
    assert len(built) == 3


def test_unwritable_cache_is_skipped(
    built: list[int], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    monkeypatch.setenv("SIM_CACHE_DIR", str(blocker / "cache"))
    assert shell._vega_bundle().startswith("var vegaEmbed")
    shell._vega_bundle.cache_clear()
    assert shell._vega_bundle().startswith("var vegaEmbed")
    assert len(built) == 2

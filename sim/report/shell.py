"""The page shell every HTML report shares: inlined Vega bundle, CSS, chart embedding, saving.

A page is ``html_page(title, body)``: the head carries the CSS and the Vega, Vega-Lite and
vega-embed JavaScript from ``vl_convert.javascript_bundle()`` (inlined once, whatever the number
of charts), the body ends with one small loop that embeds every chart. ``chart_blocks`` turns
charts into ``<div>`` + JSON-spec pairs for that loop. Nothing here knows what a chart shows;
``sim.report`` and ``sim.trace_report`` build their pages on it.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import importlib.metadata
import json
import os
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final, TypeAlias

import altair as alt
import polars as pl
import vl_convert as vlc

Chart: TypeAlias = alt.Chart | alt.LayerChart | alt.FacetChart | alt.VConcatChart | alt.HConcatChart

_EMBED_OPTIONS: Final = {
    # "editor" would open vega.github.io; keep every action that works offline.
    "actions": {"export": True, "source": False, "compiled": False, "editor": False},
    "renderer": "svg",
}

_CSS: Final = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto;
       max-width: 1500px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: .2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
h3 { margin-top: 1.6rem; }
dl.meta { display: grid; grid-template-columns: max-content auto; gap: .2rem 1rem; }
dl.meta dt { font-weight: 600; } dl.meta dd { margin: 0; }
table.summary { border-collapse: collapse; font-size: .85rem; margin: .6rem 0; }
table.summary th, table.summary td { border: 1px solid #ccc; padding: .25rem .5rem; }
table.summary th { background: #f3f3f3; } td.num { text-align: right;
  font-variant-numeric: tabular-nums; }
td.risk-high { background: #f4a6a6; } td.risk-mid { background: #fbd38d; }
td.risk-low { background: #fdf2b3; }
td.better-high { background: #c6efce; } td.better-low { background: #f4a6a6; }
.chart { margin: 1rem 0; } .errors { color: #b00020; } .note { color: #555; }
p.uncalibrated { border: 2px solid #b00020; background: #fdecea; color: #b00020;
  padding: .5rem .8rem; font-size: 1.05rem; }
pre.config { background: #f7f7f7; padding: .8rem; overflow: auto; font-size: .8rem; }
"""

_EMBED_LOOP: Final = """
document.querySelectorAll('script[data-vega-spec]').forEach(function (node) {
  var target = document.getElementById(node.getAttribute('data-vega-spec'));
  vegaEmbed(target, JSON.parse(node.textContent), EMBED_OPTIONS).catch(function (err) {
    target.textContent = 'Chart failed to render: ' + err;
  });
});
"""


def _inline(frame: pl.DataFrame) -> dict[str, Any]:
    """Rows as inline Vega-Lite data, NaN turned into null (JSON has no NaN).

    Inline values bypass altair's data transformer and its 5,000-row limit. NOTE: a plain
    ``{"values": rows}`` dict, not ``alt.InlineData``, which validates every row on
    construction (0.55 s for the 2,016-cell heatmap of the tests vs 10 ms).
    """
    clean = frame.with_columns(pl.col(pl.Float32, pl.Float64).fill_nan(None))
    return {"values": clean.to_dicts()}


def _plans(frame: pl.DataFrame) -> list[str]:
    """Plans in order of first appearance, so each plan keeps its colour in every chart.

    The runner writes plans in config order, the first being the baseline of the paired
    differences; every chart passes this list as its colour (or facet) domain.
    """
    return [str(p) for p in frame.get_column("plan").unique(maintain_order=True).to_list()]


def _vl_version() -> str | None:
    """The Vega-Lite version vl-convert should use: the one altair's schema targets."""
    major_minor = ".".join(alt.SCHEMA_VERSION.lstrip("v").split(".")[:2])
    return major_minor if major_minor in vlc.get_vegalite_versions() else None


@functools.cache
def _vega_bundle() -> str:
    """vega + vega-lite + vega-embed as one script (≈ 0.9 MB), from the bundle cache when a
    previous run left it there, else built (1.6–2.8 s on a 2-core machine) and cached."""
    version = importlib.metadata.version("vl-convert-python")
    key = hashlib.sha256(f"{version}/{_vl_version()}".encode()).hexdigest()[:16]
    cached = _read_cached_bundle(key)
    if cached is not None:
        return cached
    # The stub marks `snippet` required; at run time None (the default) exposes `vegaEmbed`.
    js = vlc.javascript_bundle(None, vl_version=_vl_version())  # type: ignore[arg-type]
    # Neither can close or re-open the inline <script> early (both absent from vl-convert 1.9).
    js = js.replace("</script", "<\\/script").replace("<!--", "<\\!--")
    _write_cached_bundle(key, js)
    return js


def _bundle_cache_dir() -> Path:
    """Where the built bundle is kept between runs: `$SIM_CACHE_DIR`, else
    `$XDG_CACHE_HOME/sim`, else `~/.cache/sim`. A cache only: nothing needs it to exist."""
    explicit = os.environ.get("SIM_CACHE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "sim"


def _read_cached_bundle(key: str) -> str | None:
    """The cached bundle of `key`, or None when absent, unreadable or not whole: its first line
    holds the SHA-256 of the rest, so a truncated or edited file is rebuilt, never inlined."""
    try:
        text = (_bundle_cache_dir() / f"vega-bundle-{key}.js").read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError):
        return None
    head, _, body = text.partition("\n")
    if head != f"// sha256 {hashlib.sha256(body.encode()).hexdigest()}":
        return None
    return body


def _write_cached_bundle(key: str, js: str) -> None:
    """Keep the bundle for later runs; a cache that cannot be written is skipped silently."""
    folder = _bundle_cache_dir()
    text = f"// sha256 {hashlib.sha256(js.encode()).hexdigest()}\n{js}"
    with contextlib.suppress(OSError):
        folder.mkdir(parents=True, exist_ok=True)
        _atomic_write(folder / f"vega-bundle-{key}.js", text.encode())


def _script_json(obj: object) -> str:
    """JSON safe inside a <script> element: ``</`` and ``<!--`` cannot end or confuse it."""
    text = json.dumps(obj, allow_nan=False, sort_keys=False)
    return text.replace("</", "<\\/").replace("<!--", "<\\!--")


def chart_blocks(charts: Mapping[str, Chart]) -> str:
    """One ``<div>`` and its JSON spec per chart, for the embedding loop of ``html_page``."""
    return "\n".join(
        f'<div class="chart" id="chart-{key}"></div>\n'
        f'<script type="application/json" data-vega-spec="chart-{key}">'
        f"{_script_json(chart.to_dict())}</script>"
        for key, chart in charts.items()
    )


def html_page(title: str, body: str) -> str:
    """A whole self-contained page: ``title`` (escaped here) and ``body`` (HTML, as given).

    No network reference: the JavaScript is inlined once and every chart of ``body`` (from
    ``chart_blocks``) carries its data inline.
    """
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>{html.escape(title)}</title>
<style>{_CSS}</style>
<script type="text/javascript">
{_vega_bundle()}
</script>
</head>
<body>
{body}
<script type="text/javascript">
var EMBED_OPTIONS = {_script_json(_EMBED_OPTIONS)};
{_EMBED_LOOP}
</script>
</body>
</html>
"""


def _atomic_write(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temp file in the same folder and ``os.replace``, so a
    reader sees the old file or the new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; a report is for reading
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_png(chart: Chart, path: Path, *, scale: float = 2.0) -> Path:
    """Render ``chart`` to a PNG at ``path`` with vl-convert (no browser), atomically."""
    png = vlc.vegalite_to_png(chart.to_dict(), vl_version=_vl_version(), scale=scale)
    _atomic_write(Path(path), png)
    return Path(path)

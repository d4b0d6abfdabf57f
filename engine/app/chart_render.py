"""Drawing the chart data: PNG/SVG through matplotlib (Agg), HTML through vendored ECharts.

The HTML page is one self-contained file: ECharts (``static/echarts``, Apache-2.0), the
drawing code shared with the dashboard (``static/regime_charts.js``) and the chart data as
JSON (``<script id="chart-data">``), so it opens offline.
"""

from __future__ import annotations

import html
from importlib.resources import files
from pathlib import Path

import numpy as np
import orjson
from matplotlib import rc_context
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import Normalize
from matplotlib.figure import Figure

from engine.app.chart_data import HeatmapChart, ProfileChart, StrikesChart

Chart = ProfileChart | StrikesChart | HeatmapChart
OUT_SUFFIXES = (".png", ".svg", ".html")
REGIME_COLOURS = {"positive": "#2e7d32", "negative": "#c62828"}
_STATIC = files("engine.app") / "static"


def static_text(name: str) -> str:
    """A file of the package's ``static`` folder (vendored scripts), as text."""
    return (_STATIC / name).read_text(encoding="utf-8")


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _vline(ax, x: float | None, colour: str, style: str, label: str) -> None:
    if x is not None:
        ax.axvline(x, color=colour, linestyle=style, linewidth=1.2, label=f"{label} {_fmt(x)}")


def _walls(ax, chart: ProfileChart | StrikesChart, style: str) -> None:
    _vline(ax, chart.call_wall, "#1565c0", style, "call wall")
    _vline(ax, chart.put_wall, "#ef6c00", style, "put wall")


def _finish(ax, title: str, xlabel: str, ylabel: str, loc: str = "best") -> None:
    ax.set_title(title, fontsize=9)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=7, loc=loc)


def draw_profile(ax, chart: ProfileChart) -> None:
    for span in chart.spans:
        ax.axvspan(span.lo, span.hi, color=REGIME_COLOURS[span.regime], alpha=0.07, lw=0)
    for line in chart.lines:
        ax.plot(line.spots, line.values, linewidth=1.6, label=line.label)
    ax.axhline(0.0, color="black", linewidth=0.8)
    _vline(ax, chart.spot, "black", "-", "spot")
    for j, root in enumerate(chart.zero_gamma_crossings):
        chosen = root == chart.zero_gamma
        label = "zero gamma" if chosen else f"crossing {j + 1}"
        ax.axvline(root, color="#6a1b9a", linestyle="--" if chosen else ":", linewidth=1.2,
                   label=f"{label} {_fmt(root)}")  # fmt: skip
    _walls(ax, chart, "-.")
    _finish(ax, chart.title, "hypothetical spot", "dealer GEX, USD per 1%")


def draw_strikes(ax, chart: StrikesChart) -> None:
    strikes = np.asarray(chart.strikes)
    width = float(np.min(np.diff(strikes))) * 0.8 if strikes.size > 1 else 1.0
    ax.bar(strikes, chart.call_gex, width=width, color="#1565c0", label="calls")
    ax.bar(strikes, chart.put_gex, width=width, color="#ef6c00", label="puts")
    ax.plot(strikes, chart.net_gex, color="black", linewidth=1.0, marker=".", label="net")
    ax.axhline(0.0, color="black", linewidth=0.6)
    _vline(ax, chart.spot, "black", "-", "spot")
    _walls(ax, chart, "--")
    _finish(ax, chart.title, "strike", "dealer GEX, USD per 1%")


def draw_heatmap(ax, chart: HeatmapChart) -> None:
    gex = np.asarray(chart.gex).reshape(len(chart.strikes), len(chart.expiries))
    norm = Normalize(vmin=-chart.scale, vmax=chart.scale)
    image = ax.imshow(gex, aspect="auto", origin="lower", cmap="RdBu", norm=norm,
                      interpolation="nearest")  # fmt: skip
    ax.figure.colorbar(image, ax=ax, label="dealer GEX, USD per 1% (saturated)")
    ax.set_xticks(range(len(chart.expiries)), [e[:16].replace("T", " ") for e in chart.expiries],
                  rotation=45, fontsize=6)  # fmt: skip
    step = max(1, len(chart.strikes) // 20)
    ax.set_yticks(range(0, len(chart.strikes), step), [_fmt(s) for s in chart.strikes[::step]],
                  fontsize=6)  # fmt: skip
    if chart.strikes:
        y = float(np.interp(chart.spot, chart.strikes, np.arange(len(chart.strikes))))
        ax.axhline(y, color="black", linewidth=1.0, label=f"spot {_fmt(chart.spot)}")
    if chart.largest is not None:
        strike, expiry, value = chart.largest
        row, col = chart.strikes.index(strike), chart.expiries.index(expiry)
        ax.scatter([col], [row], marker="s", s=60, facecolors="none", edgecolors="black",
                   label=f"largest {_fmt(strike)} {expiry[:10]} {value:+.3g}")  # fmt: skip
    _finish(ax, chart.title, "expiry", "strike", loc="upper right")


_DRAW = {ProfileChart: draw_profile, StrikesChart: draw_strikes, HeatmapChart: draw_heatmap}


def render_image(charts: list[Chart], path: Path) -> None:
    """PNG or SVG (by suffix), one panel per chart; text kept as text in SVG."""
    figure = Figure(figsize=(11, 4.2 * len(charts)), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    for j, chart in enumerate(charts):
        _DRAW[type(chart)](figure.add_subplot(len(charts), 1, j + 1), chart)
    with rc_context({"svg.fonttype": "none"}):  # SVG text as <text>, not glyph paths
        figure.savefig(path, format=path.suffix[1:])


def render_html(charts: list[Chart], path: Path, title: str) -> None:
    """One self-contained page: ECharts, the shared drawing code and the data inline."""
    data = orjson.dumps([{"kind": _KIND[type(c)], **c.to_dict()} for c in charts]).decode()
    page = _HTML.format(
        title=html.escape(title),
        echarts=static_text("echarts/echarts.min.js"),
        charts_js=static_text("regime_charts.js"),
        data=data.replace("</", "<\\/"),
        panels="\n".join(f'<div class="panel" id="chart-{j}"></div>' for j in range(len(charts))),
    )
    path.write_text(page, encoding="utf-8")


_KIND = {ProfileChart: "profile", StrikesChart: "strikes", HeatmapChart: "heatmap"}

_HTML = """<!doctype html>
<html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:12px}} .panel{{width:100%;height:420px}}</style>
<script>{echarts}</script>
<script>{charts_js}</script>
</head><body>
{panels}
<script id="chart-data" type="application/json">{data}</script>
<script>
const charts = JSON.parse(document.getElementById("chart-data").textContent);
charts.forEach((c, j) => {{
  const chart = echarts.init(document.getElementById("chart-" + j));
  chart.setOption(RegimeCharts.option(c));
}});
</script>
</body></html>
"""


def render(charts: list[Chart], path: Path, title: str) -> None:
    """Write the charts to ``path`` (.png, .svg or .html)."""
    if path.suffix == ".html":
        render_html(charts, path, title)
    else:
        render_image(charts, path)

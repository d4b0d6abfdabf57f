"""`regime-engine chart`: the data behind each chart is the engine's, the files show it."""

from __future__ import annotations

import re
from html.parser import HTMLParser

import numpy as np
import orjson
import pytest
from matplotlib.image import imread

from connectors.simulator.deribit_session import SessionConfig, write_session
from engine.app.chain_books import load_books
from engine.app.chart_data import (
    HEATMAP_QUANTILE,
    charts_of,
    heatmap_chart,
    regime_spans,
    robust_scale,
)
from engine.app.cli import main
from engine.core.config import LevelsConfig
from engine.core.profile import Heatmap, compute_profile, strike_expiry_gex
from tests.app.test_cli_levels import HANDMADE, per_contract
from tests.paths import DATA

SMALL_CSV = DATA / "cboe_small.csv"


def levels_json(capsys, *args: str) -> dict:
    assert main(["levels", *args, "--json"]) == 0
    return orjson.loads(capsys.readouterr().out)


@pytest.fixture(scope="module")
def handmade():
    (loaded,) = load_books(HANDMADE, "cboe-csv", LevelsConfig())
    profile, strikes, heatmap = charts_of(
        loaded.book, loaded.levels, ("profile", "strikes", "heatmap"), "all"
    )
    return loaded, profile, strikes, heatmap


def test_profile_markers_are_the_levels_json(handmade, capsys):
    levels = levels_json(capsys, str(HANDMADE), "--format", "cboe-csv")
    loaded, profile, _, _ = handmade
    assert profile.spot == levels["spot"] == 4000.0
    assert profile.zero_gamma == levels["zero_gamma"]
    assert profile.zero_gamma == pytest.approx(3901.76, abs=0.01)  # hand-checked (levels test)
    assert profile.zero_gamma_crossings == levels["zero_gamma_crossings"]
    assert (profile.call_wall, profile.put_wall) == (levels["call_wall"], levels["put_wall"])
    assert (profile.call_wall, profile.put_wall) == (4200.0, 3800.0)
    assert profile.title.startswith("SPX dealer gamma profile [all]  as of 2023-12-22T14:00:00Z")
    assert "long_calls_short_puts" in profile.title
    # One line per distinct bucket: 'front' holds the same expiry as 'all'; 0dte is empty.
    assert [line.label for line in profile.lines] == ["all = front"]
    (line,) = profile.lines
    assert line.spots == loaded.book.grid_spots.tolist()
    assert line.values == loaded.book.profile[0].tolist()  # the book's own profile row
    assert len(line.spots) == LevelsConfig().grid_points
    # Shading: negative below the single crossing, positive above.
    assert [(s.lo, s.hi, s.regime) for s in profile.spans] == [
        (line.spots[0], profile.zero_gamma, "negative"),
        (profile.zero_gamma, line.spots[-1], "positive"),
    ]


def test_strike_bars_are_the_hand_computed_gex(handmade, capsys):
    levels = levels_json(capsys, str(HANDMADE), "--format", "cboe-csv")
    _, _, strikes, _ = handmade
    # ±10 % around 4000, strikes with a contribution (4400 has IV 0: no usable gamma).
    assert strikes.strikes == [3800.0, 4000.0, 4200.0]
    assert strikes.call_gex == pytest.approx(
        [0.0, 1000 * per_contract(4000), 1500 * per_contract(4200)], rel=1e-12
    )
    assert strikes.put_gex == pytest.approx(
        [-2000 * per_contract(3800), -500 * per_contract(4000), 0.0], rel=1e-12
    )
    assert strikes.net_gex == [
        c + p for c, p in zip(strikes.call_gex, strikes.put_gex, strict=True)
    ]
    assert sum(strikes.net_gex) == pytest.approx(levels["net_gex"], rel=1e-12)
    assert (strikes.call_wall, strikes.put_wall) == (levels["call_wall"], levels["put_wall"])


def test_heatmap_cells_sum_to_the_strike_bars_and_mark_the_largest(handmade, capsys):
    levels = levels_json(capsys, str(HANDMADE), "--format", "cboe-csv")
    _, _, strikes, heatmap = handmade
    assert heatmap.expiries == levels["buckets"]["all"]["expiries"] == ["2024-03-22T20:00:00Z"]
    assert heatmap.strikes == strikes.strikes
    assert [row[0] for row in heatmap.gex] == pytest.approx(strikes.net_gex, rel=1e-12)
    assert heatmap.largest == (3800.0, "2024-03-22T20:00:00Z", heatmap.gex[0][0])
    assert heatmap.largest[2] == pytest.approx(-2000 * per_contract(3800), rel=1e-12)
    assert heatmap.largest[0] == levels["abs_gamma_strike"]


def test_heatmap_scale_is_robust_to_one_outlier():
    gex = np.array([[1.0, -2.0, 3.0], [4.0, 0.0, -1e12]])
    scale = robust_scale(gex)
    assert scale == pytest.approx(np.quantile([1, 2, 3, 4, 1e12], HEATMAP_QUANTILE))
    assert robust_scale(np.zeros((2, 2))) == 1.0
    # a 100-cell map with one huge cell: the scale stays at the ordinary cells' size
    cells = np.full((10, 10), 5.0)
    cells[3, 4] = 1e15
    assert robust_scale(cells) == 5.0


def test_heatmap_largest_cell_by_magnitude_within_the_window():
    (loaded,) = load_books(HANDMADE, "cboe-csv", LevelsConfig())  # spot 4000
    heat = Heatmap(
        strikes=np.array([3200.0, 3800.0, 4000.0, 4200.0, 5200.0]),
        expiries_ns=np.array([1_700_000_000_000_000_000, 1_700_086_400_000_000_000]),
        gex=np.array([[9e9, 0], [1.0, -7.0], [2.0, 3.0], [0.0, 5.0], [-9e9, 0]]),
    )
    chart = heatmap_chart(loaded.levels, heat, "all")
    assert chart.strikes == [3800.0, 4000.0, 4200.0]  # 3200 and 5200 are outside ±10 %
    assert chart.largest == (3800.0, "2023-11-15T22:13:20Z", -7.0)
    assert chart.expiries == ["2023-11-14T22:13:20Z", "2023-11-15T22:13:20Z"]


def test_regime_spans_cut_at_every_crossing():
    spots = [1.0, 2.0, 3.0, 4.0, 5.0]
    values = [-1.0, 1.0, 2.0, -3.0, -1.0]
    spans = regime_spans(spots, values, [1.5, 3.4])
    assert [(s.lo, s.hi, s.regime) for s in spans] == [
        (1.0, 1.5, "negative"),
        (1.5, 3.4, "positive"),
        (3.4, 5.0, "negative"),
    ]


def non_white_fraction(path) -> float:
    pixels = imread(path)[..., :3]
    return float(np.mean(np.any(pixels < 0.95, axis=-1)))


def test_png_has_one_panel_per_kind_and_is_not_blank(tmp_path):
    out = tmp_path / "all.png"
    assert main(["chart", str(HANDMADE), "--format", "cboe-csv", "--out", str(out)]) == 0
    pixels = imread(out)
    assert pixels.shape[:2] == (1260, 1100)  # 3 panels of 4.2 in at 100 dpi, 11 in wide
    assert out.stat().st_size > 50_000
    assert non_white_fraction(out) > 0.2
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) > 100
    one = tmp_path / "profile.png"
    args = ["chart", str(HANDMADE), "--format", "cboe-csv", "--kind", "profile"]
    assert main([*args, "--out", str(one)]) == 0
    assert imread(one).shape[:2] == (420, 1100)
    assert non_white_fraction(one) > 0.05


def test_svg_names_the_levels(tmp_path, capsys):
    levels = levels_json(capsys, str(HANDMADE), "--format", "cboe-csv")
    out = tmp_path / "chart.svg"
    assert main(["chart", str(HANDMADE), "--format", "cboe-csv", "--out", str(out)]) == 0
    text = out.read_text()
    assert text.startswith("<?xml")
    for label, key in (("zero gamma", "zero_gamma"), ("call wall", "call_wall"),
                       ("put wall", "put_wall"), ("spot", "spot")):  # fmt: skip
        assert f"{label} {levels[key]:.2f}" in text
    assert "largest 3800.00 2024-03-22" in text


class _Scripts(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.srcs: list[str] = []
        self.links: list[str] = []
        self.data: dict[str, str] = {}
        self._id: str | None = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag == "script":
            self._id = attrs.get("id")
            if "src" in attrs:
                self.srcs.append(attrs["src"])
        if tag == "link":
            self.links.append(attrs.get("href", ""))

    def handle_data(self, data):
        if self._id:
            self.data[self._id] = data

    def handle_endtag(self, tag):
        if tag == "script":
            self._id = None


def test_html_is_self_contained_and_carries_the_chart_data(tmp_path, handmade):
    out = tmp_path / "chart.html"
    assert main(["chart", str(HANDMADE), "--format", "cboe-csv", "--out", str(out)]) == 0
    page = out.read_text()
    parser = _Scripts()
    parser.feed(page)
    assert parser.srcs == [] and parser.links == []  # nothing fetched at view time
    assert "Apache" in page and "echarts" in page  # the vendored library, inline
    data = orjson.loads(parser.data["chart-data"])
    _, profile, strikes, heatmap = handmade
    assert [d["kind"] for d in data] == ["profile", "strikes", "heatmap"]
    assert data[0]["zero_gamma"] == profile.zero_gamma
    assert data[0]["call_wall"] == 4200.0 and data[0]["put_wall"] == 3800.0
    assert data[1]["call_gex"] == strikes.call_gex
    assert data[2]["largest"] == list(heatmap.largest)


def test_cli_usage_errors_are_one_line(tmp_path, capsys):
    base = ["chart", str(HANDMADE), "--format", "cboe-csv"]
    cases = [
        ([*base, "--out", str(tmp_path / "x.pdf")], "--out must end in .png, .svg, .html"),
        ([*base, "--bucket", "0dte", "--out", str(tmp_path / "x.png")], "bucket '0dte' has no"),
        ([*base, "--out", str(tmp_path / "missing" / "x.png")], "x.png"),
        ([*base, "--underlying", "NDX", "--out", str(tmp_path / "x.png")], "no 'NDX'"),
        (["chart", "nope.csv", "--format", "cboe-csv", "--out", "x.png"], "nope.csv"),
    ]
    for argv, expected in cases:
        assert main(argv) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and expected in err, err
        assert "Traceback" not in err


def test_chart_of_a_real_chain_marks_every_crossing(tmp_path, capsys):
    levels = levels_json(capsys, str(SMALL_CSV), "--format", "cboe-csv")
    (loaded,) = load_books(SMALL_CSV, "cboe-csv", LevelsConfig())
    (profile,) = charts_of(loaded.book, loaded.levels, ("profile",), "all")
    assert profile.zero_gamma_crossings == levels["zero_gamma_crossings"]
    assert len(profile.zero_gamma_crossings) == 2
    assert len(profile.spans) == 3
    out = tmp_path / "p.svg"
    args = ["chart", str(SMALL_CSV), "--format", "cboe-csv", "--kind", "profile"]
    assert main([*args, "--out", str(out)]) == 0
    text = out.read_text()
    assert f"zero gamma {levels['zero_gamma']:.2f}" in text
    other = [r for r in levels["zero_gamma_crossings"] if r != levels["zero_gamma"]]
    assert f"crossing 2 {other[0]:.2f}" in text
    # the profile object is the book's rows, bucket by bucket
    full = compute_profile(loaded.book)
    assert full.buckets["front"].profile == tuple(loaded.book.profile[2].tolist())


def test_chart_from_a_capture(tmp_path, capsys):
    path = tmp_path / "btc.jsonl"
    write_session(
        SessionConfig(n_instruments=300, duration_s=60, seed=3, ticker_interval_s=10), path
    )
    levels = levels_json(capsys, str(path), "--format", "capture")
    out = tmp_path / "btc.html"
    args = ["chart", str(path), "--format", "capture", "--bucket", "front", "--out", str(out)]
    assert main(args) == 0
    parser = _Scripts()
    parser.feed(out.read_text())
    data = orjson.loads(parser.data["chart-data"])
    front = levels["buckets"]["front"]
    assert data[0]["zero_gamma"] == front["zero_gamma"]
    assert (data[1]["call_wall"], data[1]["put_wall"]) == (front["call_wall"], front["put_wall"])
    assert re.search(r"BTC dealer gamma profile \[front\]", data[0]["title"])


def test_heatmap_rows_sum_over_expiries_to_the_strike_gex_of_a_real_chain():
    (loaded,) = load_books(SMALL_CSV, "cboe-csv", LevelsConfig())
    book = loaded.book
    heat = strike_expiry_gex(book, "all")
    assert heat.expiries_ns.tolist() == book.bucket_expiries("all")
    assert heat.gex.shape == (len(heat.strikes), len(heat.expiries_ns)) and heat.gex.shape[1] > 1
    profile = compute_profile(book).buckets["all"]
    sums = [c + p for c, p in zip(profile.call_gex, profile.put_gex, strict=True)]
    net = dict(zip(profile.strikes, sums, strict=True))
    assert heat.strikes.tolist() == list(profile.strikes)
    assert heat.gex.sum(axis=1) == pytest.approx([net[s] for s in heat.strikes], rel=1e-12)
    assert heat.gex.sum() == pytest.approx(loaded.levels.net_gex, rel=1e-12)

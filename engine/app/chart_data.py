"""The data behind each chart: exactly the engine's numbers, arranged for drawing.

Profile and strike charts are built from a levels object and a profile object (what
``regime:levels:{U}`` and ``regime:profile:{U}`` hold), so `regime-engine chart` and the
dashboard draw the same thing from the same data; the heatmap needs the book itself.
Every dataclass here has ``to_dict`` (the JSON the HTML pages draw from).
"""

from __future__ import annotations

import itertools
from dataclasses import asdict, dataclass

import numpy as np

from engine.core.book import GammaBook
from engine.core.profile import Heatmap, compute_profile, strike_expiry_gex
from schemas.levels import BUCKETS, Levels, format_asof
from schemas.profile import Profile

KINDS = ("profile", "strikes", "heatmap")
DEFAULT_WINDOW = 0.10  # strike bars and heatmap: strikes within ±10 % of spot
HEATMAP_QUANTILE = 0.98  # colour scale saturates at this quantile of |GEX| over non-zero cells


@dataclass(frozen=True, slots=True)
class Line:
    label: str  # bucket name, or "0dte = front" when buckets hold the same expiries
    spots: list[float]
    values: list[float]


@dataclass(frozen=True, slots=True)
class Span:
    lo: float
    hi: float
    regime: str  # "positive" | "negative": sign of the marked bucket's profile on the span


@dataclass(frozen=True, slots=True)
class _Chart:
    title: str
    bucket: str  # whose data, markers and shading are drawn
    spot: float

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True, slots=True)
class ProfileChart(_Chart):
    lines: list[Line]
    zero_gamma: float | None
    zero_gamma_crossings: list[float]
    call_wall: float | None
    put_wall: float | None
    spans: list[Span]


@dataclass(frozen=True, slots=True)
class StrikesChart(_Chart):
    strikes: list[float]
    call_gex: list[float]
    put_gex: list[float]
    net_gex: list[float]
    call_wall: float | None
    put_wall: float | None


@dataclass(frozen=True, slots=True)
class HeatmapChart(_Chart):
    strikes: list[float]
    expiries: list[str]  # ISO settlement instants
    gex: list[list[float]]  # gex[strike][expiry]
    scale: float  # colours span [-scale, +scale]; beyond it they saturate
    largest: tuple[float, str, float] | None  # (strike, expiry, GEX) of the largest |cell|


def title_of(levels: Levels, what: str, bucket: str) -> str:
    return (
        f"{levels.underlying} {what} [{bucket}]  as of {format_asof(levels.asof_ns)}  "
        f"model {levels.model}  (USD per 1% move)"
    )


def distinct_buckets(levels: Levels) -> list[tuple[str, str]]:
    """(label, bucket) for each bucket with contracts, buckets over the same expiries once."""
    out: list[tuple[list[str], tuple[str, ...]]] = []
    for name in BUCKETS:
        bucket = levels.buckets[name]
        if bucket.contracts_used == 0:
            continue
        for names, expiries in out:
            if expiries == bucket.expiries:
                names.append(name)
                break
        else:
            out.append(([name], bucket.expiries))
    return [(" = ".join(names), names[0]) for names, _ in out]


def regime_spans(spots: list[float], values: list[float], crossings: list[float]) -> list[Span]:
    """The grid's range cut at the crossings, each piece labelled by the profile's sign."""
    if not spots:
        return []
    edges = [spots[0], *[c for c in crossings if spots[0] < c < spots[-1]], spots[-1]]
    xs, ys = np.asarray(spots), np.asarray(values)
    spans = []
    for lo, hi in itertools.pairwise(edges):
        inside = ys[(xs > lo) & (xs < hi)]
        mid = float(np.interp(0.5 * (lo + hi), xs, ys)) if inside.size == 0 else inside.sum()
        spans.append(Span(lo, hi, "positive" if mid > 0 else "negative"))
    return spans


def profile_chart(levels: Levels, profile: Profile, bucket: str) -> ProfileChart:
    marked = levels.buckets[bucket]
    lines = [
        Line(label, list(profile.buckets[name].spots), list(profile.buckets[name].profile))
        for label, name in distinct_buckets(levels)
    ]
    row = profile.buckets[bucket]
    return ProfileChart(
        title=title_of(levels, "dealer gamma profile", bucket),
        bucket=bucket,
        spot=levels.spot,
        lines=lines,
        zero_gamma=marked.zero_gamma,
        zero_gamma_crossings=list(marked.zero_gamma_crossings),
        call_wall=marked.call_wall,
        put_wall=marked.put_wall,
        spans=regime_spans(list(row.spots), list(row.profile), list(marked.zero_gamma_crossings))
        if marked.contracts_used
        else [],
    )


def strikes_chart(
    levels: Levels, profile: Profile, bucket: str, window: float = DEFAULT_WINDOW
) -> StrikesChart:
    row = profile.buckets[bucket]
    marked = levels.buckets[bucket]
    lo, hi = levels.spot * (1 - window), levels.spot * (1 + window)
    keep = [j for j, s in enumerate(row.strikes) if lo <= s <= hi]
    call = [row.call_gex[j] for j in keep]
    put = [row.put_gex[j] for j in keep]
    return StrikesChart(
        title=title_of(levels, "net dealer GEX by strike", bucket),
        bucket=bucket,
        spot=levels.spot,
        strikes=[row.strikes[j] for j in keep],
        call_gex=call,
        put_gex=put,
        net_gex=[c + p for c, p in zip(call, put, strict=True)],
        call_wall=marked.call_wall,
        put_wall=marked.put_wall,
    )


def robust_scale(gex: np.ndarray, quantile: float = HEATMAP_QUANTILE) -> float:
    """Colour scale of a heatmap: a high quantile of |GEX| over the non-zero cells, so one
    outlier saturates instead of flattening the rest (1.0 when every cell is zero)."""
    magnitudes = np.abs(gex[gex != 0])
    if magnitudes.size == 0:
        return 1.0
    return float(np.quantile(magnitudes, quantile))


def heatmap_chart(
    levels: Levels, heatmap: Heatmap, bucket: str, window: float = DEFAULT_WINDOW
) -> HeatmapChart:
    lo, hi = levels.spot * (1 - window), levels.spot * (1 + window)
    keep = (heatmap.strikes >= lo) & (heatmap.strikes <= hi)
    strikes, gex = heatmap.strikes[keep], heatmap.gex[keep]
    expiries = [format_asof(int(e)) for e in heatmap.expiries_ns]
    largest = None
    if gex.size and np.any(gex != 0):
        r, c = np.unravel_index(int(np.argmax(np.abs(gex))), gex.shape)
        largest = (float(strikes[r]), expiries[c], float(gex[r, c]))
    return HeatmapChart(
        title=title_of(levels, "dealer GEX by strike and expiry", bucket),
        bucket=bucket,
        spot=levels.spot,
        strikes=strikes.tolist(),
        expiries=expiries,
        gex=gex.tolist(),
        scale=robust_scale(gex),
        largest=largest,
    )


def charts_of(book: GammaBook, levels: Levels, kinds: tuple[str, ...], bucket: str) -> list:
    """The charts of ``kinds`` (in KINDS order) of one book, for one bucket."""
    profile = compute_profile(book) if {"profile", "strikes"} & set(kinds) else None
    out: list[ProfileChart | StrikesChart | HeatmapChart] = []
    for kind in KINDS:
        if kind not in kinds:
            continue
        if kind == "profile":
            out.append(profile_chart(levels, profile, bucket))
        elif kind == "strikes":
            out.append(strikes_chart(levels, profile, bucket))
        else:
            out.append(heatmap_chart(levels, strike_expiry_gex(book, bucket), bucket))
    return out

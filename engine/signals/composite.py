"""The joined read of a crypto underlying: dealer gamma regime × DVOL band × funding state."""

from __future__ import annotations

from dataclasses import dataclass

GAMMA_STATES = ("positive", "transition", "negative")
DVOL_BANDS = ("compressed", "normal", "elevated")
FUNDING_STATES = ("extreme_positive", "neutral", "extreme_negative")
COMPONENTS = ("gamma", "dvol", "funding")


@dataclass(frozen=True, slots=True)
class CompositeRead:
    """A named joined read and what it means, in one line."""

    name: str
    meaning: str


_R = CompositeRead
# (dealer gamma regime, DVOL band, funding state) → the read. The README's table is checked
# against this one by a test.
COMPOSITE_READS: dict[tuple[str, str, str], CompositeRead] = {
    ("negative", "elevated", "extreme_positive"): _R(
        "long_squeeze_risk",
        "Dealers amplify moves, vol is bid and longs are crowded: a drop can cascade "
        "through long liquidations.",
    ),
    ("negative", "elevated", "neutral"): _R(
        "volatile_trend",
        "Dealers amplify moves that options already price as large: trending, expanding ranges.",
    ),
    ("negative", "elevated", "extreme_negative"): _R(
        "short_squeeze_risk",
        "Dealers amplify moves, vol is bid and shorts are crowded: a rally can cascade "
        "through short liquidations.",
    ),
    ("negative", "normal", "extreme_positive"): _R(
        "crowded_longs_amplified",
        "Dealers amplify moves and longs are crowded: downside moves can accelerate.",
    ),
    ("negative", "normal", "neutral"): _R(
        "trend_prone",
        "Dealers amplify moves: ranges tend to expand and breakouts follow through.",
    ),
    ("negative", "normal", "extreme_negative"): _R(
        "crowded_shorts_amplified",
        "Dealers amplify moves and shorts are crowded: upside moves can accelerate.",
    ),
    ("negative", "compressed", "extreme_positive"): _R(
        "coiled_long_heavy",
        "Cheap vol, crowded longs and dealers short gamma: a shock would be amplified, "
        "most likely lower.",
    ),
    ("negative", "compressed", "neutral"): _R(
        "coiled_spring",
        "Vol is cheap while dealers amplify moves: a breakout would be underpriced and fast.",
    ),
    ("negative", "compressed", "extreme_negative"): _R(
        "coiled_short_heavy",
        "Cheap vol, crowded shorts and dealers short gamma: a shock would be amplified, "
        "most likely higher.",
    ),
    ("transition", "elevated", "extreme_positive"): _R(
        "flip_zone_stressed_longs",
        "Spot at the gamma flip with vol bid and longs crowded: a break lower turns dealers "
        "into sellers of a long liquidation.",
    ),
    ("transition", "elevated", "neutral"): _R(
        "flip_zone_volatile",
        "Spot at the gamma flip with vol bid: the next move decides whether dealers damp "
        "or amplify it.",
    ),
    ("transition", "elevated", "extreme_negative"): _R(
        "flip_zone_stressed_shorts",
        "Spot at the gamma flip with vol bid and shorts crowded: a break higher turns dealers "
        "into buyers of a short squeeze.",
    ),
    ("transition", "normal", "extreme_positive"): _R(
        "flip_zone_crowded_longs",
        "Spot at the gamma flip with longs crowded: a downside break is the fragile side.",
    ),
    ("transition", "normal", "neutral"): _R(
        "flip_zone",
        "Spot at the gamma flip: the regime is undecided.",
    ),
    ("transition", "normal", "extreme_negative"): _R(
        "flip_zone_crowded_shorts",
        "Spot at the gamma flip with shorts crowded: an upside break is the fragile side.",
    ),
    ("transition", "compressed", "extreme_positive"): _R(
        "flip_zone_quiet_longs",
        "Quiet vol at the gamma flip with longs crowded: a drift whose downside break "
        "would accelerate.",
    ),
    ("transition", "compressed", "neutral"): _R(
        "flip_zone_quiet",
        "Quiet vol at the gamma flip: small moves, but no dealer cushion once spot leaves "
        "the zone.",
    ),
    ("transition", "compressed", "extreme_negative"): _R(
        "flip_zone_quiet_shorts",
        "Quiet vol at the gamma flip with shorts crowded: a drift whose upside break "
        "would accelerate.",
    ),
    ("positive", "elevated", "extreme_positive"): _R(
        "dampened_crowded_longs",
        "Dealers damp moves though vol is bid and longs pay up: implied vol looks rich and "
        "crowded longs bleed funding.",
    ),
    ("positive", "elevated", "neutral"): _R(
        "rich_vol_range",
        "Dealers damp moves while options price large ones: implied vol looks rich, ranges hold.",
    ),
    ("positive", "elevated", "extreme_negative"): _R(
        "dampened_crowded_shorts",
        "Dealers damp moves though vol is bid and shorts pay up: implied vol looks rich and "
        "crowded shorts bleed funding.",
    ),
    ("positive", "normal", "extreme_positive"): _R(
        "pinned_crowded_longs",
        "Dealers damp moves while longs pay high funding: range-bound, carry favours shorts.",
    ),
    ("positive", "normal", "neutral"): _R(
        "mean_reverting",
        "Dealers damp moves: dips and rallies fade, ranges compress.",
    ),
    ("positive", "normal", "extreme_negative"): _R(
        "pinned_crowded_shorts",
        "Dealers damp moves while shorts pay high funding: range-bound, carry favours longs.",
    ),
    ("positive", "compressed", "extreme_positive"): _R(
        "pinned_quiet_longs",
        "Cheap vol, dealers damping and crowded longs: a tight range whose risk is a "
        "funding-driven unwind, not a dealer-driven one.",
    ),
    ("positive", "compressed", "neutral"): _R(
        "pinned_low_vol",
        "Dealers damp moves and vol is cheap: tight range, low realised vol.",
    ),
    ("positive", "compressed", "extreme_negative"): _R(
        "pinned_quiet_shorts",
        "Cheap vol, dealers damping and crowded shorts: a tight range whose risk is a "
        "funding-driven squeeze, not a dealer-driven one.",
    ),
}
del _R


def composite_read(gamma: str | None, dvol: str | None, funding: str | None) -> str | None:
    """The named read of a combination; None while a component is unknown."""
    read = COMPOSITE_READS.get((gamma, dvol, funding))  # type: ignore[arg-type]
    return None if read is None else read.name

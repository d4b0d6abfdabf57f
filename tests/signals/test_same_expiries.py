"""Buckets holding the same expiries: levels say same_as, each event is published once."""

from __future__ import annotations

from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.levels import compute_levels
from engine.signals.detector import DetectorConfig, RegimeDetector, Trigger
from schemas.levels import BucketLevels, Levels, same_expiries
from tests.core.test_book_incremental import SPOT, T0, make_contract
from tests.signals.test_detector import S, bucket

EXPIRY = ("2023-11-15T08:00:00Z",)
LATER = ("2023-11-15T08:00:00Z", "2023-11-16T08:00:00Z")


def shared_levels(spot: float, ts: int, all_expiries: tuple[str, ...] = LATER) -> Levels:
    near = BucketLevels(**{**_fields(bucket()), "expiries": EXPIRY})
    wide = BucketLevels(**{**_fields(bucket(zero_gamma=120.0)), "expiries": all_expiries})
    return Levels("BTC", spot, ts, "long_calls_short_puts", None, "iv",
                  {"all": wide, "0dte": near, "front": near})  # fmt: skip


def _fields(b: BucketLevels) -> dict[str, object]:
    return {name: getattr(b, name) for name in BucketLevels.__slots__}


def test_same_expiries_groups_narrowest_first():
    levels = shared_levels(100.0, T0)
    groups = same_expiries(levels.buckets)
    assert groups == {"all": ("all",), "0dte": ("0dte", "front"), "front": ("0dte", "front")}
    one = shared_levels(100.0, T0, all_expiries=EXPIRY)
    assert same_expiries(one.buckets)["all"] == ("0dte", "front", "all")
    empty = BucketLevels(0.0, None, (), None, None, None, None, 0)
    assert same_expiries({"0dte": empty, "front": empty}) == {
        "0dte": ("0dte",),
        "front": ("front",),
    }


def test_levels_of_a_book_whose_front_is_the_0dte_expiry_say_same_as():
    book = GammaBook("TST", "deribit", LevelsConfig(), SPOT, T0)
    # expiry 0 (2 h) is today's and the front; expiry 3 (80 h) is later
    book.upsert([make_contract(s, e, c, 0.5, 100.0, 1.0) for s in (95, 100, 105)
                 for e in (0, 3) for c in (True, False)])  # fmt: skip
    levels = compute_levels(book).buckets
    assert (levels["0dte"].same_as, levels["front"].same_as, levels["all"].same_as) == (
        "front",
        "0dte",
        None,
    )
    assert levels["0dte"].expiries == levels["front"].expiries != levels["all"].expiries
    assert levels["front"].to_dict()["same_as"] == "0dte"


def test_one_crossing_is_one_event_listing_both_buckets():
    detector = RegimeDetector("BTC", DetectorConfig(band_bps=10, dwell_s=0), clock_ns=lambda: 1)
    out = []
    for n, spot in enumerate((101.0, 99.0)):
        trigger = Trigger("md.underlying.v1", 0, n, T0 + n * S)
        out += detector.evaluate(shared_levels(spot, T0 + n * S), trigger)
    flips = [
        (e.type, e.bucket, e.detail.get("buckets"), e.id) for e in out if e.type == "flip_cross"
    ]
    # "all" has its zero gamma at 120 (no crossing); 0dte and front cross 100 together
    assert flips == [
        ("flip_cross", "0dte", ["0dte", "front"], "md.underlying.v1/0/1/flip_cross/0dte")
    ]
    regime = [(e.bucket, e.detail.get("buckets")) for e in out if e.type == "regime_change"]
    assert regime == []  # net GEX stayed positive


def test_without_0dte_in_the_detector_the_front_carries_the_event():
    cfg = DetectorConfig(band_bps=10, dwell_s=0, buckets=("all", "front"))
    detector = RegimeDetector("BTC", cfg, clock_ns=lambda: 1)
    out = []
    for n, spot in enumerate((101.0, 99.0)):
        trigger = Trigger("md.underlying.v1", 0, n, T0 + n * S)
        out += detector.evaluate(shared_levels(spot, T0 + n * S), trigger)
    assert [(e.type, e.bucket, e.detail.get("buckets")) for e in out] == [
        ("flip_cross", "front", None)
    ]

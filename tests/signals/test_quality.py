"""The signal-quality counting (engine.signals.quality) on sessions with known crossings."""

from __future__ import annotations

import pytest

from engine.signals.quality import TrueCrossing, TypeScore, score
from schemas.events import RegimeEvent

S = 1_000_000_000
T0 = 1_700_000_000 * S


def event(type_: str, seconds: float, level: float, direction: str = "down", bucket: str = "all",
          buckets: list[str] | None = None) -> RegimeEvent:  # fmt: skip
    detail = {} if buckets is None else {"buckets": buckets}
    return RegimeEvent(
        id=f"t/0/{seconds}/{type_}/{bucket}",
        type=type_,
        underlying="BTC",
        bucket=bucket,
        direction=direction,
        ts_event=T0 + int(seconds * S),
        ts_emit=0,
        spot=100.0,
        level=level,
        regime="negative",
        levels={},
        model="long_calls_short_puts",
        detail=detail,
    )


CROSSINGS = [
    TrueCrossing(T0 + 10 * S, "zero_gamma", "down", 100.0),
    TrueCrossing(T0 + 100 * S, "zero_gamma", "up", 100.5),
    TrueCrossing(T0 + 200 * S, "put_wall", "down", 95.0),
    TrueCrossing(T0 + 300 * S, "put_wall", "down", 90.0),  # missed
]


def test_counts_detections_duplicates_false_events_and_delays():
    events = [
        event("flip_cross", 13.0, 100.4),  # detects the first crossing, 3 s late
        event("flip_cross", 20.0, 99.8),  # a duplicate of it (same direction, in the window)
        event("flip_cross", 101.0, 100.2, "up"),  # detects the second, 1 s late
        event("flip_cross", 150.0, 100.0, "down"),  # no crossing near: false
        event("flip_cross", 14.0, 102.0),  # level 2 % off: false
        event("put_wall_break", 205.0, 95.0, bucket="0dte", buckets=["0dte", "all"]),  # counts
        event("put_wall_break", 206.0, 95.0, bucket="front"),  # another bucket: ignored
        event("put_wall_break", 250.0, 95.0),  # beyond the 30 s window: false
        event("call_wall_break", 5.0, 110.0, "up"),  # no call-wall crossing at all: false
    ]
    scores = score(events, CROSSINGS)
    flip, put, call = scores["flip_cross"], scores["put_wall_break"], scores["call_wall_break"]
    counts = (flip.true_crossings, flip.events, flip.detected, flip.duplicates, flip.false_events)
    assert counts == (2, 5, 2, 1, 2)
    assert flip.delays_s == [3.0, 1.0]
    counts = (put.true_crossings, put.events, put.detected, put.duplicates, put.false_events)
    assert counts == (2, 2, 1, 0, 1)
    assert put.delays_s == [5.0]
    assert (call.true_crossings, call.events, call.false_events) == (0, 1, 1)
    hours = 0.5
    summary = flip.summary(hours)
    assert summary["recall"] == 1.0
    assert summary["events_per_crossing"] == 2.5
    assert summary["duplicates_per_crossing"] == 0.5
    assert summary["false_events_per_hour"] == 4.0
    assert (summary["delay_s_p50"], summary["delay_s_p99"]) == (1.0, 3.0)
    assert put.summary(hours)["recall"] == 0.5
    assert call.summary(hours)["recall"] is None


def test_an_event_before_the_crossing_counts_within_two_seconds_only():
    early = score([event("flip_cross", 8.5, 100.0)], CROSSINGS[:1])["flip_cross"]
    too_early = score([event("flip_cross", 7.0, 100.0)], CROSSINGS[:1])["flip_cross"]
    assert (early.detected, early.delays_s) == (1, [-1.5])
    assert (too_early.detected, too_early.false_events) == (0, 1)


def test_scores_of_sessions_add_up():
    total = TypeScore()
    for _ in range(3):
        total.add(score([event("flip_cross", 12.0, 100.0)], CROSSINGS[:1])["flip_cross"])
    assert (total.true_crossings, total.detected, total.delays_s) == (3, 3, [2.0, 2.0, 2.0])
    assert total.summary(1.0)["delay_s_p99"] == pytest.approx(2.0)

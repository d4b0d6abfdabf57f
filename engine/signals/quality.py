"""Event quality against known crossings: recall, duplicates, false events, delay.

The simulator knows when its index truly crossed a level (``LevelCrossing``: time, level
name, direction, price). :func:`score` matches a detector's events of the bucket the
crossings are about (an event standing for several buckets counts for each, see
``RegimeEvent.in_buckets``) against them:

- an event matches a crossing when it is the crossing's event type (``flip_cross`` for
  zero gamma, ``call_wall_break`` / ``put_wall_break`` for the walls), has its direction,
  names its level (a wall exactly; zero gamma within ``flip_tolerance`` of the price, the
  engine's own book sees it a little differently) and fires between ``before_s`` before and
  ``after_s`` after the crossing (event time);
- crossings are taken in time order; the first matching event not matched yet detects the
  crossing (its delay is event time minus crossing time), later ones within the window are
  duplicates; an event that matches no crossing is a false event.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from schemas.events import RegimeEvent
from schemas.time import NS_PER_S

EVENT_OF_LEVEL = {
    "zero_gamma": "flip_cross",
    "call_wall": "call_wall_break",
    "put_wall": "put_wall_break",
}


@dataclass(frozen=True, slots=True)
class TrueCrossing:
    """One true crossing of a level by the index (venue time, ns; prices in USD)."""

    ts_ns: int
    level: str  # "zero_gamma" | "call_wall" | "put_wall"
    direction: str  # "up" | "down"
    price: float


@dataclass(slots=True)
class TypeScore:
    """Counts of one event type; add several sessions' scores with :meth:`add`."""

    true_crossings: int = 0
    events: int = 0
    detected: int = 0
    duplicates: int = 0
    false_events: int = 0
    delays_s: list[float] = field(default_factory=list)

    def add(self, other: TypeScore) -> None:
        self.true_crossings += other.true_crossings
        self.events += other.events
        self.detected += other.detected
        self.duplicates += other.duplicates
        self.false_events += other.false_events
        self.delays_s.extend(other.delays_s)

    def summary(self, hours: float) -> dict[str, Any]:
        """The figures of the issue: recall, events and duplicates per crossing, false events
        per hour, detection delay p50 / p99 (seconds of event time)."""
        n = self.true_crossings
        return {
            "true_crossings": n,
            "events": self.events,
            "detected": self.detected,
            "recall": _ratio(self.detected, n),
            "events_per_crossing": _ratio(self.events, n),
            "duplicates_per_crossing": _ratio(self.duplicates, n),
            "false_events": self.false_events,
            "false_events_per_hour": _ratio(self.false_events, hours),
            "delay_s_p50": _percentile(self.delays_s, 50),
            "delay_s_p99": _percentile(self.delays_s, 99),
        }


def score(
    events: Iterable[RegimeEvent],
    crossings: Sequence[TrueCrossing],
    bucket: str = "all",
    before_s: float = 2.0,
    after_s: float = 30.0,
    flip_tolerance: float = 0.01,
) -> dict[str, TypeScore]:
    """Per event type (flip_cross, call_wall_break, put_wall_break), the counts of ``events``
    of ``bucket`` against ``crossings`` (see the module docstring)."""
    out = {}
    events = [e for e in events if e.in_buckets((bucket,))]
    for level, event_type in EVENT_OF_LEVEL.items():
        mine = sorted((e for e in events if e.type == event_type), key=lambda e: (e.ts_event, e.id))
        truth = sorted((c for c in crossings if c.level == level), key=lambda c: c.ts_ns)
        result = TypeScore(true_crossings=len(truth), events=len(mine))
        used: set[int] = set()
        for crossing in truth:
            hits = [
                i
                for i, e in enumerate(mine)
                if i not in used and _matches(e, crossing, before_s, after_s, flip_tolerance)
            ]
            if hits:
                first = mine[hits[0]]
                result.detected += 1
                result.delays_s.append((first.ts_event - crossing.ts_ns) / NS_PER_S)
                result.duplicates += len(hits) - 1
                used.update(hits)
        result.false_events = len(mine) - len(used)
        out[event_type] = result
    return out


def _matches(
    event: RegimeEvent, crossing: TrueCrossing, before_s: float, after_s: float, tolerance: float
) -> bool:
    lag = (event.ts_event - crossing.ts_ns) / NS_PER_S
    if event.direction != crossing.direction or not -before_s <= lag <= after_s:
        return False
    if event.level is None:
        return False
    if crossing.level == "zero_gamma":
        return abs(event.level - crossing.price) <= tolerance * crossing.price
    return event.level == crossing.price


def _ratio(a: float, b: float) -> float | None:
    return None if b == 0 else a / b


def _percentile(values: list[float], q: float) -> float | None:
    """Nearest-rank percentile (None for no values)."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]

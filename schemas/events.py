"""Regime events (DESIGN §2.4): what the detector emits and bots receive."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import orjson

EVENT_SCHEMA = "regime.event/1"
EVENT_TYPES = (
    "flip_cross",
    "call_wall_break",
    "put_wall_break",
    "wall_reject",
    "regime_change",
    "level_shift",
    "funding_extreme",
    "vol_regime",
    "feed_stale",
)
DIRECTIONS = ("up", "down")


@dataclass(frozen=True, slots=True)
class RegimeEvent:
    """One detector event; ``id`` is derived from the input that triggered it.

    Prices are in the underlying's currency; ``levels`` is the levels object of the event's
    bucket (the keys of :class:`schemas.levels.BucketLevels` plus ``spot`` and ``asof_ns``).
    """

    SCHEMA: ClassVar[str] = EVENT_SCHEMA
    id: str  # "{topic}/{partition}/{offset}/{type}/{bucket}[/{name}]": stable across replays
    type: str  # one of EVENT_TYPES
    underlying: str
    bucket: str  # "all" | "0dte" | "front"
    direction: str | None  # "up" | "down" | None
    ts_event: int  # venue time of the triggering input, ns since epoch
    ts_emit: int  # wall clock when the engine emitted it, ns since epoch
    spot: float
    level: float | None  # the level involved (zero gamma, the wall, the new level …)
    regime: str | None  # "positive" | "negative" | "transition" (bucket regime at the event)
    levels: dict[str, Any]
    model: str
    detail: dict[str, Any] = field(default_factory=dict)
    schema: str = EVENT_SCHEMA

    def __post_init__(self) -> None:
        if self.type not in EVENT_TYPES:
            raise ValueError(f"unknown event type {self.type!r}")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise ValueError(f"unknown direction {self.direction!r}")
        if self.schema != EVENT_SCHEMA:
            raise ValueError(f"unknown event schema {self.schema!r}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": self.schema,
            "id": self.id,
            "type": self.type,
            "underlying": self.underlying,
            "bucket": self.bucket,
            "direction": self.direction,
            "ts_event": self.ts_event,
            "ts_emit": self.ts_emit,
            "spot": self.spot,
            "level": self.level,
            "regime": self.regime,
            "levels": self.levels,
            "model": self.model,
            "detail": self.detail,
        }

    @property
    def buckets(self) -> tuple[str, ...]:
        """Every bucket the event stands for (DESIGN §2.6): ``detail.buckets`` when the
        event was published once for buckets holding the same expiries, else its bucket."""
        listed = self.detail.get("buckets") if isinstance(self.detail, dict) else None
        if isinstance(listed, list) and self.bucket in listed:
            return tuple(str(b) for b in listed)
        return (self.bucket,)

    def in_buckets(self, wanted: Iterable[str]) -> bool:
        """True when the event stands for any of the ``wanted`` buckets (a bucket filter)."""
        return not set(self.buckets).isdisjoint(wanted)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RegimeEvent:
        unknown = set(data) - set(cls.__slots__)
        if unknown:
            raise ValueError(f"unknown event fields: {sorted(unknown)}")
        return cls(**data)


def encode_event(event: RegimeEvent) -> bytes:
    return orjson.dumps(event.to_dict())


def decode_event(raw: bytes | str) -> RegimeEvent:
    """Decode an event JSON object; ValueError when it is not one."""
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"event is not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ValueError("event is not a JSON object")
    try:
        return RegimeEvent.from_dict(data)
    except TypeError as exc:
        raise ValueError(f"bad event: {exc}") from exc

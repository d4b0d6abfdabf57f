"""What a simulated Deribit session is made of: message kinds, time steps, summary types."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VENUE = "deribit"
STEP_MS = 100  # simulation step: the index path is piecewise constant over 100 ms
HEARTBEAT_INTERVAL_S = 30  # public/set_heartbeat interval
# Message kinds counted in SessionSummary.counts.
KINDS = (
    "get_instruments",
    "get_book_summary_by_currency",
    "set_heartbeat",
    "subscribe",
    "test",
    "heartbeat",
    "ticker_option",
    "ticker_perpetual",
    "price_index",
    "volatility_index",
    "trades",
    "instrument_state",
)


@dataclass(frozen=True, slots=True)
class LevelCrossing:
    """The index crossing a level, as the simulator's own book saw it."""

    ts_ns: int  # venue time of the first 100 ms step beyond the level, ns since the epoch
    level: str  # "zero_gamma" | "call_wall" | "put_wall"
    direction: str  # "up" | "down"
    price: float  # the level, USD
    spot: float  # the index just after the crossing, USD

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts_ns": self.ts_ns,
            "level": self.level,
            "direction": self.direction,
            "price": self.price,
            "spot": self.spot,
        }


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """What a generated session contains and what its index did (prices in USD)."""

    currency: str
    n_instruments: int
    expiries: tuple[str, ...]  # expiry codes, e.g. "29MAR24"
    messages: int
    counts: dict[str, int]  # messages per kind (see KINDS)
    option_trades: int  # individual trades inside the trades notifications
    first_recv_ns: int
    last_recv_ns: int
    spot_start: float
    spot_min: float
    spot_max: float
    spot_final: float
    initial_levels: dict[str, float | None]  # zero_gamma, call_wall, put_wall, net_gex
    final_levels: dict[str, float | None]
    crossings: tuple[LevelCrossing, ...]
    settled: tuple[str, ...] = ()  # instruments that settled during the session

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "n_instruments": self.n_instruments,
            "expiries": list(self.expiries),
            "messages": self.messages,
            "counts": dict(self.counts),
            "option_trades": self.option_trades,
            "first_recv_ns": self.first_recv_ns,
            "last_recv_ns": self.last_recv_ns,
            "spot_start": self.spot_start,
            "spot_min": self.spot_min,
            "spot_max": self.spot_max,
            "spot_final": self.spot_final,
            "initial_levels": dict(self.initial_levels),
            "final_levels": dict(self.final_levels),
            "crossings": [c.to_dict() for c in self.crossings],
            "settled": list(self.settled),
        }


@dataclass(slots=True)
class Levels:
    """Levels as the simulator's own book reads them (USD; net GEX in USD)."""

    zero_gamma: float | None = None
    call_wall: float | None = None
    put_wall: float | None = None
    net_gex: float = 0.0

    def as_dict(self) -> dict[str, float | None]:
        return {
            "zero_gamma": self.zero_gamma,
            "call_wall": self.call_wall,
            "put_wall": self.put_wall,
            "net_gex": self.net_gex,
        }


@dataclass(slots=True)
class Totals:
    """Running counts of what a session has emitted."""

    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    messages: int = 0
    option_trades: int = 0
    first_recv_ns: int = 0
    last_recv_ns: int = 0

"""Option tickers packed per underlying on their way to Kafka (no I/O, no clock of its own).

:class:`TickPacker` decides what goes out and when; its owner (the Kafka producer) sends
what it returns, in order, and calls :meth:`TickPacker.due` from its flush timer. Rules:

- A ticker of an instrument this packer has announced joins its underlying's open pack;
  an instrument not announced yet, or last announced ``keyframe_s`` ago, goes out as a
  full :class:`OptionContract` (it carries the terms the engine needs), after that
  underlying's open pack.
- A pack goes out when it holds ``max_ticks`` ticks, when its first tick has waited
  ``max_wait_s`` (checked on every add and by :meth:`due`), and before any other record of
  its underlying (:meth:`before`), so each underlying's records keep their receive order.
- Full option contracts passing through :meth:`before` (the book summary a connection
  starts with) announce their instruments; an instrument that ended is forgotten.

Memory is bounded: at most ``max_ticks`` ticks per underlying are held.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from schemas.contracts import OptionContract
from schemas.records import InstrumentState, Record
from schemas.ticks import OptionTicks

Outgoing = list[tuple[str, Record]]  # (topic, record) to send now, in this order


@dataclass(frozen=True, slots=True)
class PackConfig:
    """How option tickers are packed (see the module docstring)."""

    max_ticks: int = 256
    max_wait_s: float = 0.001
    keyframe_s: float = 600.0  # an instrument's terms are re-sent this often (log retention)

    def __post_init__(self) -> None:
        if not isinstance(self.max_ticks, int) or isinstance(self.max_ticks, bool):
            raise ValueError(f"max_ticks must be an integer, got {self.max_ticks!r}")
        if self.max_ticks < 1:
            raise ValueError("max_ticks must be >= 1")
        for name in ("max_wait_s", "keyframe_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


class _Pack:
    __slots__ = ("contracts", "since", "topic")

    def __init__(self, topic: str, since: float) -> None:
        self.topic = topic
        self.since = since
        self.contracts: list[OptionContract] = []


class TickPacker:
    """Open packs per underlying and the announced instruments; times are the caller's."""

    def __init__(self, config: PackConfig | None = None) -> None:
        self.config = config or PackConfig()
        self._packs: dict[str, _Pack] = {}  # underlying → open pack
        self._announced: dict[str, float] = {}  # instrument → when its terms last went out
        self.packs_sent = 0
        self.ticks_packed = 0

    @property
    def pending(self) -> int:
        """Ticks held in open packs."""
        return sum(len(p.contracts) for p in self._packs.values())

    def holds(self, underlying: str) -> bool:
        return underlying in self._packs

    def add(self, topic: str, contract: OptionContract, now: float) -> Outgoing:
        """A ticker update: packed, or (first sight, keyframe due) sent in full."""
        cfg = self.config
        out: Outgoing = []
        pack = self._packs.get(contract.underlying)
        if pack is not None and (pack.since + cfg.max_wait_s <= now or pack.topic != topic):
            self._take(contract.underlying, out)
            pack = None
        announced = self._announced.get(contract.instrument)
        if announced is None or announced + cfg.keyframe_s <= now:
            self._take(contract.underlying, out)
            self._announced[contract.instrument] = now
            out.append((topic, contract))
            return out
        if pack is None:
            pack = self._packs[contract.underlying] = _Pack(topic, now)
        pack.contracts.append(contract)
        if len(pack.contracts) >= cfg.max_ticks:
            self._take(contract.underlying, out)
        return out

    def before(self, record: Record, now: float) -> Outgoing:
        """Any other record is about to be sent: its underlying's open pack goes first."""
        out: Outgoing = []
        underlying = record.underlying
        if underlying in self._packs:
            self._take(underlying, out)
        if type(record) is OptionContract:
            self._announced[record.instrument] = now
        elif type(record) is InstrumentState and record.ended:
            self._announced.pop(record.instrument, None)
        return out

    def due(self, now: float) -> Outgoing:
        """Packs whose first tick has waited ``max_wait_s`` (the owner's flush timer)."""
        out: Outgoing = []
        wait = self.config.max_wait_s
        for underlying in [
            u for u, p in self._packs.items() if p.since + wait <= now
        ]:  # as next_due
            self._take(underlying, out)
        return out

    def next_due(self) -> float | None:
        """When the oldest open pack is due (the caller's clock), None when none is open."""
        if not self._packs:
            return None
        return min(p.since for p in self._packs.values()) + self.config.max_wait_s

    def drain(self) -> Outgoing:
        """Every open pack (a flush or stop)."""
        out: Outgoing = []
        for underlying in list(self._packs):
            self._take(underlying, out)
        return out

    def _take(self, underlying: str, out: Outgoing) -> None:
        pack = self._packs.pop(underlying, None)
        if pack is None:
            return
        self.packs_sent += 1
        self.ticks_packed += len(pack.contracts)
        out.append((pack.topic, OptionTicks.from_contracts(pack.contracts)))

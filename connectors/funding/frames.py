"""What every funding venue's normaliser shares: control frames and the routing of records.

A venue frame is either a control frame (a subscribe ack, a pong, an error, a notice: no
market data, never dead-lettered) or a data message that yields FundingRate records or
raises ParseError (the ingest stage dead-letters it with the reason). Per symbol, a record
older (venue time) than the last one accepted is refused (kind ``out_of_order``, counted in
``out_of_order``); equal times are fine.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import orjson

from connectors.common.errors import ParseError
from connectors.common.funding import IntervalFallback
from connectors.common.ingest import FUNDING, Routed
from connectors.common.series_order import SeriesOrder
from schemas.records import FundingRate

ACK, PONG, ERROR, NOTICE = "ack", "pong", "error", "notice"


@dataclass(frozen=True, slots=True)
class Control:
    """A frame that carries no market data."""

    kind: str  # ACK | PONG | ERROR | NOTICE
    detail: str  # one line: what the venue said


class FundingNormaliser:
    """Decoded venue messages → FundingRate records on ``md.funding.v1``; no I/O.

    Subclasses give :meth:`control` (pure, also used by the client to log and count) and
    :meth:`records`; the same object serves a live session and a replayed capture.
    """

    venue: ClassVar[str]

    def __init__(self, fallback: IntervalFallback | None = None) -> None:
        self.fallback = fallback or IntervalFallback()
        self.order = SeriesOrder(self.venue)

    def in_order(self, records: list[FundingRate]) -> list[FundingRate]:
        """``records`` (one message's) once none is older than its symbol's last accepted;
        ParseError ``out_of_order`` otherwise (then none is accepted)."""
        for record in records:
            self.order.check(record.instrument, record.ts_event_ns)
        for record in records:
            self.order.accept(record.instrument, record.ts_event_ns)
        return records

    @property
    def out_of_order(self) -> int:
        """Records refused as older than their symbol's last accepted."""
        return self.order.out_of_order

    @staticmethod
    def control(doc: Any) -> Control | None:
        """The control frame ``doc`` is, or None for a data message."""
        raise NotImplementedError

    def records(self, doc: Any, recv_ns: int, request: dict[str, Any] | None) -> list[FundingRate]:
        """Records of one data message (or REST response); ParseError when malformed."""
        raise NotImplementedError

    def normalise(
        self, doc: Any, recv_ns: int, request: dict[str, Any] | None = None
    ) -> list[Routed]:
        if isinstance(doc, bytes | str):  # a polled REST body is handed over undecoded
            doc = _decode(doc)
        if not isinstance(doc, dict | list):
            raise ParseError(f"{self.venue} message is not a JSON object: {str(doc)[:80]}")
        if request is None and self.control(doc) is not None:
            return []
        return [Routed(FUNDING, record) for record in self.records(doc, recv_ns, request)]


def _decode(body: bytes | str) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise ParseError(f"malformed JSON: {exc}") from None

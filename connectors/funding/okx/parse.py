"""Pure parsers for the OKX v5 ``funding-rate`` channel.

``fundingRate`` is charged at ``fundingTime`` (the next settlement), and the period after
that settles at ``nextFundingTime``, so the interval is their difference. Pushes from before
OKX added ``nextFundingTime`` and ``ts`` fall back to the configured interval and the
receive time.
"""

from __future__ import annotations

from typing import Any

from connectors.common.errors import ParseError
from connectors.common.funding import (
    funding_rate,
    optional_ms_ns,
    required_decimal,
    required_ms_ns,
    required_text,
)
from connectors.funding.frames import ACK, ERROR, NOTICE, Control, FundingNormaliser
from schemas.records import FundingRate
from schemas.time import NS_PER_HOUR

VENUE = "okx"
CHANNEL = "funding-rate"
KEEPALIVE_REPLY = b"pong"  # the answer to the text frame "ping": not JSON


def parse_funding_rate(entry: Any, recv_ns: int, fallback_hours: float) -> FundingRate:
    """One ``funding-rate`` data element → FundingRate."""
    if not isinstance(entry, dict):
        raise ParseError(f"OKX funding-rate: data element is not an object: {str(entry)[:80]}")
    inst_id = required_text(entry, "instId", "OKX funding-rate")
    where = f"OKX funding-rate {inst_id}"
    funding_ns = required_ms_ns(entry, "fundingTime", where)
    next_ns = optional_ms_ns(entry, "nextFundingTime", where)
    if next_ns is None:
        hours = fallback_hours
    elif next_ns > funding_ns:
        hours = (next_ns - funding_ns) / NS_PER_HOUR
    else:
        raise ParseError(f"{where}: nextFundingTime is not after fundingTime")
    ts_ns = optional_ms_ns(entry, "ts", where)
    return funding_rate(
        venue=VENUE,
        instrument=inst_id,
        rate=required_decimal(entry, "fundingRate", where),
        interval_hours=hours,
        next_funding_ns=funding_ns,
        ts_event_ns=ts_ns if ts_ns is not None else recv_ns,
        ts_recv_ns=recv_ns,
    )


def control_frame(doc: Any) -> Control | None:
    """``{"event": …}`` replies: acks, errors (``code``/``msg``), notices."""
    if not isinstance(doc, dict) or "event" not in doc:
        return None
    event = doc["event"]
    if event == "error":
        return Control(ERROR, f"OKX error {doc.get('code')}: {doc.get('msg')}")
    if event in ("subscribe", "unsubscribe"):
        return Control(ACK, f"OKX {event} {doc.get('arg')}")
    return Control(NOTICE, f"OKX {event} {doc.get('code', '')} {doc.get('msg', '')}".strip())


class OkxFundingNormaliser(FundingNormaliser):
    venue = VENUE
    control = staticmethod(control_frame)

    def records(self, doc: Any, recv_ns: int, request: dict[str, Any] | None) -> list[FundingRate]:
        arg = doc.get("arg") if isinstance(doc, dict) else None
        if request is not None or not isinstance(arg, dict) or "data" not in doc:
            raise ParseError(f"unrecognised OKX message: {str(doc)[:80]}")
        if arg.get("channel") != CHANNEL:
            raise ParseError(f"unsupported OKX channel {arg.get('channel')}")
        data = doc["data"]
        if not isinstance(data, list) or not data:
            raise ParseError(f"OKX {CHANNEL}: data is not a non-empty list")
        out = []
        for entry in data:
            inst_id = entry.get("instId") if isinstance(entry, dict) else None
            hours = self.fallback.hours(inst_id if isinstance(inst_id, str) else "")
            out.append(parse_funding_rate(entry, recv_ns, hours))
        return out

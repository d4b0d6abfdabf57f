"""Pure parsers for the OKX v5 ``funding-rate`` channel.

``fundingRate`` is charged at ``fundingTime`` (the next settlement), and the period after
that settles at ``nextFundingTime``, so the interval is their difference. Pushes from before
OKX added ``nextFundingTime`` and ``ts`` fall back to the configured interval and the
receive time.
"""

from __future__ import annotations

from typing import Any

from connectors.common.errors import ParseError
from connectors.common.fields import event_time
from connectors.common.funding import decimal_struct, funding_rate
from connectors.funding.frames import ACK, ERROR, NOTICE, Control, FundingNormaliser
from connectors.funding.okx.wire import OkxFundingRate
from schemas.records import FundingRate
from schemas.time import NS_PER_HOUR, NS_PER_MS

VENUE = "okx"
CHANNEL = "funding-rate"
KEEPALIVE_REPLY = b"pong"  # the answer to the text frame "ping": not JSON


def parse_funding_rate(entry: Any, recv_ns: int, fallback_hours: float) -> FundingRate:
    """One ``funding-rate`` data element → FundingRate."""
    funding = decimal_struct(entry, OkxFundingRate, "OKX funding-rate", "instId")
    where = f"OKX funding-rate {funding.instId}"
    funding_ns = funding.fundingTime * NS_PER_MS
    if funding.nextFundingTime is None:
        hours = fallback_hours
    elif funding.nextFundingTime > funding.fundingTime:
        hours = (funding.nextFundingTime * NS_PER_MS - funding_ns) / NS_PER_HOUR
    else:
        raise ParseError(
            f"{where}: nextFundingTime={funding.nextFundingTime} is not after "
            f"fundingTime={funding.fundingTime}",
            "bad_timestamp",
        )
    ts_ns = funding.ts * NS_PER_MS if funding.ts is not None else recv_ns
    return funding_rate(
        venue=VENUE,
        instrument=funding.instId,
        rate=funding.fundingRate,
        interval_hours=hours,
        next_funding_ns=funding_ns,
        ts_event_ns=event_time(ts_ns, recv_ns, where, "ts"),
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
        return self.in_order(out)

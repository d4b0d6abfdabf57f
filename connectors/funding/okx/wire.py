"""OKX v5 public WebSocket wire types (numbers and times are strings)."""

from __future__ import annotations

from typing import NotRequired, TypedDict

import msgspec

from schemas.domain import EpochMs, Name, Rate


class OkxChannelArg(TypedDict):
    channel: str  # "funding-rate"
    instId: str  # "BTC-USDT-SWAP"


class OkxFundingRate(msgspec.Struct, kw_only=True, gc=False):
    """One element of a ``funding-rate`` push's ``data`` (numbers are decimal strings: read
    with ``connectors.common.funding.decimal_struct``). Fields not read: instType "SWAP",
    nextFundingRate, method, formulaType, max/minFundingRate, settFundingRate, settState,
    premium, interestRate, impactValue."""

    instId: Name  # "BTC-USDT-SWAP"
    fundingRate: Rate  # the current period's rate, fraction per funding interval
    fundingTime: EpochMs  # when the current period settles (the next funding), ms
    nextFundingTime: EpochMs | None = None  # the settlement after that, ms (absent before 2023)
    ts: EpochMs | None = None  # data time, ms since the epoch (absent before 2023)


class OkxPush(TypedDict):
    """A channel push."""

    arg: OkxChannelArg
    data: list[OkxFundingRate]


class OkxEvent(TypedDict):
    """A reply: ``subscribe`` / ``unsubscribe`` ack (with ``arg``), ``error`` (with ``code``
    and ``msg``), ``notice`` (e.g. 64008, a service upgrade will close the connection)."""

    event: str  # "subscribe" | "unsubscribe" | "error" | "notice" | "channel-conn-count"
    arg: NotRequired[OkxChannelArg]
    code: NotRequired[str]
    msg: NotRequired[str]
    connId: str
    id: NotRequired[str]  # echoes the request's "id" when it had one

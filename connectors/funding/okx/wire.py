"""OKX v5 public WebSocket wire types (numbers and times are strings)."""

from __future__ import annotations

from typing import Literal, NotRequired, TypedDict


class OkxChannelArg(TypedDict):
    channel: str  # "funding-rate"
    instId: str  # "BTC-USDT-SWAP"


class OkxFundingRate(TypedDict):
    """One element of a ``funding-rate`` push's ``data``."""

    instType: Literal["SWAP"]
    instId: str  # "BTC-USDT-SWAP"
    fundingRate: str  # the current period's rate, fraction per funding interval
    fundingTime: str  # when the current period settles (the next funding), ms since the epoch
    nextFundingTime: NotRequired[str]  # the settlement after that, ms (absent before 2023)
    nextFundingRate: NotRequired[str]  # forecast for the next period, fraction ("" if none)
    method: NotRequired[str]  # "current_period" | "next_period"
    formulaType: NotRequired[str]  # "noRate" | "withRate"
    maxFundingRate: NotRequired[str]  # fraction per funding interval
    minFundingRate: NotRequired[str]
    settFundingRate: NotRequired[str]  # the rate last settled, fraction
    settState: NotRequired[str]  # "processing" | "settled"
    premium: NotRequired[str]  # fraction
    interestRate: NotRequired[str]
    impactValue: NotRequired[str]
    ts: NotRequired[str]  # data time, ms since the epoch (absent before 2023)


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

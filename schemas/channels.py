"""Redis key and channel names (DESIGN §2.4); the names are the contract."""

from __future__ import annotations

EVENTS_CHANNEL = "regime:events:{underlying}"  # PUBLISH: live fan-out, at-most-once
EVENTS_STREAM = "regime:stream:{underlying}"  # XADD: durable, field "event" = event JSON
LEVELS_KEY = "regime:levels:{underlying}"  # SET: latest levels JSON
PROFILE_KEY = "regime:profile:{underlying}"  # SET: latest profile JSON (with the levels)
STREAM_FIELD = "event"
EVENTS_CHANNEL_PATTERN = "regime:events:*"
EVENTS_STREAM_PATTERN = "regime:stream:*"


def events_channel(underlying: str) -> str:
    return EVENTS_CHANNEL.format(underlying=underlying)


def events_stream(underlying: str) -> str:
    return EVENTS_STREAM.format(underlying=underlying)


def levels_key(underlying: str) -> str:
    return LEVELS_KEY.format(underlying=underlying)


def profile_key(underlying: str) -> str:
    return PROFILE_KEY.format(underlying=underlying)


def as_text(value: bytes | str) -> str:
    """A Redis reply item (bytes without ``decode_responses``) as text."""
    return value.decode() if isinstance(value, bytes) else str(value)


def underlying_of(key: str) -> str:
    """The underlying named by any of the keys or channels above."""
    return key.rsplit(":", 1)[-1]

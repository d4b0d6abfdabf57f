"""Settlement instants and venue clock conversions, shared by every connector.

All instants are integers, nanoseconds since the epoch (UTC), computed exactly (no float).
"""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

NEW_YORK = ZoneInfo("America/New_York")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_ONE_US = timedelta(microseconds=1)

DERIBIT_SETTLEMENT = time(8, 0)  # Deribit options and futures settle at 08:00 UTC


def instant_ns(moment: datetime) -> int:
    """An aware datetime as integer ns since the epoch (exact to the microsecond)."""
    if moment.tzinfo is None:
        raise ValueError(f"naive datetime {moment.isoformat()} has no time zone")
    return (moment - _EPOCH) // _ONE_US * 1000


def utc_instant_ns(d: date, hour: int, minute: int, second: int = 0) -> int:
    """The instant of a UTC wall-clock time on date ``d``, in ns since the epoch."""
    return instant_ns(datetime(d.year, d.month, d.day, hour, minute, second, tzinfo=UTC))


def new_york_instant_ns(d: date, hour: int, minute: int, second: int = 0, *, fold: int = 0) -> int:
    """The instant of an America/New_York wall-clock time on date ``d`` (DST aware).

    ``fold=1`` picks the second (standard-time) occurrence of a wall time that happens
    twice when clocks fall back.
    """
    moment = datetime(d.year, d.month, d.day, hour, minute, second, tzinfo=NEW_YORK, fold=fold)
    return instant_ns(moment)


def deribit_expiry_ns(d: date) -> int:
    """Settlement instant of a Deribit expiry date: 08:00 UTC on that day."""
    return utc_instant_ns(d, DERIBIT_SETTLEMENT.hour, DERIBIT_SETTLEMENT.minute)


def ms_to_ns(ms: int | float) -> int:
    """Venue milliseconds since the epoch to integer nanoseconds."""
    return int(ms) * 1_000_000

"""Per-series order of venue updates: one older than the last accepted is refused."""

from __future__ import annotations

from connectors.common.errors import ParseError


class SeriesOrder:
    """The last accepted venue time of each series (an instrument's ticker, an index).

    :meth:`check` refuses (ParseError ``out_of_order``, counted in ``out_of_order``) an
    update older than its series' last accepted one; equal times are fine. :meth:`accept`
    records an update once the message it came in is accepted as a whole.
    """

    def __init__(self, venue: str) -> None:
        self.venue = venue
        self.out_of_order = 0
        self._last_ts: dict[str, int] = {}

    def check(self, series: str, ts_event_ns: int) -> None:
        last = self._last_ts.get(series)
        if last is not None and ts_event_ns < last:
            self.out_of_order += 1
            raise ParseError(
                f"{self.venue} {series}: timestamp {ts_event_ns} ns is older than the last "
                f"accepted {last} ns (out of order)",
                "out_of_order",
            )

    def accept(self, series: str, ts_event_ns: int) -> None:
        self._last_ts[series] = ts_event_ns

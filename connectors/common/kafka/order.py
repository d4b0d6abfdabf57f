"""The ``md-order`` header: how one producer's market-data records are ordered (DESIGN §2.3).

Every market-data record carries ``{producer id}:{n0},{n1},…``: for each market-data topic
(in :meth:`schemas.topics.Topics.market_data` order), how many records this producer sent
before it to the same partition number of that topic. The engine applies one producer's
records in exactly that order, live and in any replay (see :mod:`engine.stream.merge`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

__all__ = ["ORDER_HEADER", "OrderStamper", "read_order_header"]

ORDER_HEADER = "md-order"  # producer id and send counts per topic (module docstring)


class OrderStamper:
    """Builds one producer's ``md-order`` headers (a random id, counts per partition)."""

    __slots__ = ("_id", "_sent_to", "slots")

    def __init__(self, market_data_topics: Sequence[str]) -> None:
        self._id = os.urandom(8).hex().encode()  # this producer in md-order headers
        self.slots = {topic: i for i, topic in enumerate(market_data_topics)}
        self._sent_to: dict[int, list[int]] = {}  # partition → records sent per topic slot

    def stamp(
        self, slot: int, partition: int, headers: Sequence[tuple[str, bytes]]
    ) -> list[tuple[str, bytes]]:
        """``headers`` plus the header of the next record to ``partition`` of topic ``slot``.

        Call it right before the record is appended to its batch: the counts follow the log.
        """
        sent = self._sent_to.setdefault(partition, [0] * len(self.slots))
        counts = ",".join(map(str, sent)).encode()
        sent[slot] += 1
        return [*headers, (ORDER_HEADER, self._id + b":" + counts)]


def read_order_header(headers: Sequence[tuple[str, bytes]]) -> tuple[str, tuple[int, ...]] | None:
    """The producer id and per-topic counts of an ``md-order`` header (None: none, or bad)."""
    for name, value in headers:
        if name == ORDER_HEADER:
            producer, _, counts = value.decode("ascii", "replace").partition(":")
            try:
                after = tuple(int(n) for n in counts.split(","))
            except ValueError:
                return None
            return (producer, after) if producer and min(after) >= 0 else None
    return None

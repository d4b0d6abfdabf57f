"""Event-time merge of the input partitions of one task (the same partition of every topic).

Records of one underlying arrive on several topics (options, index, trades …), each a
partition of its own. To make the engine's state at every evaluation point depend only on
the input (not on how fetches happened to interleave), a task releases records in
event-time order, ``(ts_event, topic rank, offset)``, and only while every input partition
either has a record buffered or is caught up with the broker (its high watermark reached),
as Kafka Streams does for the partitions of one task (KIP-695: a partition known to have
more data on the broker is waited for). A partition that is behind but delivers nothing
holds the merge back for at most ``max_idle_s`` of wall time: a guard against a broker
whose high watermark is stale, long enough that a partition which is merely slower to
fetch (a backlog on a loaded machine) is never overtaken.
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from aiokafka.structs import TopicPartition

from schemas.records import Record


@dataclass(slots=True)
class InputItem:
    """One consumed record in a task's merge (``record`` None: undecodable, dead-lettered)."""

    tp: TopicPartition
    offset: int
    ts: int  # event time, ns (an undecodable record takes its predecessor's time)
    record: Record | None


class EventTimeMerge:
    """Per-partition FIFO buffers released in event-time order (see the module docstring)."""

    def __init__(
        self,
        tps: Sequence[TopicPartition],
        max_idle_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.tps = tuple(tps)
        self._rank = {tp: i for i, tp in enumerate(self.tps)}
        self.queues: dict[TopicPartition, deque[InputItem]] = {tp: deque() for tp in self.tps}
        self.max_idle_s = max_idle_s
        self._clock = clock
        self._blocked_since: float | None = None

    def push(self, tp: TopicPartition, items: Iterable[InputItem]) -> None:
        self.queues[tp].extend(items)

    def buffered(self, tp: TopicPartition | None = None) -> int:
        if tp is not None:
            return len(self.queues[tp])
        return sum(len(q) for q in self.queues.values())

    def release(self, caught_up: Callable[[TopicPartition], bool]) -> Iterator[InputItem]:
        """Yield every record that can be released now, in order."""
        heap = [(q[0].ts, self._rank[tp], q[0].offset, tp) for tp, q in self.queues.items() if q]
        if not heap:
            self._blocked_since = None
            return
        if any(not q and not caught_up(tp) for tp, q in self.queues.items()):
            if not self._idle_expired():
                return
        else:
            self._blocked_since = None
        heapq.heapify(heap)
        queues = self.queues
        while heap:
            _, rank, _, tp = heapq.heappop(heap)
            queue = queues[tp]
            item = queue.popleft()
            yield item
            if queue:
                head = queue[0]
                heapq.heappush(heap, (head.ts, rank, head.offset, tp))
            elif not caught_up(tp) and not self._idle_expired():
                return
        self._blocked_since = None

    def _idle_expired(self) -> bool:
        now = self._clock()
        if self._blocked_since is None:
            self._blocked_since = now
        return now - self._blocked_since >= self.max_idle_s

    def clear(self) -> None:
        for queue in self.queues.values():
            queue.clear()
        self._blocked_since = None

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

"Caught up" is not enough while a producer is still sending: a partition at the broker's
end may still get a record with an earlier event time, so live and replay would apply
records in different orders. So records of one producer carrying an ``md-order`` header
(see :mod:`connectors.common.kafka.producer`: per topic, how many records that producer
sent before it to this partition number) go in exactly the order they were sent: a record
waits until every record of its producer sent before it on any topic is released, or is
known to be absent (a later record of that producer was seen on that topic: truncated by
retention, or lost). A record still unseen on a topic (in flight, not fetched yet) holds
its producer's next records for at most ``max_idle_s`` without the merge releasing anything
(the wait starts over at each release); then it is given up on (counted in ``gaps``,
logged). That order is a pure function of the log. Records of independent
producers, and records without the header, are merged by event time as above. Should no
record be releasable although every awaited one is buffered (two producers whose records
reached the partitions in crossed orders), the buffered head first in event time goes
(counted in ``forced``).
"""

from __future__ import annotations

import heapq
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass

from aiokafka.structs import TopicPartition

from connectors.common.logs import get_logger
from schemas.records import Record

log = get_logger("engine.merge")


@dataclass(slots=True)
class InputItem:
    """One consumed record in a task's merge (``record`` None: undecodable, dead-lettered)."""

    tp: TopicPartition
    offset: int
    ts: int  # event time, ns (an undecodable record takes its predecessor's time)
    record: Record | None
    producer: str | None = None  # of its md-order header (None: no header)
    after: tuple[int, ...] = ()  # its producer's records sent before it, per topic slot


class EventTimeMerge:
    """Per-partition FIFO buffers released in event-time order, one producer's records in
    send order (see the module docstring).

    ``topics``: the topics in the order of the ``md-order`` counts (the market-data topics;
    default: those of ``tps``).
    """

    def __init__(
        self,
        tps: Sequence[TopicPartition],
        max_idle_s: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        topics: Sequence[str] | None = None,
    ) -> None:
        self.tps = tuple(tps)
        self._rank = {tp: i for i, tp in enumerate(self.tps)}
        self.queues: dict[TopicPartition, deque[InputItem]] = {tp: deque() for tp in self.tps}
        self.max_idle_s = max_idle_s
        self._clock = clock
        self._blocked_since: float | None = None  # held by a partition behind the broker
        self._gap_since: float | None = None  # held by a record not seen yet
        names = tuple(topics) if topics is not None else tuple(tp.topic for tp in self.tps)
        self._slot = {tp: names.index(tp.topic) for tp in self.tps if tp.topic in names}
        self._width = len(names)
        # producer → per slot: its records there before this count are released or absent
        self._done: dict[str, list[int]] = {}
        self._seen: dict[str, list[int]] = {}  # producer → per slot: 1 + highest count pushed
        self.gaps = 0  # awaited records given up on
        self.forced = 0  # heads released out of their producers' order

    def push(self, tp: TopicPartition, items: Iterable[InputItem]) -> None:
        queue = self.queues[tp]
        slot = self._slot.get(tp)
        for item in items:
            queue.append(item)
            if item.producer is not None and slot is not None and slot < len(item.after):
                seen = self._seen.setdefault(item.producer, [0] * self._width)
                if item.after[slot] >= seen[slot]:
                    seen[slot] = item.after[slot] + 1

    def buffered(self, tp: TopicPartition | None = None) -> int:
        if tp is not None:
            return len(self.queues[tp])
        return sum(len(q) for q in self.queues.values())

    def order_state(self) -> dict[str, list[int]]:
        """What a checkpoint keeps of the merge: how far each producer's order got."""
        return {producer: list(done) for producer, done in self._done.items()}

    def restore_order(self, state: dict[str, list[int]]) -> None:
        """Continue from :meth:`order_state` (the buffers are read again after it)."""
        self._done = {producer: list(done) for producer, done in state.items()}

    def release(self, caught_up: Callable[[TopicPartition], bool]) -> Iterator[InputItem]:
        """Yield every record that can be released now, in order."""
        queues = self.queues
        if not any(queues.values()):
            self._blocked_since = self._gap_since = None
            return
        if any(not q and not caught_up(tp) for tp, q in queues.items()):
            if not self._idle_expired():
                return
        else:
            self._blocked_since = None
        heap: list[tuple[int, int, int, TopicPartition]] = []
        blocked: dict[TopicPartition, InputItem] = {}  # heads awaiting their producer's
        for tp, queue in queues.items():
            if queue:
                self._place(tp, queue[0], heap, blocked)
        heapq.heapify(heap)
        while True:
            if not heap:
                if not blocked or not self._unblock(blocked, heap):
                    return
                continue
            _, rank, _, tp = heapq.heappop(heap)
            queue = queues[tp]
            item = queue.popleft()
            self._released(tp, item)
            self._gap_since = None  # progress: a record awaited next gets its whole wait
            yield item
            if item.producer is not None and blocked:
                for other, head in list(blocked.items()):
                    if head.producer == item.producer and self._ready(other, head):
                        del blocked[other]
                        heapq.heappush(heap, (head.ts, self._rank[other], head.offset, other))
            if queue:
                head = queue[0]
                if self._ready(tp, head):
                    heapq.heappush(heap, (head.ts, rank, head.offset, tp))
                else:
                    blocked[tp] = head
            elif not caught_up(tp) and not self._idle_expired():
                return
            if not heap and not blocked:
                self._blocked_since = self._gap_since = None
                return

    def _place(
        self,
        tp: TopicPartition,
        head: InputItem,
        heap: list[tuple[int, int, int, TopicPartition]],
        blocked: dict[TopicPartition, InputItem],
    ) -> None:
        if self._ready(tp, head):
            heap.append((head.ts, self._rank[tp], head.offset, tp))
        else:
            blocked[tp] = head

    def _ready(self, tp: TopicPartition, head: InputItem) -> bool:
        """Whether every record its producer sent before it is released or absent."""
        slot = self._slot.get(tp)
        if head.producer is None or slot is None or slot >= len(head.after):
            return True
        done = self._done.setdefault(head.producer, [0] * self._width)
        done[slot] = max(done[slot], head.after[slot])  # those before it there: absent
        return all(d >= a for d, a in zip(done, head.after, strict=False))

    def _released(self, tp: TopicPartition, item: InputItem) -> None:
        slot = self._slot.get(tp)
        if item.producer is not None and slot is not None and slot < len(item.after):
            done = self._done[item.producer]
            done[slot] = max(done[slot], item.after[slot] + 1)

    def _unblock(
        self,
        blocked: dict[TopicPartition, InputItem],
        heap: list[tuple[int, int, int, TopicPartition]],
    ) -> bool:
        """Nothing ready, heads blocked: wait for records not seen yet (bounded), else
        release the first blocked head in event time. False: hold."""
        missing = {}
        for tp, head in blocked.items():
            assert head.producer is not None
            done = self._done[head.producer]
            seen = self._seen.get(head.producer, [])
            unseen = [
                s for s, a in enumerate(head.after[: self._width])
                if done[s] < a and (s >= len(seen) or seen[s] < a)
            ]  # fmt: skip
            if unseen:
                missing[tp] = unseen
        if missing:
            now = self._clock()
            if self._gap_since is None:
                self._gap_since = now
            if now - self._gap_since < self.max_idle_s:
                return False
            self._gap_since = None
            for tp, slots in missing.items():
                head = blocked[tp]
                done = self._done[head.producer]  # type: ignore[index]
                for s in slots:
                    done[s] = head.after[s]
                self.gaps += 1
                log.warning(
                    "records awaited in send order did not come; going on without them",
                    partition=f"{tp.topic}/{tp.partition}",
                    offset=head.offset,
                    producer=head.producer,
                )
            for tp, head in list(blocked.items()):
                if self._ready(tp, head):
                    del blocked[tp]
                    heapq.heappush(heap, (head.ts, self._rank[tp], head.offset, tp))
            return True
        tp = min(blocked, key=lambda t: (blocked[t].ts, self._rank[t], blocked[t].offset))
        head = blocked.pop(tp)
        self.forced += 1
        heapq.heappush(heap, (head.ts, self._rank[tp], head.offset, tp))
        return True

    def _idle_expired(self) -> bool:
        now = self._clock()
        if self._blocked_since is None:
            self._blocked_since = now
        return now - self._blocked_since >= self.max_idle_s

    def clear(self) -> None:
        for queue in self.queues.values():
            queue.clear()
        self._blocked_since = self._gap_since = None
        self._seen.clear()

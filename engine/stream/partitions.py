"""What the engine knows of each assigned input partition, as one object per partition.

As aiokafka's ``TopicPartitionState`` / ``SubscriptionState.Assignment``: an
:class:`Assignment` holds one :class:`PartitionState` per assigned ``TopicPartition``, created
when the partition is assigned, dropped when it is revoked and reset when its task is rebuilt
from the log start. It reads no consumer: the caller passes the log end (``highwater``) and
the buffered counts, so the rules are testable on their own.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass

from aiokafka.structs import TopicPartition


@dataclass(slots=True)
class PartitionState:
    """One input partition: fetch position, last event time, offsets committed and marked
    in Redis, pause flag, and since when its position has been past the log's end."""

    tp: TopicPartition
    fetched_next: int | None = None  # next offset to fetch (the consumer's position)
    last_ts: int = 0  # event time of the last record decoded (an undecodable one takes it)
    committed: int | None = None  # next offset last committed to the group
    marked: int | None = None  # next offset the Redis watermark last reached
    paused: bool = False  # fetching paused: its merge buffer is full
    ahead_since: float | None = None  # monotonic time its position passed the log's end

    def caught_up(self, highwater: int | None) -> bool:
        """Everything up to the log's end ``highwater`` is fetched (and the position is not
        past it: not consistent yet)."""
        return (
            highwater is not None
            and self.fetched_next is not None
            and self.fetched_next >= highwater
            and self.ahead_since is None
        )

    def reset(self, fetched_next: int) -> None:
        """Replayed from ``fetched_next`` with a fresh task: the event time and the
        past-the-end watch start over. Committed and marked offsets stay (they say what the
        group and Redis hold), and so does ``paused`` (the consumer's pause outlives a seek)."""
        self.fetched_next = fetched_next
        self.last_ts = 0
        self.ahead_since = None


class Assignment:
    """The :class:`PartitionState` of every assigned input partition."""

    def __init__(self) -> None:
        self._states: dict[TopicPartition, PartitionState] = {}

    def __contains__(self, tp: object) -> bool:
        return tp in self._states

    def __iter__(self) -> Iterator[PartitionState]:
        return iter(list(self._states.values()))

    def __len__(self) -> int:
        return len(self._states)

    def get(self, tp: TopicPartition) -> PartitionState | None:
        return self._states.get(tp)

    def assign(self, tps: Iterable[TopicPartition]) -> list[PartitionState]:
        """New states for ``tps`` (a partition already held keeps its state)."""
        return [self._states.setdefault(tp, PartitionState(tp)) for tp in tps]

    def revoke(self, tps: Iterable[TopicPartition]) -> None:
        """Drop the states of ``tps`` (unknown ones are ignored)."""
        for tp in tps:
            self._states.pop(tp, None)

    def fetched(self, tp: TopicPartition, next_offset: int) -> None:
        """Records up to ``next_offset`` were fetched from ``tp``."""
        state = self._states.get(tp)
        if state is not None:
            state.fetched_next = next_offset

    def caught_up(self, tp: TopicPartition, highwater: int | None) -> bool:
        state = self._states.get(tp)
        return state is not None and state.caught_up(highwater)

    def beyond_the_end(
        self, highwater: Callable[[TopicPartition], int | None], now: float, confirm_s: float
    ) -> set[int]:
        """Partition numbers with a position that has stayed past the log's end for
        ``confirm_s`` (a new leader may report a lower end for a moment)."""
        confirmed = set()
        for state in self._states.values():
            end = highwater(state.tp)
            if end is None or (state.fetched_next or 0) <= end:
                state.ahead_since = None
                continue
            if state.ahead_since is None:
                state.ahead_since = now
            if now - state.ahead_since >= confirm_s:
                confirmed.add(state.tp.partition)
        return confirmed

    def backpressure(
        self, buffered: Callable[[TopicPartition], int], limit: int
    ) -> tuple[list[TopicPartition], list[TopicPartition]]:
        """(to pause, to resume): pause at ``limit`` buffered records, resume below half of
        it; the flags are updated as if the caller did."""
        pause, resume = [], []
        for state in self._states.values():
            size = buffered(state.tp)
            if size >= limit and not state.paused:
                state.paused = True
                pause.append(state.tp)
            elif size < limit // 2 and state.paused:
                state.paused = False
                resume.append(state.tp)
        return pause, resume

    def to_commit(self, next_offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The offsets of ``next_offsets`` that differ from the last committed ones."""
        return self._moved(next_offsets, "committed")

    def committed(self, offsets: Mapping[TopicPartition, int]) -> None:
        """``offsets`` were committed."""
        self._reached(offsets, "committed")

    def to_mark(self, next_offsets: Mapping[TopicPartition, int]) -> dict[TopicPartition, int]:
        """The offsets of ``next_offsets`` the Redis watermarks have not reached yet."""
        return self._moved(next_offsets, "marked")

    def marked(self, offsets: Mapping[TopicPartition, int]) -> None:
        """The Redis watermarks reached ``offsets``."""
        self._reached(offsets, "marked")

    def _moved(
        self, next_offsets: Mapping[TopicPartition, int], kind: str
    ) -> dict[TopicPartition, int]:
        return {
            tp: n
            for tp, n in next_offsets.items()
            if getattr(self._states.get(tp), kind, None) != n
        }

    def _reached(self, offsets: Mapping[TopicPartition, int], kind: str) -> None:
        for tp, n in offsets.items():
            state = self._states.get(tp)
            if state is not None:
                setattr(state, kind, n)

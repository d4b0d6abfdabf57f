"""The commit procedure: how a processed batch becomes durable, in this order.

1. **events**: dead letters (bad input) and the batch's new events are produced to Kafka
   (``md.deadletter.v1``, ``regime.events.v1``); inputs whose events were written before
   this run (a replay after a restart) are not sent again;
2. **flush**: the producer is flushed, so every one of them is acknowledged;
3. **Redis**: the batch's events and changed levels (with their profiles) are written in
   one atomic, idempotent script together with the watermarks (``topic/partition`` →
   offset) their inputs reach, retried through a Redis outage (skipped for a batch with neither);
4. **offsets**: the processed input offsets are committed to the consumer group, at most
   every ``commit_interval_s`` (and always when forced: partitions moving away, a stop); a
   commit the group refuses (it rebalanced under the engine) is counted and logged, and
   ends the step (no checkpoint): the consumer rejoins and the partitions' next owner
   resumes from the last commit or checkpoint;
5. **checkpoint**: each task whose input moved since its last checkpoint has its state
   and offsets written to ``engine.state.v1``, when ``checkpoint_interval_s`` has passed
   (or forced).

Nothing is committed before its events are acknowledged and written, so a crash between any
two steps replays the batch; its events get the same ids and the Redis script skips the ones
already written (see :mod:`engine.stream.publisher`): the stream never holds a duplicate.
:meth:`Commit.batch` runs steps 1 to 3 and then, when due, :meth:`Commit.commit` (4 and 5),
as Quix Streams' ``Checkpoint.commit()`` does.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord, TopicPartition
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from connectors.common.lifecycle import Backoff
from connectors.common.logs import get_logger
from connectors.common.redis_conn import permanent_cause
from connectors.common.signals import sleep_unless_stopped
from engine.stream.checkpoint import Checkpoint, dumps_state
from engine.stream.instrumentation import Instrumentation
from engine.stream.partitions import Assignment
from engine.stream.publisher import PendingWrite, position_field
from engine.stream.report import EngineReport
from engine.stream.task import TaskOutput
from schemas.events import encode_event
from schemas.levels import encode_levels
from schemas.profile import encode_profile
from schemas.records import encode_record
from schemas.topics import Topics

log = get_logger("engine")


class EventSink(Protocol):
    """The Kafka producer of events and dead letters (a ``RecordProducer``)."""

    async def send(self, topic: str, key: bytes, value: bytes) -> None: ...

    async def send_dead_letter(
        self, raw: bytes, reason: str, venue: str, source: str, recv_ns: int
    ) -> None: ...

    async def flush(self) -> None: ...


class RedisSink(Protocol):
    """The Redis writer (a ``RedisPublisher``)."""

    async def watermarks(self) -> dict[str, int]: ...

    async def write(
        self, events: list[PendingWrite], levels: list[PendingWrite], marks: Mapping[str, int]
    ) -> int: ...


class OffsetSink(Protocol):
    """The group's offset commit (an ``AIOKafkaConsumer``)."""

    async def commit(self, offsets: dict[TopicPartition, int]) -> None: ...


class CheckpointSink(Protocol):
    """Where task checkpoints go (a ``StateStore``)."""

    def covers(self, partition: int, offsets: dict[str, int]) -> bool: ...

    def next_id(self, partition: int) -> int: ...

    async def write(self, checkpoint: Checkpoint) -> None: ...


class CommitTask(Protocol):
    """What the procedure reads of a task: its processed offsets and its state."""

    next_offsets: dict[TopicPartition, int]

    def state(self) -> dict[str, Any]: ...


@dataclass(frozen=True, slots=True)
class CommitPolicy:
    """When offsets and checkpoints are written, and how long a Redis outage is retried."""

    group_id: str
    commit_interval_s: float = 0.5
    checkpoint_interval_s: float = 60.0  # 0: never
    redis_max_retries: int = 1_000
    redis_retry_cap_s: float = 2.0


@dataclass(slots=True)
class _Pending:
    """What steps 1 and 2 leave for step 3."""

    events: list[PendingWrite] = field(default_factory=list)
    levels: list[PendingWrite] = field(default_factory=list)
    new_types: list[str] = field(default_factory=list)  # of events not written before
    new_buckets: list[str] = field(default_factory=list)  # their buckets, in the same order
    sent: bool = False  # something went to the producer: flush
    dead_letters: int = 0
    undecodable: int = 0  # of dead_letters: records that did not decode (the rest: not applied)


class Commit:
    """Runs the steps of the module docstring for the runtime's batches."""

    def __init__(
        self,
        policy: CommitPolicy,
        topics: Topics,
        producer: EventSink,
        publisher: RedisSink,
        offsets: OffsetSink,
        store: CheckpointSink | None,
        assignment: Assignment,
        report: EngineReport,
        instrumentation: Instrumentation,
        fingerprint: str,
        clock_ns: Callable[[], int] = time.time_ns,
        stop: asyncio.Event | None = None,
    ) -> None:
        """``stop`` (the engine's): a Redis retry wait ends with Stopped once it is set."""
        self.policy = policy
        self.stop = stop
        self.topics = topics
        self.producer = producer
        self.publisher = publisher
        self.offsets = offsets
        self.store = store
        self.assignment = assignment
        self.report = report
        self.instrumentation = instrumentation
        self.fingerprint = fingerprint
        self._clock_ns = clock_ns
        self.written: dict[str, int] = {}  # Redis watermarks, as read at the last assignment
        # Set while a batch is processed but its events are not yet written: a checkpoint
        # then (a rebalance mid-batch) would cover inputs whose events nobody may write.
        self.unpublished = False
        self._last_commit = -math.inf  # the first batch commits
        self._last_checkpoint = time.monotonic()
        self._checkpoint_lock = asyncio.Lock()

    async def read_watermarks(self) -> None:
        """Which inputs already have their events written (at an assignment)."""
        self.written = await self.publisher.watermarks()

    def is_new(self, topic: str, partition: int, offset: int) -> bool:
        """False for an input whose events were written before (a replay after a restart)."""
        return offset > self.written.get(position_field(topic, partition), -1)

    async def batch(
        self,
        outputs: list[TaskOutput],
        dead: list[tuple[ConsumerRecord, str]],
        tasks: Mapping[int, CommitTask],
    ) -> None:
        """Steps 1–3 for one processed batch, then 4 and 5 when due."""
        pending = await self.send_events(outputs, dead)  # 1
        if pending.sent:
            await self.producer.flush()  # 2
        written = await self.write_redis(pending, tasks)  # 3
        self._account(pending, written)
        if time.monotonic() - self._last_commit >= self.policy.commit_interval_s:
            await self.commit(tasks)  # 4, 5

    async def commit(self, tasks: Mapping[int, CommitTask], checkpoint: bool = False) -> None:
        """Steps 4 and 5: commit what was processed (it all has its events written), then
        checkpoint the tasks when due (``checkpoint``: now)."""
        self._last_commit = time.monotonic()
        if not await self.commit_offsets(tasks):  # 4
            return  # the group rebalanced: the partitions may be another engine's now
        interval = self.policy.checkpoint_interval_s
        if interval > 0 and (checkpoint or time.monotonic() - self._last_checkpoint >= interval):
            began = time.perf_counter()
            await self.write_checkpoints(tasks)  # 5
            self.instrumentation.stage("checkpoint", time.perf_counter() - began)

    async def send_events(
        self, outputs: list[TaskOutput], dead: list[tuple[ConsumerRecord, str]]
    ) -> _Pending:
        """Step 1: dead letters and new events to Kafka; events and levels kept for Redis."""
        producer, now = self.producer, self._clock_ns()
        pending = _Pending(sent=bool(dead) or any(o.rejected or o.events for o in outputs))
        for message, reason in dead:
            if self.is_new(message.topic, message.partition, message.offset):
                await self._dead_letter(message.topic, message.partition, message.offset,
                                        message.value or b"", reason, now)  # fmt: skip
        for output in outputs:
            for item, reason in output.rejected:
                if self.is_new(item.tp.topic, item.tp.partition, item.offset):
                    raw = b"" if item.record is None else encode_record(item.record)
                    await self._dead_letter(
                        item.tp.topic, item.tp.partition, item.offset, raw, reason, now
                    )
            for trigger, event in output.events:
                source = position_field(trigger.topic, trigger.partition)
                payload = encode_event(event)
                pending.events.append(
                    PendingWrite(source, trigger.offset, event.underlying, payload)
                )
                if self.is_new(trigger.topic, trigger.partition, trigger.offset):
                    await producer.send(self.topics.events, event.underlying.encode(), payload)
                    pending.new_types.append(event.type)
                    pending.new_buckets.append(event.bucket)
            for underlying, (trigger, levels) in output.levels.items():
                source = position_field(trigger.topic, trigger.partition)
                payload = encode_levels(levels)
                profile = output.profiles.get(underlying)
                extra = None if profile is None else encode_profile(profile)
                pending.levels.append(
                    PendingWrite(source, trigger.offset, underlying, payload, extra)
                )
        pending.dead_letters = len(dead) + sum(len(o.rejected) for o in outputs)
        pending.undecodable = len(dead)
        return pending

    async def write_redis(self, pending: _Pending, tasks: Mapping[int, CommitTask]) -> int:
        """Step 3: events, levels and the watermarks of every processed input; how many
        events were new. Retried through a Redis outage (nothing is committed before): the
        write is idempotent, so a retry after a failure of unknown effect never duplicates."""
        written = 0
        if pending.events or pending.levels:
            marks: dict[TopicPartition, int] = {}
            for task in tasks.values():
                marks.update(self.assignment.to_mark(task.next_offsets))
            fields = {position_field(tp.topic, tp.partition): n - 1 for tp, n in marks.items()}
            written = await self._write_retrying(pending.events, pending.levels, fields)
            self.assignment.marked(marks)
        self.unpublished = False  # every processed input has its events written
        return written

    async def commit_offsets(self, tasks: Mapping[int, CommitTask]) -> bool:
        """Step 4: the processed offsets that moved since the last commit. False: refused,
        the group rebalanced under this engine (a missed heartbeat on a loaded machine);
        the consumer rejoins, and whoever gets the partitions resumes from the last
        commit or checkpoint (events already written are not written again)."""
        offsets: dict[TopicPartition, int] = {}
        for task in tasks.values():
            offsets.update(self.assignment.to_commit(task.next_offsets))
        if not offsets:
            return True
        began = time.perf_counter()
        try:
            await self.offsets.commit(offsets)
        except CommitFailedError as exc:
            self.report.commit_failures += 1
            log.warning("offsets not committed: the group rebalanced", error=str(exc)[:200])
            return False
        self.instrumentation.stage("commit", time.perf_counter() - began)
        self.assignment.committed(offsets)
        self.report.commits += 1
        self.instrumentation.count("commits")
        return True

    async def write_checkpoints(self, tasks: Mapping[int, CommitTask]) -> None:
        """Step 5: each task whose input moved since its last checkpoint: its state and
        offsets to ``engine.state.v1``. A failed write is logged and counted; the engine goes
        on (the previous checkpoint, or a replay, still restores it)."""
        store = self.store
        if store is None:
            return
        async with self._checkpoint_lock:
            self._last_checkpoint = time.monotonic()
            for partition, task in list(tasks.items()):
                # Checked before each task's (synchronous) snapshot: a batch processed while
                # an earlier task's write was awaited (a rebalance callback runs beside the
                # main loop) has events not yet written; its inputs must not be covered.
                if self.unpublished:
                    return
                offsets = {
                    position_field(t.topic, t.partition): n for t, n in task.next_offsets.items()
                }
                if not offsets or store.covers(partition, offsets):
                    continue
                try:
                    checkpoint = Checkpoint(
                        group=self.policy.group_id,
                        partition=partition,
                        checkpoint_id=store.next_id(partition),
                        fingerprint=self.fingerprint,
                        offsets=offsets,
                        state=dumps_state(task.state()),
                    )
                    await store.write(checkpoint)
                except Exception as exc:  # not a reason to stop: the previous one still holds
                    self.report.checkpoint_failures += 1
                    self.instrumentation.count("checkpoints", result="failed")
                    log.warning("checkpoint not written", partition=partition, error=str(exc))
                    continue
                self.report.checkpoints += 1
                self.instrumentation.count("checkpoints", result="written")

    def _account(self, pending: _Pending, written: int) -> None:
        report, meter = self.report, self.instrumentation
        replayed = len(pending.events) - written
        report.dead_letters += pending.dead_letters
        report.events.update(pending.new_types)
        report.events_replayed += replayed
        report.levels_written += len(pending.levels)
        if pending.undecodable:
            meter.count("dead_letters", pending.undecodable, venue="engine", reason="malformed")
        if pending.dead_letters > pending.undecodable:
            n = pending.dead_letters - pending.undecodable
            meter.count("dead_letters", n, venue="engine", reason="not_applied")
        kinds = Counter(zip(pending.new_types, pending.new_buckets, strict=True))
        for (event_type, bucket), n in kinds.items():
            meter.count("events_published", n, type=event_type, bucket=bucket)
        meter.count("events_replayed", replayed)
        meter.count("levels_written", len(pending.levels))

    async def _dead_letter(
        self, topic: str, partition: int, offset: int, raw: bytes, reason: str, now_ns: int
    ) -> None:
        source = f"{topic}/{partition}/{offset}"
        await self.producer.send_dead_letter(raw, reason, "engine", source, now_ns)

    async def _write_retrying(
        self, events: list[PendingWrite], levels: list[PendingWrite], marks: dict[str, int]
    ) -> int:
        policy = self.policy
        backoff = Backoff(initial_s=0.05, cap_s=policy.redis_retry_cap_s)
        failures = 0
        while True:
            try:
                began = time.perf_counter()
                written = await self.publisher.write(events, levels, marks)
                self.instrumentation.stage("redis", time.perf_counter() - began)
                return written
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failures += 1
                self.report.redis_write_failures += 1
                if failures > policy.redis_max_retries or permanent_cause(exc) is not None:
                    raise
                delay = backoff.next_delay()
                log.warning(
                    "redis write failed; retrying",
                    state="retrying",
                    error=str(exc),
                    attempt=failures,
                    in_s=round(delay, 3),
                )
                await sleep_unless_stopped(self.stop, delay)

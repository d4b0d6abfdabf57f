"""The engine process: Kafka market data → books → detector → Redis and ``regime.events.v1``.

Loop: ``getmany`` a batch; decode each record once (undecodable ones go to the dead-letter
topic); push it into its task's event-time merge; let every task apply what the merge
releases and evaluate; then, in this order, produce the batch's events to
``regime.events.v1`` and await the acks, write events and levels to Redis in one atomic
script (skipped for a batch with neither), and only then commit the input offsets that were
processed: at most every ``commit_interval_s``, and always before partitions move away or
the engine stops. A crash anywhere in between replays the batch; its events get the same
ids and the Redis script skips the ones already written (see :mod:`engine.stream.publisher`), so
the stream never holds a duplicate.

On partition assignment a task rebuilds its state by replaying its partitions from the
beginning of the retained log (events of inputs already published are not published
again); the consumer uses the range assignor so that partition ``p`` of every topic lands
on the same engine. Partitions whose merge buffer is full are paused (bounded memory).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.structs import ConsumerRecord, TopicPartition
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from connectors.common.kafka.embedded import ensure_topics
from connectors.common.kafka.producer import ProducerConfig, RecordProducer, read_order_header
from connectors.common.lifecycle import Backoff, Services
from connectors.common.logs import get_logger
from engine.core.config import ConfigError, LevelsConfig
from engine.signals.detector import DetectorConfig
from engine.stream.checkpoint import Checkpoint, dumps_state, fingerprint, loads_state
from engine.stream.instrumentation import Instrumentation, NoInstrumentation
from engine.stream.merge import EventTimeMerge, InputItem
from engine.stream.publisher import PendingWrite, RedisPublisher, position_field
from engine.stream.state_store import StateStore
from engine.stream.task import PartitionTask, TaskConfig, TaskOutput
from schemas.contracts import OptionContract
from schemas.events import encode_event
from schemas.levels import encode_levels
from schemas.records import decode_record, encode_record
from schemas.ticks import OptionTicks
from schemas.topics import Topics

log = get_logger("engine")
_AHEAD_CONFIRM_S = 3.0  # a position past the log's end this long: the input was recreated
_RESTORE_BUDGET_S = 60.0  # to read the state partitions at an assignment (at most half
# the session timeout: heartbeats wait for the assignment callback)


@dataclass(frozen=True, slots=True)
class EngineConfig:
    """Everything the engine process needs; built once in the entry point."""

    bootstrap: str
    redis_url: str
    group_id: str = "regime-engine"
    topic_prefix: str = ""
    client_id: str = "regime-engine"
    enable_idempotence: bool = True  # producer of events and dead letters (False for Tansu)
    partitions: int = 3  # partition count of topics the engine creates when missing
    levels: LevelsConfig = field(default_factory=LevelsConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    stream_maxlen: int = 100_000  # XADD MAXLEN ~ of regime:stream:{U}
    max_records: int = 20_000  # per getmany
    poll_timeout_ms: int = 100
    fetch_max_wait_ms: int = 10
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    merge_max_idle_s: float = 10.0  # a partition behind the broker holds the merge this long
    max_buffered_per_partition: int = 100_000
    commit_interval_s: float = 0.5  # offsets are committed at most this often (and at stop)
    # Task state is checkpointed to engine.state.v1 with the committed offsets at most this
    # often, and always when partitions move away or the engine stops; 0: never (a restart
    # then replays the log from its start).
    checkpoint_interval_s: float = 60.0
    redis_max_retries: int = 1_000  # consecutive failed writes of one batch before giving up
    redis_retry_cap_s: float = 2.0

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise ConfigError("engine needs a Kafka bootstrap HOST:PORT")
        if not self.redis_url.startswith(("redis://", "rediss://", "unix://")):
            raise ConfigError(f"redis url must start with redis://, got {self.redis_url!r}")
        for name in (
            "partitions",
            "stream_maxlen",
            "max_records",
            "poll_timeout_ms",
            "fetch_max_wait_ms",
            "session_timeout_ms",
            "heartbeat_interval_ms",
            "max_buffered_per_partition",
            "redis_max_retries",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"engine {name} must be a positive integer, got {value!r}")
        if not self.commit_interval_s >= 0:
            raise ConfigError("engine commit_interval_s must be >= 0")
        if not self.checkpoint_interval_s >= 0:
            raise ConfigError("engine checkpoint_interval_s must be >= 0")
        if not self.merge_max_idle_s >= 0:
            raise ConfigError("engine merge_max_idle_s must be >= 0")

    @property
    def topics(self) -> Topics:
        return Topics(self.topic_prefix)


@dataclass
class EngineReport:
    """Counters of one engine run."""

    records: int = 0  # market-data records consumed (a pack of ticks is one record)
    updates: int = 0  # normalised updates they carry (a pack counts its ticks)
    option_ticks: int = 0  # option updates among them: a pack's ticks, a whole contract
    dead_letters: int = 0
    evaluations: int = 0
    events: Counter[str] = field(default_factory=Counter)  # by type, new ones only
    events_replayed: int = 0  # re-derived after a restart and not published again
    levels_written: int = 0
    batches: int = 0
    commits: int = 0
    checkpoints: int = 0  # task checkpoints written to engine.state.v1
    checkpoint_failures: int = 0  # writes that failed (logged; the next one is tried later)
    restored: int = 0  # partitions whose state came from a checkpoint, not a full replay
    rebuilt: int = 0  # partitions replayed from the log start: a checkpoint ahead of the log
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "updates": self.updates,
            "option_ticks": self.option_ticks,
            "dead_letters": self.dead_letters,
            "evaluations": self.evaluations,
            "events": dict(self.events),
            "events_replayed": self.events_replayed,
            "levels_written": self.levels_written,
            "batches": self.batches,
            "commits": self.commits,
            "checkpoints": self.checkpoints,
            "checkpoint_failures": self.checkpoint_failures,
            "restored": self.restored,
            "rebuilt": self.rebuilt,
            "elapsed_s": round(self.elapsed_s, 3),
        }


@dataclass(frozen=True, slots=True)
class InputStatus:
    """One input partition: the log's end, the next offset fetched, records buffered."""

    tp: TopicPartition
    highwater: int | None
    fetched_next: int | None
    buffered: int
    paused: bool


class EngineRuntime:
    """Consume → apply → detect → publish → commit, until stopped."""

    def __init__(
        self,
        config: EngineConfig,
        clock_ns: Callable[[], int] = time.time_ns,
        on_batch: Callable[[list[InputItem]], None] | None = None,
        instrumentation: Instrumentation | None = None,
    ) -> None:
        """``on_batch`` (benchmarks, monitoring) sees each batch's records once committed;
        ``instrumentation`` receives stage timings and counters (none by default)."""
        self.config = config
        self.instrumentation = instrumentation or NoInstrumentation()
        self._on_batch = on_batch
        self.topics = config.topics
        self._clock_ns = clock_ns
        self.tasks: dict[int, PartitionTask] = {}
        self.report = EngineReport()
        self.caught_up = asyncio.Event()  # set while everything assigned is consumed and applied
        self._consumer: AIOKafkaConsumer | None = None
        self._producer: RecordProducer | None = None
        self._publisher: RedisPublisher | None = None
        self._fetched_next: dict[TopicPartition, int] = {}
        self._last_ts: dict[TopicPartition, int] = {}
        self._written: dict[str, int] = {}  # watermarks read from Redis at assignment
        self._committed: dict[TopicPartition, int] = {}
        self._marked: dict[TopicPartition, int] = {}  # offsets the Redis watermarks reached
        self._last_commit = 0.0
        self._last_checkpoint = time.monotonic()
        self.fingerprint = fingerprint(config.levels, config.detector, config.task)
        self._state: StateStore | None = None
        self._checkpoint_lock = asyncio.Lock()
        # Set while a batch is processed but its events are not yet written: a checkpoint
        # then (a rebalance mid-batch) would cover inputs whose events nobody may write.
        self._unpublished = False
        self._paused: set[TopicPartition] = set()
        self._ahead_since: dict[TopicPartition, float] = {}  # position past the log's end

    # ------------------------------------------------------------ lifecycle

    async def run(self, stop: asyncio.Event) -> EngineReport:
        """Run until ``stop`` is set; the last batch is published and committed first."""
        started = time.monotonic()
        cfg = self.config
        await ensure_topics(cfg.bootstrap, self.topics.all(), partitions=cfg.partitions)
        async with Services() as services:
            # RESP2: a pooled connection the server dropped is replaced quietly on next use.
            redis = Redis.from_url(cfg.redis_url, protocol=2, socket_timeout=10.0)
            services.add("redis", redis.aclose)
            await redis.ping()
            self._publisher = RedisPublisher(redis, cfg.group_id, cfg.stream_maxlen)
            self._producer = RecordProducer(
                ProducerConfig(
                    cfg.bootstrap,
                    client_id=f"{cfg.client_id}-engine",
                    enable_idempotence=cfg.enable_idempotence,
                    linger_ms=1.0,
                ),
                self.topics,
            )
            await self._producer.start()
            services.add("producer", self._producer.stop)
            if cfg.checkpoint_interval_s > 0:
                self._state = StateStore(
                    cfg.bootstrap,
                    self.topics.state,
                    cfg.group_id,
                    cfg.client_id,
                    cfg.enable_idempotence,
                    cfg.fetch_max_wait_ms,
                )
                await self._state.start()
                services.add("state store", self._state.stop)
            consumer = AIOKafkaConsumer(
                bootstrap_servers=cfg.bootstrap,
                client_id=cfg.client_id,
                group_id=cfg.group_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                partition_assignment_strategy=(RangePartitionAssignor,),
                session_timeout_ms=cfg.session_timeout_ms,
                heartbeat_interval_ms=cfg.heartbeat_interval_ms,
                fetch_max_wait_ms=cfg.fetch_max_wait_ms,
                max_partition_fetch_bytes=4 * 1024 * 1024,
                fetch_max_bytes=16 * 1024 * 1024,
            )
            self._consumer = consumer
            await consumer.start()
            services.add("consumer", consumer.stop)
            await self._check_partitions(consumer)
            consumer.subscribe(list(self.topics.market_data()), listener=_Rebalance(self))
            log.info("engine started", group=cfg.group_id, topics=self.topics.market_data())
            while not stop.is_set():
                await self._step(consumer)
            await self._commit(checkpoint=True)
        self.report.elapsed_s = time.monotonic() - started
        log.info("engine stopped", **self.report.to_dict())
        return self.report

    async def _check_partitions(self, consumer: AIOKafkaConsumer) -> None:
        await consumer.topics()  # refreshes the metadata
        counts = {
            topic: len(consumer.partitions_for_topic(topic) or ())
            for topic in self.topics.market_data()
        }
        if len(set(counts.values())) != 1:
            raise ConfigError(
                "market-data topics must have the same partition count (they are keyed by "
                f"underlying and read together), got {counts}"
            )

    def input_status(self) -> list[InputStatus]:
        """Where each assigned input partition stands (a diagnostic for a stalled engine)."""
        consumer = self._consumer
        return [
            InputStatus(
                tp,
                consumer.highwater(tp) if consumer is not None else None,
                self._fetched_next.get(tp),
                task.merge.buffered(tp),
                tp in self._paused,
            )
            for task in self.tasks.values()
            for tp in task.merge.tps
        ]

    # ------------------------------------------------------------ one batch

    async def _step(self, consumer: AIOKafkaConsumer) -> None:
        cfg, meter = self.config, self.instrumentation
        began = time.perf_counter()
        batch = await consumer.getmany(timeout_ms=cfg.poll_timeout_ms, max_records=cfg.max_records)
        meter.stage("fetch", time.perf_counter() - began)
        beyond = self._beyond_the_end(consumer)
        if beyond:  # a checkpoint ahead of the log: the input topic was recreated
            await self._rebuild(consumer, beyond, "checkpoint beyond the end of the input")
            batch = {tp: m for tp, m in batch.items() if tp.partition not in beyond}
        began = time.perf_counter()
        dead: list[tuple[ConsumerRecord, str]] = []
        for tp, messages in batch.items():
            task = self.tasks.get(tp.partition)
            if task is None or tp not in task.merge.queues:
                continue
            task.merge.push(tp, self._decode(tp, messages, dead))
            self._fetched_next[tp] = messages[-1].offset + 1
            self.report.records += len(messages)
            meter.count("records_consumed", len(messages), topic=tp.topic)
        meter.stage("decode", time.perf_counter() - began)
        outputs: list[TaskOutput] = []
        released: list[InputItem] = []
        for task in self.tasks.values():
            began = time.perf_counter()
            items = list(task.merge.release(self._caught_up))
            if task.merge.buffered():
                meter.count("merge_held_back")
            meter.stage("merge", time.perf_counter() - began)
            if items:
                self._unpublished = True
                began = time.perf_counter()
                outputs.append(task.process(items))
                meter.stage("process", time.perf_counter() - began)
                released.extend(items)
        began = time.perf_counter()
        await self._publish(outputs, dead)
        meter.stage("publish", time.perf_counter() - began)
        if self._on_batch is not None and released:
            self._on_batch(released)
        self._backpressure(consumer)
        merges = [task.merge for task in self.tasks.values()]
        idle = all(self._caught_up(tp) for m in merges for tp in m.tps) and not any(
            m.buffered() for m in merges
        )
        if idle and merges:
            self.caught_up.set()
        else:
            self.caught_up.clear()

    def _decode(
        self,
        tp: TopicPartition,
        messages: list[ConsumerRecord],
        dead: list[tuple[ConsumerRecord, str]],
    ) -> list[InputItem]:
        items = []
        last_ts = self._last_ts.get(tp, 0)
        ticks = updates = 0
        for message in messages:
            try:
                record = decode_record(message.value)
                last_ts = record.ts_event_ns
                kind = type(record)
                if kind is OptionTicks:
                    ticks += len(record)
                    updates += len(record)
                else:
                    updates += 1
                    if kind is OptionContract:
                        ticks += 1
            except Exception as exc:  # any failure to decode is bad input, never a crash
                record = None
                dead.append((message, f"undecodable record: {_one_line(exc)}"))
            item = InputItem(tp, message.offset, last_ts, record)
            if message.headers and (order := read_order_header(message.headers)) is not None:
                item.producer, item.after = order  # applied in its producer's send order
            items.append(item)
        self._last_ts[tp] = last_ts
        self.report.option_ticks += ticks
        self.report.updates += updates
        self.instrumentation.count("updates_applied", updates)
        return items

    def _caught_up(self, tp: TopicPartition) -> bool:
        consumer = self._consumer
        highwater = consumer.highwater(tp) if consumer is not None else None
        fetched = self._fetched_next.get(tp)
        return (
            highwater is not None
            and fetched is not None
            and fetched >= highwater
            and tp not in self._ahead_since  # ahead of the log's end: not consistent yet
        )

    def _beyond_the_end(self, consumer: AIOKafkaConsumer) -> set[int]:
        """Partitions whose position has stayed past the log's end for
        ``_AHEAD_CONFIRM_S`` (a new leader may report a lower end for a moment)."""
        now = time.monotonic()
        confirmed = set()
        for task in self.tasks.values():
            for tp in task.merge.tps:
                end = consumer.highwater(tp)
                if end is None or self._fetched_next.get(tp, 0) <= end:
                    self._ahead_since.pop(tp, None)
                elif now - self._ahead_since.setdefault(tp, now) >= _AHEAD_CONFIRM_S:
                    confirmed.add(tp.partition)
        return confirmed

    def _backpressure(self, consumer: AIOKafkaConsumer) -> None:
        limit = self.config.max_buffered_per_partition
        for task in self.tasks.values():
            for tp in task.merge.tps:
                size = task.merge.buffered(tp)
                if size >= limit and tp not in self._paused:
                    consumer.pause(tp)
                    self._paused.add(tp)
                elif size < limit // 2 and tp in self._paused:
                    consumer.resume(tp)
                    self._paused.discard(tp)

    async def _publish(
        self, outputs: list[TaskOutput], dead: list[tuple[ConsumerRecord, str]]
    ) -> None:
        producer, publisher = self._producer, self._publisher
        assert producer is not None and publisher is not None
        now = self._clock_ns()
        sent = bool(dead) or any(o.rejected or o.events for o in outputs)
        for message, reason in dead:
            if self._is_new(message.topic, message.partition, message.offset):
                await _dead_letter(
                    producer,
                    message.topic,
                    message.partition,
                    message.offset,
                    message.value or b"",
                    reason,
                    now,
                )
        pending_events: list[PendingWrite] = []
        pending_levels: list[PendingWrite] = []
        new_types: list[str] = []  # of events not written before this run (replays excluded)
        for output in outputs:
            for item, reason in output.rejected:
                if self._is_new(item.tp.topic, item.tp.partition, item.offset):
                    raw = b"" if item.record is None else encode_record(item.record)
                    await _dead_letter(
                        producer, item.tp.topic, item.tp.partition, item.offset, raw, reason, now
                    )
            for trigger, event in output.events:
                source = position_field(trigger.topic, trigger.partition)
                payload = encode_event(event)
                pending_events.append(
                    PendingWrite(source, trigger.offset, event.underlying, payload)
                )
                if self._is_new(trigger.topic, trigger.partition, trigger.offset):
                    await producer.send(self.topics.events, event.underlying.encode(), payload)
                    new_types.append(event.type)
            for underlying, (trigger, levels) in output.levels.items():
                pending_levels.append(
                    PendingWrite(
                        position_field(trigger.topic, trigger.partition),
                        trigger.offset,
                        underlying,
                        encode_levels(levels),
                    )
                )
        dead_letters = len(dead) + sum(len(o.rejected) for o in outputs)
        self.report.dead_letters += dead_letters
        if sent:
            await producer.flush()
        written = 0
        if pending_events or pending_levels:
            marks = {}
            for task in self.tasks.values():
                for tp, next_offset in task.next_offsets.items():
                    if self._marked.get(tp) != next_offset:
                        marks[tp] = next_offset
            written = await self._write_redis(
                publisher,
                pending_events,
                pending_levels,
                {position_field(tp.topic, tp.partition): n - 1 for tp, n in marks.items()},
            )
            self._marked.update(marks)
        self._unpublished = False  # every processed input has its events written
        self.report.events.update(new_types)
        self.report.events_replayed += len(pending_events) - written
        self.report.levels_written += len(pending_levels)
        self.report.evaluations = sum(t.evaluations for t in self.tasks.values())
        self.report.batches += 1
        meter = self.instrumentation
        meter.count("dead_letters", dead_letters)
        for event_type, n in Counter(new_types).items():
            meter.count("events_published", n, type=event_type)
        meter.count("events_replayed", len(pending_events) - written)
        meter.count("levels_written", len(pending_levels))
        meter.count("batches")
        if time.monotonic() - self._last_commit >= self.config.commit_interval_s:
            await self._commit()

    def _is_new(self, topic: str, partition: int, offset: int) -> bool:
        """False for an input whose events were written before (a replay after a restart)."""
        return offset > self._written.get(position_field(topic, partition), -1)

    async def _commit(self, checkpoint: bool = False) -> None:
        """Commit what was processed (everything processed has its events written), then
        checkpoint the tasks when due (``checkpoint``: now)."""
        self._last_commit = time.monotonic()
        offsets = {
            tp: next_offset
            for task in self.tasks.values()
            for tp, next_offset in task.next_offsets.items()
            if self._committed.get(tp) != next_offset
        }
        if offsets and self._consumer is not None:
            began = time.perf_counter()
            await self._consumer.commit(offsets)
            self.instrumentation.stage("commit", time.perf_counter() - began)
            self._committed.update(offsets)
            self.report.commits += 1
            self.instrumentation.count("commits")
        interval = self.config.checkpoint_interval_s
        if interval > 0 and (checkpoint or time.monotonic() - self._last_checkpoint >= interval):
            began = time.perf_counter()
            await self._write_checkpoints()
            self.instrumentation.stage("checkpoint", time.perf_counter() - began)

    async def _write_checkpoints(self) -> None:
        """Each task whose input moved since its last checkpoint: its state and offsets to
        ``engine.state.v1``. A failed write is logged and counted; the engine goes on (the
        previous checkpoint, or a replay, still restores it)."""
        store = self._state
        if store is None:
            return
        async with self._checkpoint_lock:
            self._last_checkpoint = time.monotonic()
            for partition, task in list(self.tasks.items()):
                # Checked before each task's (synchronous) snapshot: a batch processed while
                # an earlier task's write was awaited (a rebalance callback runs beside the
                # main loop) has events not yet written; its inputs must not be covered.
                if self._unpublished:
                    return
                offsets = {
                    position_field(t.topic, t.partition): n for t, n in task.next_offsets.items()
                }
                if not offsets or store.covers(partition, offsets):
                    continue
                try:
                    checkpoint = Checkpoint(
                        group=self.config.group_id,
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

    def new_task(self, partition: int, tps: list[TopicPartition]) -> PartitionTask:
        return PartitionTask(
            partition,
            EventTimeMerge(tps, self.config.merge_max_idle_s, topics=self.topics.market_data()),
            self.config.levels,
            self.config.detector,
            self.config.task,
            self._clock_ns,
        )

    def restored_task(self, task: PartitionTask, checkpoint: Checkpoint) -> bool:
        """Put a checkpoint's state into a new task; False (replay from the start, with a
        fresh task) when it does not fit."""
        if checkpoint.fingerprint != self.fingerprint:
            log.warning(
                "checkpoint written under other settings or code; replaying from the start",
                partition=task.partition,
            )
            return False
        try:
            task.restore(loads_state(checkpoint.state))
        except Exception as exc:  # CheckpointError, or a state of the wrong shape
            log.warning(
                "checkpoint not usable; replaying from the start",
                partition=task.partition,
                error=f"{type(exc).__name__}: {exc}",
            )
            return False
        return True

    async def _write_redis(
        self,
        publisher: RedisPublisher,
        events: list[PendingWrite],
        levels: list[PendingWrite],
        marks: dict[str, int],
    ) -> int:
        """Write the batch, retrying through a Redis outage (nothing is committed before).

        The write is idempotent (watermarks), so retrying after a failure whose effect is
        unknown never duplicates an event.
        """
        backoff = Backoff(initial_s=0.05, cap_s=self.config.redis_retry_cap_s)
        failures = 0
        while True:
            try:
                began = time.perf_counter()
                written = await publisher.write(events, levels, marks)
                self.instrumentation.stage("redis", time.perf_counter() - began)
                return written
            except (RedisConnectionError, RedisTimeoutError, OSError) as exc:
                failures += 1
                if failures > self.config.redis_max_retries:
                    raise
                delay = backoff.next_delay()
                log.warning("redis write failed; retrying", error=str(exc), in_s=round(delay, 3))
                await asyncio.sleep(delay)

    async def _rebuild(self, consumer: AIOKafkaConsumer, partitions: set[int], why: str) -> None:
        """Partitions whose input no longer matches their checkpoint: fresh tasks, replayed
        from the start of the retained log (events already written are not written again)."""
        for partition in sorted(partitions):
            task = self.tasks.get(partition)
            if task is None:
                continue
            log.warning("rebuilding a partition's state from the log start", partition=partition,
                        why=why)  # fmt: skip
            tps = [tp for tp in task.merge.tps if tp in consumer.assignment()]
            if len(tps) < len(task.merge.tps):
                continue  # being revoked: its next owner reads the checkpoint again
            self.tasks[partition] = self.new_task(partition, tps)
            await consumer.seek_to_beginning(*tps)
            for tp in tps:
                self._fetched_next[tp] = await consumer.position(tp)
                self._last_ts.pop(tp, None)
                self._ahead_since.pop(tp, None)
            self.report.rebuilt += 1
            self.instrumentation.count("restores", kind="rebuild")

    # ------------------------------------------------------------ rebalance

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions move away: commit what was processed, checkpoint, drop their tasks."""
        try:
            # bounded: the group's rebalance waits for this callback
            await asyncio.wait_for(
                self._commit(checkpoint=True), self.config.session_timeout_ms / 2_000
            )
        finally:  # the tasks go even if that failed: they must not see their input again
            for partition in {tp.partition for tp in revoked}:
                self.tasks.pop(partition, None)
                if self._state is not None:
                    self._state.forget(partition)
            for tp in revoked:
                self._fetched_next.pop(tp, None)
                self._marked.pop(tp, None)
                self._last_ts.pop(tp, None)
                self._ahead_since.pop(tp, None)
                self._paused.discard(tp)
            log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """New partitions: their tasks' state from the latest checkpoint, then the input after
        its offsets; without a usable checkpoint, by replaying the input from the start."""
        consumer, publisher = self._consumer, self._publisher
        assert consumer is not None and publisher is not None
        self._written = await publisher.watermarks()
        new = sorted(tp for tp in assigned if tp.partition not in self.tasks)
        by_partition: dict[int, list[TopicPartition]] = {}
        for tp in new:
            by_partition.setdefault(tp.partition, []).append(tp)
        rank = {topic: i for i, topic in enumerate(self.topics.market_data())}
        checkpoints: dict[int, Checkpoint | None] = {}
        if by_partition and self._state is not None:
            budget = min(_RESTORE_BUDGET_S, self.config.session_timeout_ms / 2_000)
            try:
                checkpoints = await asyncio.wait_for(
                    self._state.read(sorted(by_partition), budget), budget
                )
            except Exception as exc:  # the state topic unreadable: replay instead
                log.warning("checkpoints not read; replaying", error=str(exc))
        for partition, tps in by_partition.items():
            tps.sort(key=lambda tp: rank.get(tp.topic, len(rank)))
            task = self.new_task(partition, tps)
            checkpoint = checkpoints.get(partition)
            resume: dict[TopicPartition, int] = {}
            if checkpoint is not None and not self.restored_task(task, checkpoint):
                task = self.new_task(partition, tps)  # nothing of a failed restore stays
            elif checkpoint is not None:
                self.report.restored += 1
                self.instrumentation.count("restores", kind="checkpoint")
                self._last_ts.update(task.last_ts)
                if self._state is not None:
                    self._state.adopt(checkpoint)
                resume = {
                    tp: checkpoint.offsets[key]
                    for tp in tps
                    if (key := position_field(tp.topic, tp.partition)) in checkpoint.offsets
                }
                log.info("state restored from checkpoint", partition=partition)
            self.tasks[partition] = task
            if not resume:
                self.instrumentation.count("restores", kind="replay")
            for tp, offset in resume.items():
                consumer.seek(tp, offset)
            from_start = [tp for tp in tps if tp not in resume]
            if from_start:
                await consumer.seek_to_beginning(*from_start)
            for tp in tps:
                self._fetched_next[tp] = await consumer.position(tp)
        self.caught_up.clear()
        log.info("partitions assigned", partitions=sorted(by_partition))


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runtime: EngineRuntime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.runtime.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.runtime.on_assigned(assigned)


async def _dead_letter(
    producer: RecordProducer,
    topic: str,
    partition: int,
    offset: int,
    raw: bytes,
    reason: str,
    now_ns: int,
) -> None:
    await producer.send_dead_letter(raw, reason, "engine", f"{topic}/{partition}/{offset}", now_ns)


def _one_line(exc: BaseException) -> str:
    text = str(exc).splitlines()[0] if str(exc) else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__

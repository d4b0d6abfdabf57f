"""The engine process: Kafka market data → books → detector → Redis and ``regime.events.v1``.

The runtime loops and owns the lifecycles (clients, tasks, partition states). Loop:
``getmany`` a batch; decode each record once (:mod:`engine.stream.decode`; undecodable ones
become dead letters); push it into its task's event-time merge; let every task apply what
the merge releases and evaluate; then hand the batch to the commit procedure
(:mod:`engine.stream.commit`: events, flush, Redis with watermarks, offsets, checkpoint, in
that order).

On partition assignment a task takes its state from the latest checkpoint or rebuilds it by
replaying its partitions from the beginning of the retained log (events of inputs already
published are not published again); the consumer uses the range assignor so that partition
``p`` of every topic lands on the same engine. What the engine knows of each input partition
is one :class:`engine.stream.partitions.PartitionState`, created on assignment and dropped on
revoke. Partitions whose merge buffer is full are paused (bounded memory).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener
from aiokafka.coordinator.assignors.range import RangePartitionAssignor
from aiokafka.errors import IllegalStateError
from aiokafka.structs import ConsumerRecord, TopicPartition
from redis.asyncio import Redis

from connectors.common.kafka.embedded import ensure_topics, topic_partitions
from connectors.common.kafka.producer import ProducerConfig, RecordProducer
from connectors.common.lifecycle import Services
from connectors.common.logs import get_logger
from engine.core.config import ConfigError, LevelsConfig
from engine.signals.detector import DetectorConfig
from engine.stream.checkpoint import Checkpoint, fingerprint, loads_state
from engine.stream.commit import Commit, CommitPolicy
from engine.stream.decode import decode_messages
from engine.stream.instrumentation import Instrumentation, NoInstrumentation
from engine.stream.merge import EventTimeMerge, InputItem
from engine.stream.partitions import Assignment, PartitionState
from engine.stream.publisher import RedisPublisher, position_field
from engine.stream.report import EngineReport, InputStatus
from engine.stream.state_store import StateStore
from engine.stream.task import PartitionTask, TaskConfig, TaskOutput
from schemas.config import Config
from schemas.topics import Topics

__all__ = ["EngineConfig", "EngineReport", "EngineRuntime", "InputStatus"]

log = get_logger("engine")
_AHEAD_CONFIRM_S = 3.0  # a position past the log's end this long: the input was recreated
_RESTORE_BUDGET_S = 60.0  # to read the state partitions of new partitions (then: replay)
# The revocation's commit and checkpoint: the group's rebalance waits for it (heartbeats go
# on meanwhile), bounded so that a broken broker cannot hold the group for ever.
_REVOKE_BUDGET_S = 30.0


@dataclass(frozen=True, slots=True)
class EngineConfig(Config):
    """Everything the engine process needs; built once in the entry point."""

    SECTION: ClassVar[str] = "engine"

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
        self.assignment = Assignment()  # the state of every assigned input partition
        self.report = EngineReport()
        self.caught_up = asyncio.Event()  # set while everything assigned is consumed and applied
        self._consumer: AIOKafkaConsumer | None = None
        self._commit: Commit | None = None  # the commit procedure, once the clients run
        self.fingerprint = fingerprint(config.levels, config.detector, config.task)
        self._state: StateStore | None = None
        # Assigned, paused, waiting for the main loop to restore them (see on_assigned);
        # the generation counts rebalance callbacks, so a restore raced by one starts over.
        self._unrestored: set[TopicPartition] = set()
        self._generation = 0

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
            publisher = RedisPublisher(redis, cfg.group_id, cfg.stream_maxlen)
            producer = RecordProducer(
                ProducerConfig(
                    cfg.bootstrap,
                    client_id=f"{cfg.client_id}-engine",
                    enable_idempotence=cfg.enable_idempotence,
                    linger_ms=1.0,
                ),
                self.topics,
            )
            await producer.start()
            services.add("producer", producer.stop)
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
            self._commit = Commit(
                CommitPolicy(
                    cfg.group_id,
                    cfg.commit_interval_s,
                    cfg.checkpoint_interval_s,
                    cfg.redis_max_retries,
                    cfg.redis_retry_cap_s,
                ),
                self.topics,
                producer,
                publisher,
                consumer,
                self._state,
                self.assignment,
                self.report,
                self.instrumentation,
                self.fingerprint,
                self._clock_ns,
            )
            await self._check_partitions()
            consumer.subscribe(list(self.topics.market_data()), listener=_Rebalance(self))
            log.info("engine started", group=cfg.group_id, topics=self.topics.market_data())
            while not stop.is_set():
                await self._step(consumer, self._commit)
            await self._commit.commit(self.tasks, checkpoint=True)
        self.report.elapsed_s = time.monotonic() - started
        log.info("engine stopped", **self.report.to_dict())
        return self.report

    async def _check_partitions(self) -> None:
        found = await topic_partitions(self.config.bootstrap, self.topics.market_data())
        counts = {topic: len(parts) for topic, parts in found.items()}
        if len(set(counts.values())) != 1:
            raise ConfigError(
                "market-data topics must have the same partition count (they are keyed by "
                f"underlying and read together), got {counts}"
            )

    def input_status(self) -> list[InputStatus]:
        """Where each assigned input partition stands (a diagnostic for a stalled engine)."""
        statuses = []
        for task in self.tasks.values():
            for tp in task.merge.tps:
                state = self.assignment.get(tp)
                statuses.append(
                    InputStatus(
                        tp,
                        self._highwater(tp),
                        None if state is None else state.fetched_next,
                        task.merge.buffered(tp),
                        state is not None and state.paused,
                    )
                )
        return statuses

    # ------------------------------------------------------------ one batch

    async def _step(self, consumer: AIOKafkaConsumer, commit: Commit) -> None:
        cfg, meter = self.config, self.instrumentation
        if self._unrestored:
            await self._restore_assigned(consumer, commit)
        began = time.perf_counter()
        batch = await consumer.getmany(timeout_ms=cfg.poll_timeout_ms, max_records=cfg.max_records)
        meter.stage("fetch", time.perf_counter() - began)
        beyond = self.assignment.beyond_the_end(consumer.highwater, time.monotonic(),
                                                _AHEAD_CONFIRM_S)  # fmt: skip
        if beyond:  # a checkpoint ahead of the log: the input topic was recreated
            await self._rebuild(consumer, beyond, "checkpoint beyond the end of the input")
            batch = {tp: m for tp, m in batch.items() if tp.partition not in beyond}
        began = time.perf_counter()
        dead: list[tuple[ConsumerRecord, str]] = []
        for tp, messages in batch.items():
            task = self.tasks.get(tp.partition)
            state = self.assignment.get(tp)
            if task is None or state is None or tp not in task.merge.queues:
                continue
            decoded = decode_messages(tp, messages, state.last_ts, dead)
            state.last_ts = decoded.last_ts
            task.merge.push(tp, decoded.items)
            state.fetched_next = messages[-1].offset + 1
            self.report.records += len(messages)
            self.report.option_ticks += decoded.option_ticks
            self.report.updates += decoded.updates
            meter.count("updates_applied", decoded.updates)
            meter.count("records_consumed", len(messages), topic=tp.topic)
        meter.stage("decode", time.perf_counter() - began)
        outputs: list[TaskOutput] = []
        released: list[InputItem] = []
        for task in self.tasks.values():
            began = time.perf_counter()
            gaps, forced = task.merge.gaps, task.merge.forced
            items = list(task.merge.release(self._caught_up))
            self.report.merge_gaps += task.merge.gaps - gaps
            self.report.merge_forced += task.merge.forced - forced
            if task.merge.buffered():
                meter.count("merge_held_back")
            meter.stage("merge", time.perf_counter() - began)
            if items:
                commit.unpublished = True
                began = time.perf_counter()
                outputs.append(task.process(items))
                meter.stage("process", time.perf_counter() - began)
                released.extend(items)
        began = time.perf_counter()
        await commit.batch(outputs, dead, self.tasks)
        self.report.evaluations = sum(t.evaluations for t in self.tasks.values())
        self.report.batches += 1
        meter.count("batches")
        meter.stage("publish", time.perf_counter() - began)
        if self._on_batch is not None and released:
            self._on_batch(released)
        self._backpressure(consumer)
        merges = [task.merge for task in self.tasks.values()]
        idle = all(self._caught_up(tp) for m in merges for tp in m.tps) and not any(
            m.buffered() for m in merges
        )
        if idle and merges and not self._unrestored:
            self.caught_up.set()
        else:
            self.caught_up.clear()

    def _highwater(self, tp: TopicPartition) -> int | None:
        consumer = self._consumer
        return consumer.highwater(tp) if consumer is not None else None

    def _caught_up(self, tp: TopicPartition) -> bool:
        return self.assignment.caught_up(tp, self._highwater(tp))

    def _backpressure(self, consumer: AIOKafkaConsumer) -> None:
        buffered = {tp: task.merge.buffered(tp) for task in self.tasks.values()
                    for tp in task.merge.tps}  # fmt: skip
        pause, resume = self.assignment.backpressure(
            lambda tp: buffered.get(tp, 0), self.config.max_buffered_per_partition
        )
        if pause:
            consumer.pause(*pause)
        if resume:
            consumer.resume(*resume)

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
            for state in self.assignment.assign(tps):
                state.reset(await consumer.position(state.tp))
            self.report.rebuilt += 1
            self.instrumentation.count("restores", kind="rebuild")

    # ------------------------------------------------------------ rebalance

    async def on_revoked(self, revoked: set[TopicPartition]) -> None:
        """Partitions move away: commit what was processed, checkpoint, drop their tasks."""
        self._generation += 1
        self._unrestored -= revoked
        try:
            if self._commit is not None:  # bounded: the group's rebalance waits for this
                await asyncio.wait_for(
                    self._commit.commit(self.tasks, checkpoint=True), _REVOKE_BUDGET_S
                )
        finally:  # the tasks go even if that failed: they must not see their input again
            for partition in {tp.partition for tp in revoked}:
                self.tasks.pop(partition, None)
                if self._state is not None:
                    self._state.forget(partition)
            self.assignment.revoke(revoked)
            log.info("partitions revoked", partitions=sorted(tp.partition for tp in revoked))

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        """New partitions are paused until the main loop restores them
        (:meth:`_restore_assigned`): the group's heartbeats stop while this callback runs, so
        reading checkpoints here would have to fit in the session timeout."""
        self._generation += 1
        new = {tp for tp in assigned if tp.partition not in self.tasks}
        if new:
            assert self._consumer is not None
            self._consumer.pause(*new)
            self._unrestored |= new
        self.caught_up.clear()

    async def _restore_assigned(self, consumer: AIOKafkaConsumer, commit: Commit) -> None:
        """Give the partitions assigned since the last batch their tasks. Steps:

        1. read the Redis watermarks (what is published already is not published again);
        2. read the latest checkpoint of each new partition (bounded; unreadable: replay);
        3. per partition: a task from its checkpoint (or a fresh one, replaying the input
           from its start), its input positioned after the checkpoint's offsets;
        4. if a rebalance callback ran meanwhile, stop: the next batch starts over with
           what is assigned then;
        5. install the tasks (no await in between, so no callback sees half of them) and
           resume fetching their input.
        """
        generation = self._generation
        await commit.read_watermarks()
        by_partition: dict[int, list[TopicPartition]] = {}
        for tp in sorted(self._unrestored):
            by_partition.setdefault(tp.partition, []).append(tp)
        checkpoints: dict[int, Checkpoint | None] = {}
        if self._state is not None:
            try:
                checkpoints = await asyncio.wait_for(
                    self._state.read(sorted(by_partition), _RESTORE_BUDGET_S), _RESTORE_BUDGET_S
                )
            except Exception as exc:  # the state topic unreadable: replay instead
                log.warning("checkpoints not read; replaying", error=str(exc))
        rank = {topic: i for i, topic in enumerate(self.topics.market_data())}
        plans = []
        try:
            for partition, tps in by_partition.items():
                if generation != self._generation:
                    break
                tps.sort(key=lambda tp: rank.get(tp.topic, len(rank)))
                plans.append(await self._position(consumer, partition, tps, checkpoints))
        except IllegalStateError:  # unassigned meanwhile
            generation = -1
        if generation != self._generation:  # a rebalance ran: its partitions start over
            for tps in by_partition.values():
                self.assignment.revoke(tps)
            return
        for task, states, restored in plans:  # no await from here: no callback in between
            self.tasks[task.partition] = task
            if restored is not None:
                self.report.restored += 1
                self.instrumentation.count("restores", kind="checkpoint")
                for state in states:
                    state.last_ts = task.last_ts.get(state.tp, state.last_ts)
                if self._state is not None:
                    self._state.adopt(restored)
                log.info("state restored from checkpoint", partition=task.partition)
            else:
                self.instrumentation.count("restores", kind="replay")
        restored, self._unrestored = self._unrestored, set()
        consumer.resume(*restored)
        self.caught_up.clear()
        self.instrumentation.count("assignments")
        log.info("partitions assigned", partitions=sorted(by_partition))

    async def _position(
        self,
        consumer: AIOKafkaConsumer,
        partition: int,
        tps: list[TopicPartition],
        checkpoints: dict[int, Checkpoint | None],
    ) -> tuple[PartitionTask, list[PartitionState], Checkpoint | None]:
        """A new partition's task (from its checkpoint when usable), its input positioned
        after the checkpoint's offsets, or at the start; the checkpoint None if not used."""
        states = self.assignment.assign(tps)
        task = self.new_task(partition, tps)
        checkpoint = checkpoints.get(partition)
        resume: dict[TopicPartition, int] = {}
        if checkpoint is not None and not self.restored_task(task, checkpoint):
            task, checkpoint = self.new_task(partition, tps), None  # nothing of it stays
        elif checkpoint is not None:
            resume = {
                tp: checkpoint.offsets[key]
                for tp in tps
                if (key := position_field(tp.topic, tp.partition)) in checkpoint.offsets
            }
        if not resume:
            checkpoint = None  # nothing to resume from: a replay from the start
        for tp, offset in resume.items():
            consumer.seek(tp, offset)
        from_start = [tp for tp in tps if tp not in resume]
        if from_start:
            await consumer.seek_to_beginning(*from_start)
        for state in states:
            state.reset(await consumer.position(state.tp))
        return task, states, checkpoint


class _Rebalance(ConsumerRebalanceListener):
    def __init__(self, runtime: EngineRuntime) -> None:
        self.runtime = runtime

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        await self.runtime.on_revoked(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        await self.runtime.on_assigned(assigned)

"""Whole-pipeline benchmark: Kafka → decode → merge → books → detector → Redis → commit.

    python benchmarks/pipeline.py --json

Starts its own embedded Tansu broker and Redis. The data is a seeded simulated Deribit
session (``connectors.simulator``: 2,000 BTC options, every option ticking ~10 times a
second, the index once a second), normalised by the live parse path (``IngestStage`` +
``DeribitNormaliser``) and packed as the Kafka producer packs option tickers
(``connectors.common.packing.TickPacker``: up to ``--pack-max-ticks`` ticks of one underlying per
``OptionTicks`` record, none waiting longer than ``--pack-wait-ms``, on the simulated
receive clock), so the engine sees the record mix a busy session gives it. A "tick" is one
option ticker update, packed or sent whole; rates are in ticks, records are reported too.

1. Throughput. Every record is produced into fresh topics first (not timed). Then an
   ``EngineRuntime`` with its real configuration (Redis publishing, offset commits) runs
   from partition assignment until ``caught_up``: ``ticks_per_s`` = option ticks / seconds.
   Broker start and group join are outside that window; fetch, decode, merge, apply,
   evaluate, publish and commit are inside. The naive baseline in the same run is a plain
   ``AIOKafkaConsumer`` over the same topics (manual assignment, from the beginning) doing
   ``getmany`` + ``decode_record`` only (packs decoded to arrays), timed from assignment
   until it has decoded every record (``decode_only_ticks_per_s``).
2. Latency at 30,000 ticks/s (and, below saturation, at 10,000 ticks/s). A fresh engine
   (own topics, group, Redis db) first catches up on the start of the session (the book
   summary and the tickers up to the second price-index tick). Then another process paces
   the rest of the session into the broker at the target rate in ~1 ms rounds: each tick
   is stamped (``ts_recv_ns``) with its scheduled arrival time, packed as the producer's
   packer packs it, and every round's packs are sent at the end of the round (the flush at
   the end of a read), producer ``linger_ms`` 0 by default (the packs are the batching).
   In ``on_batch`` (called once the batch's events are in Redis) every tick gives one
   sample: now − its own ``ts_recv_ns``. The samples are also split at the engine's
   ``getmany``: ``to_engine_*`` (packing wait, produce, broker, fetch) and ``engine_*`` (the
   engine's own part, merge hold included). Engine knobs that matter: ``fetch_max_wait_ms``
   and ``poll_timeout_ms`` (engine defaults here; ``fetch_max_wait_ms=1`` makes Tansu stop
   serving a partition, see the README).

The engine runs unmodified; the benchmark wraps a few of its methods (one clock read per
call, per batch or per chunk, not per record) for a time breakdown per stage.

Prints one JSON object (``--json``) or a readable summary. ``--profile`` adds a cProfile run
of the engine over the throughput topics and prints its top functions to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import io
import json
import logging
import math
import multiprocessing as mp
import os
import pickle
import platform
import pstats
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

import engine.stream.task as engine_task
from connectors.common.ingest import IngestStage, replay_messages
from connectors.common.kafka.embedded import EmbeddedKafka, ensure_topics
from connectors.common.kafka.producer import ProducerConfig, RecordProducer
from connectors.common.logs import configure_logging
from connectors.common.packing import PackConfig, TickPacker
from connectors.common.redis_embedded import EmbeddedRedis
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_config import SessionConfig
from connectors.simulator.deribit_session import generate_session
from engine.stream.merge import InputItem
from engine.stream.runtime import EngineConfig, EngineReport, EngineRuntime
from engine.stream.task import TaskOutput
from schemas.contracts import OptionContract
from schemas.records import Record, UnderlyingTick, decode_record, encode_record
from schemas.ticks import OptionTicks
from schemas.topics import Topics

TOPIC_ATTRS = ("options", "underlying", "trades", "funding", "volindex")
TARGET_TICKS_PER_S = 100_000
TARGET_P99_MS = 5.0
TARGET_RATE = 30_000

Item = tuple[str, Record]  # (Topics attribute, record), in ingest (receive) order
RawItem = tuple[str, Record, bool]  # … and whether it is a packable ticker update


# ---------------------------------------------------------------------------- data


class RawSink:
    """What an ingest stage hands its sink, in order, with the ticker flag (a packing sink's
    ``send_tick``): the input of :func:`pack_items` and of the paced producer."""

    def __init__(self) -> None:
        self.items: list[RawItem] = []
        self.dead_letters = 0
        self._attr_of = {getattr(Topics(), attr): attr for attr in TOPIC_ATTRS}

    async def send_record(self, topic: str, record: Record) -> None:
        self.items.append((self._attr_of[topic], record, False))

    async def send_tick(self, topic: str, record: Record) -> None:
        self.items.append((self._attr_of[topic], record, True))

    async def send_dead_letter(self, *_: Any) -> None:
        self.dead_letters += 1


async def build_raw(config: SessionConfig) -> list[RawItem]:
    """The session's records as the live ingest path normalises them, in receive order."""
    sink = RawSink()
    stage = IngestStage("deribit", DeribitNormaliser(), sink, Topics(), source="bench")
    await replay_messages(generate_session(config), stage)
    if sink.dead_letters:
        raise RuntimeError(f"{sink.dead_letters} simulated messages were dead-lettered")
    return sink.items


def pack_items(raw: list[RawItem], packer: TickPacker) -> list[Item]:
    """The records the producer's packer sends for ``raw``, on the simulated receive clock.

    The live producer flushes a pack ``max_wait_s`` after its first tick by a timer; here
    the next tick or record after that moment does, which gives the same packs.
    """
    out: list[Item] = []
    attr_of = {getattr(Topics(), attr): attr for attr in TOPIC_ATTRS}
    for attr, record, packable in raw:
        now = record.ts_recv_ns / 1e9
        topic = getattr(Topics(), attr)
        if packable and type(record) is OptionContract:
            sent = packer.add(topic, record, now)
        else:
            sent = [*packer.before(record, now), (topic, record)]
        out.extend((attr_of[t], r) for t, r in sent)
    out.extend((attr_of[t], r) for t, r in packer.drain())
    return out


def pack_config(args: argparse.Namespace) -> PackConfig:
    return PackConfig(max_ticks=args.pack_max_ticks, max_wait_s=args.pack_wait_ms / 1000.0)


def ticks_in_packs(items: list[Item]) -> int:
    return sum(len(record) for _, record in items if type(record) is OptionTicks)


def option_ticks(record: Record | None) -> int:
    """Option ticks a record carries: a pack's rows, one for a full contract."""
    if type(record) is OptionTicks:
        return len(record)
    return 1 if type(record) is OptionContract else 0


def record_mix(items: list[Item]) -> dict[str, int]:
    counts = Counter(type(record).__name__ for _, record in items)
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


def is_index(record: Record) -> bool:
    return isinstance(record, UnderlyingTick) and record.kind == "index"


async def produce(bootstrap: str, topics: Topics, items: list[Item]) -> float:
    """Produce ``items`` (acks=all, batched) and wait for every ack; seconds taken."""
    start = time.perf_counter()
    config = ProducerConfig(bootstrap, client_id="bench-ingest", enable_idempotence=False)
    async with RecordProducer(config, topics) as producer:
        for attr, record in items:
            await producer.send_record(getattr(topics, attr), record)
        await producer.flush()
    return time.perf_counter() - start


def new_topics(tag: str) -> Topics:
    return Topics(f"bench{uuid.uuid4().hex[:8]}.{tag}.")


# ---------------------------------------------------------------------------- engine


class Timers:
    """Seconds spent per engine stage, from wrapped calls (one clock read per call)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        seconds, calls, clock = self.seconds, self.calls, time.perf_counter

        def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return fn(*args, **kwargs)
            finally:
                seconds[name] += clock() - start
                calls[name] += 1

        return timed

    def wrap_async(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        seconds, calls, clock = self.seconds, self.calls, time.perf_counter

        async def timed(*args: Any, **kwargs: Any) -> Any:
            start = clock()
            try:
                return await fn(*args, **kwargs)
            finally:
                seconds[name] += clock() - start
                calls[name] += 1

        return timed


class BenchRuntime(EngineRuntime):
    """The real runtime, plus the time of assignment and a per-stage time breakdown.

    Stages: ``fetch`` (awaiting ``getmany``, waiting for the broker included), ``decode``,
    ``merge`` (event-time release), ``apply`` (``BookFeeder.apply``: records → books),
    ``evaluate`` (per index tick; ``levels`` is its ``compute_levels`` part) and
    ``publish`` (events to Kafka, then ``redis``: the Redis script, then ``commit``: the
    offset commit; those two are parts of ``publish``).
    """

    def __init__(
        self,
        config: EngineConfig,
        on_batch: Callable[[list[InputItem]], None],
        track_fetch: bool = False,
    ) -> None:
        super().__init__(config, on_batch=on_batch)
        self.timers = Timers()
        self.assigned_at: float | None = None
        self.assigned_cpu = 0.0
        self.assignments = 0
        self.fetched_ns: dict[tuple[TopicPartition, int], int] = {}
        self.fetch_returned_ns = 0  # wall clock when the last getmany returned
        self._wrapped: dict[int, object] = {}
        self._track_fetch = track_fetch
        self._decode_inner = self.timers.wrap("decode", super()._decode)
        self._publish_inner = self.timers.wrap_async("publish", super()._publish)

    def _decode(
        self,
        tp: TopicPartition,
        messages: list[ConsumerRecord],
        dead: list[tuple[ConsumerRecord, str]],
    ) -> list[InputItem]:
        if self._track_fetch:
            now = time.time_ns()
            fetched = self.fetched_ns
            for message in messages:
                fetched[tp, message.offset] = now
        return self._decode_inner(tp, messages, dead)

    async def _publish(
        self, outputs: list[TaskOutput], dead: list[tuple[ConsumerRecord, str]]
    ) -> None:
        await self._publish_inner(outputs, dead)

    def _first_wrap(self, obj: object) -> bool:
        """True the first time ``obj`` is seen (its methods get wrapped once)."""
        if id(obj) in self._wrapped:
            return False
        self._wrapped[id(obj)] = obj  # kept alive, so its id is not reused
        return True

    def _counting_release(self, merge: Any) -> Callable[..., list[InputItem]]:
        """``merge.release`` as a list; counts the steps that leave records held back."""
        release, calls = merge.release, self.timers.calls

        def counted(caught_up: Callable[[TopicPartition], bool]) -> list[InputItem]:
            items = list(release(caught_up))
            if merge.buffered():
                calls["merge_held_back"] += 1
            return items

        return counted

    async def on_assigned(self, assigned: set[TopicPartition]) -> None:
        await super().on_assigned(assigned)
        self.assignments += 1
        timers = self.timers
        consumer = self._consumer
        if consumer is not None and self._first_wrap(consumer):
            getmany = timers.wrap_async("fetch", consumer.getmany)

            async def fetch(*args: Any, **kwargs: Any) -> Any:
                batch = await getmany(*args, **kwargs)
                self.fetch_returned_ns = time.time_ns()
                return batch

            consumer.getmany = fetch  # type: ignore[method-assign]
            consumer.commit = timers.wrap_async("commit", consumer.commit)  # type: ignore[method-assign]
        publisher = self._publisher
        if publisher is not None and self._first_wrap(publisher):
            publisher.write = timers.wrap_async("redis", publisher.write)  # type: ignore[method-assign]
        for merge in (task.merge for task in self.tasks.values()):
            if self._first_wrap(merge):
                merge.release = timers.wrap("merge", self._counting_release(merge))  # type: ignore[method-assign]
        for task in self.tasks.values():
            if self._first_wrap(task):
                task.feeder.apply = timers.wrap("apply", task.feeder.apply)  # type: ignore[method-assign]
                task._evaluate = timers.wrap("evaluate", task._evaluate)  # type: ignore[method-assign]
        if self.assigned_at is None:
            self.assigned_at = time.perf_counter()
            self.assigned_cpu = time.process_time()


@contextlib.contextmanager
def timed_compute_levels(timers: Timers) -> Iterator[None]:
    """Time ``compute_levels`` as the task calls it (the module global, restored after)."""
    original = engine_task.compute_levels
    engine_task.compute_levels = timers.wrap("levels", original)
    try:
        yield
    finally:
        engine_task.compute_levels = original


def engine_config(
    args: argparse.Namespace, bootstrap: str, redis_url: str, topics: Topics, run: str
) -> EngineConfig:
    return EngineConfig(
        bootstrap=bootstrap,
        redis_url=redis_url,
        group_id=f"{topics.prefix}engine-{run}",  # a new group per run: starts from offset 0
        topic_prefix=topics.prefix,
        client_id=f"{topics.prefix}engine-{run}",
        enable_idempotence=False,  # Tansu has no InitProducerId
        max_records=args.max_records,
        fetch_max_wait_ms=args.fetch_max_wait_ms,
        poll_timeout_ms=args.poll_timeout_ms,
    )


async def start_engine(
    runtime: EngineRuntime, timeout: float
) -> tuple[asyncio.Task[EngineReport], asyncio.Event]:
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    await wait_caught_up(runtime, task, timeout)
    return task, stop


async def wait_caught_up(
    runtime: EngineRuntime, task: asyncio.Task[EngineReport], timeout: float
) -> None:
    waiter = asyncio.create_task(runtime.caught_up.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=timeout, return_when="FIRST_COMPLETED")
    waiter.cancel()
    if task in done:
        task.result()
        raise RuntimeError("the engine stopped before catching up")
    if not done:
        raise RuntimeError(f"the engine did not catch up within {timeout:g} s")


async def stop_engine(task: asyncio.Task[EngineReport], stop: asyncio.Event) -> None:
    stop.set()
    await asyncio.wait_for(task, timeout=60)


async def engine_throughput(
    args: argparse.Namespace,
    bootstrap: str,
    redis_url: str,
    topics: Topics,
    run: str,
    total: int,
    ticks: int,
    profile: cProfile.Profile | None = None,
) -> dict[str, Any]:
    released = 0
    released_ticks = 0

    def on_batch(items: list[InputItem]) -> None:
        nonlocal released, released_ticks
        released += len(items)
        released_ticks += sum(option_ticks(item.record) for item in items)

    runtime = BenchRuntime(engine_config(args, bootstrap, redis_url, topics, run), on_batch)
    with timed_compute_levels(runtime.timers):
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        while runtime.assigned_at is None:  # group join: not timed
            if task.done():
                task.result()
                raise RuntimeError("the engine stopped before it was assigned partitions")
            await asyncio.sleep(0.001)
        if profile is not None:
            profile.enable()
        await wait_caught_up(runtime, task, timeout=300)
        end = time.perf_counter()
        cpu = time.process_time() - runtime.assigned_cpu
        if profile is not None:
            profile.disable()
        stages = dict(runtime.timers.seconds)
        report = runtime.report
        counters = {
            "records": report.records,
            "released": released,
            "batches": report.batches,
            "commits": report.commits,
            "evaluations": report.evaluations,
            "events": sum(report.events.values()),
            "levels_written": report.levels_written,
            "dead_letters": report.dead_letters,
        }
        await stop_engine(task, stop)
    assert runtime.assigned_at is not None
    seconds = end - runtime.assigned_at
    if (
        counters["records"] != total
        or released != total
        or released_ticks != ticks
        or runtime.assignments != 1
    ):
        raise RuntimeError(
            f"engine consumed {counters['records']} of {total} records "
            f"in {runtime.assignments} assignments"
        )
    accounted = sum(v for k, v in stages.items() if k not in ("levels", "redis", "commit"))
    stages["other"] = max(seconds - accounted, 0.0)
    return {
        "seconds": seconds,
        "ticks_per_s": ticks / seconds,
        "records_per_s": total / seconds,
        # Engine process CPU / wall time: well below 1 means it waited (broker, or the
        # machine was busy with something else).
        "engine_cpu_share": cpu / seconds,
        **counters,
        "stages_s": stages,
    }


async def decode_only(
    args: argparse.Namespace, bootstrap: str, topics: Topics, total: int
) -> dict[str, Any]:
    """The naive baseline: plain consumer, manual assignment, getmany + decode_record only
    (packs included), counting the option ticks decoded."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        client_id=f"{topics.prefix}decode-only",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        fetch_max_wait_ms=args.fetch_max_wait_ms,
        max_partition_fetch_bytes=4 * 1024 * 1024,  # as the engine's consumer
        fetch_max_bytes=16 * 1024 * 1024,
    )
    await consumer.start()
    try:
        await consumer.topics()
        tps = [
            TopicPartition(topic, p)
            for topic in topics.market_data()
            for p in sorted(consumer.partitions_for_topic(topic) or ())
        ]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        start = time.perf_counter()
        deadline = start + 300
        decoded = ticks = 0
        while decoded < total:
            if time.perf_counter() > deadline:
                raise RuntimeError(f"decode-only consumer got {decoded} of {total} records")
            batch = await consumer.getmany(
                timeout_ms=args.poll_timeout_ms, max_records=args.max_records
            )
            for messages in batch.values():
                for message in messages:
                    ticks += option_ticks(decode_record(message.value))
                decoded += len(messages)
        seconds = time.perf_counter() - start
    finally:
        await consumer.stop()
    return {
        "seconds": seconds,
        "ticks_per_s": ticks / seconds,
        "records_per_s": decoded / seconds,
        "records": decoded,
        "ticks": ticks,
    }


# ---------------------------------------------------------------------------- latency


def paced_producer_main(
    bootstrap: str,
    prefix: str,
    path: str,
    rate: float,
    linger_ms: float,
    pack_max_ticks: int,
    queue: Any,
) -> None:
    """Child process: the ingest side at ``rate`` ticks/s, packing as the producer does."""
    try:
        queue.put(
            asyncio.run(_pace(bootstrap, prefix, path, rate, linger_ms, pack_max_ticks, queue))
        )
    except BaseException as exc:
        queue.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


class PacedTicks:
    """The paced records as columns, packed per round without an object per tick.

    Which record is a packed tick and which goes out whole is decided once, by the
    producer's :class:`TickPacker` itself (seeded with the instruments the seed announced).
    A round's ticks are then cut into packs from array slices: consecutive ticks of one
    underlying, at most ``max_ticks`` each, cut at every other record (the packer flushes
    an underlying's pack before any other record of it; cutting at every record is the same
    for one underlying). :meth:`round` gives what a TickPacker drained at the end of the
    round would send, byte for byte (checked at start-up: :meth:`check`).
    """

    def __init__(
        self,
        paced: list[RawItem],
        seed_contracts: list[OptionContract],
        names: list[str],
        max_ticks: int,
    ) -> None:
        self.paced, self.names, self.max_ticks = paced, names, max_ticks
        self.seed_contracts = seed_contracts
        packer = self.packer()
        n = len(paced)
        is_tick = np.zeros(n, dtype=bool)
        for i, (_, record, packable) in enumerate(paced):
            if packable and type(record) is OptionContract:
                out = packer.add(names[i], record, 0.0)
                is_tick[i] = not any(r is record for _, r in out)
            else:
                packer.before(record, 0.0)
            if packer.pending > 100_000:
                packer.drain()
        self.is_tick = is_tick
        ticks = [record if is_tick[i] else None for i, (_, record, _) in enumerate(paced)]
        nan = math.nan

        def column(get: Callable[[OptionContract], Any], dtype: Any, missing: Any) -> np.ndarray:
            return np.array([missing if c is None else get(c) for c in ticks], dtype=dtype)

        self.instrument = [c.instrument if c is not None else "" for c in ticks]
        self.iv = column(lambda c: nan if c.iv is None else c.iv, np.float64, nan)
        self.open_interest = column(lambda c: c.open_interest, np.float64, nan)
        self.forward = column(lambda c: c.underlying_price, np.float64, nan)
        self.index = column(lambda c: nan if c.index_price is None else c.index_price, float, nan)
        self.gamma = column(lambda c: nan if c.gamma is None else c.gamma, np.float64, nan)
        self.event_ns = column(lambda c: c.ts_event_ns, np.int64, 0)
        # run_end[i]: where the run of ticks of one underlying that holds i ends
        underlying = [record.underlying for _, record, _ in paced]
        run_end = np.empty(n, dtype=np.int64)
        end = n
        for i in range(n - 1, -1, -1):
            if not is_tick[i]:
                end = i  # the ticks before it end here
            elif i + 1 < n and underlying[i + 1] != underlying[i]:
                end = i + 1
            run_end[i] = end
        self.run_end = run_end

    def packer(self) -> TickPacker:
        packer = TickPacker(PackConfig(max_ticks=self.max_ticks, max_wait_s=1e9, keyframe_s=1e9))
        for contract in self.seed_contracts:
            packer.before(contract, 0.0)
        return packer

    def round(self, start: int, stop: int, stamps: np.ndarray) -> list[tuple[str, bytes, bytes]]:
        """(topic, key, value) of records ``start``…``stop - 1``, stamped ``stamps``."""
        out = []
        i = start
        while i < stop:
            _, record, _ = self.paced[i]
            if not self.is_tick[i]:
                stamped = replace(record, ts_recv_ns=int(stamps[i - start]))
                out.append((self.names[i], record.underlying.encode(), encode_record(stamped)))
                i += 1
                continue
            j = min(int(self.run_end[i]), stop, i + self.max_ticks)
            recv = stamps[i - start : j - start]
            event = self.event_ns[i:j]
            pack = OptionTicks(
                record.venue,
                record.underlying,
                self.instrument[i:j],
                self.iv[i:j],
                self.open_interest[i:j],
                self.forward[i:j],
                self.index[i:j],
                self.gamma[i:j],
                event,
                recv,
                int(event.max()),
                int(recv.max()),
            )
            out.append((self.names[i], record.underlying.encode(), encode_record(pack)))
            i = j
        return out

    def check(self, rounds: int = 60, size: int = 37) -> None:
        """The fast path against the TickPacker over the first rounds (same bytes)."""
        packer = self.packer()
        for r in range(min(rounds, len(self.paced) // size)):
            a, b = r * size, (r + 1) * size
            stamps = np.arange(a, b, dtype=np.int64) + 1_700_000_000_000_000_000
            expected: list[tuple[str, Record]] = []
            for i in range(a, b):
                _, record, packable = self.paced[i]
                record = replace(record, ts_recv_ns=int(stamps[i - a]))
                if packable and type(record) is OptionContract:
                    expected.extend(packer.add(self.names[i], record, 0.0))
                else:
                    expected.extend(packer.before(record, 0.0))
                    expected.append((self.names[i], record))
            expected.extend(packer.drain())
            want = [(t, r.underlying.encode(), encode_record(r)) for t, r in expected]
            if self.round(a, b, stamps) != want:
                raise AssertionError(f"paced packs differ from the TickPacker's in round {r}")


async def _pace(
    bootstrap: str,
    prefix: str,
    path: str,
    rate: float,
    linger_ms: float,
    pack_max_ticks: int,
    queue: Any,
) -> dict:
    """Send the paced records at ``rate``/s in ~1 ms rounds, option tickers packed.

    Record ``i`` of the schedule arrives at ``start + i / rate``. Each round takes the
    records that have arrived since the previous round and stamps each one's ``ts_recv_ns``
    with its arrival time (never before the previous round: a generator running late
    cannot have received anything earlier than it looked). They are packed as the
    producer's :class:`TickPacker` packs them (see :class:`PacedTicks`) and every pack is
    flushed at the end of the round, the way a connector flushes at the end of a read: a
    tick waits for the rest of its round, at most ~1 ms when the generator keeps up.
    """
    with open(path, "rb") as f:
        paced, seed_contracts = pickle.load(f)
    topics = Topics(prefix)
    names = [getattr(topics, attr) for attr, _, _ in paced]
    columns = PacedTicks(paced, seed_contracts, names, pack_max_ticks)
    columns.check()
    config = ProducerConfig(
        bootstrap, client_id="bench-paced", enable_idempotence=False, linger_ms=linger_ms
    )
    producer = RecordProducer(config, topics)
    await producer.start()
    try:
        for name in set(names):  # metadata and routes before the clock starts
            await producer.partition_for(name, b"BTC")
        send = producer.send
        now_ns, clock = time.time_ns, time.perf_counter
        step_ns = 1e9 / rate
        n = len(paced)
        sent = 0
        max_backlog = 0
        rounds = 0
        records = 0
        packs = 0
        queue.put({"started": True})
        cpu0 = time.process_time()
        start = clock()
        start_ns = previous_ns = now_ns()
        while sent < n:
            due = min(n, int((clock() - start) * rate) + 1)
            max_backlog = max(max_backlog, due - sent)
            round_ns = now_ns()
            arrival = start_ns + (np.arange(sent, due) * step_ns).astype(np.int64)
            stamps = np.clip(arrival, previous_ns, round_ns)
            for topic, key, value in columns.round(sent, due, stamps):
                await send(topic, key, value)
                records += 1
            packs += int(columns.is_tick[sent:due].any())
            sent = due
            previous_ns = round_ns
            rounds += 1
            await asyncio.sleep(0.001)
        send_seconds = clock() - start
        await producer.flush()
        cpu = time.process_time() - cpu0
        stats = producer.stats
    finally:
        await producer.stop()
    return {
        "sent": sent,
        "records": records,
        "rounds_with_ticks": packs,
        "send_seconds": send_seconds,
        "achieved_rate": sent / send_seconds,
        "max_backlog_records": max_backlog,
        "send_rounds": rounds,
        "kafka_batches": stats.batches,
        "cpu_seconds": cpu,
    }


def engine_state(runtime: EngineRuntime) -> str:
    """Where a stalled engine stands, per input partition that has data (a diagnostic)."""
    return "; ".join(
        f"{s.tp.topic.rsplit('.', 2)[-2]}/{s.tp.partition}: highwater {s.highwater}, "
        f"fetched to {s.fetched_next}, buffered {s.buffered}, paused {s.paused}"
        for s in runtime.input_status()
        if s.highwater or s.buffered
    )


def cpu_seconds(pid: int | None) -> float | None:
    """User + system CPU seconds of a process so far (Linux /proc), None when unknown."""
    if pid is None:
        return None
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields_ = f.read().rsplit(")", 1)[1].split()
        return (int(fields_[11]) + int(fields_[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, ValueError, IndexError):
        return None


async def latency_run(
    args: argparse.Namespace,
    bootstrap: str,
    redis_url: str,
    raw: list[RawItem],
    pids: dict[str, int | None],
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    topics = new_topics(f"lat{round(rate)}")
    await ensure_topics(bootstrap, topics.all(), partitions=3)
    # Seed: the book summary (it carries an index tick) and the tickers up to the second
    # price-index tick, so the book is full and an evaluation has run (numba compiled).
    index_positions = [i for i, (_, record, _) in enumerate(raw) if is_index(record)]
    cut = index_positions[1] + 1 if len(index_positions) > 1 else len(raw) // 20
    seed = pack_items(raw[:cut], TickPacker(pack_config(args)))
    paced = raw[cut : cut + int(rate * seconds)]
    seed_contracts = [record for _, record in seed if type(record) is OptionContract]
    await produce(bootstrap, topics, seed)

    samples: list[int] = []
    sent_at: list[int] = []
    engine_side: list[int] = []
    to_engine: list[int] = []  # stamped → returned by the engine's getmany
    steps: list[int] = []  # per batch: its getmany returned → on_batch
    marker_ns = time.time_ns()
    runtime: BenchRuntime

    def on_batch(batch: list[InputItem]) -> None:
        now = time.time_ns()
        steps.append(now - runtime.fetch_returned_ns)
        fetched = runtime.fetched_ns
        for item in batch:
            fetched_ns = fetched.pop((item.tp, item.offset), None)
            record = item.record
            if record is None or record.ts_recv_ns <= marker_ns:
                continue
            if type(record) is OptionTicks:  # one sample per tick, from its own stamp
                recv = record.recv_ns[record.recv_ns > marker_ns].tolist()
            else:
                recv = [record.ts_recv_ns]
            samples.extend(now - r for r in recv)
            sent_at.extend(recv)
            if fetched_ns is not None:
                engine_side.extend([now - fetched_ns] * len(recv))
                to_engine.extend(fetched_ns - r for r in recv)

    runtime = BenchRuntime(
        engine_config(args, bootstrap, redis_url, topics, "latency"), on_batch, track_fetch=True
    )
    task, stop = await start_engine(runtime, timeout=120)

    def cpu_now() -> dict[str, float | None]:
        return {
            "engine": time.process_time(),
            **{name: cpu_seconds(pid) for name, pid in pids.items()},
        }

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        path = os.path.join(tmp, "paced.pickle")
        with open(path, "wb") as f:
            pickle.dump((paced, seed_contracts), f, protocol=pickle.HIGHEST_PROTOCOL)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(
            target=paced_producer_main,
            args=(
                bootstrap,
                topics.prefix,
                path,
                rate,
                args.linger_ms,
                args.pack_max_ticks,
                queue,
            ),
            name="bench-paced-producer",
        )
        child.start()
        loop = asyncio.get_running_loop()
        try:
            sent = await loop.run_in_executor(None, queue.get, True, 300)
            # Pacing starts now: the window of the counters below.
            batches_before = runtime.report.batches
            evaluations_before = runtime.report.evaluations
            events_before = sum(runtime.report.events.values())
            stages_before = Counter(runtime.timers.seconds)
            held_before = runtime.timers.calls["merge_held_back"]
            cpu_before = cpu_now()
            window_start = time.perf_counter()
            steps.clear()
            if "started" in sent:
                sent = await loop.run_in_executor(None, queue.get, True, 300)
        finally:
            await loop.run_in_executor(None, child.join, 30)
            if child.is_alive():
                child.kill()
                child.join()
    if "error" in sent:
        raise RuntimeError(f"paced producer failed: {sent['error']}")
    deadline = time.monotonic() + 60
    while len(samples) < len(paced) and time.monotonic() < deadline:
        if task.done():
            task.result()
        await asyncio.sleep(0.001)
    window = time.perf_counter() - window_start
    cpu_after = cpu_now()
    batches = runtime.report.batches - batches_before
    evaluations = runtime.report.evaluations - evaluations_before
    events = sum(runtime.report.events.values()) - events_before
    assignments = runtime.assignments
    stages = Counter(runtime.timers.seconds)
    stages.subtract(stages_before)
    held_back = runtime.timers.calls["merge_held_back"] - held_before
    stall = engine_state(runtime) if len(samples) != len(paced) else ""
    await stop_engine(task, stop)
    cpu = {"producer": sent["cpu_seconds"]}
    for name, value in cpu_after.items():
        before = cpu_before[name]
        cpu[name] = None if value is None or before is None else value - before
    if len(samples) != len(paced) or assignments != 1:
        raise RuntimeError(
            f"latency run: {len(samples)} samples for {len(paced)} records sent, "
            f"{assignments} assignments; {stall}"
        )
    lat = np.asarray(samples, dtype=np.float64) / 1e6
    side = np.asarray(engine_side, dtype=np.float64) / 1e6
    step = np.asarray(steps, dtype=np.float64) / 1e6
    to = np.asarray(to_engine, dtype=np.float64) / 1e6
    second = (np.asarray(sent_at) - min(sent_at)) // 1_000_000_000
    by_second = [round(float(np.percentile(lat[second == s], 99)), 2) for s in np.unique(second)]
    return {
        "seed_records": len(seed),
        "ticks": len(paced),  # ticker updates (and the few other records) paced
        "kafka_records": sent["records"],  # what they became: packs and whole records
        "rounds_with_ticks": sent["rounds_with_ticks"],
        "target_rate": rate,
        "achieved_send_rate": sent["achieved_rate"],
        "send_seconds": sent["send_seconds"],
        "producer_max_backlog_records": sent["max_backlog_records"],
        "producer_kafka_batches": sent["kafka_batches"],
        "engine_batches": batches,
        "kafka_records_per_batch": sent["records"] / max(batches, 1),
        "evaluations": evaluations,
        "events": events,
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "p999_ms": float(np.percentile(lat, 99.9)),
        "max_ms": float(lat.max()),
        "mean_ms": float(lat.mean()),
        # Stamped → returned by the engine's getmany: linger, produce, broker, fetch.
        "to_engine_p50_ms": float(np.percentile(to, 50)),
        "to_engine_p99_ms": float(np.percentile(to, 99)),
        # From the getmany that returned the record to its on_batch: the engine's own part.
        "engine_p50_ms": float(np.percentile(side, 50)),
        "engine_p99_ms": float(np.percentile(side, 99)),
        "engine_max_ms": float(side.max()),
        # Per batch, its getmany returned → on_batch (decode … commit of that batch).
        "batch_step_p50_ms": float(np.percentile(step, 50)),
        "batch_step_p99_ms": float(np.percentile(step, 99)),
        "p99_ms_by_second": by_second,
        # Steps after which the event-time merge still held records back (waiting for
        # another input partition, up to merge_max_idle_s).
        "merge_held_back_steps": held_back,
        "engine_stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        # CPU seconds per process while pacing (window: first send → last on_batch).
        "window_seconds": window,
        "cpu_seconds": {k: None if v is None else round(v, 2) for k, v in cpu.items()},
        "stamp": "per tick: its scheduled arrival, not before the previous round",
    }


# ---------------------------------------------------------------------------- main


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wall_start = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    session = SessionConfig(
        n_instruments=args.instruments,
        duration_s=args.session_seconds,
        seed=args.seed,
        ticker_interval_s=args.ticker_interval,
    )
    t = time.perf_counter()
    raw = await build_raw(session)
    items = pack_items(raw, TickPacker(pack_config(args)))
    generate_s = time.perf_counter() - t
    total = len(items)
    ticks = sum(option_ticks(record) for _, record in items)
    mix = record_mix(items)
    index_ticks = sum(1 for _, record in items if is_index(record))

    async with EmbeddedKafka() as kafka, EmbeddedRedis() as redis:
        bootstrap = kafka.bootstrap
        base = redis.url.rsplit("/", 1)[0]
        topics = new_topics("tp")
        await ensure_topics(bootstrap, topics.all(), partitions=3)
        produce_s = await produce(bootstrap, topics, items)

        engine_runs, decode_runs = [], []
        for r in range(args.rounds):
            decode_runs.append(await decode_only(args, bootstrap, topics, total))
            engine_runs.append(
                await engine_throughput(
                    args, bootstrap, f"{base}/{1 + r % 8}", topics, f"r{r}", total, ticks
                )
            )

        profile_text = None
        if args.profile:
            profile = cProfile.Profile()
            await engine_throughput(
                args, bootstrap, f"{base}/9", topics, "profile", total, ticks, profile
            )
            stream = io.StringIO()
            stats = pstats.Stats(profile, stream=stream)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)
            profile_text = stream.getvalue()

        pids = {"broker": kafka.pid, "redis": redis.pid}
        low = None
        if args.low_rate > 0:  # below saturation: the pipeline's latency floor
            low = await latency_run(
                args, bootstrap, f"{base}/11", raw, pids, args.low_rate, args.low_rate_seconds
            )
        latency = await latency_run(
            args, bootstrap, f"{base}/10", raw, pids, args.rate, args.latency_seconds
        )

    engine = sorted(engine_runs, key=lambda x: x["ticks_per_s"])[len(engine_runs) // 2]
    ticks_per_s = statistics.median(x["ticks_per_s"] for x in engine_runs)
    decode_per_s = statistics.median(x["ticks_per_s"] for x in decode_runs)
    out: dict[str, Any] = {
        "ticks_per_s": ticks_per_s,
        "decode_only_ticks_per_s": decode_per_s,
        "ratio_vs_decode_only": ticks_per_s / decode_per_s,
        "p50_ms_at_30k": latency["p50_ms"],
        "p99_ms_at_30k": latency["p99_ms"],
        "records_per_s": statistics.median(x["records_per_s"] for x in engine_runs),
        "decode_only_records_per_s": statistics.median(x["records_per_s"] for x in decode_runs),
        "throughput": {
            "ticks": ticks,
            "records": total,
            "ticks_per_pack": mix.get("OptionTicks") and ticks_in_packs(items) / mix["OptionTicks"],
            "seconds": engine["seconds"],
            "batches": engine["batches"],
            "records_per_batch": total / max(engine["batches"], 1),
            "commits": engine["commits"],
            "evaluations": engine["evaluations"],
            "events": engine["events"],
            "levels_written": engine["levels_written"],
            "engine_stage_seconds": {k: round(v, 3) for k, v in engine["stages_s"].items()},
            "engine_cpu_share": engine["engine_cpu_share"],
            "rounds_ticks_per_s": [round(x["ticks_per_s"]) for x in engine_runs],
            "rounds_decode_only_ticks_per_s": [round(x["ticks_per_s"]) for x in decode_runs],
        },
        "latency": latency,
        "latency_low_rate": low,
        "config": {
            "venue": "deribit (simulated)",
            "underlyings": ["BTC"],
            "instruments": args.instruments,
            "session_seconds": args.session_seconds,
            "ticker_interval_s": args.ticker_interval,
            "seed": args.seed,
            "ticks": ticks,
            "records": total,
            "raw_records": len(raw),
            "pack_max_ticks": args.pack_max_ticks,
            "pack_wait_ms": args.pack_wait_ms,
            "index_ticks": index_ticks,
            "record_mix": mix,
            "partitions": 3,
            "max_records": args.max_records,
            "fetch_max_wait_ms": args.fetch_max_wait_ms,
            "poll_timeout_ms": args.poll_timeout_ms,
            "paced_producer_linger_ms": args.linger_ms,
            "latency_rate": args.rate,
            "latency_seconds": args.latency_seconds,
            "rounds": args.rounds,
        },
        "setup_seconds": {"generate_and_normalise": generate_s, "produce_all": produce_s},
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_1m_at_start": load_start,
            "loadavg_1m_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "targets": {
            "ticks_per_s_min": TARGET_TICKS_PER_S,
            "p99_ms_at_30k_max": TARGET_P99_MS,
        },
        "targets_met": {
            "ticks_per_s": ticks_per_s >= TARGET_TICKS_PER_S,
            "p99_ms_at_30k": latency["p99_ms"] <= TARGET_P99_MS,
            "latency_rate_achieved": latency["achieved_send_rate"] >= 0.98 * args.rate,
        },
        "code": git_state(),
        "total_seconds": time.perf_counter() - wall_start,
    }
    if profile_text is not None:
        print(profile_text, file=sys.stderr)
    return out


def git_state() -> dict[str, Any] | None:
    """The commit measured and the files that differed from it (the tree may be dirty)."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = (
            subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"], cwd=root, capture_output=True, check=True
            )
            .stdout.decode()
            .strip()
        )
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    return {"commit": commit, "modified": [line[3:] for line in status.splitlines()]}


def summary(out: dict[str, Any]) -> str:
    thr, lat, cfg = out["throughput"], out["latency"], out["config"]
    met = out["targets_met"]
    lines = [
        f"pipeline benchmark: {cfg['instruments']} instruments, {cfg['ticks']:,} option ticks "
        f"in {cfg['records']:,} records ({cfg['index_ticks']} index ticks), "
        f"{out['machine']['cpu_count']} CPUs, "
        f"Python {out['machine']['python']}",
        f"  throughput      {out['ticks_per_s']:>10,.0f} ticks/s  "
        f"(target >= {TARGET_TICKS_PER_S:,}: {'met' if met['ticks_per_s'] else 'MISSED'})",
        f"  decode only     {out['decode_only_ticks_per_s']:>10,.0f} ticks/s  "
        f"ratio {out['ratio_vs_decode_only']:.2f}",
        f"  engine run      {thr['seconds']:.2f} s, {thr['batches']} batches, "
        f"{thr['evaluations']} evaluations, {thr['events']} events",
        "  engine stages   "
        + ", ".join(
            f"{k} {v:.2f}s"
            for k, v in thr["engine_stage_seconds"].items()
            if k not in ("levels", "redis", "commit")
        )
        + " (publish: redis {redis:.2f}s, commit {commit:.2f}s)".format(
            **{"redis": 0.0, "commit": 0.0, **thr["engine_stage_seconds"]}
        ),
        f"  latency @ {lat['achieved_send_rate']:,.0f}/s for {lat['send_seconds']:.1f} s: "
        f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.1f} ms "
        f"(target p99 <= {TARGET_P99_MS} ms: {'met' if met['p99_ms_at_30k'] else 'MISSED'})",
        f"  engine part     p50 {lat['engine_p50_ms']:.2f} ms, p99 {lat['engine_p99_ms']:.2f} ms"
        f" ({lat['engine_batches']} batches, {lat['kafka_records_per_batch']:.1f} records/batch)",
    ]
    low = out.get("latency_low_rate")
    if low:
        lines.append(
            f"  latency @ {low['achieved_send_rate']:,.0f}/s for {low['send_seconds']:.1f} s: "
            f"p50 {low['p50_ms']:.2f} ms, p99 {low['p99_ms']:.2f} ms, max {low['max_ms']:.1f} ms"
        )
    lines.append(f"  total {out['total_seconds']:.0f} s (shared machine: expect noise)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--instruments", type=int, default=2_000)
    parser.add_argument("--session-seconds", type=float, default=16.5, help="simulated seconds")
    parser.add_argument(
        "--ticker-interval", type=float, default=0.1, help="mean s between one option's tickers"
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds (median)")
    defaults = {f.name: f.default for f in fields(EngineConfig)}
    parser.add_argument("--max-records", type=int, default=defaults["max_records"])
    parser.add_argument("--fetch-max-wait-ms", type=int, default=defaults["fetch_max_wait_ms"])
    parser.add_argument("--poll-timeout-ms", type=int, default=defaults["poll_timeout_ms"])
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="latency run ticks/s")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument(
        "--low-rate", type=float, default=10_000, help="a second latency point (0: none)"
    )
    parser.add_argument("--low-rate-seconds", type=float, default=5.0)
    parser.add_argument(
        "--linger-ms", type=float, default=0.0, help="paced producer linger (packs: 0)"
    )
    parser.add_argument("--pack-max-ticks", type=int, default=256, help="option ticks per pack")
    parser.add_argument(
        "--pack-wait-ms", type=float, default=1.0, help="longest wait of a tick in a pack"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile run, top to stderr")
    args = parser.parse_args()
    configure_logging(logging.WARNING)  # engine logs to stderr, warnings and up
    out = asyncio.run(run(args))
    print(json.dumps(out) if args.json else summary(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Helpers of the pipeline benchmark (``benchmarks/pipeline.py``): the simulated session's
records, producing them, the engine's configuration and start/stop, the instrumentation the
engine reports its stage timings through, and the decode-only baseline."""

from __future__ import annotations

import argparse
import asyncio
import bisect
import os
import subprocess
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from connectors.common.ingest import IngestStage, replay_messages
from connectors.common.kafka.embedded import topic_partitions
from connectors.common.kafka.producer import ProducerConfig, RecordProducer
from connectors.common.packing import PackConfig, TickPacker
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_config import SessionConfig
from connectors.simulator.deribit_session import generate_session
from engine.stream.instrumentation import RecordingInstrumentation
from engine.stream.runtime import EngineConfig, EngineReport, EngineRuntime
from schemas.contracts import OptionContract
from schemas.records import Record, UnderlyingTick, decode_record
from schemas.ticks import OptionTicks
from schemas.topics import Topics

TOPIC_ATTRS = ("options", "underlying", "trades", "funding", "volindex")

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


def add_session_flags(parser: argparse.ArgumentParser) -> None:
    """The flags of the simulated session and the tick packing, shared by the pipeline
    benchmarks."""
    parser.add_argument("--instruments", type=int, default=2_000)
    parser.add_argument("--session-seconds", type=float, default=16.5, help="simulated seconds")
    parser.add_argument(
        "--ticker-interval", type=float, default=0.1, help="mean s between one option's tickers"
    )
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--pack-max-ticks", type=int, default=256, help="option ticks per pack")
    parser.add_argument(
        "--pack-wait-ms", type=float, default=1.0, help="longest wait of a tick in a pack"
    )


def session_config(args: argparse.Namespace) -> SessionConfig:
    return SessionConfig(
        n_instruments=args.instruments,
        duration_s=args.session_seconds,
        seed=args.seed,
        ticker_interval_s=args.ticker_interval,
    )


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


# ---------------------------------------------------------------------------- engine


class BenchInstrumentation(RecordingInstrumentation):
    """The engine's stage seconds and counters (the public hook), plus when it was first
    assigned partitions and, with :meth:`track_fetches`, when each record's fetch returned.

    Stages: ``fetch`` (awaiting ``getmany``, waiting for the broker included), ``decode``,
    ``merge`` (event-time release), ``process`` (records → books, evaluations) and
    ``publish`` (events to Kafka, then ``redis``: the Redis script, ``commit``: the offset
    commit, ``checkpoint``: task checkpoints; those three are parts of ``publish``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.assigned_at: float | None = None  # perf_counter at the first assignment
        self.assigned_cpu = 0.0  # process_time then
        self.fetch_returned_ns = 0  # wall clock when the last getmany returned
        self._status: Any = None  # the runtime's input_status, when fetches are tracked
        self._fetches: dict[TopicPartition, tuple[list[int], list[int]]] = {}

    def track_fetches(self, runtime: EngineRuntime) -> None:
        """Keep, per input partition, up to which offset each ``getmany`` fetched, and when."""
        self._status = runtime.input_status

    def fetched_ns(self, tp: TopicPartition, offset: int) -> int | None:
        """Wall clock when the ``getmany`` that fetched ``offset`` of ``tp`` returned."""
        nexts, stamps = self._fetches.get(tp, ((), ()))
        i = bisect.bisect_right(nexts, offset)
        return stamps[i] if i < len(stamps) else None

    def stage(self, name: str, seconds: float) -> None:
        super().stage(name, seconds)
        if name == "fetch":
            self.fetch_returned_ns = time.time_ns()
        elif name == "decode" and self._status is not None:  # positions moved by this batch
            for status in self._status():
                nexts, stamps = self._fetches.setdefault(status.tp, ([], []))
                fetched = status.fetched_next
                if fetched is not None and (not nexts or fetched > nexts[-1]):
                    nexts.append(fetched)
                    stamps.append(self.fetch_returned_ns)

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        super().count(name, n, **labels)
        if name == "assignments" and self.assigned_at is None:
            self.assigned_at = time.perf_counter()
            self.assigned_cpu = time.process_time()


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


async def start_assigned(
    runtime: EngineRuntime, meter: Any
) -> tuple[asyncio.Task[EngineReport], asyncio.Event]:
    """Start the engine and wait for its first partition assignment (the group join is not
    timed); ``meter`` is its instrumentation, with an ``assigned_at`` set then."""
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    while meter.assigned_at is None:
        if task.done():
            task.result()
            raise RuntimeError("the engine stopped before it was assigned partitions")
        await asyncio.sleep(0.001)
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
        found = await topic_partitions(bootstrap, topics.market_data())
        tps = [TopicPartition(topic, p) for topic, parts in found.items() for p in parts]
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

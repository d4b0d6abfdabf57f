"""What only a real Kafka can show (Apache Kafka, KRaft, one node on disk; skipped with reason
``apache-kafka: …`` without Java or the jars): the state topic compacted, the broker killed
(SIGKILL) and restarted on its data mid-stream, idempotent retries across that restart, and
three engines in one group with one killed mid-stream.

These tests restart their broker, so they own one (module scope), not the session's.
"""

from __future__ import annotations

import asyncio
import os
import signal
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path

import pytest
from aiokafka import AIOKafkaProducer
from redis.asyncio import Redis

from connectors.common.kafka.apache import EmbeddedApacheKafka, apache_kafka_missing
from connectors.common.kafka.embedded import ensure_topics, group_assignment
from connectors.common.kafka.producer import ProducerConfig, RecordProducer, partition_for_key
from connectors.common.lifecycle import cancel_and_wait
from connectors.simulator.deribit_session import write_session
from connectors.sources import Source
from engine.app.run_ingest import IngestReport, run_ingest
from engine.stream.checkpoint import chunk_key, latest_checkpoint
from engine.stream.runtime import EngineConfig, EngineReport, EngineRuntime
from schemas.channels import events_stream
from schemas.records import UnderlyingTick, decode_record
from schemas.topics import Topics
from tests.integration.test_pipeline import (
    SESSION,
    _engine_process,
    engine_config,
    run_engine,
    stream,
)
from tests.kafka_helpers import consume_all
from tests.redis_helpers import flush_db

#: The state topic of the compaction test: segments roll after 100 ms, so each checkpoint
#: starts one and every superseded one becomes cleanable; tombstones go after 100 ms.
SMALL_SEGMENTS = {
    "segment.ms": "100",
    "min.cleanable.dirty.ratio": "0.01",
    "delete.retention.ms": "100",
    "min.compaction.lag.ms": "0",
}


@pytest.fixture(scope="module")
def kafka() -> Iterator[EmbeddedApacheKafka]:
    """An Apache Kafka broker of this module's own, whose log cleaner looks every 100 ms."""
    missing = apache_kafka_missing()
    if missing is not None:
        pytest.skip(f"apache-kafka: {missing}")
    server = EmbeddedApacheKafka(properties={"log.cleaner.backoff.ms": "100"})
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())


@pytest.fixture(scope="module")
def session_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("apache-kafka") / "session.jsonl"
    write_session(SESSION, path)
    return path


def _topics() -> Topics:
    return Topics(f"a{os.urandom(4).hex()}.")


async def _until(condition: Callable[[], Awaitable[bool]], what: str, timeout: float = 60.0):
    deadline = time.monotonic() + timeout
    while not await condition():
        assert time.monotonic() < deadline, what
        await asyncio.sleep(0.05)


async def _other_db(redis_url: str) -> str:
    base, db = redis_url.rsplit("/", 1)
    url = f"{base}/{(int(db) + 8) % 16}"
    await flush_db(url)
    return url


async def _reference(kafka: EmbeddedApacheKafka, redis_url: str, topics: Topics) -> list[str]:
    """The event ids an uninterrupted engine publishes for what ``topics`` hold now."""
    url = await _other_db(redis_url)
    config = engine_config(
        kafka.bootstrap, url, topics, enable_idempotence=True, checkpoint_interval_s=0.0
    )
    await run_engine(replace(config, group_id=f"{topics.prefix}reference"))
    return [e.id for _, e in await stream(url)]


@asynccontextmanager
async def _engine(config: EngineConfig) -> AsyncIterator[Callable[[], Awaitable[EngineReport]]]:
    """An engine running in this process; yields the function that stops it gracefully."""
    stop = asyncio.Event()
    task = asyncio.create_task(EngineRuntime(config).run(stop))

    async def stopped() -> EngineReport:
        stop.set()
        return await asyncio.wait_for(task, 60)

    try:
        yield stopped
    finally:
        await cancel_and_wait(task)


@asynccontextmanager
async def _feed(
    kafka: EmbeddedApacheKafka, topics: Topics, session_path: Path
) -> AsyncIterator[asyncio.Task[IngestReport]]:
    """The session ingested at 40 × recorded time (~8 s), as a task (cancelled at the end)."""
    producer = ProducerConfig(kafka.bootstrap, enable_idempotence=True, pack_max_ticks=256)
    task = asyncio.create_task(
        run_ingest([Source("replay", str(session_path))], producer, topics, replay_speed=40)
    )
    try:
        yield task
    finally:
        await cancel_and_wait(task)


async def _xlen(redis_url: str) -> int:
    client = Redis.from_url(redis_url)
    try:
        return int(await client.xlen(events_stream("BTC")))
    finally:
        await client.aclose()


async def _live_run(
    kafka: EmbeddedApacheKafka,
    redis_url: str,
    topics: Topics,
    session_path: Path,
    config: EngineConfig,
    midway: Callable[[], Awaitable[None]] | None = None,
) -> tuple[EngineReport, list[str]]:
    """The session ingested at 40 × recorded time while an engine consumes it; ``midway``
    runs once the engine has published a few events. Returns the engine's report and the
    event ids an uninterrupted engine publishes for the same input."""
    async with _engine(config) as stop_engine, _feed(kafka, topics, session_path) as ingesting:
        await _until(lambda: _more(redis_url, 3), "the engine published nothing")
        assert not ingesting.done()
        if midway is not None:
            await midway()
        assert (await asyncio.wait_for(ingesting, 120)).counts["dead_letters"] == 0
        reference = await _reference(kafka, redis_url, topics)
        await _until(lambda: _more(redis_url, len(reference) - 1), "the engine fell behind", 120)
        report = await stop_engine()
    return report, reference


@pytest.mark.asyncio
async def test_the_state_topic_is_compacted_to_the_latest_checkpoint_and_still_restores(
    kafka: EmbeddedApacheKafka, redis_url: str, session_path: Path
) -> None:
    topics = _topics()
    await ensure_topics(kafka.bootstrap, topics.all(), configs={topics.state: SMALL_SEGMENTS})
    group = f"{topics.prefix}engine"
    # Many checkpoints: every 50 ms while the session streams in, and one at the stop.
    config = engine_config(
        kafka.bootstrap, redis_url, topics, enable_idempotence=True, checkpoint_interval_s=0.05
    )
    report, reference = await _live_run(kafka, redis_url, topics, session_path, config)
    assert [e.id for _, e in await stream(redis_url)] == reference
    assert report.checkpoints >= 10

    # The cleaner never touches a partition's active segment, where the last checkpoints
    # are: a tombstone of a key no checkpoint uses rolls it (segments roll after 100 ms).
    roller = AIOKafkaProducer(bootstrap_servers=kafka.bootstrap, acks="all")
    await roller.start()

    async def compacted() -> bool:
        records = await consume_all(kafka.bootstrap, topics.state)
        expected = set()
        for partition in {r.partition for r in records}:
            latest = latest_checkpoint(
                [r.value for r in records if r.partition == partition], group, partition
            )
            assert latest is not None
            expected |= {f"{group}/p{partition}".encode()} | {
                chunk_key(group, partition, latest.checkpoint_id, c) for c in range(latest.chunks)
            }
            await roller.send_and_wait(topics.state, None, key=b"roll", partition=partition)
        return sorted(r.key for r in records if r.value is not None) == sorted(expected)

    try:
        await _until(compacted, "the state topic was not compacted to one checkpoint per key")
    finally:
        await roller.stop()

    # Restore from the compacted topic: the state comes back, nothing is read again.
    again = await run_engine(config)
    assert again.restored >= 1 and again.records == 0 and again.rebuilt == 0
    assert [e.id for _, e in await stream(redis_url)] == reference


@pytest.mark.asyncio
async def test_idempotent_producer_retries_across_a_broker_kill_without_duplicates(
    kafka: EmbeddedApacheKafka,
) -> None:
    topics = _topics()
    await ensure_topics(kafka.bootstrap, [topics.underlying], partitions=1)
    count = 3000
    ticks = [
        UnderlyingTick(
            venue="deribit",
            underlying="BTC",
            source="btc_usd",
            kind="index",
            price=60_000.0 + seq,
            ts_event_ns=1_700_000_000_000_000_000 + seq,
            ts_recv_ns=1_700_000_000_000_000_000 + seq,
        )
        for seq in range(count)
    ]
    config = ProducerConfig(
        bootstrap=kafka.bootstrap, enable_idempotence=True, linger_ms=2, max_batch_bytes=4096
    )
    producer = RecordProducer(config, topics)

    async def acked() -> bool:
        return producer.stats.batches_acked > 0

    await producer.start()
    try:
        for seq, tick in enumerate(ticks):
            await producer.send_record(topics.underlying, tick)
            if seq == count // 3:
                await _until(acked, "nothing acknowledged")
                await kafka.kill()  # batches in flight, unacknowledged
                restarting = asyncio.create_task(kafka.restart())
            await asyncio.sleep(0 if seq % 50 else 0.001)  # a live feed's pace, not a burst
        await restarting
        await producer.flush()
    finally:
        await producer.stop()
    got = [decode_record(r.value) for r in await consume_all(kafka.bootstrap, topics.underlying)]
    assert got == ticks


@pytest.mark.asyncio
async def test_broker_killed_mid_stream_ingest_and_engine_reconnect_with_no_gap_or_duplicate(
    kafka: EmbeddedApacheKafka, redis_url: str, session_path: Path
) -> None:
    topics = _topics()
    await ensure_topics(kafka.bootstrap, topics.all())
    config = engine_config(kafka.bootstrap, redis_url, topics, enable_idempotence=True)

    async def kill_and_restart() -> None:
        await kafka.kill()
        await kafka.restart()

    _, reference = await _live_run(kafka, redis_url, topics, session_path, config, kill_and_restart)
    ids = [e.id for _, e in await stream(redis_url)]
    assert ids == reference
    assert max(Counter(ids).values()) == 1


async def _more(redis_url: str, than: int) -> bool:
    return await _xlen(redis_url) > than


@pytest.mark.asyncio
async def test_three_engines_one_killed_mid_stream_publish_what_one_engine_does(
    kafka: EmbeddedApacheKafka, redis_url: str, session_path: Path, tmp_path: Path
) -> None:
    """Three engine processes share the group (one input partition each); the one holding
    BTC is killed (SIGKILL) mid-stream; a survivor takes the partition over from the
    committed offsets and its checkpoint: the Redis stream equals a single engine's."""
    topics = _topics()
    await ensure_topics(kafka.bootstrap, topics.all())
    group = f"{topics.prefix}killed"  # the engine processes' group (test_pipeline)
    procs = {}
    try:
        for name in ("e1", "e2", "e3"):
            config = tmp_path / f"{name}.toml"
            config.write_text(
                f'client_id = "{name}"\nmax_records = 10\ncheckpoint_interval_s = 0.2\n'
                "session_timeout_ms = 1500\nheartbeat_interval_ms = 300\n"
            )
            procs[name] = _engine_process(kafka.bootstrap, redis_url, topics, config, True)

        async def all_three_hold_one() -> bool:
            for proc in procs.values():
                assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            held = await group_assignment(kafka.bootstrap, group)
            return held is not None and sorted(held) == sorted(procs)

        await _until(all_three_hold_one, "three engines in a stable group")
        held = await group_assignment(kafka.bootstrap, group)
        assert held is not None
        btc = partition_for_key(b"BTC", 3)
        (active,) = [n for n, tps in held.items() if (topics.underlying, btc) in tps]

        async with _feed(kafka, topics, session_path) as ingesting:
            await _until(lambda: _more(redis_url, 7), "the active engine published nothing")
            procs[active].kill()
            procs[active].wait(timeout=10)
            partial = await _xlen(redis_url)
            assert not ingesting.done()  # mid-stream
            assert (await asyncio.wait_for(ingesting, 120)).counts["dead_letters"] == 0

        reference = await _reference(kafka, redis_url, topics)
        assert partial < len(reference)
        await _until(lambda: _more(redis_url, len(reference) - 1), "the survivors fell behind")
        survivors = await group_assignment(kafka.bootstrap, group)
        assert survivors is not None and active not in survivors and len(survivors) == 2
        for name, proc in procs.items():
            if name != active:
                proc.send_signal(signal.SIGTERM)
                _, err = proc.communicate(timeout=30)
                assert proc.returncode == 0, err.decode()[-2000:]
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    ids = [e.id for _, e in await stream(redis_url)]
    assert ids == reference
    assert max(Counter(ids).values()) == 1

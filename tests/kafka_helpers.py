"""Test helpers for the Kafka layer: read back what was produced."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from uuid import uuid4

import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import ConsumerRecord, TopicPartition

from connectors.common.kafka.embedded import topic_partitions

#: Run a test on both brokers (the ``broker`` fixture of tests/conftest.py): the embedded
#: Tansu and Apache Kafka (skipped, reason ``apache-kafka: …``, without Java or the jars).
ON_BOTH_BROKERS = pytest.mark.parametrize("broker", ["tansu", "kafka"], indirect=True)


@dataclass(frozen=True, slots=True)
class Broker:
    """The broker a test runs on: ``name`` ``"tansu"`` or ``"kafka"``; ``idempotence`` is
    what its producers use (on for Apache Kafka; Tansu has no InitProducerId)."""

    name: str
    bootstrap: str
    idempotence: bool


async def consume(
    bootstrap: str,
    topic: str,
    expected: int,
    timeout: float = 60.0,
    *,
    settle: float = 0.0,
    subscribe: bool = False,
) -> list[ConsumerRecord]:
    """Read ``topic`` from the beginning until ``expected`` records arrived or ``timeout``
    (a generous cap for a loaded machine: the test's exact checks then fail).

    The consumer has a group id of its own. By default it assigns itself every partition
    (no group join: Tansu holds a JoinGroup for about half the session timeout, 5 s with
    aiokafka's default, at least 1 s); ``subscribe=True`` joins the group instead. After
    ``expected`` records it keeps polling for ``settle`` seconds, so a test can see records
    that should not be there. Returns what arrived, in per-partition order.
    """
    consumer = AIOKafkaConsumer(
        *((topic,) if subscribe else ()),
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        session_timeout_ms=1000,
        heartbeat_interval_ms=300,
        fetch_max_bytes=8 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        deadline = time.monotonic() + timeout
        if not subscribe:
            await _assign_from_start(consumer, bootstrap, topic)
        while len(records) < expected and time.monotonic() < deadline:
            await _poll(consumer, records, 100)
        settle_until = time.monotonic() + settle
        while time.monotonic() < settle_until:
            await _poll(consumer, records, 50)
    finally:
        await asyncio.shield(consumer.stop())
    return records


async def consume_all(bootstrap: str, topic: str, timeout: float = 60.0) -> list[ConsumerRecord]:
    """Every record ``topic`` holds now: read from the beginning up to each partition's end
    offset at the call (a condition; ``timeout`` is only a generous cap, reaching it fails)."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"test-{uuid4().hex}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_bytes=8 * 1024 * 1024,
        max_partition_fetch_bytes=4 * 1024 * 1024,
    )
    await consumer.start()
    records: list[ConsumerRecord] = []
    try:
        ends = await consumer.end_offsets(await _assign_from_start(consumer, bootstrap, topic))
        deadline = time.monotonic() + timeout
        while [tp for tp, end in ends.items() if await consumer.position(tp) < end]:
            assert time.monotonic() < deadline, f"{topic!r} not read to its end in {timeout} s"
            await _poll(consumer, records, 100)
    finally:
        await asyncio.shield(consumer.stop())
    return records


async def wait_committed(
    bootstrap: str, group: str, topics: Iterable[str], timeout: float = 60.0
) -> None:
    """Wait until ``group`` has committed every partition of ``topics`` up to its end offset
    (everything in the log consumed, and so every event of it written: the engine commits
    after the Redis write). ``timeout`` is a generous cap; reaching it fails."""
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=group,
                                enable_auto_commit=False)  # fmt: skip
    await consumer.start()
    try:
        found = await topic_partitions(bootstrap, topics)
        tps = [TopicPartition(t, p) for t, parts in found.items() for p in parts]
        ends = await consumer.end_offsets(tps)
        deadline = time.monotonic() + timeout
        while behind := [tp for tp in tps if (await consumer.committed(tp) or 0) < ends[tp]]:
            assert time.monotonic() < deadline, f"{group!r} did not commit {behind} in {timeout} s"
            await asyncio.sleep(0.05)
    finally:
        await asyncio.shield(consumer.stop())


async def _assign_from_start(
    consumer: AIOKafkaConsumer, bootstrap: str, topic: str
) -> list[TopicPartition]:
    """Assign ``consumer`` every partition of ``topic`` (no group join), from the beginning."""
    partitions = (await topic_partitions(bootstrap, [topic]))[topic]
    assert partitions, f"topic {topic!r} has no partitions"
    assigned = [TopicPartition(topic, p) for p in partitions]
    consumer.assign(assigned)
    await consumer.seek_to_beginning(*assigned)
    return assigned


async def _poll(consumer: AIOKafkaConsumer, records: list[ConsumerRecord], timeout_ms: int) -> None:
    batches = await consumer.getmany(timeout_ms=timeout_ms)
    for batch in batches.values():
        records.extend(batch)

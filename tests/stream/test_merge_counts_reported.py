"""The engine report and the run summary show the merge's ``gaps`` and ``forced`` counts:
through the real broker, a record whose ``md-order`` header says its producer sent an
options record before it, which never comes, is applied after ``merge_max_idle_s`` and
counted once as a gap."""

from __future__ import annotations

from dataclasses import replace

import pytest
from aiokafka import AIOKafkaProducer

from connectors.common.kafka.embedded import ensure_topics
from connectors.common.kafka.order import ORDER_HEADER
from connectors.common.kafka.producer import partition_for_key
from schemas.records import UnderlyingTick, encode_record
from schemas.topics import Topics
from tests.integration.test_pipeline import engine_config, run_engine

NS = 1_000_000_000


@pytest.mark.asyncio
async def test_a_record_awaited_in_send_order_that_never_comes_is_a_reported_gap(
    kafka_bootstrap: str, redis_url: str, topics: Topics
) -> None:
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    width = len(topics.market_data())
    slot = topics.market_data().index(topics.underlying)
    producer = AIOKafkaProducer(bootstrap_servers=kafka_bootstrap)
    await producer.start()
    try:
        for n in range(3):
            after = [0] * width
            after[slot] = n
            after[0 if slot else 1] = 1  # one record on another topic came first: lost
            tick = UnderlyingTick("deribit", "BTC", "btc_usd", "index", 60_000.0 + n,
                                  (1_700_000_000 + n) * NS, (1_700_000_000 + n) * NS)  # fmt: skip
            await producer.send_and_wait(
                topics.underlying,
                encode_record(tick),
                key=b"BTC",
                partition=partition_for_key(b"BTC", 3),
                headers=[(ORDER_HEADER, b"p1:" + ",".join(map(str, after)).encode())],
            )
    finally:
        await producer.stop()
    config = replace(engine_config(kafka_bootstrap, redis_url, topics), merge_max_idle_s=0.3)
    report = await run_engine(config)
    assert report.records == 3
    assert report.merge_gaps == 1 and report.merge_forced == 0
    summary = report.to_dict()
    assert summary["merge_gaps"] == 1 and summary["merge_forced"] == 0

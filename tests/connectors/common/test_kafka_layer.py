"""The Kafka layer against the embedded Tansu broker and Apache Kafka: topics, producer, dead
letters."""

from __future__ import annotations

import asyncio
import os
import signal
from collections import defaultdict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from decimal import Decimal

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from connectors.common.kafka import (
    DeliveryError,
    EmbeddedKafka,
    EmbeddedKafkaError,
    ProducerClosedError,
    ProducerConfig,
    ProducerStartError,
    RecordProducer,
    RecordTooLargeError,
    ensure_topics,
    partition_for_key,
)
from schemas.contracts import OptionContract, OptionRight
from schemas.records import FundingRate, UnderlyingTick, decode_record
from schemas.topics import Topics
from tests.conditions import eventually
from tests.kafka_helpers import ON_BOTH_BROKERS, Broker, consume

UNDERLYINGS = ("BTC", "ETH", "SPX", "NDX", "SOL", "QQQ")


def _config(bootstrap: Broker | str, **overrides: object) -> ProducerConfig:
    """A producer config for ``bootstrap``: idempotent on a broker that has it."""
    if isinstance(bootstrap, Broker):
        overrides = {"enable_idempotence": bootstrap.idempotence, **overrides}
        bootstrap = bootstrap.bootstrap
    return ProducerConfig.from_mapping(
        {"bootstrap": bootstrap, "enable_idempotence": False, **overrides}
    )


@asynccontextmanager
async def _producer(
    bootstrap: Broker | str, topics: Topics | None = None, **overrides: object
) -> AsyncIterator[RecordProducer]:
    producer = RecordProducer(_config(bootstrap, **overrides), topics)
    await producer.start()
    try:
        yield producer
    finally:
        await producer.stop()


def _tick(underlying: str, seq: int) -> UnderlyingTick:
    return UnderlyingTick(
        venue="deribit",
        underlying=underlying,
        source=f"{underlying.lower()}_usd",
        kind="index",
        price=1000.0 + seq,
        ts_event_ns=1_700_000_000_000_000_000 + seq,
        ts_recv_ns=1_700_000_000_000_500_000 + seq,
    )


def _contract(underlying: str, seq: int) -> OptionContract:
    return OptionContract(
        venue="deribit",
        underlying=underlying,
        instrument=f"{underlying}-27DEC24-{60000 + seq}-C",
        root=underlying,
        expiry_ns=1_735_286_400_000_000_000,
        strike=Decimal(60000 + seq),
        right=OptionRight.CALL,
        multiplier=1.0,
        open_interest=12.5 + seq,
        iv=0.55,
        underlying_price=61000.5,
        index_price=60990.0,
        ts_event_ns=1_700_000_000_000_000_000 + seq,
        ts_recv_ns=1_700_000_000_000_100_000 + seq,
        gamma=0.00002,
    )


def _funding(underlying: str, seq: int) -> FundingRate:
    return FundingRate(
        venue="binance",
        underlying=underlying,
        instrument=f"{underlying}USDT",
        rate=0.0001 * seq,
        interval_hours=8.0,
        rate_8h=0.0001 * seq,
        annualized=0.0001 * seq * 3 * 365,
        mark_price=None,
        index_price=None,
        next_funding_ns=None,
        ts_event_ns=1_700_000_000_000_000_000 + seq,
        ts_recv_ns=1_700_000_000_000_000_001 + seq,
    )


# -- records: topics, keys, partitions, order, codec ------------------------------------


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_records_keyed_by_underlying_stay_in_one_partition_in_order(
    broker: Broker, topics: Topics
) -> None:
    await ensure_topics(broker.bootstrap, topics.all(), partitions=3)
    sent: dict[str, list[object]] = defaultdict(list)
    async with _producer(broker, topics, max_batch_bytes=2048, linger_ms=1) as producer:
        for seq in range(60):
            for underlying in UNDERLYINGS:
                tick = _tick(underlying, seq)
                await producer.send_record(topics.underlying, tick)
                sent[topics.underlying].append(tick)
                if seq % 3 == 0:
                    contract = _contract(underlying, seq)
                    await producer.send_record(topics.options, contract)
                    sent[topics.options].append(contract)
            if seq % 10 == 0:
                funding = _funding("BTC", seq)
                await producer.send_record(topics.funding, funding)
                sent[topics.funding].append(funding)
        await producer.flush()
        assert producer.stats.records == sum(len(v) for v in sent.values())
        assert producer.stats.batches_acked == producer.stats.batches > 3

    for topic, records in sent.items():
        got = await consume(broker.bootstrap, topic, len(records), settle=0.2)
        assert len(got) == len(records)
        assert {r.topic for r in got} == {topic}
        by_key: dict[bytes, list] = defaultdict(list)
        for r in got:
            by_key[r.key].append(r)
        for key, msgs in by_key.items():
            # one partition per underlying, Kafka's default partition for the key
            assert {m.partition for m in msgs} == {partition_for_key(key, 3)}
            assert [m.offset for m in msgs] == sorted(m.offset for m in msgs)
            decoded = [decode_record(m.value) for m in sorted(msgs, key=lambda m: m.offset)]
            assert all(d.underlying == key.decode() for d in decoded)
            assert decoded == [rec for rec in records if rec.underlying == key.decode()]
    partitions_used = {partition_for_key(u.encode(), 3) for u in UNDERLYINGS}
    assert len(partitions_used) > 1  # the test really spreads keys over partitions


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_partition_equals_plain_aiokafka_send(broker: Broker, topics: Topics) -> None:
    ours, theirs = topics.underlying, topics.options
    await ensure_topics(broker.bootstrap, [ours, theirs], partitions=3)
    keys = [*(u.encode() for u in UNDERLYINGS), *(f"K{i}".encode() for i in range(40)), b""]
    plain = AIOKafkaProducer(bootstrap_servers=broker.bootstrap, acks="all")
    await plain.start()
    try:
        expected = {k: (await plain.send_and_wait(theirs, b"v", key=k)).partition for k in keys}
    finally:
        await plain.stop()
    async with _producer(broker, topics) as producer:
        for key in keys:
            assert await producer.partition_for(ours, key) == expected[key]
            await producer.send(ours, key, b"v")
    got = await consume(broker.bootstrap, ours, len(keys))
    assert {r.key: r.partition for r in got} == expected
    assert len(set(expected.values())) == 3


# -- dead letters ----------------------------------------------------------------------


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_dead_letter_keeps_raw_bytes_and_headers(broker: Broker, topics: Topics) -> None:
    await ensure_topics(broker.bootstrap, [topics.deadletter], partitions=3)
    raw = b'\xff\xfe{"jsonrpc": "2.0", \x80\x00\xc3\x28 broken'
    reason = "unparsable JSON: byte 0xff at 0 — größe"
    async with _producer(broker, topics) as producer:
        await producer.send_dead_letter(
            raw,
            reason=reason,
            venue="deribit",
            source="ticker.BTC-27DEC24-60000-C.100ms",
            recv_ns=1_700_000_000_123_456_789,
            reason_class="out_of_domain",
        )
        assert producer.stats.dead_letters == 1
    (record,) = await consume(broker.bootstrap, topics.deadletter, 1, settle=0.2, subscribe=True)
    assert record.value == raw
    assert record.key == b"deribit"
    assert list(record.headers) == [
        ("reason", reason.encode()),
        ("venue", b"deribit"),
        ("source", b"ticker.BTC-27DEC24-60000-C.100ms"),
        ("recv_ns", b"1700000000123456789"),
        ("reason_class", b"out_of_domain"),
    ]


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_oversized_dead_letter_is_truncated_not_lost(broker: Broker, topics: Topics) -> None:
    await ensure_topics(broker.bootstrap, [topics.deadletter], partitions=1)
    raw = bytes(range(256)) * 2000  # 512,000 bytes
    async with _producer(broker, topics, max_request_bytes=100_000) as producer:
        await producer.send_dead_letter(raw, "too big", "cboe", "https://cdn.cboe.com/x", 1)
    (record,) = await consume(broker.bootstrap, topics.deadletter, 1)
    headers = dict(record.headers)
    assert headers["truncated"] == b"512000"
    # 90% of max_request_bytes less 16 + len(key) + len(value) per header (hand-computed):
    # 90_000 - (29 reason + 25 venue + 44 source + 24 recv_ns + 37 reason_class "malformed")
    # = 89_841 bytes kept
    assert len(record.value) == 89_841
    assert headers["reason_class"] == b"malformed"
    assert raw.startswith(record.value)


# -- batching, linger, backpressure, stop ----------------------------------------------


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_linger_sends_partial_batch_without_flush(broker: Broker, topics: Topics) -> None:
    await ensure_topics(broker.bootstrap, [topics.trades], partitions=3)
    async with _producer(broker, topics, linger_ms=50) as producer:
        for i in range(3):
            await producer.send(
                topics.trades, b"BTC", f"t{i}".encode(), headers=(("i", b"%d" % i),)
            )
        assert producer.stats.batches == 0  # still lingering
        assert producer.stats.open_batches == 1
        got = await consume(broker.bootstrap, topics.trades, 3)
        assert [r.value for r in got] == [b"t0", b"t1", b"t2"]
        assert [list(r.headers) for r in got] == [[("i", b"%d" % i)] for i in range(3)]
        assert producer.stats.batches == 1
        assert producer.stats.open_batches == 0


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_batching_sends_far_fewer_batches_than_records(
    broker: Broker, topics: Topics
) -> None:
    await ensure_topics(broker.bootstrap, [topics.options], partitions=3)
    n = 10_000
    async with _producer(broker, topics, max_batch_bytes=64 * 1024) as producer:
        for i in range(n):
            await producer.send(topics.options, UNDERLYINGS[i % 2].encode(), b"%08d" % i * 8)
        await producer.flush()
        stats = producer.stats
    assert stats.records == n
    assert stats.batches_acked == stats.batches
    assert stats.batches <= n // 100
    got = await consume(broker.bootstrap, topics.options, n)
    assert len(got) == n
    for underlying in UNDERLYINGS[:2]:
        values = [r.value for r in got if r.key == underlying.encode()]
        assert values == sorted(values) and len(values) == n // 2


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_in_flight_batches_bounded(broker: Broker, topics: Topics) -> None:
    await ensure_topics(broker.bootstrap, [topics.underlying], partitions=3)
    n = 5000
    async with _producer(
        broker, topics, max_in_flight_batches=1, max_batch_bytes=1024, linger_ms=1
    ) as producer:
        worst = 0
        for i in range(n):
            await producer.send(topics.underlying, UNDERLYINGS[i % 3].encode(), b"x" * 100)
            worst = max(worst, producer.stats.in_flight)
        await producer.flush()
        stats = producer.stats
    assert worst == 1
    assert stats.max_in_flight_seen == 1
    assert stats.backpressure_waits > 0
    assert stats.batches > 100
    assert len(await consume(broker.bootstrap, topics.underlying, n)) == n


@asynccontextmanager
async def _paused(kafka: EmbeddedKafka) -> AsyncIterator[None]:
    """Freeze the broker process (SIGSTOP): connections stay open, nothing is answered."""
    assert kafka.pid is not None
    os.kill(kafka.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.kill(kafka.pid, signal.SIGCONT)


@pytest.mark.asyncio
async def test_send_waits_when_broker_does_not_ack() -> None:
    async with EmbeddedKafka() as kafka:
        topic = "bp.md.options.v1"
        await ensure_topics(kafka.bootstrap, [topic], partitions=1)
        n = 2000
        async with _producer(
            kafka.bootstrap, max_in_flight_batches=1, max_batch_bytes=1024, linger_ms=1
        ) as producer:
            await producer.send(topic, b"BTC", b"warm-up")
            await producer.flush()

            async def produce() -> None:
                for i in range(n):
                    await producer.send(topic, b"BTC", b"%06d" % i + b"." * 94)

            async with _paused(kafka):
                task = asyncio.create_task(produce())
                await eventually(lambda: producer.stats.backpressure_waits >= 1, 60.0)
                stats = producer.stats
                assert not task.done()  # send is waiting, not queueing
                # one batch in flight; the sender's full batch and the lingered one wait
                assert stats.in_flight == 1
                assert stats.sealed_batches + stats.open_batches <= 2
                # Accepted: the acked batches' records and at most three batches more (in
                # flight, sealed, open) of at most 10 records (1 KiB, 100-byte values); how
                # many were acked before the broker stopped depends on the machine's load.
                assert stats.records <= 1 + 10 * (stats.batches_acked - 1) + 3 * 10
            await asyncio.wait_for(task, 60)
            await producer.flush()
            assert producer.stats.max_in_flight_seen == 1
        got = await consume(kafka.bootstrap, topic, n + 1)
        assert [r.value[:6] for r in got[1:]] == [b"%06d" % i for i in range(n)]


@pytest.mark.asyncio
async def test_cancelled_waiting_send_loses_no_accepted_record() -> None:
    async with EmbeddedKafka() as kafka:
        topic = "cancel.md.options.v1"
        await ensure_topics(kafka.bootstrap, [topic], partitions=1)
        async with _producer(
            kafka.bootstrap, max_in_flight_batches=1, max_batch_bytes=1024, linger_ms=1
        ) as producer:
            await producer.send(topic, b"BTC", b"warm-up")
            await producer.flush()

            async def produce() -> None:
                for i in range(1000):
                    await producer.send(topic, b"BTC", b"%06d" % i + b"." * 94)

            async with _paused(kafka):
                task = asyncio.create_task(produce())
                # a send is waiting for the paused broker: cancel it there
                await eventually(lambda: producer.stats.backpressure_waits >= 1, 60.0)
                task.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await task
            accepted = producer.stats.records
            await producer.flush()
        got = await consume(kafka.bootstrap, topic, accepted, settle=0.2)
        assert [r.value[:6] for r in got[1:]] == [b"%06d" % i for i in range(accepted - 1)]


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_stop_flushes_open_batches(broker: Broker, topics: Topics) -> None:
    await ensure_topics(broker.bootstrap, [topics.volindex], partitions=3)
    producer = RecordProducer(_config(broker, linger_ms=60_000), topics)
    await producer.start()
    for i in range(100):
        await producer.send(topics.volindex, UNDERLYINGS[i % 4].encode(), b"%d" % i)
    assert producer.stats.batches == 0
    await producer.stop()
    partitions = {partition_for_key(u.encode(), 3) for u in UNDERLYINGS[:4]}
    assert producer.stats.batches_acked == producer.stats.batches == len(partitions)
    assert producer.stats.in_flight == 0
    assert len(await consume(broker.bootstrap, topics.volindex, 100, settle=0.2)) == 100
    with pytest.raises(ProducerClosedError, match="RecordProducer is not running"):
        await producer.send(topics.volindex, b"BTC", b"late")
    await producer.stop()  # idempotent


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_large_value_goes_through(broker: Broker, topics: Topics) -> None:
    await ensure_topics(broker.bootstrap, [topics.options], partitions=3)
    value = os.urandom(900 * 1024)
    async with _producer(broker, topics) as producer:
        await producer.send(topics.options, b"SPX", b"small-before")
        await producer.send(topics.options, b"SPX", value)
        await producer.send(topics.options, b"SPX", b"small-after")
        with pytest.raises(RecordTooLargeError, match=r"exceeds max_request_bytes=\d+$"):
            await producer.send(topics.options, b"SPX", bytes(2 * 1024 * 1024))
        await producer.flush()
    got = await consume(broker.bootstrap, topics.options, 3, settle=0.2)
    assert [r.value for r in got] == [b"small-before", value, b"small-after"]


# -- failures --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_idempotent_producer_fails_at_start_against_tansu(kafka_bootstrap: str) -> None:
    producer = RecordProducer(ProducerConfig(bootstrap=kafka_bootstrap, request_timeout_ms=5000))
    assert producer.config.enable_idempotence is True
    # refused after a request timeout (5 s), not retried on: the cap leaves a loaded machine
    # room for a few, far from the minutes of a start that retries
    with pytest.raises(ProducerStartError, match="InitProducerId") as info:
        await asyncio.wait_for(producer.start(), 30)
    assert "\n" not in str(info.value)
    with pytest.raises(ProducerClosedError, match="RecordProducer is not running"):
        await producer.send("x", b"k", b"v")


@pytest.mark.asyncio
async def test_idempotent_producer_starts_and_delivers_on_apache_kafka(
    apache_kafka_bootstrap: str, topics: Topics
) -> None:
    await ensure_topics(apache_kafka_bootstrap, [topics.underlying], partitions=3)
    assert ProducerConfig(bootstrap=apache_kafka_bootstrap).enable_idempotence is True
    async with _producer(apache_kafka_bootstrap, topics, enable_idempotence=True) as producer:
        for seq in range(20):
            await producer.send_record(topics.underlying, _tick("BTC", seq))
    got = await consume(apache_kafka_bootstrap, topics.underlying, 20, settle=0.2)
    assert [decode_record(r.value) for r in got] == [_tick("BTC", seq) for seq in range(20)]


@pytest.mark.asyncio
async def test_unreachable_broker_fails_start_with_one_line() -> None:
    kafka = EmbeddedKafka()
    await kafka.start()
    bootstrap = kafka.bootstrap
    await kafka.stop()  # nothing listens there now
    producer = RecordProducer(ProducerConfig(bootstrap=bootstrap, request_timeout_ms=3000))
    with pytest.raises(ProducerStartError, match="could not start") as info:
        await asyncio.wait_for(producer.start(), 10)
    assert "\n" not in str(info.value) and "InitProducerId" not in str(info.value)


@pytest.mark.asyncio
async def test_broker_failure_surfaces_from_flush_send_and_stop() -> None:
    kafka = EmbeddedKafka()
    await kafka.start()
    try:
        await ensure_topics(kafka.bootstrap, ["down.md.options.v1"], partitions=1)
        producer = RecordProducer(_config(kafka.bootstrap, request_timeout_ms=1500))
        await producer.start()
        await producer.send("down.md.options.v1", b"BTC", b"ok")
        await producer.flush()
    finally:
        await kafka.stop()
    await producer.send("down.md.options.v1", b"BTC", b"lost")
    with pytest.raises(DeliveryError, match="records may be lost"):
        await asyncio.wait_for(producer.flush(), 15)
    assert producer.stats.batches_failed == 1
    with pytest.raises(DeliveryError, match="records may be lost"):  # sticky
        await producer.send("down.md.options.v1", b"BTC", b"after")
    with pytest.raises(DeliveryError, match="records may be lost"):
        await asyncio.wait_for(producer.stop(), 60)


# -- topics and the embedded broker -----------------------------------------------------


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_ensure_topics_is_idempotent_and_compacts_state(
    broker: Broker, topics: Topics
) -> None:
    partitions = {topics.options: 5, topics.state: 2}
    created = await ensure_topics(broker.bootstrap, topics.all(), partitions=partitions)
    assert sorted(created) == sorted(topics.all())
    assert await ensure_topics(broker.bootstrap, topics.all(), partitions=7) == ()

    admin = AIOKafkaAdminClient(bootstrap_servers=broker.bootstrap)
    await admin.start()
    try:
        described = {t["topic"]: t for t in await admin.describe_topics(list(topics.all()))}
        for name in topics.all():
            assert len(described[name]["partitions"]) == partitions.get(name, 3)
        (response,) = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, topics.state)]
        )
        (resource,) = response.resources
        entries = {entry[0]: entry[1] for entry in resource[4]}
        assert entries.get("cleanup.policy") == "compact"
    finally:
        await admin.close()


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_ensure_topics_tolerates_concurrent_creation(broker: Broker, topics: Topics) -> None:
    results = await asyncio.gather(
        *(ensure_topics(broker.bootstrap, topics.market_data(), partitions=2) for _ in range(3))
    )
    created = [name for result in results for name in result]
    assert set(created) == set(topics.market_data())
    assert await ensure_topics(broker.bootstrap, topics.market_data()) == ()


@pytest.mark.asyncio
async def test_embedded_kafka_context_manager_owns_the_process() -> None:
    async with EmbeddedKafka() as kafka:
        host, port = kafka.bootstrap.split(":")
        assert host == "127.0.0.1" and int(port) > 0
        pid = kafka.pid
        assert kafka.running and pid is not None
        log_path = kafka.log_path
        assert log_path is not None and log_path.exists()
    assert not kafka.running
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)
    assert not log_path.exists()
    with pytest.raises(EmbeddedKafkaError, match="embedded Kafka is not running"):
        _ = kafka.bootstrap


@pytest.mark.asyncio
async def test_embedded_kafka_missing_binary_is_one_clear_line(tmp_path) -> None:
    kafka = EmbeddedKafka(binary=tmp_path / "no-such-tansu")
    with pytest.raises(EmbeddedKafkaError, match="Tansu broker binary not found") as info:
        await kafka.start()
    assert "\n" not in str(info.value)
    assert not kafka.running


# -- config ----------------------------------------------------------------------------


def test_config_from_mapping_rejects_unknown_keys() -> None:
    with pytest.raises(ValueError, match="linger"):
        ProducerConfig.from_mapping({"bootstrap": "h:1", "linger": 5})
    with pytest.raises(ValueError, match="bootstrap"):
        ProducerConfig.from_mapping({"acks": "all"})
    config = ProducerConfig.from_mapping(
        {"bootstrap": "h:1", "linger_ms": 2, "max_in_flight_batches": 4, "compression": "gzip"}
    )
    assert (config.linger_ms, config.max_in_flight_batches, config.compression) == (2, 4, "gzip")
    assert config.acks == "all" and config.enable_idempotence is True


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"acks": 2}, "acks must be one of ('all', -1, 0, 1), got 2"),
        ({"acks": 1}, "enable_idempotence requires acks='all'"),  # the default idempotence
        (
            {"compression": "brotli"},
            "compression must be one of (None, 'gzip', 'snappy', 'lz4', 'zstd'), got 'brotli'",
        ),
        ({"max_in_flight_batches": 0}, "max_in_flight_batches must be a positive integer, got 0"),
        ({"max_batch_bytes": -1}, "max_batch_bytes must be a positive integer, got -1"),
        ({"linger_ms": -1}, "linger_ms must be >= 0"),
        ({"bootstrap": ""}, "bootstrap is empty"),
    ],
)
def test_config_rejects_bad_values(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError) as err:
        ProducerConfig(**{"bootstrap": "h:1", **overrides})
    assert str(err.value) == message

"""Deribit → parse → Kafka through the real (embedded) broker: topics, keys, dead letters."""

from __future__ import annotations

import asyncio
import math

import pytest

from connectors.common.capture import CapturedMessage, CaptureWriter
from connectors.common.ingest import IngestStage, MemorySink, replay_capture
from connectors.common.kafka.producer import ProducerConfig, partition_for_key
from connectors.deribit.client import DeribitConfig
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.sources import Source
from engine.app.cli import main
from engine.app.run_ingest import run_ingest
from schemas.records import decode_record
from schemas.ticks import OptionTicks
from tests.conditions import eventually
from tests.connectors.deribit.test_deribit_client import EXPIRY_MS, NAMES, fake  # noqa: F401 - fixture
from tests.fakes.deribit import (
    T0_MS,
    envelope,
    instrument,
    option_ticker,
    rpc_response,
    summary_row,
    venue_clock,
)
from tests.kafka_helpers import ON_BOTH_BROKERS, Broker, consume

MALFORMED = b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-15MAR24'
UNSUPPORTED = envelope("quote.BTC-PERPETUAL", {"timestamp": T0_MS, "best_bid_price": 1.0})


def write_session(path) -> None:
    """A small Deribit session in the exact wire shapes, written as a capture file."""
    instruments = [
        instrument(n, float(n.split("-")[2]), n[-1], EXPIRY_MS, i) for i, n in enumerate(NAMES)
    ]
    summary = [summary_row(n, 65_400.0, 65_000.0, 100.0 + i, 55.0) for i, n in enumerate(NAMES)]
    t = T0_MS * 1_000_000
    lines = [
        CapturedMessage(
            t,
            "deribit",
            rpc_response(1, instruments),
            {
                "method": "public/get_instruments",
                "params": {"currency": "BTC", "kind": "option", "expired": False},
            },
        ),
        CapturedMessage(
            t + 1,
            "deribit",
            rpc_response(2, summary),
            {
                "method": "public/get_book_summary_by_currency",
                "params": {"currency": "BTC", "kind": "option"},
            },
        ),
    ]
    for i, name in enumerate(NAMES):
        data = option_ticker(name, T0_MS + 10 + i, 65_500.0, 65_100.0, 60.0 + i, 50.0 + i, 0.00004)
        lines.append(CapturedMessage(t + 10 + i, "deribit", envelope(f"ticker.{name}.100ms", data)))
    lines += [
        CapturedMessage(
            t + 30,
            "deribit",
            envelope(
                "deribit_price_index.btc_usd",
                {"timestamp": T0_MS + 30, "price": 65_123.4, "index_name": "btc_usd"},
            ),
        ),
        CapturedMessage(t + 31, "deribit", MALFORMED),
        CapturedMessage(t + 32, "deribit", UNSUPPORTED),
        CapturedMessage(
            t + 33,
            "deribit",
            envelope(
                "deribit_volatility_index.eth_usd",
                {"timestamp": T0_MS + 33, "volatility": 70.1, "index_name": "eth_usd"},
            ),
        ),
    ]
    with CaptureWriter(path) as writer:
        for line in lines:
            writer.write(line)


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_replay_into_kafka_topics_keys_and_dead_letters(broker: Broker, topics, tmp_path):
    path = tmp_path / "session.jsonl"
    write_session(path)
    expected = MemorySink()
    await replay_capture(
        path, IngestStage("deribit", DeribitNormaliser(), expected, topics, source="replay")
    )
    # One Kafka record per normalised record here (packing has its own tests below).
    config = ProducerConfig(
        bootstrap=broker.bootstrap, enable_idempotence=broker.idempotence, pack_max_ticks=0
    )
    report = await run_ingest([Source("replay", str(path))], config, topics, partitions=3)
    assert report.counts == {"messages": 12, "records": 15, "dead_letters": 2}
    for topic, count in ((topics.options, 12), (topics.underlying, 2), (topics.volindex, 1)):
        got = await consume(broker.bootstrap, topic, count)
        assert len(got) == count
        assert [decode_record(m.value) for m in got] == expected.on(topic)
        keys = {m.key for m in got}
        assert keys <= {b"BTC", b"ETH"}
        for m in got:  # keyed by underlying: one partition per underlying, Kafka's partitioner
            assert m.partition == partition_for_key(m.key, 3)
    dead = await consume(broker.bootstrap, topics.deadletter, 2)
    assert [m.value for m in dead] == [MALFORMED, UNSUPPORTED]  # the raw bytes, exactly
    headers = [dict(m.headers) for m in dead]
    assert headers[0]["reason"].decode().startswith("malformed JSON")
    assert headers[1]["reason"] == b"unsupported Deribit channel quote.BTC-PERPETUAL"
    assert {h["venue"] for h in headers} == {b"deribit"} and {h["source"] for h in headers} == {
        b"replay"
    }


@pytest.mark.asyncio
async def test_live_session_into_kafka_until_stopped(fake, kafka_bootstrap, topics):  # noqa: F811
    stop = asyncio.Event()
    config = ProducerConfig(bootstrap=kafka_bootstrap, enable_idempotence=False)
    deribit = DeribitConfig(url=fake.url, subscribe_per_s=200.0)
    task = asyncio.create_task(
        run_ingest(
            [Source("deribit", "BTC")],
            config,
            topics,
            stop,
            {"deribit": deribit},
            clock_ns=venue_clock(),
        )
    )
    await eventually(lambda: "public/subscribe" in fake.methods())
    data = option_ticker(NAMES[3], T0_MS + 77, 65_222.0, 65_111.0, 48.5, 12.5, 0.00003)
    await fake.notify(f"ticker.{NAMES[3]}.100ms", data)
    await fake.push(MALFORMED)
    got = await consume(kafka_bootstrap, topics.options, len(NAMES) + 1)
    stop.set()
    report = await asyncio.wait_for(task, 10)
    pack = decode_record(got[-1].value)  # the book summary announced it: the ticker is packed
    assert isinstance(pack, OptionTicks)
    assert (
        pack.instrument,
        list(pack.iv),
        list(pack.open_interest),
        list(pack.underlying_price),
        list(pack.index_price),
    ) == ([NAMES[3]], [0.485], [12.5], [65_222.0], [65_111.0])
    assert got[-1].key == b"BTC"
    dead = await consume(kafka_bootstrap, topics.deadletter, 1)
    assert dead[0].value == MALFORMED
    assert report.counts["dead_letters"] == 1


def test_ingest_cli_replays_a_capture_into_kafka(kafka_bootstrap, topics, tmp_path, capsys):
    path = tmp_path / "session.jsonl"
    write_session(path)
    args = [
        "ingest",
        "--source",
        f"replay:{path}",
        "--kafka",
        kafka_bootstrap,
        "--topic-prefix",
        topics.prefix,
        "--no-idempotence",
    ]
    assert main(args) == 0
    assert "ingested 12 messages: 15 records, 2 dead letters" in capsys.readouterr().err
    got = asyncio.run(consume(kafka_bootstrap, topics.options, 12, timeout=2.0))
    records = [decode_record(m.value) for m in got]
    # 12 option updates: full contracts the first time, later tickers in packs
    assert sum(len(r) if isinstance(r, OptionTicks) else 1 for r in records) == 12
    assert any(isinstance(r, OptionTicks) for r in records) and len(got) <= 12


def test_ingest_cli_bad_kafka_address_is_one_line(tmp_path, capsys):
    path = tmp_path / "session.jsonl"
    write_session(path)
    assert main(["ingest", "--source", f"replay:{path}", "--kafka", "nonsense"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "--kafka must be HOST:PORT" in err


def test_ingest_cli_unreachable_broker_is_one_line(tmp_path, capsys):
    path = tmp_path / "session.jsonl"
    write_session(path)
    assert main(["ingest", "--source", f"replay:{path}", "--kafka", "127.0.0.1:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "kafka 127.0.0.1:1" in err and "Traceback" not in err


def unpacked(records: list) -> list[tuple]:
    """Option records as (instrument, iv, open interest, forward, index, gamma, event time),
    a pack's ticks one by one."""
    rows = []
    for r in records:
        if type(r) is OptionTicks:
            for i, name in enumerate(r.instrument):
                iv, gamma = float(r.iv[i]), float(r.gamma[i])
                rows.append(
                    (
                        name,
                        None if math.isnan(iv) else iv,
                        float(r.open_interest[i]),
                        float(r.underlying_price[i]),
                        float(r.index_price[i]),
                        None if math.isnan(gamma) else gamma,
                        int(r.event_ns[i]),
                        int(r.recv_ns[i]),
                    )
                )
        else:
            rows.append(
                (
                    r.instrument,
                    r.iv,
                    r.open_interest,
                    r.underlying_price,
                    r.index_price,
                    r.gamma,
                    r.ts_event_ns,
                    r.ts_recv_ns,
                )
            )
    return rows


@pytest.mark.asyncio
async def test_replay_with_packing_sends_terms_once_then_packed_ticks(
    kafka_bootstrap, topics, tmp_path
):
    path = tmp_path / "session.jsonl"
    write_session(path)
    expected = MemorySink()
    await replay_capture(
        path, IngestStage("deribit", DeribitNormaliser(), expected, topics, source="replay")
    )
    config = ProducerConfig(
        bootstrap=kafka_bootstrap, enable_idempotence=False, pack_max_ticks=256, pack_wait_ms=50
    )
    report = await run_ingest([Source("replay", str(path))], config, topics, partitions=3)
    assert report.counts == {"messages": 12, "records": 15, "dead_letters": 2}
    # The book summary's 6 contracts in full, then the 6 tickers in one pack (the index
    # tick that follows them sends the pack first; 50 ms is far longer than the replay).
    got = [decode_record(m.value) for m in await consume(kafka_bootstrap, topics.options, 7)]
    assert [type(r).__name__ for r in got] == ["OptionContract"] * 6 + ["OptionTicks"]
    assert got[:6] == expected.on(topics.options)[:6]
    assert got[6].instrument == NAMES and got[6].ts_event_ns == (T0_MS + 15) * 1_000_000
    assert unpacked(got) == unpacked(expected.on(topics.options))
    assert report.records_sent == 7 + 2 + 1 + 2  # options, underlying, volindex, dead letters
    for topic in (topics.underlying, topics.volindex):
        got = await consume(kafka_bootstrap, topic, len(expected.on(topic)))
        assert [decode_record(m.value) for m in got] == expected.on(topic)


@pytest.mark.asyncio
async def test_live_ticker_is_packed_and_sent_within_the_pack_wait(fake, kafka_bootstrap, topics):  # noqa: F811
    stop = asyncio.Event()
    config = ProducerConfig(
        bootstrap=kafka_bootstrap,
        enable_idempotence=False,
        linger_ms=1.0,
        pack_max_ticks=256,
        pack_wait_ms=1.0,
    )
    deribit = DeribitConfig(url=fake.url, subscribe_per_s=200.0)
    task = asyncio.create_task(
        run_ingest(
            [Source("deribit", "BTC")],
            config,
            topics,
            stop,
            {"deribit": deribit},
            clock_ns=venue_clock(),
        )
    )
    await eventually(lambda: "public/subscribe" in fake.methods())
    data = option_ticker(NAMES[3], T0_MS + 77, 65_222.0, 65_111.0, 48.5, 12.5, 0.00003)
    await fake.notify(f"ticker.{NAMES[3]}.100ms", data)
    # No other record follows: only the flush timer sends the pack.
    got = await consume(kafka_bootstrap, topics.options, len(NAMES) + 1)
    stop.set()
    await asyncio.wait_for(task, 10)
    pack = decode_record(got[-1].value)
    assert type(pack) is OptionTicks and got[-1].key == b"BTC"
    assert unpacked([pack])[0][:7] == (
        NAMES[3],
        0.485,
        12.5,
        65_222.0,
        65_111.0,
        0.00003,
        (T0_MS + 77) * 1_000_000,
    )

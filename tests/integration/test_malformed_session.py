"""Garbage in, nothing out, end to end: a session with thousands of malformed messages
mixed in, through the real broker (Tansu) and a real Redis, yields exactly the clean
session's events and levels, and exactly one dead letter per malformed message."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest
from redis.asyncio import Redis

from connectors.common.capture import CaptureWriter, read_capture
from connectors.common.kafka.producer import ProducerConfig
from connectors.simulator.deribit_session import SessionConfig, generate_session
from connectors.simulator.malformed import Mutant, mixed_session
from connectors.sources import Source
from engine.app.run_ingest import run_ingest
from schemas.channels import levels_key
from schemas.levels import decode_levels
from schemas.topics import Topics
from tests.integration.test_pipeline import engine_config, run_engine, stream
from tests.kafka_helpers import consume

SESSION = SessionConfig(n_instruments=600, duration_s=300.0, seed=7)
RATE = 0.1  # of notifications: ~3,000 mutants


def write(path: Path, messages) -> None:
    with CaptureWriter(path) as writer:
        for message in messages:
            writer.write(message)


async def ingest_and_run(kafka_bootstrap: str, redis_url: str, path: Path):
    topics = Topics(prefix=f"{path.stem}.{id(path):x}.")
    # Tickers unpacked: every message's records are their own Kafka records, so the two
    # logs hold the same records at the same offsets and event ids compare exactly.
    report = await run_ingest(
        [Source("replay", str(path))],
        ProducerConfig(kafka_bootstrap, enable_idempotence=False, pack_max_ticks=0),
        topics,
    )
    engine = await run_engine(engine_config(kafka_bootstrap, redis_url, topics), timeout=180)
    events = [event for _, event in await stream(redis_url)]
    client = Redis.from_url(redis_url)
    try:
        levels = decode_levels(await client.get(levels_key("BTC")))
    finally:
        await client.aclose()
    return topics, report, engine, events, levels


def comparable(event, topics: Topics):
    """The event as a bot reads it, its id without the run's topic prefix."""
    return (
        event.id.removeprefix(topics.prefix),
        event.type,
        event.bucket,
        event.direction,
        event.ts_event,
        event.level,
        event.spot,
        event.levels,
    )


@pytest.mark.asyncio
async def test_malformed_messages_change_no_event_and_are_each_dead_lettered(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
):
    clean = list(generate_session(SESSION))
    mixed = list(mixed_session(clean, RATE, seed=2024))
    invalid = [m for m in mixed if isinstance(m, Mutant) and not m.valid]
    kinds = Counter(m.kind for m in mixed if isinstance(m, Mutant))
    assert len(invalid) > 2_500 and len(kinds) >= 19  # every kind of mutant is in the session
    write(tmp_path / "clean.jsonl", clean)
    write(tmp_path / "mixed.jsonl", (m.message if isinstance(m, Mutant) else m for m in mixed))
    stored = list(read_capture(tmp_path / "mixed.jsonl"))  # invalid UTF-8 is stored replaced
    assert len(stored) == len(mixed)
    invalid_raw = Counter(
        s.raw for s, m in zip(stored, mixed, strict=True) if isinstance(m, Mutant) and not m.valid
    )

    base = redis_url.rsplit("/", 1)[0]
    other_db = (int(redis_url.rsplit("/", 1)[1]) + 8) % 16
    other_url = f"{base}/{other_db}"
    flush = Redis.from_url(other_url)
    await flush.flushdb()
    await flush.aclose()

    c_topics, c_ingest, c_engine, c_events, c_levels = await ingest_and_run(
        kafka_bootstrap, redis_url, tmp_path / "clean.jsonl"
    )
    m_topics, m_ingest, m_engine, m_events, m_levels = await ingest_and_run(
        kafka_bootstrap, other_url, tmp_path / "mixed.jsonl"
    )
    assert c_ingest.counts["dead_letters"] == 0
    assert m_ingest.counts["dead_letters"] == len(invalid)
    assert m_ingest.counts["records"] == c_ingest.counts["records"]
    assert m_ingest.records_sent == c_ingest.records_sent + len(invalid)  # + the dead letters
    assert c_engine.dead_letters == m_engine.dead_letters == 0
    assert c_engine.records == m_engine.records

    # The flip crossing and the regime change are there, and every event is the same.
    assert {"flip_cross", "regime_change"} <= {e.type for e in c_events}
    assert [comparable(e, m_topics) for e in m_events] == [
        comparable(e, c_topics) for e in c_events
    ]
    assert m_levels == c_levels

    # One dead letter per malformed message, its raw bytes and a reason naming the problem.
    dead = await consume(kafka_bootstrap, m_topics.deadletter, len(invalid), timeout=30)
    assert len(dead) == len(invalid)
    assert Counter(r.value for r in dead) == invalid_raw
    classes = Counter(dict(r.headers)["reason_class"].decode() for r in dead)
    assert classes["out_of_domain"] > 0 and classes["malformed"] > 0
    assert sum(classes.values()) == len(invalid)

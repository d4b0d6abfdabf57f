"""Engine checkpoints (engine.state.v1): a task restored from a checkpoint taken anywhere in
the input continues exactly as the task that was never interrupted; the record format, the
reader and the restricted unpickler; through the real broker and Redis, a killed engine
resumes from its checkpoint instead of the log's start and loses and duplicates nothing."""

from __future__ import annotations

import asyncio
import heapq
import os
import pickle
import time
import zlib
from collections import Counter
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import TopicPartition
from redis.asyncio import Redis

from connectors.cboe.parse import parse_cboe_json_columns
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.ingest import IngestStage, MemorySink, replay_capture
from connectors.simulator.chains import spx_like_chain, to_cboe_delayed_quotes
from connectors.simulator.deribit_session import write_session
from connectors.snapshots import SnapshotDiffer, SnapshotFramingConfig
from engine import book as book_module
from engine.checkpoint import (
    Checkpoint,
    CheckpointError,
    dumps_state,
    encode_checkpoint,
    fingerprint,
    latest_checkpoint,
    loads_state,
)
from engine.config import LevelsConfig
from engine.detector import DetectorConfig
from engine.merge import EventTimeMerge, InputItem
from engine.task import PartitionTask, TaskConfig
from schemas.topics import Topics
from tests.test_crypto_regime_e2e import DETECTOR as CRYPTO_DETECTOR
from tests.test_crypto_regime_e2e import SESSION as CRYPTO_SESSION
from tests.test_pipeline import SESSION, engine_config, ingest, kill_and_restart, run_engine, stream

NS = 1_000_000_000
TOPICS = Topics()
RANK = {topic: i for i, topic in enumerate(TOPICS.market_data())}


def merged(records: list[tuple[str, object]]) -> list[InputItem]:
    """The records as a task's merge releases them: per topic in order, by event time."""
    per_topic: dict[str, list[InputItem]] = {}
    for topic, record in records:
        queue = per_topic.setdefault(topic, [])
        queue.append(InputItem(TopicPartition(topic, 0), len(queue), record.ts_event_ns, record))
    return list(heapq.merge(*per_topic.values(), key=lambda i: (i.ts, RANK[i.tp.topic], i.offset)))


def new_task(detector: DetectorConfig) -> PartitionTask:
    tps = [TopicPartition(topic, 0) for topic in TOPICS.market_data()]
    return PartitionTask(0, EventTimeMerge(tps), LevelsConfig(), detector, TaskConfig(), lambda: 7)


def run(task: PartitionTask, items: list[InputItem], batch: int = 64) -> list:
    out = []
    for start in range(0, len(items), batch):
        output = task.process(items[start : start + batch])
        out.extend(event for _, event in output.events)
    return out


@pytest.fixture(scope="module")
def crypto_items(tmp_path_factory: pytest.TempPathFactory) -> list[InputItem]:
    """A Deribit session with funding and DVOL paths, normalised (books, detectors, crypto)."""
    path = tmp_path_factory.mktemp("ckpt") / "session.jsonl"
    write_session(CRYPTO_SESSION, path)
    sink = MemorySink()
    stage = IngestStage("deribit", DeribitNormaliser(), sink, TOPICS, source="replay")
    asyncio.run(replay_capture(path, stage))
    return merged(sink.records)


@pytest.fixture(scope="module")
def chain_items() -> list[InputItem]:
    """CBOE snapshots a minute apart, spot walking down, framed in small parts with a full
    keyframe every third snapshot (so a cut can land inside a full snapshot)."""
    base = spx_like_chain(600, seed=3)
    differ = SnapshotDiffer(SnapshotFramingConfig(max_record_bytes=20_000, keyframe_every=3))
    records = []
    for i in range(9):
        doc = to_cboe_delayed_quotes(base)
        moment = base.asof_ns // NS + 60 * i
        doc["timestamp"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))
        doc["data"]["current_price"] = round(base.spot * (1 - 0.004 * i), 2)
        for n, row in enumerate(doc["data"]["options"]):
            if (n + i) % 5 == 0:
                row["open_interest"] += 10 * i
        columns = parse_cboe_json_columns(orjson.dumps(doc), moment * NS)
        records += [(TOPICS.options, part) for part in differ.frame(columns, moment * NS)]
    return merged(records)


@pytest.mark.parametrize("source", ["crypto", "chain"])
@pytest.mark.parametrize("at", [0.0, 0.13, 0.37, 0.5, 0.81, 1.0])
def test_a_restored_task_continues_as_the_uninterrupted_one(source, at, request):
    items = request.getfixturevalue(f"{source}_items")
    detector = CRYPTO_DETECTOR if source == "crypto" else DetectorConfig()
    uninterrupted = new_task(detector)
    whole = run(uninterrupted, items)
    assert len(whole) >= 2

    cut = round(at * len(items))
    if source == "chain" and 0 < at < 1:
        while items[cut].record.part == 0:  # land between two parts of a snapshot
            cut += 1
    first = new_task(detector)
    before = run(first, items[:cut])
    restored = new_task(detector)
    restored.restore(loads_state(dumps_state(first.state())))
    after = run(restored, items[cut:])
    assert before + after == whole  # every event, its id, levels, detail and times
    assert restored.evaluations == uninterrupted.evaluations
    assert restored.next_offsets == uninterrupted.next_offsets
    for underlying, book in uninterrupted.feeder.books.items():
        got = restored.feeder.books[underlying]
        assert got.instrument_slot == book.instrument_slot
        assert (got.profile == book.profile).all()
        assert (got.slot_f[:, : book.n_slots] == book.slot_f[:, : book.n_slots]).all()


# ---------------------------------------------------------------- records and the reader


def checkpoint(state: bytes, cid: int, group: str = "g", partition: int = 2) -> Checkpoint:
    return Checkpoint(group, partition, cid, "f" * 16, {"t/2": 10 * cid}, state)


def test_records_are_chunked_and_the_latest_complete_one_is_read():
    big = os.urandom(1_300_000)
    first = encode_checkpoint(checkpoint(b"old", 1))
    second = encode_checkpoint(checkpoint(big, 2), max_chunk_bytes=512 * 1024)
    assert len(first) == 1 and len(second) == 3
    assert [key for key, _ in second] == [b"g/p2/c0", b"g/p2/c1", b"g/p2/c2"]
    assert all(len(value) < 600 * 1024 for _, value in second)
    values = [v for _, v in first + second]
    got = latest_checkpoint(values, "g", 2)
    assert got is not None and got.checkpoint_id == 2 and got.state == big
    assert got.offsets == {"t/2": 20}
    # a torn checkpoint (its last chunk never written) leaves the previous one the latest
    torn = encode_checkpoint(checkpoint(big, 3), max_chunk_bytes=512 * 1024)[:2]
    assert latest_checkpoint(values + [v for _, v in torn], "g", 2).checkpoint_id == 2
    # other groups, other partitions, garbage and other versions are skipped
    noise = [
        encode_checkpoint(checkpoint(b"x", 9, group="other"))[0][1],
        encode_checkpoint(checkpoint(b"x", 9, partition=5))[0][1],
        b"not a checkpoint",
        b"RESTATE1\x00\x00\x00\x05{bad}",
        encode_checkpoint(checkpoint(b"x", 9))[0][1].replace(b"engine.state/1", b"engine.state/0"),
    ]
    assert latest_checkpoint(values + noise, "g", 2).checkpoint_id == 2
    assert latest_checkpoint(noise, "g", 2) is None


def test_the_unpickler_resolves_no_function():
    class Shell:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(CheckpointError, match=r"(posix|os)\.system"):
        loads_state(zlib.compress(pickle.dumps(Shell())))
    with pytest.raises(CheckpointError, match=r"engine\.book\._grown"):
        loads_state(zlib.compress(pickle.dumps(book_module._grown)))
    with pytest.raises(CheckpointError, match="does not load"):
        loads_state(b"not zlib")


def test_the_fingerprint_follows_the_settings():
    base = fingerprint(LevelsConfig(), DetectorConfig(), TaskConfig())
    assert base == fingerprint(LevelsConfig(), DetectorConfig(), TaskConfig())
    assert base != fingerprint(LevelsConfig(model="short_all"), DetectorConfig(), TaskConfig())
    assert base != fingerprint(LevelsConfig(), DetectorConfig(band_bps=99.0), TaskConfig())
    assert base != fingerprint(LevelsConfig(), DetectorConfig(), TaskConfig(max_eval_gap_s=9))


# ---------------------------------------------------------------- through the broker


@pytest.mark.asyncio
async def test_killed_engine_resumes_from_its_checkpoint(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """kill -9 mid-stream with checkpoints every 0.2 s: the restarted engine restores the
    state, reads only what came after the checkpoint, and the stream equals the reference."""
    topics = Topics(f"k{os.urandom(4).hex()}.")
    path = tmp_path / "session.jsonl"
    write_session(SESSION, path)
    await ingest(kafka_bootstrap, topics, path)
    base = redis_url.rsplit("/", 1)[0]
    reference_url = f"{base}/{(int(redis_url.rsplit('/', 1)[1]) + 8) % 16}"
    await Redis.from_url(reference_url).flushdb()
    whole = await run_engine(
        engine_config(kafka_bootstrap, reference_url, topics, checkpoint_interval_s=0.0)
    )
    reference = [e.id for _, e in await stream(reference_url)]

    config = tmp_path / "engine.toml"
    config.write_text(
        "max_records = 10\nsession_timeout_ms = 2000\nheartbeat_interval_ms = 500\n"
        "checkpoint_interval_s = 0.2\n"
    )
    partial, summary = await kill_and_restart(
        kafka_bootstrap, redis_url, topics, config, len(reference) // 2, len(reference)
    )
    assert partial < len(reference)
    ids = [e.id for _, e in await stream(redis_url)]
    assert ids == reference
    assert max(Counter(ids).values()) == 1
    assert summary["restored"] == 1
    assert 0 < summary["records"] < whole.records  # resumed, not replayed from the start

    # Other settings: the checkpoint is not used; the state is rebuilt from the log's start.
    other = await run_engine(
        replace(
            engine_config(kafka_bootstrap, reference_url, topics),
            group_id=f"{topics.prefix}killed",
            levels=LevelsConfig(model="short_all"),
        )
    )
    assert other.restored == 0 and other.records == whole.records

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

import numpy as np
import orjson
import pytest
from aiokafka.structs import TopicPartition
from redis.asyncio import Redis

from connectors.cboe.columns import parse_cboe_json_columns
from connectors.common.ingest import IngestStage, MemorySink, replay_capture
from connectors.common.kafka.producer import partition_for_key
from connectors.common.snapshots import SnapshotDiffer, SnapshotFramingConfig
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.chains import spx_like_chain, to_cboe_delayed_quotes
from connectors.simulator.deribit_session import write_session
from engine.core import book as book_module
from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.feed import BookFeeder
from engine.signals.detector import DetectorConfig
from engine.stream import checkpoint as checkpoint_module
from engine.stream.checkpoint import (
    Checkpoint,
    CheckpointError,
    CheckpointReader,
    chunk_key,
    dumps_state,
    encode_checkpoint,
    fingerprint,
    latest_checkpoint,
    loads_state,
)
from engine.stream.merge import EventTimeMerge, InputItem
from engine.stream.runtime import EngineRuntime
from engine.stream.state_store import StateStore
from engine.stream.task import PartitionTask, TaskConfig
from schemas.channels import events_stream
from schemas.contracts import OptionRight
from schemas.topics import Topics
from tests.conditions import eventually
from tests.integration.test_crypto_regime_e2e import DETECTOR as CRYPTO_DETECTOR
from tests.integration.test_crypto_regime_e2e import SESSION as CRYPTO_SESSION
from tests.integration.test_pipeline import (
    SESSION,
    engine_config,
    ingest,
    kill_and_restart,
    run_engine,
    stream,
)
from tests.kafka_helpers import ON_BOTH_BROKERS, Broker
from tests.redis_helpers import flush_db

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


def new_task(detector: DetectorConfig, levels: LevelsConfig | None = None) -> PartitionTask:
    tps = [TopicPartition(topic, 0) for topic in TOPICS.market_data()]
    levels = levels or LevelsConfig()
    return PartitionTask(0, EventTimeMerge(tps), levels, detector, TaskConfig(), lambda: 7)


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


@pytest.mark.parametrize("source", ["crypto", "crypto_flow", "chain"])
@pytest.mark.parametrize("at", [0.0, 0.13, 0.37, 0.5, 0.81, 1.0])
def test_a_restored_task_continues_as_the_uninterrupted_one(source, at, request):
    """``crypto_flow``: the flow dealer model, whose inventory moves with taker trades (and
    remembers trade ids) across the cut."""
    items = request.getfixturevalue("chain_items" if source == "chain" else "crypto_items")
    detector = DetectorConfig() if source == "chain" else CRYPTO_DETECTOR
    levels = LevelsConfig(model="flow") if source == "crypto_flow" else LevelsConfig()
    uninterrupted = new_task(detector, levels)
    whole = run(uninterrupted, items)
    assert len(whole) >= 2

    cut = round(at * len(items))
    if source == "chain" and 0 < at < 1:
        while items[cut].record.part == 0:  # land between two parts of a snapshot
            cut += 1
    first = new_task(detector, levels)
    before = run(first, items[:cut])
    restored = new_task(detector, levels)
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


def log_of(cp: Checkpoint, torn: bool = False, **kw: int) -> list[tuple[bytes, bytes | None]]:
    chunks, manifest = encode_checkpoint(cp, **kw)
    return chunks if torn else [*chunks, manifest]


def compacted(log: list[tuple[bytes, bytes | None]]) -> list[bytes | None]:
    """What a compacted topic keeps: the last value of each key, in log order, no tombstones."""
    last = {key: i for i, (key, _) in enumerate(log)}
    return [value for i, (key, value) in enumerate(log) if last[key] == i and value is not None]


def test_records_are_chunked_and_the_latest_complete_one_is_read():
    big = os.urandom(1_300_000)
    chunks, (manifest_key, _) = encode_checkpoint(checkpoint(big, 2), max_chunk_bytes=512 * 1024)
    assert [key for key, _ in chunks] == [b"g/p2/2/c0", b"g/p2/2/c1", b"g/p2/2/c2"]
    assert manifest_key == b"g/p2"
    assert all(len(value) < 600 * 1024 for _, value in chunks)
    log = log_of(checkpoint(b"old", 1)) + log_of(checkpoint(big, 2), max_chunk_bytes=512 * 1024)
    got = latest_checkpoint([v for _, v in log], "g", 2)
    assert got is not None and got.checkpoint_id == 2 and got.state == big and got.chunks == 3
    assert got.offsets == {"t/2": 20}
    # a torn checkpoint (no manifest: the writer died) leaves the previous one the latest
    torn = log + log_of(checkpoint(big, 3), torn=True, max_chunk_bytes=512 * 1024)[:2]
    assert latest_checkpoint([v for _, v in torn], "g", 2).checkpoint_id == 2
    # other groups, other partitions, garbage, tombstones and other versions are skipped
    noise = [
        *[v for _, v in log_of(checkpoint(b"x", 9, group="other"))],
        *[v for _, v in log_of(checkpoint(b"x", 9, partition=5))],
        b"not a checkpoint",
        b"RESTATE2\x00\x00\x00\x05{bad}",
        None,
        log_of(checkpoint(b"x", 9))[-1][1].replace(b"engine.state/2", b"engine.state/1"),
    ]
    assert latest_checkpoint([v for _, v in log] + noise, "g", 2).checkpoint_id == 2
    assert latest_checkpoint(noise, "g", 2) is None


def test_compaction_keeps_the_latest_checkpoint_whole():
    """The writer's sequence (chunks, manifest, tombstones for the replaced chunks), then a
    torn one, compacted: the latest complete checkpoint survives, and nothing older."""
    log: list[tuple[bytes, bytes | None]] = []
    previous = None
    for cid, size in ((1, 1_200_000), (2, 700_000), (3, 100)):
        cp = checkpoint(os.urandom(size), cid)
        chunks, manifest = encode_checkpoint(cp, max_chunk_bytes=512 * 1024)
        log += [*chunks, manifest]
        if previous is not None:
            log += [(key, None) for key, _ in previous]
        previous = chunks
    log += log_of(checkpoint(os.urandom(900_000), 4), torn=True, max_chunk_bytes=512 * 1024)
    kept = compacted(log)
    got = latest_checkpoint(kept, "g", 2)
    assert got is not None and got.checkpoint_id == 3
    assert len(kept) == 1 + 1 + 2  # checkpoint 3's chunk and manifest, 4's torn chunks


def test_the_unpickler_refuses_what_is_not_state():
    class Shell:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    with pytest.raises(CheckpointError, match=r"(posix|os)\.system"):
        loads_state(zlib.compress(pickle.dumps(Shell())))
    with pytest.raises(CheckpointError, match=r"engine\.core\.book\._grown"):
        loads_state(zlib.compress(pickle.dumps(book_module._grown)))
    with pytest.raises(CheckpointError, match="does not load"):
        loads_state(b"not zlib")


def test_the_unpickler_modifies_no_class():
    """BUILD on a class object (it would replace BookFeeder.apply for the whole process)."""
    payload = (
        b"\x80\x04cengine.core.feed\nBookFeeder\nN}X\x05\x00\x00\x00applycbuiltins\nlist\ns\x86b."
    )
    before = BookFeeder.apply
    with pytest.raises(CheckpointError, match="modifies a shared object"):
        loads_state(zlib.compress(payload))
    assert BookFeeder.apply is before


def test_the_unpickler_modifies_no_enum_member():
    """Calling an enum class returns its process-wide member: BUILD on it is refused."""
    payload = (
        b"\x80\x04cschemas.contracts\nOptionRight\nX\x01\x00\x00\x00C\x85R"
        b"}X\x07\x00\x00\x00_value_X\x01\x00\x00\x00Psb."
    )
    with pytest.raises(CheckpointError, match="modifies a shared object"):
        loads_state(zlib.compress(payload))
    assert OptionRight.CALL.value == "C" and OptionRight("C") is OptionRight.CALL


def test_a_book_that_breaks_its_invariants_is_refused():
    """The kernels do not bounds-check: a saved book whose slot count exceeds its arrays
    (or with a strike index out of range) never reaches them."""
    book = GammaBook("BTC", "deribit", LevelsConfig(), 100.0, 1_700_000_000_000_000_000)
    assert loads_state(dumps_state({"book": book}))["book"].n_slots == 0
    book.n_slots = 200_000_000
    with pytest.raises(CheckpointError, match="breaks its invariants"):
        loads_state(dumps_state({"book": book}))
    book.n_slots = 1
    book.slot_i[book_module.k.I_STRIKE_IDX, 0] = 10**9
    with pytest.raises(CheckpointError, match="breaks its invariants"):
        loads_state(dumps_state({"book": book}))
    # a strike table whose numbers are not 0..n-1 (new contracts take their index from it)
    chain = spx_like_chain(50, seed=1)
    book = GammaBook("SPX", "cboe", LevelsConfig(), chain.spot, chain.asof_ns)
    book.upsert(chain.contracts)
    assert loads_state(dumps_state({"book": book}))["book"].n_contracts == book.n_contracts > 0
    strike = next(iter(book.strike_index))
    book.strike_index[strike] = 10**8
    with pytest.raises(CheckpointError, match="breaks its invariants"):
        loads_state(dumps_state({"book": book}))


def test_stray_chunks_are_found_for_tombstoning():
    """Chunks of checkpoints older than the latest complete one, not yet tombstoned, are
    named by the reader, so the next write removes them; tombstoned ones, the kept
    checkpoint's and newer torn ones (a writer may be finishing them) are not."""
    log = log_of(checkpoint(b"a", 1), torn=True) + log_of(checkpoint(b"b", 2))
    log += [*log_of(checkpoint(b"c", 3)), (chunk_key("g", 2, 2, 0), None)]
    log += log_of(checkpoint(b"d", 4), torn=True)
    reader = CheckpointReader("g", 2)
    for key, value in log:
        reader.feed(value, key)
    assert reader.latest.checkpoint_id == 3
    assert reader.stray_keys() == [chunk_key("g", 2, 1, 0)]


def test_a_state_that_cannot_be_saved_says_so():
    with pytest.raises(CheckpointError, match="dtype"):
        dumps_state({"x": np.complex128(1j)})


def test_numpy_arrays_travel_as_plain_bytes_only():
    """numpy's own reconstructors are not reachable (a crafted dtype state corrupts memory);
    arrays and scalars round-trip through plain dtypes, writable."""
    state = {"f": np.arange(6.0).reshape(2, 3), "i": np.int64(7), "b": np.array([True])}
    back = loads_state(dumps_state(state))
    assert back["f"].tolist() == state["f"].tolist() and back["f"].flags.writeable
    assert back["i"] == 7 and back["b"].dtype == np.bool_
    with pytest.raises(CheckpointError, match="_reconstruct"):
        loads_state(zlib.compress(pickle.dumps(np.arange(3), protocol=2)))
    with pytest.raises(CheckpointError, match="dtype"):
        dumps_state({"o": np.array([object()])})


def test_decompression_is_bounded(monkeypatch):
    monkeypatch.setattr(checkpoint_module, "MAX_STATE_BYTES", 1_000)
    with pytest.raises(CheckpointError, match="over 1000 bytes"):
        loads_state(dumps_state(bytes(5_000)))


def test_the_fingerprint_follows_the_settings():
    base = fingerprint(LevelsConfig(), DetectorConfig(), TaskConfig())
    assert base == fingerprint(LevelsConfig(), DetectorConfig(), TaskConfig())
    assert base != fingerprint(LevelsConfig(model="short_all"), DetectorConfig(), TaskConfig())
    assert base != fingerprint(LevelsConfig(), DetectorConfig(band_bps=99.0), TaskConfig())
    assert base != fingerprint(LevelsConfig(), DetectorConfig(), TaskConfig(max_eval_gap_s=9))


def test_a_checkpoint_that_does_not_fit_leaves_a_fresh_task(crypto_items):
    runtime = EngineRuntime(engine_config("127.0.0.1:1", "redis://127.0.0.1:1/0", TOPICS))
    tps = [TopicPartition(topic, 0) for topic in TOPICS.market_data()]
    source = new_task(DetectorConfig())
    run(source, crypto_items[:500])
    good = Checkpoint("g", 0, 1, runtime.fingerprint, {}, dumps_state(source.state()))
    task = runtime.new_task(0, tps)
    assert runtime.restored_task(task, good)
    assert task.next_offsets == source.next_offsets and task.last_ts == source.last_ts
    for bad in (
        Checkpoint("g", 0, 1, "0" * 16, {}, good.state),  # other settings or code
        Checkpoint("g", 0, 1, runtime.fingerprint, {}, b"garbage"),
        Checkpoint("g", 0, 1, runtime.fingerprint, {}, dumps_state({"feeder": 1})),
        Checkpoint(
            "g",
            0,
            1,
            runtime.fingerprint,
            {},
            dumps_state({**source.state(), "detectors": {"BTC": 1}}),
        ),
    ):
        assert not runtime.restored_task(runtime.new_task(0, tps), bad)


# ---------------------------------------------------------------- through the broker


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_killed_engine_resumes_from_its_checkpoint(
    broker: Broker, redis_url: str, tmp_path: Path
) -> None:
    """kill -9 mid-stream with checkpoints every 0.2 s: the restarted engine restores the
    state, reads only what came after the checkpoint, and the stream equals the reference."""
    topics = Topics(f"k{os.urandom(4).hex()}.")
    path = tmp_path / "session.jsonl"
    write_session(SESSION, path)
    await ingest(broker.bootstrap, topics, path, idempotence=broker.idempotence)
    base = redis_url.rsplit("/", 1)[0]
    reference_url = f"{base}/{(int(redis_url.rsplit('/', 1)[1]) + 8) % 16}"
    await flush_db(reference_url)
    whole = await run_engine(
        engine_config(
            broker.bootstrap,
            reference_url,
            topics,
            checkpoint_interval_s=0.0,
            enable_idempotence=broker.idempotence,
        )
    )
    reference = [e.id for _, e in await stream(reference_url)]

    config = tmp_path / "engine.toml"
    config.write_text(
        "max_records = 10\nsession_timeout_ms = 2000\nheartbeat_interval_ms = 500\n"
        "checkpoint_interval_s = 0.2\n"
    )
    partial, summary = await kill_and_restart(
        broker.bootstrap,
        redis_url,
        topics,
        config,
        len(reference) // 2,
        len(reference),
        idempotence=broker.idempotence,
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
            engine_config(
                broker.bootstrap, reference_url, topics, enable_idempotence=broker.idempotence
            ),
            group_id=f"{topics.prefix}killed",
            levels=LevelsConfig(model="short_all"),
        )
    )
    assert other.restored == 0 and other.records == whole.records


@pytest.mark.asyncio
async def test_partitions_moving_between_two_engines_lose_and_duplicate_nothing(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """Engine A reads the first half of a session; B joins the group (a rebalance), then A
    stops (its partitions move to B) and the second half arrives: B carries on from A's
    checkpoint, and the stream equals that of one engine reading it all — no event lost,
    none twice."""
    topics = Topics(f"r{os.urandom(4).hex()}.")
    path = tmp_path / "session.jsonl"
    write_session(SESSION, path)
    lines = path.read_bytes().splitlines(keepends=True)
    halves = tmp_path / "first.jsonl", tmp_path / "second.jsonl"
    halves[0].write_bytes(b"".join(lines[: len(lines) // 2]))
    halves[1].write_bytes(b"".join(lines[len(lines) // 2 :]))
    await ingest(kafka_bootstrap, topics, halves[0])

    config = engine_config(kafka_bootstrap, redis_url, topics, checkpoint_interval_s=0.2)
    first, second = EngineRuntime(config), EngineRuntime(replace(config, client_id="engine-b"))
    stop_first, stop_second = asyncio.Event(), asyncio.Event()
    running_first = asyncio.create_task(first.run(stop_first))
    running_second: asyncio.Task | None = None
    client = Redis.from_url(redis_url)

    async def count() -> int:
        return await client.xlen(events_stream("BTC"))

    try:
        await asyncio.wait_for(first.caught_up.wait(), 60)
        after_first_half = await count()
        running_second = asyncio.create_task(second.run(stop_second))

        async def split() -> bool:  # the rebalance is done: each has some partitions
            return bool(second.tasks) and len({*first.tasks, *second.tasks}) == 3

        await eventually(split, 60.0, "B got no partitions")
        stop_first.set()
        report_first = await running_first

        async def all_on_second() -> bool:
            return len(second.tasks) == 3 and second.caught_up.is_set()

        await eventually(all_on_second, 60.0, "A's partitions did not move to B")
        await ingest(kafka_bootstrap, topics, halves[1])
        # One engine reading it all (its own group and database) gives the expected stream;
        # B runs until its stream is that long (a condition, not a fixed sleep).
        base = redis_url.rsplit("/", 1)[0]
        reference_url = f"{base}/{(int(redis_url.rsplit('/', 1)[1]) + 8) % 16}"
        await flush_db(reference_url)
        await run_engine(
            replace(
                engine_config(kafka_bootstrap, reference_url, topics, checkpoint_interval_s=0.0),
                group_id=f"{topics.prefix}reference",
            )
        )
        reference = [e.id for _, e in await stream(reference_url)]

        async def all_published() -> bool:
            return await count() >= len(reference)

        await eventually(all_published, 60.0, "B did not publish the whole session")
    finally:
        stop_first.set()
        stop_second.set()
        await asyncio.gather(running_first, *([running_second] if running_second else []))
    report_second = running_second.result()
    ids = [e.id for _, e in await stream(redis_url)]
    await client.aclose()
    assert 0 < after_first_half < len(reference)
    assert ids == reference
    assert max(Counter(ids).values()) == 1
    assert report_first.checkpoints >= 1
    assert report_second.restored >= 1  # BTC's partition came over with its state
    assert sum(report_second.events.values()) >= len(reference) - after_first_half


@pytest.mark.asyncio
async def test_a_checkpoint_ahead_of_its_input_is_rebuilt_from_the_log(
    kafka_bootstrap: str, redis_url: str, tmp_path: Path
) -> None:
    """The input topic recreated under a checkpoint (its offsets beyond the log's end): the
    engine notices once it knows the end, rebuilds the partition from the log start, and
    publishes nothing twice."""
    topics = Topics(f"g{os.urandom(4).hex()}.")
    path = tmp_path / "session.jsonl"
    write_session(SESSION, path)
    await ingest(kafka_bootstrap, topics, path)
    config = engine_config(kafka_bootstrap, redis_url, topics)
    whole = await run_engine(config)
    written = [e.id for _, e in await stream(redis_url)]
    assert whole.checkpoints >= 1

    store = StateStore(kafka_bootstrap, topics.state, config.group_id, "test", False, 10)
    await store.start()
    try:
        btc = partition_for_key(b"BTC", 3)
        latest = (await store.read([btc], 10.0))[btc]
        assert latest is not None
        ahead = {key: offset + 1_000_000 for key, offset in latest.offsets.items()}
        await store.write(replace(latest, checkpoint_id=store.next_id(btc), offsets=ahead))
    finally:
        await store.stop()

    again = await run_engine(config)
    assert again.restored == 1 and again.rebuilt == 1
    assert again.records == whole.records  # read again from the start
    assert sum(again.events.values()) == 0 and again.events_replayed == len(written)
    assert [e.id for _, e in await stream(redis_url)] == written

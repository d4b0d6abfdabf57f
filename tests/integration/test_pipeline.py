"""End to end through a real broker (Tansu; some tests on Apache Kafka too) and a real Redis:
capture → Kafka → engine → Redis."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from redis.asyncio import Redis

from connectors.common.ingest import IngestStage, MemorySink, replay_capture
from connectors.common.kafka.embedded import ensure_topics
from connectors.common.kafka.producer import ProducerConfig, RecordProducer, partition_for_key
from connectors.common.redis_embedded import EmbeddedRedis
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_session import SessionConfig, SessionSummary, write_session
from connectors.sources import Source
from engine.app.cli import main
from engine.app.run_ingest import run_ingest
from engine.stream.instrumentation import Instrumentation, RecordingInstrumentation
from engine.stream.runtime import EngineConfig, EngineReport, EngineRuntime
from engine.stream.task import TaskConfig
from schemas.channels import events_channel, events_stream, levels_key
from schemas.contracts import OptionContract
from schemas.events import RegimeEvent, decode_event
from schemas.levels import decode_levels
from schemas.profile import decode_profile
from schemas.records import UnderlyingTick, decode_record, encode_record
from schemas.ticks import OptionTicks
from schemas.topics import Topics
from tests.conditions import eventually
from tests.kafka_helpers import ON_BOTH_BROKERS, Broker, consume, consume_all, wait_committed
from tests.paths import REPO
from tests.processes import reap, stop_gracefully
from tests.redis_helpers import flush_db
from tests.reference_levels import Reference, reference_at

SESSION = SessionConfig(n_instruments=600, duration_s=300.0, seed=7)
NS = 1_000_000_000


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SessionSummary]:
    path = tmp_path_factory.mktemp("pipeline") / "session.jsonl"
    return path, write_session(SESSION, path)


@pytest.fixture(scope="module")
def normalised(session: tuple[Path, SessionSummary]) -> list:
    """Every record of the session, normalised by the live parse path, in event-time order."""
    sink = MemorySink()
    stage = IngestStage("deribit", DeribitNormaliser(), sink, Topics(), source="replay")
    asyncio.run(replay_capture(session[0], stage))
    records = [record for _, record in sink.records]
    return sorted(records, key=lambda r: r.ts_event_ns)


def engine_config(bootstrap: str, redis_url: str, topics: Topics, **kw: object) -> EngineConfig:
    """An engine for tests: short sessions; idempotence off unless ``kw`` turns it on."""
    settings: dict[str, object] = {
        "enable_idempotence": False,
        "session_timeout_ms": 2_000,
        "heartbeat_interval_ms": 500,
        **kw,
    }
    return EngineConfig(
        bootstrap=bootstrap,
        redis_url=redis_url,
        group_id=f"{topics.prefix}engine",
        topic_prefix=topics.prefix,
        **settings,  # type: ignore[arg-type]
    )


async def run_engine(
    config: EngineConfig, timeout: float = 90.0, instrumentation: Instrumentation | None = None
) -> EngineReport:
    """Run an engine until it has consumed and applied everything, then stop it."""
    runtime = EngineRuntime(config, instrumentation=instrumentation)
    stop = asyncio.Event()
    task = asyncio.create_task(runtime.run(stop))
    waiter = asyncio.create_task(runtime.caught_up.wait())
    done, _ = await asyncio.wait({task, waiter}, timeout=timeout, return_when="FIRST_COMPLETED")
    waiter.cancel()
    stop.set()
    if task in done:
        task.result()
    assert done, "the engine did not catch up"
    return await task


async def ingest(bootstrap: str, topics: Topics, path: Path, *, idempotence: bool = False) -> None:
    """The capture into the broker as the live path sends it: option tickers packed."""
    report = await run_ingest(
        [Source("replay", str(path))],
        ProducerConfig(bootstrap, enable_idempotence=idempotence, pack_max_ticks=256),
        topics,
    )
    assert report.counts["dead_letters"] == 0


async def stream(redis_url: str, underlying: str = "BTC") -> list[tuple[bytes, RegimeEvent]]:
    client = Redis.from_url(redis_url)
    try:
        entries = await client.xrange(events_stream(underlying))
    finally:
        await client.aclose()
    return [(entry_id, decode_event(fields[b"event"])) for entry_id, fields in entries]


def option_log(records: list) -> list[OptionContract | OptionTicks]:
    """The BTC option records of the options topic in log order, as the engine reads them:
    contracts and packs of ticks (a pack's time is its latest tick's), less the malformed
    ones the engine dead-letters."""
    out = []
    for record in records:
        if record.key != b"BTC":
            continue
        try:
            decoded = decode_record(record.value)
        except ValueError:
            continue  # not JSON, or no such schema
        if type(decoded) is OptionContract and not (
            type(decoded.open_interest) is float and decoded.open_interest >= 0
        ):
            continue
        out.append(decoded)
    return out


@pytest_asyncio.fixture
async def produced(
    broker: Broker, topics: Topics, session: tuple[Path, SessionSummary], normalised: list
) -> Topics:
    """The session's records in the broker (unique topics), plus four malformed records."""
    await ingest(broker.bootstrap, topics, session[0], idempotence=broker.idempotence)
    producer = RecordProducer(
        ProducerConfig(broker.bootstrap, enable_idempotence=broker.idempotence), topics
    )
    await producer.start()
    try:
        await producer.send(topics.options, b"BTC", b"\x00not json")
        await producer.send(topics.underlying, b"BTC", b'{"schema": "md.bogus/9"}')
        # Decodable, but the book cannot take it: an open interest that is not a number.
        option = next(r for r in normalised if type(r).__name__ == "OptionContract")
        bad = orjson.loads(encode_record(option))
        bad["open_interest"] = "lots"
        await producer.send(topics.options, b"BTC", orjson.dumps(bad))
        # Another producer's record the wire boundary would have refused: the book does too.
        bad["open_interest"] = -21.0
        await producer.send(topics.options, b"BTC", orjson.dumps(bad))
        await producer.flush()
    finally:
        await producer.stop()
    return topics


@pytest.mark.asyncio
@ON_BOTH_BROKERS
async def test_session_yields_the_expected_events_on_stream_pubsub_and_levels_key(
    broker: Broker,
    redis_url: str,
    produced: Topics,
    session: tuple[Path, SessionSummary],
    normalised: list,
) -> None:
    topics = produced
    listener = Redis.from_url(redis_url)
    pubsub = listener.pubsub()
    await pubsub.subscribe(events_channel("BTC"))
    meter = RecordingInstrumentation()
    report = await run_engine(
        engine_config(
            broker.bootstrap,
            redis_url,
            topics,
            enable_idempotence=broker.idempotence,
            # time to expiry re-taken at every evaluation (by default every 10 s while a 0DTE
            # is live), so that the levels are those as of the event's time exactly
            task=TaskConfig(rebuild_interval_s=1e-9, rebuild_interval_0dte_s=1e-9),
        ),
        instrumentation=meter,
    )

    events = [event for _, event in await stream(redis_url)]
    assert len({e.id for e in events}) == len(events) == sum(report.events.values())
    assert report.dead_letters == 4 and report.events_replayed == 0
    # The instrumentation hook saw what the report counts (one assignment of the 3
    # partitions, each replayed from the start: a new group has no checkpoint).
    published = {k: n for k, n in meter.counts.items() if k.startswith("events_published{")}
    assert sum(published.values()) == sum(report.events.values())
    dead = {k: n for k, n in meter.counts.items() if k.startswith("dead_letters{")}
    assert sum(dead.values()) == 4 and meter.counts["batches"] == report.batches
    assert meter.counts["updates_applied"] == report.updates
    assert meter.counts["assignments"] == 1 and meter.counts["restores{kind=replay}"] == 3
    assert meter.counts["checkpoints{result=written}"] == report.checkpoints >= 1
    assert meter.counts["commits"] == report.commits >= 1
    assert set(meter.calls) >= {"fetch", "decode", "merge", "process", "publish", "redis"}
    # Every option ticker reached the engine, most of them packed (+ the two malformed).
    # How many ticks share a pack depends on the 1 ms pack wait against the replay's pace,
    # so the bound is loose.
    contracts = sum(type(r).__name__ == "OptionContract" for r in normalised)
    assert report.option_ticks == contracts + 2 and report.records < contracts // 2
    # (level shifts aside: the side-rule call wall also leaves the ±15 % window on the way)
    top = [(e.type, e.direction) for e in events if e.bucket == "all" and e.type != "level_shift"]
    # The simulator's index sells off through zero gamma, then through the put wall.
    assert top[:3] == [("flip_cross", "down"), ("regime_change", None), ("put_wall_break", "down")]
    flip_event = next(e for e in events if e.type == "flip_cross" and e.bucket == "all")
    wall_event = next(e for e in events if e.type == "put_wall_break" and e.bucket == "all")
    assert flip_event.regime in ("negative", "transition")
    assert flip_event.model == "long_calls_short_puts"
    assert flip_event.id.startswith(f"{topics.underlying}/")
    assert flip_event.id.endswith("/flip_cross/all")

    # What each event says, against the slow reference on the records as of its time (not
    # the simulator's crossings nor the engine's book).
    ticks = [(r.ts_event_ns, r.price) for r in normalised if type(r) is UnderlyingTick]
    log = option_log(await consume_all(broker.bootstrap, topics.options))

    def reference(t_ns: int) -> Reference:
        return reference_at(normalised, log, t_ns)

    at_flip = reference(flip_event.ts_event)
    assert flip_event.spot == at_flip.spot
    assert flip_event.level == pytest.approx(at_flip.zero_gamma, rel=1e-6)
    for event, at in (
        (flip_event, at_flip),
        (wall_event, reference(wall_event.ts_event)),
    ):
        assert event.levels["spot"] == at.spot
        assert event.levels["zero_gamma"] == pytest.approx(at.zero_gamma, rel=1e-6)
        assert (event.levels["call_wall"], event.levels["put_wall"]) == at.walls
        assert event.levels["net_gex"] == pytest.approx(at.net_gex, rel=1e-6)
    # The put wall in force before the move (the last tick above it) is 65,000.
    before_break = max(t for t, price in ticks if t < wall_event.ts_event and price > 65_000.0)
    assert reference(before_break).walls[1] == wall_event.level == 65_000.0
    # Confirmed once the index held beyond the 10 bp band for the 3 s dwell (index ticks a
    # second apart): the run of ticks beyond it began 3 s before the event, or at most one
    # tick more, and the tick before that run was not beyond it.
    for event, level_at in (
        (flip_event, lambda t: reference(t).zero_gamma),
        (wall_event, lambda t: 65_000.0),
    ):
        recent = [(t, p) for t, p in ticks if event.ts_event - 5 * NS <= t <= event.ts_event]
        beyond = [p < level_at(t) * (1 - 10e-4) for t, p in recent]
        run = len(beyond) - beyond[::-1].index(False)  # the trailing run starts here
        began = recent[run][0]
        assert 3 * NS <= event.ts_event - began < 4 * NS
        assert event.spot < event.level * (1 - 10e-4)

    # Pub/sub carried the same events in the same order.
    received = []
    deadline = time.monotonic() + 60  # a cap: the loop ends once every event arrived
    while len(received) < len(events) and time.monotonic() < deadline:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.2)
        if message is not None:
            received.append(decode_event(message["data"]).id)
    assert received == [e.id for e in events]
    await pubsub.aclose()

    # The latest-levels key holds the levels at the last evaluation (end of the session).
    levels = decode_levels(await listener.get(levels_key("BTC")))
    # ... and the profile key, written in the same script, is of the same instant.
    profile = decode_profile(await listener.get("regime:profile:BTC"))
    await listener.aclose()
    assert (profile.asof_ns, profile.spot) == (levels.asof_ns, levels.spot)
    for name, bucket in levels.buckets.items():
        row = profile.buckets[name]
        net = sum(row.call_gex) + sum(row.put_gex)
        assert net == pytest.approx(bucket.net_gex, rel=1e-9), name
        # the side-rule call wall: the largest call GEX at or above spot, within ±15 %
        spot, reach = levels.spot, levels.spot * 0.15
        above = [(abs(g), k) for k, g in zip(row.strikes, row.call_gex, strict=True)
                 if spot <= k <= spot + reach and g != 0]  # fmt: skip
        assert (max(above)[1] if above else None) == bucket.call_wall, name
    last_index = [r for r in normalised if type(r).__name__ == "UnderlyingTick"][-1]
    assert levels.asof_ns == last_index.ts_event_ns
    assert levels.spot == last_index.price
    # the broken 65,000 put wall is above spot now: the side rule shows the next one below
    assert levels.put_wall == 60_000.0 and levels.regime == "negative"
    at_end = reference(levels.asof_ns)
    assert (levels.spot, (levels.call_wall, levels.put_wall)) == (at_end.spot, at_end.walls)
    assert levels.zero_gamma == pytest.approx(at_end.zero_gamma, rel=1e-6)
    assert levels.net_gex == pytest.approx(at_end.net_gex, rel=1e-6)

    # The durable Kafka log has the same events; dead letters carry the reason.
    logged = await consume(broker.bootstrap, topics.events, len(events), timeout=60)
    assert sorted(orjson.loads(r.value)["id"] for r in logged) == sorted(e.id for e in events)
    dead = await consume(broker.bootstrap, topics.deadletter, 4, timeout=60)
    reasons = sorted(dict(r.headers)["reason"].decode() for r in dead)
    option = next(r for r in normalised if type(r).__name__ == "OptionContract")
    assert reasons[:2] == [
        f"cannot apply: ValueError: {option.instrument}: open_interest='lots' (expected a number)",
        f"cannot apply: ValueError: {option.instrument}: open_interest=-21.0 (expected >= 0)",
    ]
    assert reasons[2].startswith("undecodable record: JSONDecodeError")
    assert "unknown record schema 'md.bogus/9'" in reasons[3]
    assert orjson.loads(next(r.value for r in dead if b"lots" in r.value))["open_interest"] == (
        "lots"
    )


@pytest.mark.asyncio
async def test_event_ids_do_not_depend_on_batching_and_replays_publish_nothing_twice(
    kafka_bootstrap: str, redis_url: str, produced: Topics
) -> None:
    topics = produced
    base = redis_url.rsplit("/", 1)[0]
    other_url = f"{base}/{(int(redis_url.rsplit('/', 1)[1]) + 8) % 16}"
    await flush_db(other_url)
    big = await run_engine(engine_config(kafka_bootstrap, redis_url, topics))
    small = await run_engine(
        replace(
            engine_config(kafka_bootstrap, other_url, topics),
            group_id=f"{topics.prefix}small",
            max_records=97,
        )
    )
    first = [e.id for _, e in await stream(redis_url)]
    second = [e.id for _, e in await stream(other_url)]
    assert big.batches < small.batches
    assert first == second and len(first) > 10
    # The same group again: its state comes from the checkpoint written at the stop, with
    # the offsets it covers, so nothing is read again and nothing is published.
    again = await run_engine(engine_config(kafka_bootstrap, redis_url, topics))
    assert big.checkpoints >= 1 and again.restored == 1
    assert again.records == 0 and sum(again.events.values()) == 0
    assert again.evaluations == big.evaluations  # carried over by the checkpoint
    # Without checkpoints, the state is rebuilt by replaying the log from its start; the
    # replay publishes nothing twice.
    replayed = await run_engine(
        engine_config(kafka_bootstrap, redis_url, topics, checkpoint_interval_s=0.0)
    )
    assert replayed.restored == 0 and replayed.records == big.records
    assert sum(replayed.events.values()) == 0 and replayed.events_replayed == len(first)
    assert [e.id for _, e in await stream(redis_url)] == first


def _engine_process(
    bootstrap: str, redis_url: str, topics: Topics, config: Path, idempotence: bool = False
) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "engine.app.cli",
            "engine",
            "--kafka",
            bootstrap,
            "--redis",
            redis_url,
            "--topic-prefix",
            topics.prefix,
            "--group",
            f"{topics.prefix}killed",
            *(() if idempotence else ("--no-idempotence",)),
            "--config",
            str(config),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )


async def kill_and_restart(
    bootstrap: str,
    redis_url: str,
    topics: Topics,
    config: Path,
    kill_at: int,
    expected: int,
    *,
    idempotence: bool = False,
) -> tuple[int, dict]:
    """An engine process killed (SIGKILL) once the BTC stream holds ``kill_at`` events, then
    restarted and stopped gracefully once it holds ``expected``: (events at the kill, the
    restarted engine's summary)."""
    client = Redis.from_url(redis_url)
    proc = _engine_process(bootstrap, redis_url, topics, config, idempotence)
    try:
        deadline = time.monotonic() + 60
        while await client.xlen(events_stream("BTC")) < kill_at:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the engine published too little"
            await asyncio.sleep(0.02)
        proc.send_signal(signal.SIGKILL)  # no graceful stop
        proc.wait(timeout=10)
        partial = await client.xlen(events_stream("BTC"))

        proc = _engine_process(bootstrap, redis_url, topics, config, idempotence)
        deadline = time.monotonic() + 60
        while await client.xlen(events_stream("BTC")) < expected:
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]
            assert time.monotonic() < deadline, "the restarted engine did not finish"
            await asyncio.sleep(0.05)
        # would-be duplicates are written before the log's end is committed
        await wait_committed(bootstrap, f"{topics.prefix}killed", topics.market_data())
        stderr = stop_gracefully(proc)  # finish the batch, commit, exit 0
    finally:
        reap(proc)
        await client.aclose()
    return partial, orjson.loads(stderr.decode().rsplit("engine: ", 1)[1])


@pytest.mark.asyncio
async def test_engine_killed_mid_stream_and_restarted_loses_and_duplicates_nothing(
    kafka_bootstrap: str, redis_url: str, produced: Topics, tmp_path: Path, normalised: list
) -> None:
    topics = produced
    base = redis_url.rsplit("/", 1)[0]
    reference_url = f"{base}/{(int(redis_url.rsplit('/', 1)[1]) + 8) % 16}"
    await flush_db(reference_url)
    await run_engine(engine_config(kafka_bootstrap, reference_url, topics))
    reference = [e.id for _, e in await stream(reference_url)]

    config = tmp_path / "engine.toml"
    config.write_text(  # small batches, so that the kill lands mid-stream (ticks are packed)
        "max_records = 10\nsession_timeout_ms = 2000\nheartbeat_interval_ms = 500\n"
        "[detector]\nband_bps = 10.0\n"
    )
    partial, summary = await kill_and_restart(
        kafka_bootstrap, redis_url, topics, config, kill_at=8, expected=len(reference)
    )
    assert 8 <= partial < len(reference)
    ids = [e.id for _, e in await stream(redis_url)]
    assert ids == reference
    assert max(Counter(ids).values()) == 1
    assert summary["events_replayed"] >= partial  # re-derived after the restart, not re-sent

    # The graceful stop committed everything it consumed.
    consumer = AIOKafkaConsumer(
        bootstrap_servers=kafka_bootstrap,
        group_id=f"{topics.prefix}killed",
        enable_auto_commit=False,
    )
    await consumer.start()
    try:
        tp = TopicPartition(topics.options, partition_for_key(b"BTC", 3))
        consumer.assign([tp])
        options = sum(type(r).__name__ in ("OptionContract", "InstrumentState") for r in normalised)
        logged = await consume_all(kafka_bootstrap, topics.options)
        assert {r.partition for r in logged} == {tp.partition}
        # packs, contracts, states and the two malformed ones: far fewer records than ticks
        assert await consumer.committed(tp) == len(logged) < options // 2
    finally:
        await consumer.stop()


def test_run_command_replays_a_capture_into_redis_and_exits(
    kafka_bootstrap: str,
    redis_url: str,
    topics: Topics,
    session: tuple[Path, SessionSummary],
    capsys: pytest.CaptureFixture[str],
) -> None:
    argv = [
        "run",
        "--source",
        f"replay:{session[0]}",
        "--kafka",
        kafka_bootstrap,
        "--redis",
        redis_url,
        "--topic-prefix",
        topics.prefix,
        "--group",
        f"{topics.prefix}run",
        "--no-idempotence",
    ]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "run: ingested 37982 records" in err
    events = asyncio.run(stream(redis_url))
    top = [(e.type, e.direction) for _, e in events if e.bucket == "all"]
    assert [t for t in top if t[0] != "level_shift"][:3] == [
        ("flip_cross", "down"),
        ("regime_change", None),
        ("put_wall_break", "down"),
    ]

    # The reference subscriber prints what the stream holds, then exits after --count.
    capsys.readouterr()
    argv = ["subscribe", "--redis", redis_url, "--underlying", "BTC", "--from", "0"]
    assert main([*argv, "--count", "3", "--json"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [orjson.loads(line)["id"] for line in lines] == [e.id for _, e in events[:3]]
    assert main([*argv, "--count", "1"]) == 0  # not a terminal: JSON lines by default
    assert orjson.loads(capsys.readouterr().out)["id"] == events[0][1].id


@pytest.mark.asyncio
async def test_engine_rides_out_a_redis_restart(
    kafka_bootstrap: str, redis_url: str, produced: Topics
) -> None:
    topics = produced
    await run_engine(engine_config(kafka_bootstrap, redis_url, topics))
    reference = [e.id for _, e in await stream(redis_url)]

    server = EmbeddedRedis(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    await server.start()
    try:
        config = replace(
            engine_config(kafka_bootstrap, server.url, topics),
            group_id=f"{topics.prefix}outage",
            max_records=300,
        )
        runtime = EngineRuntime(config)
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        client = Redis.from_url(server.url, protocol=2)
        deadline = time.monotonic() + 60
        # Half the input processed: batches (and their writes) are left for the outage. (The
        # session's events come late, in the last batches: waiting for some of them raced
        # with the engine's end.)
        while runtime.report.records < 1_600:
            assert not task.done() and time.monotonic() < deadline
            await asyncio.sleep(0.01)
        await server.kill()
        deadline = time.monotonic() + 60  # the engine's writes fail; nothing is committed
        while runtime.report.redis_write_failures == 0:
            assert not task.done() and time.monotonic() < deadline, "no write failed"
            await asyncio.sleep(0.01)
        await server.restart()
        waiter = asyncio.create_task(runtime.caught_up.wait())
        done, _ = await asyncio.wait({task, waiter}, timeout=60, return_when="FIRST_COMPLETED")
        assert waiter in done, task.exception() if task.done() else "no catch-up"
        stop.set()
        report = await task
        assert report.redis_write_failures >= 1
        assert [e.id for _, e in await stream(server.url)] == reference
        await client.aclose()
    finally:
        await server.stop()


@pytest.mark.asyncio
async def test_engine_stop_during_a_redis_outage_ends_at_once_and_loses_nothing(
    kafka_bootstrap: str, redis_url: str, topics: Topics, session: tuple[Path, SessionSummary]
) -> None:
    """A stop while the engine waits out a Redis outage (the retry sleep) ends it at once,
    committing nothing it did not write: the next engine of the group publishes it all.

    The outage begins before the input arrives (the engine idle on empty topics), so every
    batch's write fails, however fast a loaded machine runs the engine."""
    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    server = EmbeddedRedis(extra_args=("--appendonly", "yes", "--appendfsync", "always"))
    await server.start()
    client = Redis.from_url(server.url, protocol=2)
    try:
        config = replace(
            engine_config(kafka_bootstrap, server.url, topics),
            group_id=f"{topics.prefix}stopped",
            max_records=300,
            redis_retry_cap_s=30.0,  # long sleeps: only the stop can end them in time
        )
        runtime = EngineRuntime(config)
        stop = asyncio.Event()
        task = asyncio.create_task(runtime.run(stop))
        await eventually(runtime.caught_up.is_set, 60, "the engine did not get its partitions")
        await server.kill()
        await ingest(kafka_bootstrap, topics, session[0])
        await eventually(lambda: runtime.report.redis_write_failures >= 3, 60, "no retries")
        began = time.monotonic()
        stop.set()
        done, _ = await asyncio.wait({task}, timeout=30)
        assert task in done and time.monotonic() - began < 3.0
        task.result()
        await server.restart()
        resumed = await run_engine(config)  # the same group: nothing was committed
        reference = await run_engine(
            replace(config, redis_url=redis_url, group_id=f"{topics.prefix}reference")
        )
        ids = [e.id for _, e in await stream(server.url)]
        assert ids == [e.id for _, e in await stream(redis_url)]
        assert len(ids) == sum(resumed.events.values()) == sum(reference.events.values()) > 0
    finally:
        await client.aclose()
        await server.stop()

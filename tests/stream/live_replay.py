"""Live equals replay, through the real broker and Redis: one case of the property.

A simulator session is ingested once into staging topics by the real ingest (one producer,
packed tickers, ``md-order`` headers). A case copies those records, values and headers
unchanged, into fresh topics in random per-topic chunks with random pauses (each topic
reaches the log at its own pace), while engines of one group consume live: a hard stop
(the engine task cancelled: no final commit, no checkpoint) and a restart, and a handover
(engine B joins, A stops gracefully). Then one engine of another group reads the finished
log. :func:`run_case` returns both sides; the property is that they are equal.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import ConsumerRecord, TopicPartition
from redis.asyncio import Redis

from connectors.common.kafka.embedded import ensure_topics
from connectors.common.kafka.producer import partition_for_key
from connectors.simulator.deribit_config import SessionConfig
from connectors.simulator.deribit_session import write_session
from engine.stream.runtime import EngineConfig, EngineReport, EngineRuntime
from schemas.channels import levels_key
from schemas.events import RegimeEvent
from schemas.topics import Topics
from tests.conditions import eventually, task_stacks
from tests.integration.test_pipeline import engine_config, ingest, stream

SESSION = SessionConfig(n_instruments=300, duration_s=300.0, seed=7)
EMIT_NS = 1_700_000_000_000_000_000  # every engine's wall clock: ts_emit compares too
PARTITIONS = 3


@dataclass(frozen=True, slots=True)
class Case:
    """One case: how the log is written and when engines stop, start and hand over.

    ``seed`` draws the per-topic chunks and pauses; ``kill_at`` / ``handover_at`` are
    fractions of the copy (over 1: not in this case)."""

    seed: int
    max_records: int
    checkpoint_interval_s: float
    kill_at: float
    handover_at: float
    max_chunk: int = 300
    max_pause_s: float = 0.03


@dataclass(frozen=True, slots=True)
class Outcome:
    """The Redis stream and the latest levels, live and from the finished log."""

    live_events: list[RegimeEvent]
    live_levels: bytes | None
    replay_events: list[RegimeEvent]
    replay_levels: bytes | None
    reports: list[EngineReport]  # every live engine's, then the reference's


async def staged_session(bootstrap: str, tmp: Path) -> dict[str, list[ConsumerRecord]]:
    """The session ingested into staging topics: BTC's records per market-data topic."""
    topics = Topics(f"s{os.urandom(4).hex()}.")
    path = tmp / "session.jsonl"
    write_session(SESSION, path)
    await ensure_topics(bootstrap, topics.all(), partitions=PARTITIONS)
    await ingest(bootstrap, topics, path)
    partition = partition_for_key(b"BTC", PARTITIONS)
    tps = [TopicPartition(t, partition) for t in topics.market_data()]
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    try:
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        out: dict[TopicPartition, list[ConsumerRecord]] = {tp: [] for tp in tps}
        deadline = time.monotonic() + 60
        while any(len(out[tp]) < ends[tp] for tp in tps):
            assert time.monotonic() < deadline, "the staged session did not read back"
            for tp, records in (await consumer.getmany(timeout_ms=200)).items():
                out[tp].extend(records)
    finally:
        await consumer.stop()
    return {tp.topic.removeprefix(topics.prefix): records for tp, records in out.items()}


def chunks(staged: dict[str, list[ConsumerRecord]], case: Case) -> list[tuple[str, int, int]]:
    """(logical topic, start, end) in copy order: a random topic with records left each
    time, a random chunk of it; topics get their own speeds, so they run ahead or lag."""
    rng = random.Random(case.seed)
    speed = {topic: rng.uniform(0.2, 1.0) for topic in staged}
    done = dict.fromkeys(staged, 0)
    out = []
    while left := [t for t in staged if done[t] < len(staged[t])]:
        topic = rng.choices(left, weights=[speed[t] for t in left])[0]
        n = rng.randint(1, max(1, int(case.max_chunk * speed[topic])))
        end = min(len(staged[topic]), done[topic] + n)
        out.append((topic, done[topic], end))
        done[topic] = end
    return out


class _Engine:
    """A live engine of the group, run as a task."""

    def __init__(self, config: EngineConfig) -> None:
        self.runtime = EngineRuntime(config, clock_ns=lambda: EMIT_NS)
        self.stop = asyncio.Event()
        self.task = asyncio.create_task(self.runtime.run(self.stop))

    async def graceful(self) -> EngineReport:
        self.stop.set()
        done, _ = await asyncio.wait({self.task}, timeout=120)
        where = f"{self.runtime.input_status()}\n{task_stacks()}"
        assert done, f"a graceful stop did not end the engine: {where}"
        return self.task.result()

    async def hard_stop(self) -> EngineReport:
        """A crash: the engine task cancelled (no final commit, no checkpoint), again every
        0.1 s until it ends. A client awaited inside the engine can drop one cancellation
        (seen about once in 20 loaded runs: the engine then ran on in its loop), which is
        why the commands' signal handling (connectors.common.signals) re-cancels too."""
        deadline = time.monotonic() + 120
        while not self.task.done():
            if time.monotonic() > deadline:
                where = f"{self.runtime.input_status()}\n{task_stacks()}"
                raise AssertionError(f"a hard stop did not end the engine: {where}")
            self.task.cancel()
            await asyncio.wait({self.task}, timeout=0.1)
        with contextlib.suppress(asyncio.CancelledError):
            self.task.result()
        return self.runtime.report


async def until(condition: Callable[[], Awaitable[bool] | bool], what: str,
                engine: _Engine | None = None) -> None:  # fmt: skip
    """Wait for ``condition``, at most 120 s (a loaded machine, small batches); on failure
    say where ``engine``'s input partitions stand."""

    def diagnosis() -> str:
        if engine is None:
            return what
        runtime = engine.runtime
        state = f"caught_up={runtime.caught_up.is_set()} {runtime.report.to_dict()}"
        return f"{what}: {runtime.input_status()} {state}"

    await eventually(condition, timeout=120, what=diagnosis)


def _consumed_all(engine: _Engine, ends: dict[str, int], topics: Topics) -> bool:
    partition = partition_for_key(b"BTC", PARTITIONS)
    wanted = {topics.prefix + t: n for t, n in ends.items()}
    status = {s.tp.topic: s for s in engine.runtime.input_status() if s.tp.partition == partition}
    return (
        engine.runtime.caught_up.is_set()
        and set(status) == set(wanted)
        and all(status[t].fetched_next == n and status[t].buffered == 0 for t, n in wanted.items())
    )


async def run_case(
    bootstrap: str,
    redis_url: str,
    reference_url: str,
    staged: dict[str, list[ConsumerRecord]],
    case: Case,
) -> Outcome:
    """The case live into ``redis_url``, the finished log into ``reference_url``."""
    topics = Topics(f"d{os.urandom(4).hex()}.")
    await ensure_topics(bootstrap, topics.all(), partitions=PARTITIONS)
    config = replace(
        engine_config(bootstrap, redis_url, topics),
        max_records=case.max_records,
        checkpoint_interval_s=case.checkpoint_interval_s,
        commit_interval_s=case.checkpoint_interval_s / 2,
    )
    plan = chunks(staged, case)
    kill = int(case.kill_at * len(plan))
    handover = int(case.handover_at * len(plan))
    rng = random.Random(case.seed + 1)
    partition = partition_for_key(b"BTC", PARTITIONS)
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    await producer.start()
    reports: list[EngineReport] = []
    live = [_Engine(config)]
    started = 1
    try:
        for i, (topic, start, end) in enumerate(plan):
            sends = [
                await producer.send(
                    topics.prefix + topic,
                    r.value,
                    key=r.key,
                    partition=partition,
                    timestamp_ms=r.timestamp,
                    headers=list(r.headers),
                )
                for r in staged[topic][start:end]
            ]
            await asyncio.gather(*sends)
            await asyncio.sleep(rng.uniform(0.0, case.max_pause_s))  # the pace of the copy
            if i == kill:  # the engine holding BTC (or the newest) dies
                victim = next((e for e in live if partition in e.runtime.tasks), live[-1])
                live.remove(victim)
                reports.append(await victim.hard_stop())
                started += 1
                live.append(_Engine(replace(config, client_id=f"engine-{started}")))
            if i == handover:  # B joins; once it holds partitions, A (the oldest) stops
                started += 1
                second = _Engine(replace(config, client_id=f"engine-{started}"))
                live.append(second)

                def split(first: _Engine = live[0], second: _Engine = second) -> bool:
                    tasks = first.runtime.tasks, second.runtime.tasks
                    return bool(tasks[1]) and len({*tasks[0], *tasks[1]}) == PARTITIONS

                await until(split, "the second engine got no partitions")
                reports.append(await live.pop(0).graceful())
        ends = {topic: len(records) for topic, records in staged.items()}
        holder = live[-1]
        await until(
            lambda: _consumed_all(holder, ends, topics), "the live engine did not finish", holder
        )
    finally:
        await producer.stop()
        for engine in live:
            reports.append(await engine.graceful())
    live_events = [event for _, event in await stream(redis_url)]
    reference = replace(
        config,
        redis_url=reference_url,
        group_id=f"{topics.prefix}reference",
        max_records=20_000,
        checkpoint_interval_s=0.0,
    )
    engine = _Engine(reference)
    try:
        await until(
            lambda: _consumed_all(engine, ends, topics), "the reference did not finish", engine
        )
    finally:
        reports.append(await engine.graceful())
    return Outcome(
        live_events,
        await _levels(redis_url),
        [event for _, event in await stream(reference_url)],
        await _levels(reference_url),
        reports,
    )


async def _levels(redis_url: str) -> bytes | None:
    client = Redis.from_url(redis_url)
    try:
        return await client.get(levels_key("BTC"))
    finally:
        await client.aclose()

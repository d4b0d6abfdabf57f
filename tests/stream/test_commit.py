"""The commit procedure's order (events → flush → Redis → offsets → checkpoint), with
recording fakes of the sinks: no Kafka, no Redis."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiokafka.errors import CommitFailedError
from aiokafka.structs import ConsumerRecord, TopicPartition
from redis.exceptions import ConnectionError as RedisConnectionError

from engine.signals.detector import Trigger
from engine.stream.checkpoint import loads_state
from engine.stream.commit import Commit, CommitPolicy
from engine.stream.instrumentation import RecordingInstrumentation
from engine.stream.merge import InputItem
from engine.stream.partitions import Assignment
from engine.stream.publisher import PendingWrite
from engine.stream.report import EngineReport
from engine.stream.task import TaskOutput
from schemas.events import RegimeEvent, encode_event
from schemas.topics import Topics

TOPICS = Topics()
OPT0 = TopicPartition(TOPICS.options, 0)
IDX0 = TopicPartition(TOPICS.underlying, 0)
T0 = 1_741_962_600_000_000_000


class Journal:
    """The order in which the sinks were called, with what they were given."""

    def __init__(self) -> None:
        self.steps: list[tuple[str, Any]] = []

    def names(self) -> list[str]:
        return [name for name, _ in self.steps]


class Producer:
    def __init__(self, journal: Journal, fail_flush: bool = False) -> None:
        self.journal, self.fail_flush = journal, fail_flush

    async def send(self, topic: str, key: bytes, value: bytes) -> None:
        self.journal.steps.append(("event", (topic, key, value)))

    async def send_dead_letter(
        self, raw: bytes, reason: str, venue: str, source: str, recv_ns: int
    ) -> None:
        self.journal.steps.append(("dead_letter", (raw, reason, venue, source, recv_ns)))

    async def flush(self) -> None:
        self.journal.steps.append(("flush", None))
        if self.fail_flush:
            raise RuntimeError("broker gone")


class Publisher:
    def __init__(self, journal: Journal, written: dict[str, int], failures: int = 0) -> None:
        self.journal, self.written, self.failures = journal, written, failures

    async def watermarks(self) -> dict[str, int]:
        return dict(self.written)

    async def write(
        self, events: list[PendingWrite], levels: list[PendingWrite], marks: dict[str, int]
    ) -> int:
        if self.failures:
            self.failures -= 1
            self.journal.steps.append(("redis_failed", None))
            raise RedisConnectionError("connection refused")
        self.journal.steps.append(("redis", (list(events), list(levels), dict(marks))))
        new = [e for e in events if e.offset > self.written.get(e.source, -1)]
        return len(new)


class Offsets:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.refuse = 0  # commits to refuse: the group rebalanced under the engine

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        if self.refuse:
            self.refuse -= 1
            self.journal.steps.append(("offsets_refused", dict(offsets)))
            raise CommitFailedError("the group has already rebalanced")
        self.journal.steps.append(("offsets", dict(offsets)))


class Store:
    def __init__(self, journal: Journal) -> None:
        self.journal = journal
        self.last: dict[int, dict[str, int]] = {}

    def covers(self, partition: int, offsets: dict[str, int]) -> bool:
        return self.last.get(partition) == offsets

    def next_id(self, partition: int) -> int:
        return 7

    async def write(self, checkpoint: Any) -> None:
        self.journal.steps.append(("checkpoint", checkpoint))
        self.last[checkpoint.partition] = checkpoint.offsets


class Task:
    def __init__(self, next_offsets: dict[TopicPartition, int]) -> None:
        self.next_offsets = next_offsets

    def state(self) -> dict[str, Any]:
        return {
            "next_offsets": {f"{tp.topic}/{tp.partition}": n for tp, n in self.next_offsets.items()}
        }


def event(offset: int, type_: str = "flip_cross") -> RegimeEvent:
    return RegimeEvent(
        id=f"{TOPICS.underlying}/0/{offset}/{type_}/all",
        type=type_,
        underlying="BTC",
        bucket="all",
        direction="up",
        ts_event=T0 + offset,
        ts_emit=T0 + offset + 1,
        spot=43_500.0,
        level=43_200.0,
        regime="negative",
        levels={"zero_gamma": 43_200.0, "spot": 43_500.0, "asof_ns": T0},
        model="long_calls_short_puts",
    )


def output(*offsets: int) -> TaskOutput:
    out = TaskOutput()
    for offset in offsets:
        out.events.append((Trigger(IDX0.topic, 0, offset, T0 + offset), event(offset)))
    return out


def message(tp: TopicPartition, offset: int, value: bytes) -> ConsumerRecord:
    return ConsumerRecord(tp.topic, tp.partition, offset, 0, 0, b"BTC", value, None, 0, 0, [])


def make_commit(
    journal: Journal,
    written: dict[str, int] | None = None,
    *,
    commit_interval_s: float = 0.0,
    checkpoint_interval_s: float = 60.0,
    redis_failures: int = 0,
    redis_max_retries: int = 5,
    fail_flush: bool = False,
) -> tuple[Commit, EngineReport, RecordingInstrumentation, Assignment]:
    assignment = Assignment()
    assignment.assign([OPT0, IDX0])
    report, meter = EngineReport(), RecordingInstrumentation()
    commit = Commit(
        CommitPolicy(
            "g",
            commit_interval_s=commit_interval_s,
            checkpoint_interval_s=checkpoint_interval_s,
            redis_max_retries=redis_max_retries,
            redis_retry_cap_s=0.05,
        ),
        TOPICS,
        Producer(journal, fail_flush),
        Publisher(journal, written or {}, redis_failures),
        Offsets(journal),
        Store(journal),
        assignment,
        report,
        meter,
        "fp",
        clock_ns=lambda: T0,
    )
    return commit, report, meter, assignment


async def one_batch(commit: Commit, tasks: dict[int, Task], *outputs: TaskOutput, dead=()) -> None:
    await commit.read_watermarks()
    commit.unpublished = True
    await commit.batch(list(outputs), list(dead), tasks)


def test_a_forced_batch_runs_events_flush_redis_offsets_checkpoint_in_that_order():
    journal = Journal()
    commit, report, meter, _ = make_commit(journal)
    tasks = {0: Task({OPT0: 11, IDX0: 6})}

    async def go() -> None:
        await one_batch(commit, tasks, output(4, 5))
        await commit.commit(tasks, checkpoint=True)

    asyncio.run(go())
    assert journal.names() == ["event", "event", "flush", "redis", "offsets", "checkpoint"]
    # the events went to regime.events.v1 keyed by underlying, encoded as published
    assert journal.steps[0][1] == (TOPICS.events, b"BTC", encode_event(event(4)))
    events, levels, marks = journal.steps[3][1]
    assert [(e.source, e.offset) for e in events] == [
        (f"{IDX0.topic}/0", 4),
        (f"{IDX0.topic}/0", 5),
    ]
    assert levels == []
    # the watermarks are the last processed offsets (next offset - 1) of every input
    assert marks == {f"{OPT0.topic}/0": 10, f"{IDX0.topic}/0": 5}
    assert journal.steps[4][1] == {OPT0: 11, IDX0: 6}
    checkpoint = journal.steps[5][1]
    assert (checkpoint.group, checkpoint.partition, checkpoint.checkpoint_id) == ("g", 0, 7)
    assert checkpoint.fingerprint == "fp"
    assert checkpoint.offsets == {f"{OPT0.topic}/0": 11, f"{IDX0.topic}/0": 6}
    assert loads_state(checkpoint.state) == tasks[0].state()
    assert report.events == {"flip_cross": 2} and report.commits == 1 and report.checkpoints == 1
    assert meter.counts["events_published{bucket=all,type=flip_cross}"] == 2
    assert meter.counts["checkpoints{result=written}"] == 1
    assert meter.calls["redis"] == 1 and meter.calls["commit"] == 1


def test_dead_letters_go_out_before_the_flush_with_their_position():
    journal = Journal()
    commit, report, meter, _ = make_commit(journal)
    tasks = {0: Task({OPT0: 4})}
    dead = [(message(OPT0, 3, b"\x00junk"), "undecodable record: ValueError")]
    asyncio.run(one_batch(commit, tasks, dead=dead))
    # no events nor levels: no Redis write; the offsets are still committed
    assert journal.names() == ["dead_letter", "flush", "offsets"]
    assert journal.steps[0][1] == (
        b"\x00junk",
        "undecodable record: ValueError",
        "engine",
        f"{OPT0.topic}/0/3",
        T0,
    )
    assert report.dead_letters == 1
    assert {k: n for k, n in meter.counts.items() if k.startswith("dead_letters")} == {
        "dead_letters{reason=malformed,venue=engine}": 1
    }


def test_replayed_inputs_are_written_to_redis_but_not_sent_again():
    journal = Journal()
    written = {f"{IDX0.topic}/0": 4}  # events of inputs up to offset 4 were written before
    commit, report, meter, _ = make_commit(journal, written)
    tasks = {0: Task({IDX0: 6})}
    asyncio.run(one_batch(commit, tasks, output(4, 5)))
    assert journal.names() == ["event", "flush", "redis", "offsets"]
    assert journal.steps[0][1][2] == encode_event(event(5))
    assert [e.offset for e in journal.steps[2][1][0]] == [4, 5]
    assert report.events == {"flip_cross": 1} and report.events_replayed == 1
    assert meter.counts["events_replayed"] == 1


def test_nothing_is_committed_when_the_flush_fails():
    journal = Journal()
    commit, report, _, assignment = make_commit(journal, fail_flush=True)
    tasks = {0: Task({IDX0: 6})}
    with pytest.raises(RuntimeError, match="broker gone"):
        asyncio.run(one_batch(commit, tasks, output(5)))
    assert journal.names() == ["event", "flush"]
    assert report.commits == 0 and assignment.get(IDX0).committed is None
    assert commit.unpublished  # a checkpoint now would cover unwritten events


def test_redis_is_retried_and_nothing_is_committed_before_it_is_written():
    journal = Journal()
    commit, _, _, assignment = make_commit(journal, redis_failures=2)
    tasks = {0: Task({IDX0: 6})}
    asyncio.run(one_batch(commit, tasks, output(5)))
    assert journal.names() == ["event", "flush", "redis_failed", "redis_failed", "redis", "offsets"]
    assert assignment.get(IDX0).committed == 6 and assignment.get(IDX0).marked == 6


def test_redis_that_stays_down_stops_the_batch_before_the_offsets():
    journal = Journal()
    commit, report, _, _ = make_commit(journal, redis_failures=10, redis_max_retries=2)
    tasks = {0: Task({IDX0: 6})}
    with pytest.raises(RedisConnectionError):
        asyncio.run(one_batch(commit, tasks, output(5)))
    assert journal.names() == ["event", "flush"] + ["redis_failed"] * 3
    assert report.commits == 0


def test_offsets_wait_for_the_commit_interval_and_move_only_when_changed():
    journal = Journal()
    commit, report, _, _ = make_commit(journal, commit_interval_s=3600.0)
    tasks = {0: Task({IDX0: 6})}

    async def go() -> None:
        await one_batch(commit, tasks, output(5))  # the first batch commits (none yet)
        tasks[0].next_offsets[IDX0] = 7
        await one_batch(commit, tasks, output(6))  # within the interval: not committed
        await commit.commit(tasks)  # forced: committed, checkpoint not due
        await commit.commit(tasks)  # nothing moved: no commit call

    asyncio.run(go())
    first, second, forced = (
        ["event", "flush", "redis", "offsets"],
        ["event", "flush", "redis"],
        ["offsets"],
    )
    assert journal.names() == first + second + forced
    assert [s[1] for s in journal.steps if s[0] == "offsets"] == [{IDX0: 6}, {IDX0: 7}]
    assert report.commits == 2 and report.checkpoints == 0


def test_a_forced_commit_writes_the_offsets_before_the_checkpoint():
    journal = Journal()
    commit, report, _, _ = make_commit(journal, commit_interval_s=3600.0)
    tasks = {0: Task({IDX0: 6})}

    async def go() -> None:
        await one_batch(commit, tasks, output(5))  # the first batch commits
        tasks[0].next_offsets[IDX0] = 7
        await one_batch(commit, tasks, output(6))  # within the interval: offsets wait
        await commit.commit(tasks, checkpoint=True)  # partitions move away, or a stop

    asyncio.run(go())
    batch = ["event", "flush", "redis"]
    assert journal.names() == [*batch, "offsets", *batch, "offsets", "checkpoint"]
    assert journal.steps[-2][1] == {IDX0: 7}
    assert journal.steps[-1][1].offsets == {f"{IDX0.topic}/0": 7}
    assert report.commits == 2 and report.checkpoints == 1


def test_a_checkpoint_never_covers_a_batch_whose_events_are_not_written():
    journal = Journal()
    commit, report, _, _ = make_commit(journal)
    tasks = {0: Task({IDX0: 6})}
    commit.unpublished = True  # a batch processed, its events not written yet
    asyncio.run(commit.commit(tasks, checkpoint=True))
    assert journal.names() == ["offsets"]
    assert report.checkpoints == 0
    commit.unpublished = False
    asyncio.run(commit.commit(tasks, checkpoint=True))
    assert journal.names() == ["offsets", "checkpoint"]
    asyncio.run(commit.commit(tasks, checkpoint=True))  # covered already: not written again
    assert journal.names() == ["offsets", "checkpoint"]


def test_a_commit_refused_after_a_rebalance_is_counted_and_retried_not_fatal():
    """A missed heartbeat on a loaded machine: the group rebalanced, the commit is refused.
    The engine goes on (no crash), writes no checkpoint for partitions that may be another
    engine's now, and the next commit carries the same offsets."""
    journal = Journal()
    commit, report, _, _ = make_commit(journal)
    commit.offsets.refuse = 1
    tasks = {0: Task({IDX0: 6})}
    asyncio.run(commit.commit(tasks, checkpoint=True))
    assert journal.names() == ["offsets_refused"]
    assert report.commit_failures == 1 and report.commits == 0 and report.checkpoints == 0
    assert report.to_dict()["commit_failures"] == 1
    asyncio.run(commit.commit(tasks, checkpoint=True))
    assert journal.names() == ["offsets_refused", "offsets", "checkpoint"]
    assert journal.steps[1][1] == {IDX0: 6}
    assert report.commits == 1 and report.checkpoints == 1


def test_no_checkpoint_when_checkpoints_are_off():
    journal = Journal()
    commit, report, _, _ = make_commit(journal, checkpoint_interval_s=0.0)
    tasks = {0: Task({IDX0: 6})}
    asyncio.run(commit.commit(tasks, checkpoint=True))
    assert journal.names() == ["offsets"] and report.checkpoints == 0


def test_rejected_records_are_dead_lettered_with_their_encoded_bytes():
    journal = Journal()
    commit, report, _, _ = make_commit(journal)
    tasks = {0: Task({IDX0: 6})}
    out = TaskOutput()
    out.rejected.append((InputItem(IDX0, 5, T0, None), "cannot apply: ValueError: x"))
    asyncio.run(one_batch(commit, tasks, out))
    assert journal.names() == ["dead_letter", "flush", "offsets"]
    assert journal.steps[0][1][:4] == (
        b"",
        "cannot apply: ValueError: x",
        "engine",
        f"{IDX0.topic}/0/5",
    )
    assert report.dead_letters == 1

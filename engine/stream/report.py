"""What the engine reports of a run and of each input partition."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka.structs import TopicPartition


@dataclass
class EngineReport:
    """Counters of one engine run."""

    records: int = 0  # market-data records consumed (a pack of ticks is one record)
    updates: int = 0  # normalised updates they carry (a pack counts its ticks)
    option_ticks: int = 0  # option updates among them: a pack's ticks, a whole contract
    dead_letters: int = 0
    evaluations: int = 0
    events: Counter[str] = field(default_factory=Counter)  # by type, new ones only
    events_replayed: int = 0  # re-derived after a restart and not published again
    levels_written: int = 0
    batches: int = 0
    commits: int = 0
    commit_failures: int = 0  # offset commits refused: the group rebalanced under the engine
    checkpoints: int = 0  # task checkpoints written to engine.state.v1
    checkpoint_failures: int = 0  # writes that failed (logged; the next one is tried later)
    restored: int = 0  # partitions whose state came from a checkpoint, not a full replay
    rebuilt: int = 0  # partitions replayed from the log start: a checkpoint ahead of the log
    merge_gaps: int = 0  # records awaited in their producer's send order, given up on
    merge_forced: int = 0  # records released out of their producers' order (crossed orders)
    redis_write_failures: int = 0  # failed Redis writes (each retried; none lost)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "updates": self.updates,
            "option_ticks": self.option_ticks,
            "dead_letters": self.dead_letters,
            "evaluations": self.evaluations,
            "events": dict(self.events),
            "events_replayed": self.events_replayed,
            "levels_written": self.levels_written,
            "batches": self.batches,
            "commits": self.commits,
            "commit_failures": self.commit_failures,
            "checkpoints": self.checkpoints,
            "checkpoint_failures": self.checkpoint_failures,
            "restored": self.restored,
            "rebuilt": self.rebuilt,
            "merge_gaps": self.merge_gaps,
            "merge_forced": self.merge_forced,
            "redis_write_failures": self.redis_write_failures,
            "elapsed_s": round(self.elapsed_s, 3),
        }


@dataclass(frozen=True, slots=True)
class InputStatus:
    """One input partition: the log's end, the next offset fetched, records buffered."""

    tp: TopicPartition
    highwater: int | None
    fetched_next: int | None
    buffered: int
    paused: bool

"""How the engine reports what it does: stage timings and counters, through a given object.

The runtime calls :meth:`Instrumentation.stage` once per stage of a batch and
:meth:`Instrumentation.count` for each counter it moves; a metrics exporter, a benchmark
or a test implements the same two methods. Names are fixed (see ``STAGES`` and
``COUNTERS``); a counter may carry labels (``topic``, ``type``, ``bucket``, ``venue``,
``reason``, ``result``, ``kind``).
"""

from __future__ import annotations

from collections import Counter
from typing import Protocol

STAGES = ("fetch", "decode", "merge", "process", "publish", "redis", "commit", "checkpoint")
COUNTERS = (
    "records_consumed",  # labels: topic
    "updates_applied",
    "dead_letters",  # labels: venue ("engine"), reason ("malformed" | "not_applied")
    "events_published",  # labels: type, bucket
    "events_replayed",
    "levels_written",
    "batches",
    "merge_held_back",  # merge steps that left records buffered
    "commits",
    "checkpoints",  # labels: result ("written" | "failed")
    "restores",  # labels: kind ("checkpoint" | "replay" | "rebuild")
    "assignments",  # partition assignments handled (after their seeks)
)


class Instrumentation(Protocol):
    """Receives the engine's stage timings and counters."""

    def stage(self, name: str, seconds: float) -> None:
        """One run of stage ``name`` took ``seconds`` (wall clock)."""

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        """Counter ``name`` (with ``labels``) moved by ``n``."""


class NoInstrumentation:
    """The default: reports go nowhere."""

    def stage(self, name: str, seconds: float) -> None:
        pass

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        pass


class RecordingInstrumentation:
    """Keeps totals: ``seconds`` and ``calls`` per stage, ``counts`` per counter and labels
    (a counter without labels under its name, with labels as ``name{k=v,...}``)."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self.counts: Counter[str] = Counter()

    def stage(self, name: str, seconds: float) -> None:
        self.seconds[name] += seconds
        self.calls[name] += 1

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        self.counts[counter_key(name, labels)] += n


def counter_key(name: str, labels: dict[str, str]) -> str:
    """``name`` alone, or ``name{k=v,...}`` with the labels sorted by key."""
    if not labels:
        return name
    return name + "{" + ",".join(f"{k}={labels[k]}" for k in sorted(labels)) + "}"

"""The ingest stage every venue shares: raw message → capture → normalise → sink.

A live client and a replayed capture both call :meth:`IngestStage.on_message`, so a replay
takes exactly the live parse path. Anything that does not parse goes to the dead-letter
sink with the raw bytes and the reason; nothing else is lost and nothing raises.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import orjson

from connectors.common.capture import CapturedMessage, CaptureWriter, read_capture
from connectors.common.errors import ParseError
from schemas.records import Record
from schemas.topics import Topics

# Logical topics (schemas.topics.Topics attribute names) a normaliser routes records to.
OPTIONS, UNDERLYING, TRADES, FUNDING, VOLINDEX = (
    "options",
    "underlying",
    "trades",
    "funding",
    "volindex",
)


@dataclass(frozen=True, slots=True)
class Routed:
    """A normalised record and the logical topic it belongs on."""

    topic: str  # logical topic: an attribute name of schemas.topics.Topics
    record: Record
    # a streaming ticker update a sink may pack with others (``send_tick``); snapshots
    # (terms included) and every other record go out as they are
    packable: bool = False


@dataclass(frozen=True, slots=True)
class RejectedRows:
    """Rows of a document that were not applied while the rest were: the stage sends one
    dead letter for the document listing them (a bad row is not a bad document)."""

    reasons: tuple[str, ...]  # one per rejected row: "SPXW…: open_interest=-1.0 (expected …)"
    applied: int  # contracts of the document that were applied
    kind: str = "out_of_domain"  # the reason class of the dead letter

    def reason(self, listed: int = 20) -> str:
        """One line: how many rows, and the first ``listed`` reasons."""
        shown = "; ".join(self.reasons[:listed])
        more = len(self.reasons) - listed
        tail = f"; and {more} more" if more > 0 else ""
        count = len(self.reasons)
        return f"{count} row{'s' * (count != 1)} rejected, {self.applied} applied: {shown}{tail}"


class Normaliser(Protocol):
    def normalise(
        self, doc: Any, recv_ns: int, request: dict[str, Any] | None = None
    ) -> list[Any]: ...


class RecordSink(Protocol):
    """Where normalised records and dead letters go (the Kafka producer, or memory).

    A sink that packs ticker updates (the Kafka producer with packing on) also has
    ``async send_tick(topic, record)``; the stage hands it the ``packable`` records.
    """

    async def send_record(self, topic: str, record: Record) -> None: ...

    async def send_dead_letter(
        self,
        raw: bytes,
        reason: str,
        venue: str,
        source: str,
        recv_ns: int,
        reason_class: str = "malformed",
    ) -> None: ...


class CountsDeadLetters:
    """A sink's dead-letter side that only counts them (``dead_letters``)."""

    dead_letters: int = 0

    async def send_dead_letter(
        self,
        raw: bytes,
        reason: str,
        venue: str,
        source: str,
        recv_ns: int,
        reason_class: str = "malformed",
    ) -> None:
        self.dead_letters += 1


@dataclass
class MemorySink:
    """Collects what an ingest stage emits (tests, one-shot levels from a capture)."""

    records: list[tuple[str, Record]] = field(default_factory=list)
    dead_letters: list[tuple[bytes, str, str, str, int]] = field(default_factory=list)
    dead_letter_classes: list[str] = field(default_factory=list)

    async def send_record(self, topic: str, record: Record) -> None:
        self.records.append((topic, record))

    async def send_dead_letter(
        self,
        raw: bytes,
        reason: str,
        venue: str,
        source: str,
        recv_ns: int,
        reason_class: str = "malformed",
    ) -> None:
        self.dead_letters.append((raw, reason, venue, source, recv_ns))
        self.dead_letter_classes.append(reason_class)

    def on(self, topic: str) -> list[Record]:
        return [record for t, record in self.records if t == topic]


Describe = Callable[[str], dict[str, Any] | None]
"""What a transport's URL is: the request to hand the normaliser with its body (or None)."""


def no_request(url: str) -> None:
    """The default :data:`Describe`: a body needs no request to say what it is."""
    return None


def decode_json(raw: bytes) -> tuple[Any, str | None]:
    """(document, None) or (None, reason) — venue frames are decoded exactly once."""
    try:
        return orjson.loads(raw), None
    except orjson.JSONDecodeError as exc:
        return None, f"malformed JSON: {exc}"


class IngestStage:
    """Capture (optional), normalise and route one venue's messages."""

    def __init__(
        self,
        venue: str,
        normaliser: Normaliser,
        sink: RecordSink,
        topics: Topics,
        capture: CaptureWriter | None = None,
        source: str = "live",
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        """``clock_ns`` is the receive clock the venue's client stamps messages with (venue
        times are checked against it); tests of fake venues give the fake's clock."""
        self.clock_ns = clock_ns
        self.venue = venue
        self.normaliser = normaliser
        self.sink = sink
        self.topics = topics
        self.capture = capture
        self.source = source
        self.counts: Counter[str] = Counter()
        self.dead_letter_kinds: Counter[str] = Counter()  # by reason class (ParseError.kind)
        self.last_message_at: float | None = None  # time.monotonic() of the last message
        self._send_tick = getattr(sink, "send_tick", None)

    async def on_message(
        self,
        raw: bytes,
        doc: Any,
        recv_ns: int,
        request: dict[str, Any] | None = None,
        url: str | None = None,
        decode_error: str | None = None,
    ) -> list[Any]:
        """Handle one received message; returns the routed records (empty when dead-lettered)."""
        self.counts["messages"] += 1
        self.last_message_at = time.monotonic()
        if self.capture is not None:
            self.capture.write(CapturedMessage(recv_ns, self.venue, raw, request, url))
        if decode_error is not None:
            await self._dead_letter(raw, decode_error, "malformed", recv_ns)
            return []
        try:
            routed = self.normaliser.normalise(doc, recv_ns, request)
        except ParseError as exc:
            await self._dead_letter(raw, exc.reason, exc.kind, recv_ns)
            return []
        if any(type(item) is RejectedRows for item in routed):
            for item in routed:
                if type(item) is RejectedRows:
                    await self._dead_letter(raw, item.reason(), item.kind, recv_ns)
            routed = [item for item in routed if type(item) is not RejectedRows]
        send_record, send_tick = self.sink.send_record, self._send_tick
        for item in routed:
            topic = getattr(self.topics, item.topic)
            if item.packable and send_tick is not None:
                await send_tick(topic, item.record)
            else:
                await send_record(topic, item.record)
        self.counts["records"] += len(routed)
        return routed

    async def _dead_letter(self, raw: bytes, reason: str, kind: str, recv_ns: int) -> None:
        self.counts["dead_letters"] += 1
        self.dead_letter_kinds[kind] += 1
        await self.sink.send_dead_letter(
            raw, reason, self.venue, self.source, recv_ns, reason_class=kind
        )


async def replay_messages(
    messages: Iterable[CapturedMessage],
    stage: IngestStage | Callable[[str], IngestStage],
    speed: float | None = None,
) -> None:
    """Feed captured messages through a stage, in order, as if they arrived live.

    ``stage`` is one stage, or a function from a message's venue to its stage (captures that
    mix venues). Polled venues' bodies (messages with a ``url``) reach the normaliser as the
    raw bytes, as the poller hands them over; other messages are decoded once first.
    ``speed`` paces the replay at that multiple of the recorded time (``None``: as fast as
    possible).
    """
    if speed is not None and not speed > 0:
        raise ValueError(f"replay speed must be positive, got {speed!r}")
    stage_for = stage if not isinstance(stage, IngestStage) else (lambda _venue: stage)
    loop = asyncio.get_running_loop()
    first_recv_ns: int | None = None
    started = loop.time()
    for message in messages:
        if speed is not None:
            if first_recv_ns is None:
                first_recv_ns = message.recv_ns
            due = started + (message.recv_ns - first_recv_ns) / 1e9 / speed
            delay = due - loop.time()
            if delay > 0.001:
                await asyncio.sleep(delay)
        if message.url is not None:
            doc, error = message.raw, None
        else:
            doc, error = decode_json(message.raw)
        await stage_for(message.venue).on_message(
            message.raw, doc, message.recv_ns, message.request, message.url, error
        )


async def replay_capture(
    path: str | Path,
    stage: IngestStage | Callable[[str], IngestStage],
    speed: float | None = None,
) -> None:
    """Replay a capture file through a stage, or a stage per venue (same parse path as live)."""
    await replay_messages(read_capture(path), stage, speed)

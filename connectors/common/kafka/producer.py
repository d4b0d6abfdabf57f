"""Batched Kafka producer for normalised records and dead letters (DESIGN §2.3, §3 Delivery).

``RecordProducer.send`` appends to an open aiokafka ``BatchBuilder`` per (topic, partition);
a batch goes to the broker with ``send_batch`` when it is full or when it has lingered
``linger_ms``. Partitions are chosen as Kafka's default partitioner does for a key
(murmur2 of the key bytes, modulo the partition count), so everything keyed by one
underlying lands in one partition, in send order.

Bounds: one open batch per (topic, partition), at most ``max_in_flight_batches`` batches
handed to aiokafka and not yet acknowledged; when that many are pending, ``send`` (for a
full batch), ``flush`` and the linger task wait. Sealed batches wait in a FIFO that only
grows by one per sender currently waiting, so nothing queues without bound.

Option tickers (``send_tick``) are packed per underlying into ``OptionTicks`` records when
``pack_max_ticks`` > 0 (see :mod:`connectors.common.packing`): a pack goes out when full, when its
first tick has waited ``pack_wait_ms`` (the same flush task as the linger), and before any
other record of its underlying.

Order header: every market-data record (``send_record``, ``send_tick``) carries an
``md-order`` header (:mod:`connectors.common.kafka.order`) so that the engine applies one
producer's records in exactly their send order.

Errors: a batch the broker does not acknowledge means records are lost, so the first
delivery error is sticky: ``flush``, ``stop`` and every later ``send`` raise
:class:`DeliveryError`. The owner decides whether to restart the producer.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from aiokafka.partitioner import murmur2
from aiokafka.producer.message_accumulator import BatchBuilder
from aiokafka.record.default_records import DefaultRecordBatchBuilder
from aiokafka.structs import TopicPartition

from connectors.common.kafka.order import ORDER_HEADER, OrderStamper, read_order_header
from connectors.common.kafka.producer_config import ProducerConfig
from connectors.common.kafka.security import kafka_security_kwargs
from connectors.common.packing import TickPacker
from schemas.contracts import OptionContract
from schemas.records import Record, encode_record
from schemas.topics import Topics

__all__ = [
    "ORDER_HEADER",
    "DeliveryError",
    "ProducerClosedError",
    "ProducerConfig",
    "ProducerStartError",
    "ProducerStats",
    "RecordProducer",
    "RecordTooLargeError",
    "partition_for_key",
    "read_order_header",
]

Headers = Sequence[tuple[str, bytes]]

_MAX_ROUTES_PER_TOPIC = 65_536  # key → partition cache; cleared when it grows past this
_NO_HEADERS: list[tuple[str, bytes]] = []  # shared, never mutated
_DEAD_LETTER_MAX_FRACTION = 0.9  # of max_request_bytes kept for a dead letter's raw bytes


class ProducerStartError(RuntimeError):
    """The producer could not connect or initialise (one-line message)."""


class DeliveryError(RuntimeError):
    """A batch was not acknowledged by the broker; records may be lost. Sticky."""


class ProducerClosedError(RuntimeError):
    """``send`` after ``stop()`` (or before ``start()``)."""


class RecordTooLargeError(ValueError):
    """A single record is larger than ``max_request_bytes``; it was not queued."""


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """Counters of a :class:`RecordProducer` (a snapshot)."""

    records: int  # records accepted by send (dead letters included)
    dead_letters: int
    batches: int  # batches handed to aiokafka
    batches_acked: int
    batches_failed: int
    bytes: int  # encoded size of the batches handed to aiokafka
    open_batches: int
    sealed_batches: int  # full or lingered batches waiting for an in-flight slot
    in_flight: int  # handed to aiokafka, not yet acknowledged
    max_in_flight_seen: int
    backpressure_waits: int  # times a submission waited for an in-flight slot


def _describe(exc: BaseException) -> str:
    """One line: the exception's class and message (aiokafka's str() may repeat the class)."""
    name = type(exc).__name__
    text = " ".join(str(exc).split())
    if not text:
        return name
    return text if text.startswith(name) else f"{name}: {text}"


def partition_for_key(key: bytes, partition_count: int) -> int:
    """Kafka's default partition for a non-null key (Java ``toPositive(murmur2) % n``)."""
    return (murmur2(key) & 0x7FFFFFFF) % partition_count


class _OpenBatch:
    __slots__ = ("builder", "created", "tp")

    def __init__(self, tp: TopicPartition, builder: BatchBuilder, created: float) -> None:
        self.tp = tp
        self.builder = builder
        self.created = created


class RecordProducer:
    """Kafka producer of normalised records and dead letters; see the module docstring."""

    def __init__(self, config: ProducerConfig, topics: Topics | None = None) -> None:
        self.config = config
        self.topics = topics if topics is not None else Topics()
        self._producer: AIOKafkaProducer | None = None
        self._started = False
        self._closed = False
        self._error: BaseException | None = None
        self._linger_s = config.linger_ms / 1000.0
        self._max_in_flight = config.max_in_flight_batches
        self._large_value = config.max_request_bytes // 2
        packing = config.packing()
        self.packer: TickPacker | None = TickPacker(packing) if packing is not None else None
        # topic → sorted partition ids; topic → {key: TopicPartition}
        self._partitions: dict[str, tuple[int, ...]] = {}
        self._routes: dict[str, dict[bytes, TopicPartition]] = {}
        self._order = OrderStamper(self.topics.market_data())
        self._open: dict[TopicPartition, _OpenBatch] = {}
        self._sealed: deque[_OpenBatch] = deque()
        self._in_flight: set[asyncio.Future[Any]] = set()
        self._submit_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._linger_idle = False
        self._linger_task: asyncio.Task[None] | None = None
        # counters
        self._records = 0
        self._dead_letters = 0
        self._batches = 0
        self._batches_acked = 0
        self._batches_failed = 0
        self._bytes = 0
        self._max_in_flight_seen = 0
        self._backpressure_waits = 0

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Connect (bounded by ``request_timeout_ms``) and start the linger task."""
        if self._started:
            raise RuntimeError("RecordProducer.start() called twice")
        self._started = True
        cfg = self.config
        producer = AIOKafkaProducer(
            bootstrap_servers=cfg.bootstrap,
            client_id=cfg.client_id,
            acks=cfg.acks,
            enable_idempotence=cfg.enable_idempotence,
            compression_type=cfg.compression,
            max_batch_size=cfg.max_batch_bytes,
            max_request_size=cfg.max_request_bytes,
            request_timeout_ms=cfg.request_timeout_ms,
            linger_ms=0,  # lingering is ours; batches reach aiokafka sealed
            **kafka_security_kwargs(cfg.security),
        )
        try:
            async with asyncio.timeout(cfg.request_timeout_ms / 1000):  # not wait_for (3.11:
                await producer.start()  # it can swallow a cancellation)
        except BaseException as exc:
            self._closed = True
            with contextlib.suppress(Exception):
                async with asyncio.timeout(5):
                    await producer.stop()
            if isinstance(exc, KafkaError | OSError | TimeoutError):
                raise ProducerStartError(self._start_error_message(exc)) from exc
            raise
        self._producer = producer
        producer.client.cluster.add_listener(self._on_metadata)
        self._linger_task = asyncio.create_task(self._linger_loop(), name="kafka-producer-linger")
        self._linger_task.add_done_callback(self._on_linger_done)

    def _start_error_message(self, exc: BaseException) -> str:
        cfg = self.config
        what = _describe(exc)
        if isinstance(exc, TimeoutError):
            what = f"no answer within {cfg.request_timeout_ms} ms"
        message = f"Kafka producer could not start against {cfg.bootstrap} ({what})"
        if cfg.enable_idempotence and not isinstance(exc, KafkaConnectionError | OSError):
            message += (
                "; enable_idempotence=True needs a broker that grants InitProducerId — "
                "the embedded Tansu broker does not: set enable_idempotence=False there"
            )
        return message

    async def stop(self) -> None:
        """Send every open batch, await all acknowledgements, close; raises DeliveryError."""
        if self._closed:
            return
        if self._producer is not None and self._error is None:
            with contextlib.suppress(DeliveryError, ProducerClosedError):
                await self._send_packs(self.packer.drain() if self.packer else [])
        self._closed = True
        producer = self._producer
        try:
            if self._linger_task is not None:
                self._wake.set()
                with contextlib.suppress(Exception):
                    await self._linger_task
            if producer is not None and self._error is None:
                await self._flush()
        finally:
            if producer is not None:
                producer.client.cluster.remove_listener(self._on_metadata)
                await producer.stop()
        self._raise_if_failed()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- sending ------------------------------------------------------------------------

    async def send(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: Headers = (),
        timestamp_ms: int | None = None,
    ) -> None:
        """Append one record to its partition's open batch; waits only for backpressure.

        ``key`` must be ``bytes`` (it picks the partition); headers are ``(str, bytes)``
        pairs. Delivery is confirmed by ``flush()`` / ``stop()``, which raise if it failed.
        """
        await self._send(topic, key, value, headers, timestamp_ms, ordered=False)

    async def _send(
        self,
        topic: str,
        key: bytes,
        value: bytes,
        headers: Headers,
        timestamp_ms: int | None,
        ordered: bool,
    ) -> None:
        """``send``; ``ordered``: a market-data record gets its ``md-order`` header."""
        if self._closed or self._producer is None:
            raise ProducerClosedError("RecordProducer is not running")
        if self._error is not None:
            self._raise_if_failed()
        if not headers:
            headers = _NO_HEADERS
        elif type(headers) is not list:
            headers = list(headers)  # the C batch builder takes only a list
        if len(value) > self._large_value:
            self._check_size(key, value, headers)
        routes = self._routes.get(topic)
        tp = routes.get(key) if routes is not None else None
        if tp is None:
            tp = await self._route(topic, key)
            if self._closed:
                raise ProducerClosedError("RecordProducer stopped")
        slot = self._order.slots.get(topic) if ordered else None
        if slot is not None:  # stamped right before the append: the counts follow the log
            headers = self._order.stamp(slot, tp.partition, headers)
        batch = self._open.get(tp)
        if batch is None:
            batch = self._new_batch(tp)
        append = batch.builder.append
        if append(timestamp=timestamp_ms, key=key, value=value, headers=headers) is not None:
            self._records += 1
            return
        # Full: seal it (in order), start the next one with this record, then submit.
        self._seal(batch)
        batch = self._new_batch(tp)
        batch.builder.append(timestamp=timestamp_ms, key=key, value=value, headers=headers)
        self._records += 1
        await self._drain_sealed()

    async def send_record(self, topic: str, record: Record) -> None:
        """Send a normalised record keyed by its underlying (after its underlying's pack)."""
        packer = self.packer
        if packer is not None:
            earlier = packer.before(record, time.monotonic())
            if earlier:
                await self._send_packs(earlier)
        await self._send(topic, record.underlying.encode(), encode_record(record), (), None, True)

    async def send_tick(self, topic: str, record: Record) -> None:
        """Send an option ticker update: packed with others when packing is on."""
        packer = self.packer
        if packer is None or type(record) is not OptionContract:
            await self.send_record(topic, record)
            return
        was_open = packer.holds(record.underlying)
        out = packer.add(topic, record, time.monotonic())
        if out:
            await self._send_packs(out)
        if not was_open and packer.holds(record.underlying):
            self._linger_idle = False
            self._wake.set()  # the flush task times the new pack

    async def _send_packs(self, out: list[tuple[str, Record]]) -> None:
        for topic, record in out:
            key, value = record.underlying.encode(), encode_record(record)
            await self._send(topic, key, value, (), None, True)

    async def send_dead_letter(
        self,
        raw: bytes,
        reason: str,
        venue: str,
        source: str,
        recv_ns: int,
        reason_class: str = "malformed",
    ) -> None:
        """Send unparsable input to the dead-letter topic: value = the raw bytes.

        Headers ``reason``, ``venue``, ``source``, ``recv_ns`` (UTF-8, recv_ns in decimal)
        and ``reason_class`` (the small fixed set of ParseError kinds); key = venue. Raw
        input too large for one request is cut and gets a ``truncated`` header holding the
        original length, so a dead letter itself never fails.
        """
        headers = [
            ("reason", reason.encode("utf-8", "replace")),
            ("venue", venue.encode("utf-8", "replace")),
            ("source", source.encode("utf-8", "replace")),
            ("recv_ns", str(int(recv_ns)).encode()),
            ("reason_class", reason_class.encode("utf-8", "replace")),
        ]
        limit = int(self.config.max_request_bytes * _DEAD_LETTER_MAX_FRACTION) - sum(
            len(k) + len(v) + 16 for k, v in headers
        )
        if len(raw) > limit:
            headers.append(("truncated", str(len(raw)).encode()))
            raw = raw[: max(limit, 0)]
        await self.send(
            self.topics.deadletter, venue.encode("utf-8", "replace"), bytes(raw), headers
        )
        self._dead_letters += 1

    async def flush(self) -> None:
        """Send every open batch and await every acknowledgement; raises DeliveryError."""
        if self._closed or self._producer is None:
            raise ProducerClosedError("RecordProducer is not running")
        self._raise_if_failed()
        if self.packer is not None:
            await self._send_packs(self.packer.drain())
        await self._flush()
        self._raise_if_failed()

    @property
    def stats(self) -> ProducerStats:
        """Counters so far."""
        return ProducerStats(
            records=self._records,
            dead_letters=self._dead_letters,
            batches=self._batches,
            batches_acked=self._batches_acked,
            batches_failed=self._batches_failed,
            bytes=self._bytes,
            open_batches=len(self._open),
            sealed_batches=len(self._sealed),
            in_flight=len(self._in_flight),
            max_in_flight_seen=self._max_in_flight_seen,
            backpressure_waits=self._backpressure_waits,
        )

    async def partition_for(self, topic: str, key: bytes) -> int:
        """The partition ``send`` uses for ``key`` on ``topic``."""
        if self._producer is None:
            raise ProducerClosedError("RecordProducer is not running")
        routes = self._routes.get(topic)
        tp = routes.get(key) if routes is not None else None
        if tp is None:
            tp = await self._route(topic, key)
        return tp.partition

    # -- internals ----------------------------------------------------------------------

    def _check_size(self, key: bytes, value: bytes, headers: list[tuple[str, bytes]]) -> None:
        size = DefaultRecordBatchBuilder.estimate_size_in_bytes(key, value, headers)
        if size > self.config.max_request_bytes:
            raise RecordTooLargeError(
                f"record of {size} bytes exceeds max_request_bytes={self.config.max_request_bytes}"
            )

    async def _route(self, topic: str, key: bytes) -> TopicPartition:
        assert self._producer is not None
        parts = self._partitions.get(topic)
        if parts is None:
            found = await self._producer.partitions_for(topic)
            parts = self._partitions.setdefault(topic, tuple(sorted(found)))
        tp = TopicPartition(topic, parts[partition_for_key(key, len(parts))])
        routes = self._routes.setdefault(topic, {})
        if len(routes) >= _MAX_ROUTES_PER_TOPIC:
            routes.clear()
        routes[key] = tp
        return tp

    def _on_metadata(self, cluster: Any) -> None:
        """Metadata refreshed: re-route topics whose partition count changed."""
        for topic, parts in list(self._partitions.items()):
            found = cluster.partitions_for_topic(topic)
            if found and tuple(sorted(found)) != parts:
                self._partitions[topic] = tuple(sorted(found))
                self._routes.pop(topic, None)

    def _new_batch(self, tp: TopicPartition) -> _OpenBatch:
        assert self._producer is not None
        batch = _OpenBatch(tp, self._producer.create_batch(), time.monotonic())
        self._open[tp] = batch
        if self._linger_idle:
            self._linger_idle = False
            self._wake.set()
        return batch

    def _seal(self, batch: _OpenBatch) -> None:
        del self._open[batch.tp]
        batch.builder.close()
        self._sealed.append(batch)

    async def _drain_sealed(self) -> None:
        """Hand sealed batches to aiokafka in FIFO order, waiting for in-flight slots.

        A batch leaves the FIFO only once aiokafka has taken it, so a cancelled waiter
        loses nothing: the next drain submits it.
        """
        assert self._producer is not None
        async with self._submit_lock:
            sealed = self._sealed
            while sealed:
                self._raise_if_failed()
                while len(self._in_flight) >= self._max_in_flight:
                    self._backpressure_waits += 1
                    done, _ = await asyncio.wait(
                        self._in_flight, return_when=asyncio.FIRST_COMPLETED
                    )
                    for fut in done:
                        self._on_ack(fut)
                batch = sealed[0]
                tp = batch.tp
                try:
                    fut = await self._producer.send_batch(
                        batch.builder, tp.topic, partition=tp.partition
                    )
                except KafkaError as exc:
                    self._fail(exc)
                    raise DeliveryError(f"Kafka rejected a batch for {tp}: {exc!r}") from exc
                sealed.popleft()
                self._batches += 1
                self._bytes += batch.builder.size()
                self._in_flight.add(fut)
                self._max_in_flight_seen = max(self._max_in_flight_seen, len(self._in_flight))
                fut.add_done_callback(self._on_ack)

    def _on_ack(self, fut: asyncio.Future[Any]) -> None:
        if fut not in self._in_flight:
            return  # already settled
        self._in_flight.discard(fut)
        exc = fut.exception() if not fut.cancelled() else asyncio.CancelledError()
        if exc is None:
            self._batches_acked += 1
        else:
            self._batches_failed += 1
            self._fail(exc)

    def _fail(self, exc: BaseException) -> None:
        if self._error is None:
            self._error = exc

    def _raise_if_failed(self) -> None:
        exc = self._error
        if exc is not None:
            raise DeliveryError(
                f"Kafka delivery failed, records may be lost: {_describe(exc)}"
            ) from exc

    async def _flush(self) -> None:
        for batch in list(self._open.values()):
            self._seal(batch)
        await self._drain_sealed()
        pending = set(self._in_flight)
        if pending:
            await asyncio.wait(pending)
            for fut in pending:
                self._on_ack(fut)

    async def _linger_loop(self) -> None:
        """The one flush task: sends packs that waited ``pack_wait_ms``, seals batches older
        than ``linger_ms`` and submits them."""
        linger = self._linger_s
        wake = self._wake
        packer = self.packer
        while not self._closed and self._error is None:
            pack_due = packer.next_due() if packer is not None else None
            if not self._open and pack_due is None:
                wake.clear()
                self._linger_idle = True
                await wake.wait()
                continue
            now = time.monotonic()
            if pack_due is not None and pack_due <= now:
                assert packer is not None
                try:
                    await self._send_packs(packer.due(now))
                except (DeliveryError, ProducerClosedError):
                    return  # the error is kept; send/flush/stop raise it
                continue
            oldest = min((batch.created for batch in self._open.values()), default=math.inf)
            delay = min(oldest + linger, pack_due if pack_due is not None else math.inf) - now
            if delay > 0:
                wake.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(delay):
                        await wake.wait()
                continue
            for batch in list(self._open.values()):
                if now - batch.created >= linger:
                    self._seal(batch)
            try:
                await self._drain_sealed()
            except DeliveryError:
                return  # the error is kept; send/flush/stop raise it

    def _on_linger_done(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            self._fail(task.exception())

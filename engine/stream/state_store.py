"""Checkpoints to and from ``engine.state.v1`` (the Kafka side; the format is in
:mod:`engine.stream.checkpoint`).

Writes go through a producer of the store's own (acks=all), so a failing state write never
leaves an error on the producer of events; each checkpoint's chunks are acknowledged
before its manifest is sent, and the chunks of the checkpoint it replaces are then
tombstoned. Reads use a consumer of their own, assigned to the state partitions (no group),
from their start to their end.
"""

from __future__ import annotations

import time

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from aiokafka.structs import TopicPartition

from connectors.common.kafka.security import KafkaSecurity, kafka_security_kwargs
from connectors.common.logs import get_logger
from engine.stream.checkpoint import Checkpoint, CheckpointReader, chunk_key, encode_checkpoint

log = get_logger("engine.state")


class StateStore:
    """One consumer group's checkpoints on the state topic."""

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        group: str,
        client_id: str,
        enable_idempotence: bool,
        fetch_max_wait_ms: int,
        security: KafkaSecurity | None = None,
    ) -> None:
        self.bootstrap = bootstrap
        self.security = security
        self.topic = topic
        self.group = group
        self.client_id = client_id
        self._fetch_max_wait_ms = fetch_max_wait_ms
        self._producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap,
            client_id=f"{client_id}-state",
            acks="all",
            enable_idempotence=enable_idempotence,
            max_request_size=2 * 1024 * 1024,
            **kafka_security_kwargs(security),
        )
        # partition → (id, chunks, offsets) of its checkpoint last written or restored
        self._written: dict[int, tuple[int, int, dict[str, int]]] = {}
        self._stray: dict[int, list[bytes]] = {}  # partition → chunk keys to tombstone
        self._partitions: int | None = None

    async def start(self) -> None:
        await self._producer.start()

    async def stop(self) -> None:
        await self._producer.stop()

    async def partition_count(self) -> int:
        if self._partitions is None:
            self._partitions = len(await self._producer.partitions_for(self.topic))
        return self._partitions

    def adopt(self, checkpoint: Checkpoint) -> None:
        """A restored checkpoint is the one the next write replaces (its chunks tombstoned)."""
        self._written[checkpoint.partition] = (
            checkpoint.checkpoint_id,
            checkpoint.chunks,
            checkpoint.offsets,
        )

    def covers(self, partition: int, offsets: dict[str, int]) -> bool:
        """Whether the partition's last checkpoint (written or restored) has these offsets."""
        return partition in self._written and self._written[partition][2] == offsets

    def next_id(self, partition: int) -> int:
        """A checkpoint id above the partition's last one (ns of the wall clock, mostly)."""
        last = self._written[partition][0] if partition in self._written else 0
        return max(time.time_ns(), last + 1)

    async def write(self, checkpoint: Checkpoint) -> None:
        """Chunks, acknowledged; then the manifest, acknowledged; then tombstones for the
        chunks of the partition's previous checkpoint and any stray ones (a failure there
        is only logged: the checkpoint itself is written)."""
        partition = checkpoint.partition
        target = partition % await self.partition_count()
        chunks, (manifest_key, manifest) = encode_checkpoint(checkpoint)
        sent = [
            await self._producer.send(self.topic, value, key=key, partition=target)
            for key, value in chunks
        ]
        for delivery in sent:
            await delivery
        await self._producer.send_and_wait(self.topic, manifest, key=manifest_key, partition=target)
        previous = self._written.get(partition)
        self._written[partition] = (checkpoint.checkpoint_id, len(chunks), checkpoint.offsets)
        obsolete = self._stray.pop(partition, [])
        if previous is not None and previous[0] != checkpoint.checkpoint_id:
            obsolete += [
                chunk_key(self.group, partition, previous[0], chunk) for chunk in range(previous[1])
            ]
        try:
            for key in obsolete:
                await self._producer.send(self.topic, None, key=key, partition=target)
            await self._producer.flush()
        except Exception as exc:  # a later read finds them stray again
            log.warning("old checkpoint chunks not tombstoned", partition=partition, error=str(exc))

    def forget(self, partition: int) -> None:
        self._written.pop(partition, None)
        self._stray.pop(partition, None)

    async def read(self, partitions: list[int], budget_s: float) -> dict[int, Checkpoint | None]:
        """The latest complete checkpoint of each partition; what is not read within
        ``budget_s`` counts as none (the engine then replays)."""
        count = await self.partition_count()
        readers = {p: CheckpointReader(self.group, p) for p in partitions}
        by_tp: dict[TopicPartition, list[CheckpointReader]] = {}
        for p, reader in readers.items():
            by_tp.setdefault(TopicPartition(self.topic, p % count), []).append(reader)
        tps = list(by_tp)
        consumer = AIOKafkaConsumer(
            bootstrap_servers=self.bootstrap,
            client_id=f"{self.client_id}-restore",
            enable_auto_commit=False,
            fetch_max_wait_ms=self._fetch_max_wait_ms,
            max_partition_fetch_bytes=4 * 1024 * 1024,
            **kafka_security_kwargs(self.security),
        )
        deadline = time.monotonic() + budget_s
        await consumer.start()
        try:
            consumer.assign(tps)
            await consumer.seek_to_beginning(*tps)
            while True:
                batch = await consumer.getmany(*tps, timeout_ms=100)
                for tp, messages in batch.items():
                    for message in messages:
                        for reader in by_tp[tp]:
                            reader.feed(message.value, message.key)
                ends = [consumer.highwater(tp) for tp in tps]
                positions = [await consumer.position(tp) for tp in tps]
                if all(e is not None and n >= e for e, n in zip(ends, positions, strict=True)):
                    break
                if time.monotonic() > deadline:
                    log.warning("checkpoints not read in time", partitions=partitions)
                    return dict.fromkeys(partitions)
        finally:
            await consumer.stop()
        for p, reader in readers.items():
            self._stray[p] = reader.stray_keys()
        return {p: reader.latest for p, reader in readers.items()}

"""Kafka layer: embedded broker, topic creation and the batched record producer."""

from connectors.common.kafka.embedded import (
    COMPACTED,
    EmbeddedKafka,
    EmbeddedKafkaError,
    ensure_topics,
    resolve_tansu_binary,
)
from connectors.common.kafka.producer import (
    DeliveryError,
    ProducerClosedError,
    ProducerConfig,
    ProducerStartError,
    ProducerStats,
    RecordProducer,
    RecordTooLargeError,
    partition_for_key,
)

__all__ = [
    "COMPACTED",
    "DeliveryError",
    "EmbeddedKafka",
    "EmbeddedKafkaError",
    "ProducerClosedError",
    "ProducerConfig",
    "ProducerStartError",
    "ProducerStats",
    "RecordProducer",
    "RecordTooLargeError",
    "ensure_topics",
    "partition_for_key",
    "resolve_tansu_binary",
]

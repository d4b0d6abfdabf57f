"""Throughput of ``RecordProducer.send`` into an embedded Tansu broker; prints JSON.

``python -m connectors.common.kafka.bench [--records N] [--value-bytes B] [--keys K]``
Times N ``await send(...)`` calls plus the final ``flush()`` (every record acknowledged).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time

from connectors.common.kafka.embedded import EmbeddedKafka, ensure_topics
from connectors.common.kafka.producer import ProducerConfig, RecordProducer


async def _run(records: int, value_bytes: int, keys: int, partitions: int) -> dict[str, object]:
    async with EmbeddedKafka() as kafka:
        topic = "bench.md.options.v1"
        await ensure_topics(kafka.bootstrap, [topic], partitions=partitions)
        key_list = [f"U{i}".encode() for i in range(keys)]
        value = b"x" * value_bytes
        config = ProducerConfig(bootstrap=kafka.bootstrap, enable_idempotence=False)
        async with RecordProducer(config) as producer:
            await producer.send(topic, key_list[0], value)  # metadata, routes
            await producer.flush()
            send = producer.send
            n_keys = len(key_list)
            t0 = time.perf_counter()
            for i in range(records):
                await send(topic, key_list[i % n_keys], value)
            t_send = time.perf_counter() - t0
            await producer.flush()
            t_total = time.perf_counter() - t0
            stats = producer.stats
    return {
        "records": records,
        "value_bytes": value_bytes,
        "keys": keys,
        "partitions": partitions,
        "send_only_per_s": round(records / t_send),
        "acked_per_s": round(records / t_total),
        "batches": stats.batches,
        "records_per_batch": round(stats.records / max(stats.batches, 1), 1),
        "backpressure_waits": stats.backpressure_waits,
    }


def main() -> None:
    """Run the benchmark and print one JSON object."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=500_000)
    parser.add_argument("--value-bytes", type=int, default=200)
    parser.add_argument("--keys", type=int, default=8)
    parser.add_argument("--partitions", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(_run(args.records, args.value_bytes, args.keys, args.partitions))
    print(json.dumps(result))


if __name__ == "__main__":
    main()

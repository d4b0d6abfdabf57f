"""Deribit ingest benchmark: parse + produce into the real (embedded) broker.

    python benchmarks/deribit_ingest.py --json

A seeded 3,000-instrument simulated session (connectors.simulator) is held in memory, then
every message goes through the live path: decode once (orjson), normalise (DeribitNormaliser),
produce to Kafka (RecordProducer, batched, acks=all) and, at the end, wait for every ack.
The same messages are also parsed with plain ``json.loads`` only, in the same run. Prints one
JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from connectors.common.ingest import IngestStage, decode_json
from connectors.common.kafka.embedded import EmbeddedKafka, ensure_topics
from connectors.common.kafka.producer import ProducerConfig, RecordProducer
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_config import SessionConfig
from connectors.simulator.deribit_session import generate_session
from schemas.topics import Topics


async def ingest_once(bootstrap: str, messages, prefix: str) -> tuple[float, dict]:
    topics = Topics(prefix)
    await ensure_topics(bootstrap, topics.all(), partitions=3)
    producer = RecordProducer(ProducerConfig(bootstrap=bootstrap, enable_idempotence=False), topics)
    await producer.start()
    stage = IngestStage("deribit", DeribitNormaliser(), producer, topics, source="bench")
    start = time.perf_counter()
    for message in messages:
        doc, error = decode_json(message.raw)
        await stage.on_message(message.raw, doc, message.recv_ns, message.request, None, error)
    await producer.flush()
    elapsed = time.perf_counter() - start
    stats = producer.stats
    await producer.stop()
    return elapsed, {"records": stats.records, "batches": stats.batches, **stage.counts}


def plain_json_once(messages) -> float:
    start = time.perf_counter()
    for message in messages:
        json.loads(message.raw)
    return time.perf_counter() - start


async def run(n_instruments: int, duration_s: float, rounds: int) -> dict:
    config = SessionConfig(
        n_instruments=n_instruments, duration_s=duration_s, seed=5, ticker_interval_s=1.0
    )
    messages = list(generate_session(config))
    tickers = sum(
        1 for m in messages if b'"channel":"ticker.' in m.raw and b"PERPETUAL" not in m.raw
    )
    ours, plain, counts = [], [], {}
    async with EmbeddedKafka() as kafka:
        for r in range(rounds):
            elapsed, counts = await ingest_once(kafka.bootstrap, messages, f"bench{r}.")
            ours.append(elapsed)
            plain.append(plain_json_once(messages))
    n = len(messages)
    t_ours, t_plain = statistics.median(ours), statistics.median(plain)
    return {
        "n_instruments": n_instruments,
        "messages": n,
        "ticker_messages": tickers,
        "records_produced": counts.get("records"),
        "dead_letters": counts.get("dead_letters", 0),
        "kafka_batches": counts.get("batches"),
        "messages_per_s": n / t_ours,
        "ticker_messages_per_s": tickers / t_ours,
        "plain_json_messages_per_s": n / t_plain,
        "ratio_vs_plain_json": (n / t_ours) / (n / t_plain),
        "target_messages_per_s_min": 50_000,
        "target_met": n / t_ours >= 50_000,
        "rounds": rounds,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object (default)")
    parser.add_argument("--instruments", type=int, default=3_000)
    parser.add_argument("--duration", type=float, default=30.0, help="simulated seconds")
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    result = asyncio.run(run(args.instruments, args.duration, args.rounds))
    print(json.dumps(result, indent=None if args.json else 2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

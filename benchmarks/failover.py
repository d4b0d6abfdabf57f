"""Engine start-up and failover time on a real broker.

    python benchmarks/failover.py --json

Starts its own embedded Apache Kafka broker (Java and ``make kafka-jars``; Tansu describes
no group assignments, so which engine to kill cannot be told there) and Redis, and streams a
seeded simulated Deribit session into fresh topics at real time (the live path: parse, pack,
produce) for the whole run. Engines are ``regime-engine engine`` processes in one consumer
group, each with a config file of its own settings.

- ``cold_start_s``: from spawning the first engine process to its first write to Redis (the
  first batch it publishes: the group's Redis watermark for the BTC input partition moves).
- ``failover_s``: a second engine (the standby) joins the group and the rebalance settles;
  then the engine that holds the BTC partitions is killed with SIGKILL; from the kill to the
  survivor's first write to Redis for them (the watermark moves again). Without a graceful
  leave the group only notices the dead member when its session times out, so this is
  about ``session_timeout_ms`` + a rebalance + the restore + one batch.

Both are measured twice in the same run: with the engine's defaults (the naive baseline)
and with the tuned settings given here (``--session-timeout-ms``, ``--heartbeat-ms``);
``ratio_failover`` is tuned / default. The broker must allow the tuned session timeout
(``group.min.session.timeout.ms``: 6 s by default on Apache Kafka, 500 ms on the embedded
one). Prints one JSON object (``--json``) or a readable summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiokafka.structs import TopicPartition
from redis.asyncio import Redis

from connectors.common.kafka.apache import embedded_broker
from connectors.common.kafka.embedded import ensure_topics, group_assignment
from connectors.common.kafka.producer import ProducerConfig, partition_for_key
from connectors.common.lifecycle import cancel_and_wait
from connectors.common.redis_embedded import EmbeddedRedis
from connectors.simulator.deribit_session import SessionConfig, write_session
from connectors.sources import Source
from engine.app.run_ingest import run_ingest
from engine.stream.publisher import WATERMARK_KEY, position_field
from schemas.topics import Topics

REPO = Path(__file__).resolve().parents[1]
TARGET_FAILOVER_S = 3.0
TARGET_COLD_START_S = 3.0
PARTITIONS = 3


class Engine:
    """One ``regime-engine engine`` process; its stderr goes to a file."""

    def __init__(
        self, bootstrap: str, redis_url: str, topics: Topics, group: str, config: Path, idem: bool
    ):
        self.name = f"engine-{os.urandom(3).hex()}"
        self.config = config.with_name(f"{config.stem}-{self.name}.toml")
        self.config.write_text(config.read_text() + f'client_id = "{self.name}"\n')
        self.log = Path(tempfile.mkstemp(prefix="failover-engine-", suffix=".log")[1])
        self._log_file = open(self.log, "wb")  # noqa: SIM115 - closed in stop()
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            [
                sys.executable,
                *("-m", "engine.app.cli", "engine", "--kafka", bootstrap, "--redis", redis_url),
                *("--topic-prefix", topics.prefix, "--group", group, "--config", str(self.config)),
                *(() if idem else ("--no-idempotence",)),
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=self._log_file,
            env={**os.environ, "PYTHONPATH": str(REPO)},
        )

    def check_alive(self) -> None:
        if self.proc.poll() is not None:
            tail = self.log.read_text(errors="replace")[-1500:]
            raise RuntimeError(f"engine exited ({self.proc.returncode}): {tail}")

    def kill(self) -> None:
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log_file.close()
        self.log.unlink(missing_ok=True)
        self.config.unlink(missing_ok=True)


async def measure(
    bootstrap: str,
    idem: bool,
    redis: Redis,
    redis_url: str,
    topics: Topics,
    settings: dict[str, Any],
) -> dict[str, Any]:
    """Cold start and failover of engines with ``settings`` (a group of their own)."""
    group = f"{topics.prefix}{'-'.join(f'{k}{v}' for k, v in settings.items()) or 'defaults'}"
    config = Path(tempfile.mkstemp(prefix="failover-", suffix=".toml")[1])
    config.write_text("".join(f"{k} = {v}\n" for k, v in settings.items()))
    key = WATERMARK_KEY.format(group=group)
    btc = partition_for_key(b"BTC", PARTITIONS)
    fields = [position_field(t, btc) for t in topics.market_data()]
    marks: dict[str, int] = {}

    async def refresh() -> None:
        raw = await redis.hgetall(key)
        marks.clear()
        marks.update({k.decode(): int(v) for k, v in raw.items()})

    def mark() -> int:
        return sum(marks.get(f, -1) for f in fields)

    async def wait_mark_above(level: int, what: str, engines: list[Engine]) -> float:
        deadline = time.monotonic() + 120
        while True:
            await refresh()
            if mark() > level:
                return time.monotonic()
            for engine in engines:
                engine.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError(f"timed out waiting for {what}")
            await asyncio.sleep(0.01)

    engines: list[Engine] = []
    try:
        first = Engine(bootstrap, redis_url, topics, group, config, idem)
        engines.append(first)
        written = await wait_mark_above(-len(fields), "the first engine's first write", engines)
        cold_start = written - first.started

        standby = Engine(bootstrap, redis_url, topics, group, config, idem)
        engines.append(standby)

        deadline = time.monotonic() + 120
        while True:  # the standby joined and the rebalance is over
            held = await group_assignment(bootstrap, group)
            if held is not None and set(held) == {first.name, standby.name}:
                break
            for engine in engines:
                engine.check_alive()
            if time.monotonic() > deadline:
                raise RuntimeError("timed out waiting for the rebalance with the standby")
            await asyncio.sleep(0.05)
        btc_input = TopicPartition(topics.underlying, btc)
        active = first if btc_input in held[first.name] else standby
        survivor = standby if active is first else first
        await refresh()
        before = mark()
        killed_at = time.monotonic()
        active.kill()
        engines.remove(active)
        moved = await wait_mark_above(before, "the survivor's first write", [survivor])
        return {
            "cold_start_s": round(cold_start, 3),
            "failover_s": round(moved - killed_at, 3),
            "settings": settings,
        }
    finally:
        for engine in engines:
            engine.stop()
        config.unlink(missing_ok=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    wall = time.perf_counter()
    workdir = Path(tempfile.mkdtemp(prefix="failover-"))
    session = workdir / "session.jsonl"
    write_session(
        SessionConfig(n_instruments=args.instruments, duration_s=args.session_seconds, seed=7),
        session,
    )
    topics = Topics(f"fo{os.urandom(3).hex()}.")
    async with embedded_broker("kafka") as kafka, EmbeddedRedis() as server:
        await ensure_topics(kafka.bootstrap, topics.all(), partitions=PARTITIONS)
        producer = ProducerConfig(
            kafka.bootstrap, enable_idempotence=kafka.idempotent, pack_max_ticks=256
        )
        feed = asyncio.create_task(
            run_ingest([Source("replay", str(session))], producer, topics, replay_speed=1.0)
        )
        redis = Redis.from_url(server.url)
        try:
            idem = kafka.idempotent
            default = await measure(kafka.bootstrap, idem, redis, server.url, topics, {})
            tuned = await measure(
                kafka.bootstrap,
                idem,
                redis,
                server.url,
                topics,
                {
                    "session_timeout_ms": args.session_timeout_ms,
                    "heartbeat_interval_ms": args.heartbeat_ms,
                },
            )
            if feed.done():
                feed.result()
                raise RuntimeError("the feed ended before the measurements: a longer session")
        finally:
            await cancel_and_wait(feed)
            await redis.aclose()
    return {
        "broker": "kafka",
        "cold_start_s": tuned["cold_start_s"],
        "failover_s": tuned["failover_s"],
        "default_cold_start_s": default["cold_start_s"],
        "default_failover_s": default["failover_s"],
        "ratio_failover": tuned["failover_s"] / default["failover_s"],
        "tuned": tuned,
        "default": default,
        "targets": {"failover_s_max": TARGET_FAILOVER_S, "cold_start_s_max": TARGET_COLD_START_S},
        "targets_met": {
            "failover_s": tuned["failover_s"] <= TARGET_FAILOVER_S,
            "cold_start_s": tuned["cold_start_s"] <= TARGET_COLD_START_S,
        },
        "config": {
            "instruments": args.instruments,
            "session_seconds": args.session_seconds,
            "partitions": PARTITIONS,
            "feed": "simulated Deribit session at 1x real time",
        },
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "loadavg_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "total_seconds": round(time.perf_counter() - wall, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--instruments", type=int, default=300)
    parser.add_argument("--session-seconds", type=float, default=600.0)
    parser.add_argument("--session-timeout-ms", type=int, default=1500)
    parser.add_argument("--heartbeat-ms", type=int, default=300)
    args = parser.parse_args()
    out = asyncio.run(run(args))
    if args.json:
        print(json.dumps(out))
    else:
        print(
            f"failover on {out['broker']}: cold start {out['cold_start_s']:.2f} s "
            f"(defaults {out['default_cold_start_s']:.2f} s), failover {out['failover_s']:.2f} s "
            f"(defaults {out['default_failover_s']:.2f} s)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

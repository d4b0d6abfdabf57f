"""What the Prometheus metrics cost the engine: pipeline ticks/s with metrics on vs off.

    python benchmarks/metrics_cost.py --json

The data and the engine runs are those of ``benchmarks/pipeline.py``'s throughput part (a
seeded simulated Deribit session, normalised by the live parse path, option tickers packed
as the producer packs them, produced once into fresh topics, not timed). Each round runs
an unmodified ``EngineRuntime`` twice over the same topics (a new consumer group each time,
so each starts from offset 0), in alternating order, timed from partition assignment until
``caught_up`` (wall time, and the engine process's CPU time):

* ``off`` — no instrumentation (``NoInstrumentation``, the default);
* ``on`` — ``engine.app.metrics.EngineMetrics`` as the instrumentation and ``on_batch``
  (the tick-to-publish histogram), plus the server side of a scrape every
  ``--scrape-interval`` seconds (``generate_latest`` over the collector: counters,
  histograms, the lag and the feed ages read from the runtime), 1 s by default, 15× the
  usual Prometheus rate.

Both runs see the first assignment through the same one-line ``count`` override, so that
check costs them alike. ``cost`` = 1 − median(on) / median(off) of ticks/s, target ≤ 3 %;
``cpu_cost`` = median(on) / median(off) − 1 of the engine's CPU µs per tick. On a shared
machine both differences are noisy (runs of one kind differ by tens of %), so the on runs
also time the hooks themselves: ``hook_share_of_cpu`` and ``scrape_share_of_cpu`` are the
seconds spent in the metrics' hooks and scrapes over the engine's CPU seconds. Prints one
JSON object (``--json``) or a readable summary.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import statistics
import sys
import time
from dataclasses import fields
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from prometheus_client import CollectorRegistry, generate_latest

from benchmarks.pipeline_support import (
    add_session_flags,
    build_raw,
    engine_config,
    new_topics,
    option_ticks,
    pack_config,
    pack_items,
    produce,
    session_config,
    start_assigned,
    stop_engine,
    wait_caught_up,
)
from connectors.common.kafka.embedded import EmbeddedKafka, ensure_topics
from connectors.common.logs import configure_logging
from connectors.common.packing import TickPacker
from connectors.common.redis_embedded import EmbeddedRedis
from engine.app.metrics import EngineMetrics, MetricsCollector
from engine.stream.instrumentation import NoInstrumentation
from engine.stream.runtime import EngineConfig, EngineRuntime

TARGET_COST = 0.03


class _Assigned:
    """Notes when the engine is first assigned partitions (the start of the timed window)."""

    assigned_at: float | None = None
    assigned_cpu = 0.0

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        if name == "assignments" and self.assigned_at is None:
            self.assigned_at = time.perf_counter()
            self.assigned_cpu = time.process_time()
        super().count(name, n, **labels)  # type: ignore[misc]


class Off(_Assigned, NoInstrumentation):
    pass


class On(_Assigned, EngineMetrics):
    """EngineMetrics, timing its own hooks (``hook_s``: an upper bound of their cost, the
    timer calls included; it only makes this side slower)."""

    hook_s = 0.0

    def stage(self, name: str, seconds: float) -> None:
        began = time.perf_counter()
        super().stage(name, seconds)
        self.hook_s += time.perf_counter() - began

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        began = time.perf_counter()
        super().count(name, n, **labels)
        self.hook_s += time.perf_counter() - began

    def on_batch(self, items: list[Any]) -> None:
        began = time.perf_counter()
        super().on_batch(items)
        self.hook_s += time.perf_counter() - began


async def one_run(
    args: argparse.Namespace,
    bootstrap: str,
    redis_url: str,
    topics: Any,
    run: str,
    metrics: bool,
) -> dict[str, Any]:
    config = engine_config(args, bootstrap, redis_url, topics, run)
    meter: On | Off = On() if metrics else Off()
    on_batch = meter.on_batch if isinstance(meter, On) else None
    runtime = EngineRuntime(config, on_batch=on_batch, instrumentation=meter)
    scrapes, scrape_s = 0, 0.0
    registry: CollectorRegistry | None = None
    if isinstance(meter, On):
        registry = CollectorRegistry(auto_describe=False)
        registry.register(MetricsCollector(meter, runtime))
    task, stop = await start_assigned(runtime, meter)
    scraper = None
    if registry is not None:

        async def scrape() -> None:
            nonlocal scrapes, scrape_s
            while True:
                await asyncio.sleep(args.scrape_interval)
                began = time.perf_counter()
                generate_latest(registry)
                scrape_s += time.perf_counter() - began
                scrapes += 1

        scraper = asyncio.create_task(scrape())
    try:
        await wait_caught_up(runtime, task, timeout=300)
        seconds = time.perf_counter() - meter.assigned_at
        cpu = time.process_time() - meter.assigned_cpu
        records = runtime.report.records  # at caught_up, before the stop
        hook_s = meter.hook_s if isinstance(meter, On) else 0.0
    finally:
        if scraper is not None:
            scraper.cancel()
    body = generate_latest(registry) if registry is not None else b""
    await stop_engine(task, stop)
    return {
        "seconds": seconds,
        "cpu_seconds": cpu,
        "hook_s": hook_s,
        "scrape_s": scrape_s,
        "records": records,
        "scrapes": scrapes,
        "scrape_ms_mean": 1000 * scrape_s / scrapes if scrapes else None,
        "exposition_bytes": len(body),
    }


async def run(args: argparse.Namespace) -> dict[str, Any]:
    items = pack_items(await build_raw(session_config(args)), TickPacker(pack_config(args)))
    total = len(items)
    ticks = sum(option_ticks(record) for _, record in items)
    runs: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
    async with EmbeddedKafka() as kafka, EmbeddedRedis() as redis:
        base = redis.url.rsplit("/", 1)[0]
        topics = new_topics("mc")
        await ensure_topics(kafka.bootstrap, topics.all(), partitions=3)
        await produce(kafka.bootstrap, topics, items)
        for r in range(args.rounds):
            order = ("off", "on") if r % 2 == 0 else ("on", "off")
            for kind in order:
                result = await one_run(
                    args, kafka.bootstrap, f"{base}/{1 + len(runs[kind]) % 8}", topics,
                    f"{kind}{r}", metrics=kind == "on",
                )  # fmt: skip
                if result["records"] != total:
                    raise RuntimeError(f"{kind}: consumed {result['records']} of {total}")
                result["ticks_per_s"] = ticks / result["seconds"]
                result["cpu_us_per_tick"] = 1e6 * result["cpu_seconds"] / ticks
                runs[kind].append(result)
    off = statistics.median(x["ticks_per_s"] for x in runs["off"])
    on = statistics.median(x["ticks_per_s"] for x in runs["on"])
    cost = 1.0 - on / off
    cpu_off = statistics.median(x["cpu_us_per_tick"] for x in runs["off"])
    cpu_on = statistics.median(x["cpu_us_per_tick"] for x in runs["on"])
    on_runs = runs["on"]
    # Each round's two runs ran back to back: their ratio shares that moment's machine load.
    paired = [
        b["ticks_per_s"] / a["ticks_per_s"] for a, b in zip(runs["off"], on_runs, strict=True)
    ]
    paired_cpu = [
        b["cpu_us_per_tick"] / a["cpu_us_per_tick"]
        for a, b in zip(runs["off"], on_runs, strict=True)
    ]
    hook_share = sum(x["hook_s"] for x in on_runs) / sum(x["cpu_seconds"] for x in on_runs)
    scrape_share = sum(x["scrape_s"] for x in on_runs) / sum(x["cpu_seconds"] for x in on_runs)
    return {
        "ticks": ticks,
        "records": total,
        "rounds": args.rounds,
        "off_ticks_per_s": off,
        "on_ticks_per_s": on,
        "ratio_on_vs_off": on / off,
        "cost": cost,
        "target_cost": TARGET_COST,
        "target_met": cost <= TARGET_COST,
        # The engine process's own CPU per tick (the broker and Redis are other processes):
        # steadier than wall time on a shared machine.
        "off_cpu_us_per_tick": cpu_off,
        "on_cpu_us_per_tick": cpu_on,
        "cpu_cost": cpu_on / cpu_off - 1.0,
        "paired_ratio_median": statistics.median(paired),
        # Time inside the metrics hooks and scrapes over the on runs' engine CPU time: what
        # the metrics cost, measured directly rather than as a difference of two noisy runs.
        "hook_share_of_cpu": hook_share,
        "scrape_share_of_cpu": scrape_share,
        "target_met_direct": hook_share + scrape_share <= TARGET_COST,
        "paired_cpu_ratio_median": statistics.median(paired_cpu),
        "scrape_interval_s": args.scrape_interval,
        "scrapes": sum(x["scrapes"] for x in on_runs),
        "scrape_ms_mean": statistics.mean(
            x["scrape_ms_mean"] for x in on_runs if x["scrape_ms_mean"] is not None
        )
        if any(x["scrape_ms_mean"] is not None for x in on_runs)
        else None,
        "exposition_bytes": on_runs[-1]["exposition_bytes"],
        "off_runs_ticks_per_s": [round(x["ticks_per_s"]) for x in runs["off"]],
        "on_runs_ticks_per_s": [round(x["ticks_per_s"]) for x in on_runs],
        "off_runs_cpu_us_per_tick": [round(x["cpu_us_per_tick"], 3) for x in runs["off"]],
        "on_runs_cpu_us_per_tick": [round(x["cpu_us_per_tick"], 3) for x in on_runs],
    }


def summary(out: dict[str, Any]) -> str:
    return (
        f"metrics off {out['off_ticks_per_s']:,.0f} ticks/s, on {out['on_ticks_per_s']:,.0f} "
        f"ticks/s: cost {100 * out['cost']:.2f} % (target ≤ {100 * TARGET_COST:.0f} %), "
        f"engine CPU per tick {100 * out['cpu_cost']:+.2f} %, in the hooks "
        f"{100 * out['hook_share_of_cpu']:.2f} % and scrapes "
        f"{100 * out['scrape_share_of_cpu']:.2f} % of the engine's CPU, "
        f"{out['rounds']} rounds, {out['scrapes']} scrapes"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_session_flags(parser)
    defaults = {f.name: f.default for f in fields(EngineConfig)}  # the engine's, on Tansu
    parser.add_argument("--max-records", type=int, default=defaults["max_records"])
    parser.add_argument("--fetch-max-wait-ms", type=int, default=defaults["fetch_max_wait_ms"])
    parser.add_argument("--poll-timeout-ms", type=int, default=defaults["poll_timeout_ms"])
    parser.add_argument("--rounds", type=int, default=4, help="on/off pairs (median)")
    parser.add_argument("--scrape-interval", type=float, default=1.0, help="seconds")
    args = parser.parse_args()
    configure_logging(logging.WARNING)
    out = asyncio.run(run(args))
    print(json.dumps(out) if args.json else summary(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())

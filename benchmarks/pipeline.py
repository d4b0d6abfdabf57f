"""Whole-pipeline benchmark: Kafka → decode → merge → books → detector → Redis → commit.

    python benchmarks/pipeline.py --json

Starts its own embedded broker and Redis: ``--broker tansu`` or ``kafka`` (Apache Kafka,
KRaft, from ``make kafka-jars``) gives one JSON object with the keys below plus ``broker``;
``both`` (the default) runs the whole benchmark on each, one after the other, and gives one
object with a member per broker (``{"broker": "both", "tansu": {...}, "kafka": {...}}``).

The data is a seeded simulated Deribit session (``connectors.simulator``: 2,000 BTC
options, every option ticking ~10 times a second, the index once a second), normalised by
the live parse path (``IngestStage`` + ``DeribitNormaliser``) and packed as the Kafka
producer packs option tickers (``connectors.common.packing.TickPacker``: up to
``--pack-max-ticks`` ticks of one underlying per ``OptionTicks`` record, none waiting
longer than ``--pack-wait-ms``, on the simulated receive clock), so the engine sees the
record mix a busy session gives it. A "tick" is one option ticker update, packed or sent
whole; rates are in ticks, records are reported too.

1. Throughput. Every record is produced into fresh topics first (not timed). Then an
   ``EngineRuntime`` with its real configuration (Redis publishing, offset commits) runs
   from partition assignment until ``caught_up``: ``ticks_per_s`` = option ticks / seconds.
   Broker start and group join are outside that window; fetch, decode, merge, apply,
   evaluate, publish and commit are inside. The naive baseline in the same run is a plain
   ``AIOKafkaConsumer`` over the same topics (manual assignment, from the beginning) doing
   ``getmany`` + ``decode_record`` only (packs decoded to arrays), timed from assignment
   until it has decoded every record (``decode_only_ticks_per_s``).
2. Latency at 30,000 ticks/s (and, below saturation, at 10,000 ticks/s). A fresh engine
   (own topics, group, Redis db) first catches up on the start of the session (the book
   summary and the tickers up to the second price-index tick). Then another process paces
   the rest of the session into the broker at the target rate in ~1 ms rounds: each tick
   is stamped (``ts_recv_ns``) with its scheduled arrival time, packed as the producer's
   packer packs it, and every round's packs are sent at the end of the round (the flush at
   the end of a read), producer ``linger_ms`` 0 by default (the packs are the batching).
   In ``on_batch`` (called once the batch's events are in Redis) every tick gives one
   sample: now − its own ``ts_recv_ns``. The samples are also split at the engine's
   ``getmany``: ``to_engine_*`` (packing wait, produce, broker, fetch) and ``engine_*`` (the
   engine's own part, merge hold included). Engine knobs that matter: ``fetch_max_wait_ms``
   and ``poll_timeout_ms`` (engine defaults here; ``fetch_max_wait_ms=1`` makes Tansu stop
   serving a partition, see the README).

The engine runs unmodified and reports its time per stage and its counters through the
public instrumentation hook (``EngineRuntime(instrumentation=...)``; see
``pipeline_support.BenchInstrumentation``), so its checkpoints are written as in production
(the run fails if one is not).

Prints one JSON object (``--json``) or a readable summary. ``--profile`` adds a cProfile run
of the engine over the throughput topics and prints its top functions to stderr.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import logging
import multiprocessing as mp
import os
import pickle
import platform
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from dataclasses import fields
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.pipeline_dashboard import PageConnected
from benchmarks.pipeline_pacing import PaceJob, paced_producer_main
from benchmarks.pipeline_support import (
    BenchInstrumentation,
    RawItem,
    add_session_flags,
    build_raw,
    cpu_seconds,
    decode_only,
    engine_config,
    engine_state,
    git_state,
    is_index,
    new_topics,
    option_ticks,
    pack_config,
    pack_items,
    produce,
    record_mix,
    session_config,
    start_assigned,
    start_engine,
    stop_engine,
    ticks_in_packs,
    wait_caught_up,
)
from connectors.common.kafka.apache import EMBEDDED_BROKERS, embedded_broker
from connectors.common.kafka.embedded import ensure_topics
from connectors.common.logs import configure_logging
from connectors.common.packing import TickPacker
from connectors.common.redis_embedded import EmbeddedRedis
from engine.stream.merge import InputItem
from engine.stream.runtime import EngineConfig, EngineReport, EngineRuntime
from schemas.contracts import OptionContract
from schemas.ticks import OptionTicks
from schemas.topics import Topics

TARGET_TICKS_PER_S = 100_000
TARGET_P99_MS = 5.0
TARGET_RATE = 30_000
PARTS_OF_PUBLISH = ("redis", "commit", "checkpoint")  # engine stages inside ``publish``
#: Engine knobs for latency on Apache Kafka (measured: p50 4.6 → 3.2 ms at 30k ticks/s).
APACHE_KAFKA_TUNING = {"fetch_max_wait_ms": 1, "poll_timeout_ms": 10}


# ---------------------------------------------------------------------------- engine


def check_checkpoints(report: EngineReport) -> None:
    """The engine checkpoints its tasks at the stop: every write must have succeeded."""
    if report.checkpoint_failures or not report.checkpoints:
        raise RuntimeError(
            f"engine checkpoints: {report.checkpoints} written, "
            f"{report.checkpoint_failures} failed (see the engine's warnings)"
        )


async def engine_throughput(
    args: argparse.Namespace,
    bootstrap: str,
    redis_url: str,
    topics: Topics,
    run: str,
    total: int,
    ticks: int,
    profile: cProfile.Profile | None = None,
) -> dict[str, Any]:
    released = 0
    released_ticks = 0

    def on_batch(items: list[InputItem]) -> None:
        nonlocal released, released_ticks
        released += len(items)
        released_ticks += sum(option_ticks(item.record) for item in items)

    meter = BenchInstrumentation()
    config = engine_config(args, bootstrap, redis_url, topics, run)
    runtime = EngineRuntime(config, on_batch=on_batch, instrumentation=meter)
    task, stop = await start_assigned(runtime, meter)
    if profile is not None:
        profile.enable()
    await wait_caught_up(runtime, task, timeout=300)
    end = time.perf_counter()
    cpu = time.process_time() - meter.assigned_cpu
    if profile is not None:
        profile.disable()
    stages = dict(meter.seconds)
    report = runtime.report
    counters = {
        "records": report.records,
        "released": released,
        "batches": report.batches,
        "commits": report.commits,
        "evaluations": report.evaluations,
        "events": sum(report.events.values()),
        "levels_written": report.levels_written,
        "dead_letters": report.dead_letters,
    }
    await stop_engine(task, stop)
    check_checkpoints(report)
    counters["checkpoints"] = report.checkpoints
    seconds = end - meter.assigned_at
    assignments = meter.counts["assignments"]
    if (
        counters["records"] != total
        or released != total
        or released_ticks != ticks
        or assignments != 1
    ):
        raise RuntimeError(
            f"engine consumed {counters['records']} of {total} records in {assignments} assignments"
        )
    accounted = sum(v for k, v in stages.items() if k not in PARTS_OF_PUBLISH)
    stages["other"] = max(seconds - accounted, 0.0)
    return {
        "seconds": seconds,
        "ticks_per_s": ticks / seconds,
        "records_per_s": total / seconds,
        # Engine process CPU / wall time: well below 1 means it waited (broker, or the
        # machine was busy with something else).
        "engine_cpu_share": cpu / seconds,
        **counters,
        "stages_s": stages,
    }


# ---------------------------------------------------------------------------- latency


async def latency_run(
    args: argparse.Namespace,
    bootstrap: str,
    redis_url: str,
    raw: list[RawItem],
    pids: dict[str, int | None],
    rate: float,
    seconds: float,
) -> dict[str, Any]:
    topics = new_topics(f"lat{round(rate)}")
    await ensure_topics(bootstrap, topics.all(), partitions=3)
    # Seed: the book summary (it carries an index tick) and the tickers up to the second
    # price-index tick, so the book is full and an evaluation has run (numba compiled).
    index_positions = [i for i, (_, record, _) in enumerate(raw) if is_index(record)]
    cut = index_positions[1] + 1 if len(index_positions) > 1 else len(raw) // 20
    seed = pack_items(raw[:cut], TickPacker(pack_config(args)))
    paced = raw[cut : cut + int(rate * seconds)]
    seed_contracts = [record for _, record in seed if type(record) is OptionContract]
    await produce(bootstrap, topics, seed)

    samples: list[int] = []
    sent_at: list[int] = []
    engine_side: list[int] = []
    to_engine: list[int] = []  # stamped → returned by the engine's getmany
    steps: list[int] = []  # per batch: its getmany returned → on_batch
    marker_ns = time.time_ns()
    meter = BenchInstrumentation()

    def on_batch(batch: list[InputItem]) -> None:
        now = time.time_ns()
        steps.append(now - meter.fetch_returned_ns)
        for item in batch:
            fetched_ns = meter.fetched_ns(item.tp, item.offset)
            record = item.record
            if record is None or record.ts_recv_ns <= marker_ns:
                continue
            if type(record) is OptionTicks:  # one sample per tick, from its own stamp
                recv = record.recv_ns[record.recv_ns > marker_ns].tolist()
            else:
                recv = [record.ts_recv_ns]
            samples.extend(now - r for r in recv)
            sent_at.extend(recv)
            if fetched_ns is not None:
                engine_side.extend([now - fetched_ns] * len(recv))
                to_engine.extend(fetched_ns - r for r in recv)

    config = engine_config(args, bootstrap, redis_url, topics, "latency")
    runtime = EngineRuntime(config, on_batch=on_batch, instrumentation=meter)
    meter.track_fetches(runtime)
    task, stop = await start_engine(runtime, timeout=120)

    def cpu_now() -> dict[str, float | None]:
        return {
            "engine": time.process_time(),
            **{name: cpu_seconds(pid) for name, pid in pids.items()},
        }

    with tempfile.TemporaryDirectory(prefix="bench-pipeline-") as tmp:
        path = os.path.join(tmp, "paced.pickle")
        with open(path, "wb") as f:
            pickle.dump((paced, seed_contracts), f, protocol=pickle.HIGHEST_PROTOCOL)
        ctx = mp.get_context("spawn")
        queue = ctx.Queue()
        child = ctx.Process(
            target=paced_producer_main,
            args=(
                PaceJob(bootstrap, topics.prefix, path, rate, args.linger_ms, args.pack_max_ticks),
                queue,
            ),
            name="bench-paced-producer",
        )
        child.start()
        loop = asyncio.get_running_loop()
        try:
            sent = await loop.run_in_executor(None, queue.get, True, 300)
            # Pacing starts now: the window of the counters below.
            batches_before = runtime.report.batches
            evaluations_before = runtime.report.evaluations
            events_before = sum(runtime.report.events.values())
            stages_before = Counter(meter.seconds)
            held_before = meter.counts["merge_held_back"]
            cpu_before = cpu_now()
            window_start = time.perf_counter()
            steps.clear()
            if "started" in sent:
                sent = await loop.run_in_executor(None, queue.get, True, 300)
        finally:
            await loop.run_in_executor(None, child.join, 30)
            if child.is_alive():
                child.kill()
                child.join()
    if "error" in sent:
        raise RuntimeError(f"paced producer failed: {sent['error']}")
    deadline = time.monotonic() + 60
    while len(samples) < len(paced) and time.monotonic() < deadline:
        if task.done():
            task.result()
        await asyncio.sleep(0.001)
    window = time.perf_counter() - window_start
    cpu_after = cpu_now()
    batches = runtime.report.batches - batches_before
    evaluations = runtime.report.evaluations - evaluations_before
    events = sum(runtime.report.events.values()) - events_before
    assignments = meter.counts["assignments"]
    stages = Counter(meter.seconds)
    stages.subtract(stages_before)
    held_back = meter.counts["merge_held_back"] - held_before
    stall = engine_state(runtime) if len(samples) != len(paced) else ""
    await stop_engine(task, stop)
    check_checkpoints(runtime.report)
    cpu = {"producer": sent["cpu_seconds"]}
    for name, value in cpu_after.items():
        before = cpu_before[name]
        cpu[name] = None if value is None or before is None else value - before
    if len(samples) != len(paced) or assignments != 1:
        raise RuntimeError(
            f"latency run: {len(samples)} samples for {len(paced)} records sent, "
            f"{assignments} assignments; {stall}"
        )
    lat = np.asarray(samples, dtype=np.float64) / 1e6
    side = np.asarray(engine_side, dtype=np.float64) / 1e6
    step = np.asarray(steps, dtype=np.float64) / 1e6
    to = np.asarray(to_engine, dtype=np.float64) / 1e6
    second = (np.asarray(sent_at) - min(sent_at)) // 1_000_000_000
    by_second = [round(float(np.percentile(lat[second == s], 99)), 2) for s in np.unique(second)]
    return {
        "seed_records": len(seed),
        "ticks": len(paced),  # ticker updates (and the few other records) paced
        "kafka_records": sent["records"],  # what they became: packs and whole records
        "rounds_with_ticks": sent["rounds_with_ticks"],
        "target_rate": rate,
        "achieved_send_rate": sent["achieved_rate"],
        "send_seconds": sent["send_seconds"],
        "producer_max_backlog_records": sent["max_backlog_records"],
        "producer_kafka_batches": sent["kafka_batches"],
        "engine_batches": batches,
        "kafka_records_per_batch": sent["records"] / max(batches, 1),
        "evaluations": evaluations,
        "events": events,
        "p50_ms": float(np.percentile(lat, 50)),
        "p90_ms": float(np.percentile(lat, 90)),
        "p99_ms": float(np.percentile(lat, 99)),
        "p999_ms": float(np.percentile(lat, 99.9)),
        "max_ms": float(lat.max()),
        "mean_ms": float(lat.mean()),
        # Stamped → returned by the engine's getmany: linger, produce, broker, fetch.
        "to_engine_p50_ms": float(np.percentile(to, 50)),
        "to_engine_p99_ms": float(np.percentile(to, 99)),
        # From the getmany that returned the record to its on_batch: the engine's own part.
        "engine_p50_ms": float(np.percentile(side, 50)),
        "engine_p99_ms": float(np.percentile(side, 99)),
        "engine_max_ms": float(side.max()),
        # Per batch, its getmany returned → on_batch (decode … commit of that batch).
        "batch_step_p50_ms": float(np.percentile(step, 50)),
        "batch_step_p99_ms": float(np.percentile(step, 99)),
        "p99_ms_by_second": by_second,
        # Steps after which the event-time merge still held records back (waiting for
        # another input partition, up to merge_max_idle_s).
        "merge_held_back_steps": held_back,
        "engine_stage_seconds": {k: round(v, 3) for k, v in stages.items()},
        # CPU seconds per process while pacing (window: first send → last on_batch).
        "window_seconds": window,
        "cpu_seconds": {k: None if v is None else round(v, 2) for k, v in cpu.items()},
        "stamp": "per tick: its scheduled arrival, not before the previous round",
    }


# ---------------------------------------------------------------------------- main


def for_broker(args: argparse.Namespace, broker: str) -> argparse.Namespace:
    """``args`` with the engine knobs left unset filled in for ``broker``: the engine's
    defaults on Tansu (which stalls a partition with a 1 ms fetch wait), the latency tuning
    on Apache Kafka (it answers a waiting fetch as soon as data arrives)."""
    engine = {f.name: f.default for f in fields(EngineConfig)}
    resolved = argparse.Namespace(**vars(args))
    for name, tuned in APACHE_KAFKA_TUNING.items():
        if getattr(resolved, name) is None:
            setattr(resolved, name, tuned if broker == "kafka" else engine[name])
    return resolved


async def run(args: argparse.Namespace, broker: str) -> dict[str, Any]:
    """The whole benchmark on one embedded broker (``tansu`` or ``kafka``)."""
    args = for_broker(args, broker)
    wall_start = time.perf_counter()
    load_start = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    session = session_config(args)
    t = time.perf_counter()
    raw = await build_raw(session)
    items = pack_items(raw, TickPacker(pack_config(args)))
    generate_s = time.perf_counter() - t
    total = len(items)
    ticks = sum(option_ticks(record) for _, record in items)
    mix = record_mix(items)
    index_ticks = sum(1 for _, record in items if is_index(record))

    async with embedded_broker(broker) as kafka, EmbeddedRedis() as redis:
        bootstrap = kafka.bootstrap
        base = redis.url.rsplit("/", 1)[0]
        topics = new_topics("tp")
        await ensure_topics(bootstrap, topics.all(), partitions=3)
        produce_s = await produce(bootstrap, topics, items)

        engine_runs, decode_runs, page_runs = [], [], []
        for r in range(args.rounds):
            decode_runs.append(await decode_only(args, bootstrap, topics, total))
            engine_runs.append(
                await engine_throughput(
                    args, bootstrap, f"{base}/{1 + r % 8}", topics, f"r{r}", total, ticks
                )
            )
            if args.dashboard:  # the same, with a dashboard page connected to its Redis
                db = f"{base}/{12 + r % 4}"
                async with PageConnected(db) as page:
                    result = await engine_throughput(
                        args, bootstrap, db, topics, f"d{r}", total, ticks
                    )
                page_runs.append(
                    {**result, "page_messages": page.counts, "page_cpu_s": page.cpu_s,
                     "page_wall_s": page.wall_s}
                )  # fmt: skip

        profile_text = None
        if args.profile:
            profile = cProfile.Profile()
            await engine_throughput(
                args, bootstrap, f"{base}/9", topics, "profile", total, ticks, profile
            )
            stream = io.StringIO()
            stats = pstats.Stats(profile, stream=stream)
            stats.sort_stats("tottime").print_stats(25)
            stats.sort_stats("cumulative").print_stats(40)
            profile_text = stream.getvalue()

        pids = {"broker": kafka.pid, "redis": redis.pid}
        low = None
        if args.low_rate > 0:  # below saturation: the pipeline's latency floor
            low = await latency_run(
                args, bootstrap, f"{base}/11", raw, pids, args.low_rate, args.low_rate_seconds
            )
        latency = await latency_run(
            args, bootstrap, f"{base}/10", raw, pids, args.rate, args.latency_seconds
        )

    engine = sorted(engine_runs, key=lambda x: x["ticks_per_s"])[len(engine_runs) // 2]
    ticks_per_s = statistics.median(x["ticks_per_s"] for x in engine_runs)
    decode_per_s = statistics.median(x["ticks_per_s"] for x in decode_runs)
    out: dict[str, Any] = {
        "broker": broker,
        "ticks_per_s": ticks_per_s,
        "decode_only_ticks_per_s": decode_per_s,
        "ratio_vs_decode_only": ticks_per_s / decode_per_s,
        "p50_ms_at_30k": latency["p50_ms"],
        "p99_ms_at_30k": latency["p99_ms"],
        "records_per_s": statistics.median(x["records_per_s"] for x in engine_runs),
        "decode_only_records_per_s": statistics.median(x["records_per_s"] for x in decode_runs),
        "throughput": {
            "ticks": ticks,
            "records": total,
            "ticks_per_pack": mix.get("OptionTicks") and ticks_in_packs(items) / mix["OptionTicks"],
            "seconds": engine["seconds"],
            "batches": engine["batches"],
            "records_per_batch": total / max(engine["batches"], 1),
            "commits": engine["commits"],
            "evaluations": engine["evaluations"],
            "events": engine["events"],
            "levels_written": engine["levels_written"],
            "checkpoints": engine["checkpoints"],  # at the stop; every one written
            "engine_stage_seconds": {k: round(v, 3) for k, v in engine["stages_s"].items()},
            "engine_cpu_share": engine["engine_cpu_share"],
            "rounds_ticks_per_s": [round(x["ticks_per_s"]) for x in engine_runs],
            "rounds_decode_only_ticks_per_s": [round(x["ticks_per_s"]) for x in decode_runs],
        },
        "latency": latency,
        "latency_low_rate": low,
        "dashboard": dashboard_cost(ticks_per_s, page_runs) if page_runs else None,
        "config": {
            "venue": "deribit (simulated)",
            "underlyings": ["BTC"],
            "instruments": args.instruments,
            "session_seconds": args.session_seconds,
            "ticker_interval_s": args.ticker_interval,
            "seed": args.seed,
            "ticks": ticks,
            "records": total,
            "raw_records": len(raw),
            "pack_max_ticks": args.pack_max_ticks,
            "pack_wait_ms": args.pack_wait_ms,
            "index_ticks": index_ticks,
            "record_mix": mix,
            "partitions": 3,
            "max_records": args.max_records,
            "fetch_max_wait_ms": args.fetch_max_wait_ms,
            "poll_timeout_ms": args.poll_timeout_ms,
            "paced_producer_linger_ms": args.linger_ms,
            "latency_rate": args.rate,
            "latency_seconds": args.latency_seconds,
            "rounds": args.rounds,
        },
        "setup_seconds": {"generate_and_normalise": generate_s, "produce_all": produce_s},
        "machine": {
            "cpu_count": os.cpu_count(),
            "python": platform.python_version(),
            "platform": platform.platform(),
            "loadavg_1m_at_start": load_start,
            "loadavg_1m_at_end": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        },
        "targets": {
            "ticks_per_s_min": TARGET_TICKS_PER_S,
            "p99_ms_at_30k_max": TARGET_P99_MS,
        },
        "targets_met": {
            "ticks_per_s": ticks_per_s >= TARGET_TICKS_PER_S,
            "p99_ms_at_30k": latency["p99_ms"] <= TARGET_P99_MS,
            "latency_rate_achieved": latency["achieved_send_rate"] >= 0.98 * args.rate,
        },
        "code": git_state(),
        "total_seconds": time.perf_counter() - wall_start,
    }
    if profile_text is not None:
        print(profile_text, file=sys.stderr)
    return out


def dashboard_cost(ticks_per_s: float, page_runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Engine throughput with a dashboard page connected, against the rounds without."""
    with_page = statistics.median(x["ticks_per_s"] for x in page_runs)
    return {
        "ticks_per_s_with_page": with_page,
        "ticks_per_s_without": ticks_per_s,
        "ratio_with_page": with_page / ticks_per_s,
        "rounds_ticks_per_s_with_page": [round(x["ticks_per_s"]) for x in page_runs],
        "page_messages": [x["page_messages"] for x in page_runs],
        "page_seconds": [round(x["seconds"], 3) for x in page_runs],
        # CPU of the dashboard process and of the page's reader while connected, per round,
        # and its share of the connected wall time (the cost on a machine's cores).
        "page_cpu_s": [x["page_cpu_s"] for x in page_runs],
        "dashboard_cpu_share": [
            round(x["page_cpu_s"]["dashboard"] / x["page_wall_s"], 4)
            if x["page_cpu_s"].get("dashboard") is not None and x["page_wall_s"] > 0
            else None
            for x in page_runs
        ],
    }


def summary(out: dict[str, Any]) -> str:
    thr, lat, cfg = out["throughput"], out["latency"], out["config"]
    met = out["targets_met"]
    lines = [
        f"pipeline benchmark on {out['broker']}: {cfg['instruments']} instruments, "
        f"{cfg['ticks']:,} option ticks "
        f"in {cfg['records']:,} records ({cfg['index_ticks']} index ticks), "
        f"{out['machine']['cpu_count']} CPUs, "
        f"Python {out['machine']['python']}",
        f"  throughput      {out['ticks_per_s']:>10,.0f} ticks/s  "
        f"(target >= {TARGET_TICKS_PER_S:,}: {'met' if met['ticks_per_s'] else 'MISSED'})",
        f"  decode only     {out['decode_only_ticks_per_s']:>10,.0f} ticks/s  "
        f"ratio {out['ratio_vs_decode_only']:.2f}",
        f"  engine run      {thr['seconds']:.2f} s, {thr['batches']} batches, "
        f"{thr['evaluations']} evaluations, {thr['events']} events",
        "  engine stages   "
        + ", ".join(
            f"{k} {v:.2f}s"
            for k, v in thr["engine_stage_seconds"].items()
            if k not in PARTS_OF_PUBLISH
        )
        + " (publish: "
        + ", ".join(f"{k} {thr['engine_stage_seconds'].get(k, 0.0):.2f}s" for k in PARTS_OF_PUBLISH)
        + ")",
        f"  latency @ {lat['achieved_send_rate']:,.0f}/s for {lat['send_seconds']:.1f} s: "
        f"p50 {lat['p50_ms']:.2f} ms, p99 {lat['p99_ms']:.2f} ms, max {lat['max_ms']:.1f} ms "
        f"(target p99 <= {TARGET_P99_MS} ms: {'met' if met['p99_ms_at_30k'] else 'MISSED'})",
        f"  engine part     p50 {lat['engine_p50_ms']:.2f} ms, p99 {lat['engine_p99_ms']:.2f} ms"
        f" ({lat['engine_batches']} batches, {lat['kafka_records_per_batch']:.1f} records/batch)",
    ]
    low = out.get("latency_low_rate")
    if low:
        lines.append(
            f"  latency @ {low['achieved_send_rate']:,.0f}/s for {low['send_seconds']:.1f} s: "
            f"p50 {low['p50_ms']:.2f} ms, p99 {low['p99_ms']:.2f} ms, max {low['max_ms']:.1f} ms"
        )
    lines.append(f"  total {out['total_seconds']:.0f} s (shared machine: expect noise)")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    add_session_flags(parser)
    parser.add_argument("--rounds", type=int, default=2, help="throughput rounds (median)")
    defaults = {f.name: f.default for f in fields(EngineConfig)}
    parser.add_argument("--max-records", type=int, default=defaults["max_records"])
    parser.add_argument(
        "--fetch-max-wait-ms",
        type=int,
        default=None,
        help=f"engine fetch wait (default: {defaults['fetch_max_wait_ms']} on Tansu, "
        f"{APACHE_KAFKA_TUNING['fetch_max_wait_ms']} on Apache Kafka)",
    )
    parser.add_argument(
        "--poll-timeout-ms",
        type=int,
        default=None,
        help=f"engine poll timeout (default: {defaults['poll_timeout_ms']} on Tansu, "
        f"{APACHE_KAFKA_TUNING['poll_timeout_ms']} on Apache Kafka)",
    )
    parser.add_argument("--rate", type=float, default=TARGET_RATE, help="latency run ticks/s")
    parser.add_argument("--latency-seconds", type=float, default=10.0)
    parser.add_argument(
        "--low-rate", type=float, default=10_000, help="a second latency point (0: none)"
    )
    parser.add_argument("--low-rate-seconds", type=float, default=5.0)
    parser.add_argument(
        "--linger-ms", type=float, default=0.0, help="paced producer linger (packs: 0)"
    )
    parser.add_argument("--profile", action="store_true", help="cProfile run, top to stderr")
    parser.add_argument(
        "--broker",
        choices=(*EMBEDDED_BROKERS, "both"),
        default="both",
        help="the embedded broker: tansu, kafka (Apache Kafka: Java and `make kafka-jars`) or "
        "both, one after the other in this run (default)",
    )
    parser.add_argument(
        "--dashboard",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also each throughput round with a dashboard page connected",
    )
    args = parser.parse_args()
    configure_logging(logging.WARNING)  # engine logs to stderr, warnings and up
    if args.broker == "both":
        out = {
            "broker": "both",
            **{name: asyncio.run(run(args, name)) for name in EMBEDDED_BROKERS},
        }
        text = "\n".join(summary(out[name]) for name in EMBEDDED_BROKERS)
    else:
        out = asyncio.run(run(args, args.broker))
        text = summary(out)
    print(json.dumps(out) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The latency run's load generator: a child process pacing ticks into the broker.

:func:`paced_producer_main` runs in a spawned process (see ``pipeline.latency_run``); it
reads the paced records from a pickle, packs them per ~1 ms round as the producer's packer
does (:class:`PacedTicks`) and reports what it sent through a queue.
"""

from __future__ import annotations

import asyncio
import math
import pickle
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from benchmarks.pipeline_support import RawItem
from connectors.common.kafka.producer import ProducerConfig, RecordProducer
from connectors.common.packing import PackConfig, TickPacker
from schemas.contracts import OptionContract
from schemas.records import Record, encode_record
from schemas.ticks import OptionTicks
from schemas.topics import Topics


@dataclass(frozen=True, slots=True)
class PaceJob:
    """What the child process paces: where, from which file, how fast."""

    bootstrap: str
    prefix: str  # topic prefix
    path: str  # pickle of (paced records, seed contracts)
    rate: float  # ticks/s
    linger_ms: float
    pack_max_ticks: int


def paced_producer_main(job: PaceJob, queue: Any) -> None:
    """Child process: the ingest side at ``job.rate`` ticks/s, packing as the producer does."""
    try:
        queue.put(asyncio.run(_pace(job, queue)))
    except BaseException as exc:
        queue.put({"error": f"{type(exc).__name__}: {exc}"})
        raise


class PacedTicks:
    """The paced records as columns, packed per round without an object per tick.

    Which record is a packed tick and which goes out whole is decided once, by the
    producer's :class:`TickPacker` itself (seeded with the instruments the seed announced).
    A round's ticks are then cut into packs from array slices: consecutive ticks of one
    underlying, at most ``max_ticks`` each, cut at every other record (the packer flushes
    an underlying's pack before any other record of it; cutting at every record is the same
    for one underlying). :meth:`round` gives what a TickPacker drained at the end of the
    round would send, byte for byte (checked at start-up: :meth:`check`).
    """

    def __init__(
        self,
        paced: list[RawItem],
        seed_contracts: list[OptionContract],
        names: list[str],
        max_ticks: int,
    ) -> None:
        self.paced, self.names, self.max_ticks = paced, names, max_ticks
        self.seed_contracts = seed_contracts
        packer = self.packer()
        n = len(paced)
        is_tick = np.zeros(n, dtype=bool)
        for i, (_, record, packable) in enumerate(paced):
            if packable and type(record) is OptionContract:
                out = packer.add(names[i], record, 0.0)
                is_tick[i] = not any(r is record for _, r in out)
            else:
                packer.before(record, 0.0)
            if packer.pending > 100_000:
                packer.drain()
        self.is_tick = is_tick
        ticks = [record if is_tick[i] else None for i, (_, record, _) in enumerate(paced)]
        nan = math.nan

        def column(get: Callable[[OptionContract], Any], dtype: Any, missing: Any) -> np.ndarray:
            return np.array([missing if c is None else get(c) for c in ticks], dtype=dtype)

        self.instrument = [c.instrument if c is not None else "" for c in ticks]
        self.iv = column(lambda c: nan if c.iv is None else c.iv, np.float64, nan)
        self.open_interest = column(lambda c: c.open_interest, np.float64, nan)
        self.forward = column(lambda c: c.underlying_price, np.float64, nan)
        self.index = column(lambda c: nan if c.index_price is None else c.index_price, float, nan)
        self.gamma = column(lambda c: nan if c.gamma is None else c.gamma, np.float64, nan)
        self.event_ns = column(lambda c: c.ts_event_ns, np.int64, 0)
        # run_end[i]: where the run of ticks of one underlying that holds i ends
        underlying = [record.underlying for _, record, _ in paced]
        run_end = np.empty(n, dtype=np.int64)
        end = n
        for i in range(n - 1, -1, -1):
            if not is_tick[i]:
                end = i  # the ticks before it end here
            elif i + 1 < n and underlying[i + 1] != underlying[i]:
                end = i + 1
            run_end[i] = end
        self.run_end = run_end

    def packer(self) -> TickPacker:
        packer = TickPacker(PackConfig(max_ticks=self.max_ticks, max_wait_s=1e9, keyframe_s=1e9))
        for contract in self.seed_contracts:
            packer.before(contract, 0.0)
        return packer

    def round(self, start: int, stop: int, stamps: np.ndarray) -> list[tuple[str, bytes, bytes]]:
        """(topic, key, value) of records ``start``…``stop - 1``, stamped ``stamps``."""
        out = []
        i = start
        while i < stop:
            _, record, _ = self.paced[i]
            if not self.is_tick[i]:
                stamped = replace(record, ts_recv_ns=int(stamps[i - start]))
                out.append((self.names[i], record.underlying.encode(), encode_record(stamped)))
                i += 1
                continue
            j = min(int(self.run_end[i]), stop, i + self.max_ticks)
            recv = stamps[i - start : j - start]
            event = self.event_ns[i:j]
            pack = OptionTicks(
                record.venue,
                record.underlying,
                self.instrument[i:j],
                self.iv[i:j],
                self.open_interest[i:j],
                self.forward[i:j],
                self.index[i:j],
                self.gamma[i:j],
                event,
                recv,
                int(event.max()),
                int(recv.max()),
            )
            out.append((self.names[i], record.underlying.encode(), encode_record(pack)))
            i = j
        return out

    def check(self, rounds: int = 60, size: int = 37) -> None:
        """The fast path against the TickPacker over the first rounds (same bytes)."""
        packer = self.packer()
        for r in range(min(rounds, len(self.paced) // size)):
            a, b = r * size, (r + 1) * size
            stamps = np.arange(a, b, dtype=np.int64) + 1_700_000_000_000_000_000
            expected: list[tuple[str, Record]] = []
            for i in range(a, b):
                _, record, packable = self.paced[i]
                record = replace(record, ts_recv_ns=int(stamps[i - a]))
                if packable and type(record) is OptionContract:
                    expected.extend(packer.add(self.names[i], record, 0.0))
                else:
                    expected.extend(packer.before(record, 0.0))
                    expected.append((self.names[i], record))
            expected.extend(packer.drain())
            want = [(t, r.underlying.encode(), encode_record(r)) for t, r in expected]
            if self.round(a, b, stamps) != want:
                raise AssertionError(f"paced packs differ from the TickPacker's in round {r}")


async def _pace(job: PaceJob, queue: Any) -> dict:
    """Send the paced records at ``job.rate``/s in ~1 ms rounds, option tickers packed.

    Record ``i`` of the schedule arrives at ``start + i / rate``. Each round takes the
    records that have arrived since the previous round and stamps each one's ``ts_recv_ns``
    with its arrival time (never before the previous round: a generator running late
    cannot have received anything earlier than it looked). They are packed as the
    producer's :class:`TickPacker` packs them (see :class:`PacedTicks`) and every pack is
    flushed at the end of the round, the way a connector flushes at the end of a read: a
    tick waits for the rest of its round, at most ~1 ms when the generator keeps up.
    """
    with open(job.path, "rb") as f:
        paced, seed_contracts = pickle.load(f)
    topics = Topics(job.prefix)
    names = [getattr(topics, attr) for attr, _, _ in paced]
    columns = PacedTicks(paced, seed_contracts, names, job.pack_max_ticks)
    columns.check()
    config = ProducerConfig(
        job.bootstrap, client_id="bench-paced", enable_idempotence=False, linger_ms=job.linger_ms
    )
    producer = RecordProducer(config, topics)
    await producer.start()
    try:
        for name in set(names):  # metadata and routes before the clock starts
            await producer.partition_for(name, b"BTC")
        send = producer.send
        now_ns, clock = time.time_ns, time.perf_counter
        rate = job.rate
        step_ns = 1e9 / rate
        n = len(paced)
        sent = 0
        max_backlog = 0
        rounds = 0
        records = 0
        packs = 0
        queue.put({"started": True})
        cpu0 = time.process_time()
        start = clock()
        start_ns = previous_ns = now_ns()
        while sent < n:
            due = min(n, int((clock() - start) * rate) + 1)
            max_backlog = max(max_backlog, due - sent)
            round_ns = now_ns()
            arrival = start_ns + (np.arange(sent, due) * step_ns).astype(np.int64)
            stamps = np.clip(arrival, previous_ns, round_ns)
            for topic, key, value in columns.round(sent, due, stamps):
                await send(topic, key, value)
                records += 1
            packs += int(columns.is_tick[sent:due].any())
            sent = due
            previous_ns = round_ns
            rounds += 1
            await asyncio.sleep(0.001)
        send_seconds = clock() - start
        await producer.flush()
        cpu = time.process_time() - cpu0
        stats = producer.stats
    finally:
        await producer.stop()
    return {
        "sent": sent,
        "records": records,
        "rounds_with_ticks": packs,
        "send_seconds": send_seconds,
        "achieved_rate": sent / send_seconds,
        "max_backlog_records": max_backlog,
        "send_rounds": rounds,
        "kafka_batches": stats.batches,
        "cpu_seconds": cpu,
    }

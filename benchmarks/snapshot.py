"""A 24,000-contract SPX snapshot: parsed, diffed, produced, applied, levels out (ms).

Each timed snapshot goes the whole way through the embedded Tansu broker: a CBOE
delayed-quotes JSON body (bytes, as received) is parsed into columns, diffed against the
previous snapshot and framed into ``ChainDelta`` parts, produced to ``md.options.v1``
(acks=all, flushed), fetched by a consumer that is already assigned and polling, decoded,
applied to the gamma book and turned into levels for all three buckets. The clock stops
when the levels object exists.

The baseline in the same run is the Perfiliev-style pandas method: the chain as a pandas
frame with calls and puts side by side per strike, then for each of 60 spot levels in
``linspace(0.8·S, 1.2·S, 60)`` the dealer GEX of every row by ``DataFrame.apply`` of a
Black-Scholes gamma function (row by row, as the widely used script does), summed per
level; zero gamma at the first sign change; walls by strike.

``python benchmarks/snapshot.py --json`` prints one JSON object.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np
import orjson
import pandas as pd
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition

from connectors.cboe.columns import parse_cboe_json_columns
from connectors.common.kafka.embedded import EmbeddedKafka, ensure_topics
from connectors.common.kafka.producer import ProducerConfig, RecordProducer
from connectors.common.snapshots import SnapshotDiffer, SnapshotFramingConfig
from connectors.simulator.chains import spx_like_chain, to_cboe_delayed_quotes
from engine.core.config import LevelsConfig
from engine.core.feed import BookFeeder
from engine.core.levels import compute_levels
from schemas.records import decode_record
from schemas.topics import Topics

NS = 1_000_000_000


def snapshot_documents(n_contracts: int, count: int, seed: int) -> list[bytes]:
    """``count`` CBOE JSON bodies 15 s apart: spot moves and every row's IV and gamma change."""
    base = spx_like_chain(n_contracts, seed=seed)
    rng = np.random.default_rng(seed)
    docs = []
    for i in range(count):
        doc = to_cboe_delayed_quotes(base)
        spot = base.spot * (1 + 0.0005 * math.sin(i))
        stamp = base.asof_ns + 15 * NS * i
        doc["timestamp"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(stamp // NS))
        doc["data"]["current_price"] = round(spot, 2)
        for row in doc["data"]["options"]:
            if i:
                row["iv"] = round(row["iv"] * float(rng.uniform(0.98, 1.02)), 4)
                row["gamma"] = round(row["gamma"] * float(rng.uniform(0.98, 1.02)), 4)
        docs.append(orjson.dumps(doc))
    return docs


async def pipeline(args: argparse.Namespace, docs: list[bytes]) -> dict[str, Any]:
    async with EmbeddedKafka() as kafka:
        topics = Topics(f"bench-{uuid.uuid4().hex[:8]}.")
        await ensure_topics(kafka.bootstrap, [topics.options], partitions=3)
        producer = RecordProducer(
            ProducerConfig(kafka.bootstrap, enable_idempotence=False, linger_ms=0.0), topics
        )
        await producer.start()
        partition = await producer.partition_for(topics.options, b"SPX")
        consumer = AIOKafkaConsumer(
            bootstrap_servers=kafka.bootstrap,
            enable_auto_commit=False,
            fetch_max_wait_ms=10,
            max_partition_fetch_bytes=8 * 1024 * 1024,
            fetch_max_bytes=64 * 1024 * 1024,
        )
        await consumer.start()
        tp = TopicPartition(topics.options, partition)
        consumer.assign([tp])
        await consumer.seek_to_end(tp)
        differ = SnapshotDiffer(SnapshotFramingConfig(keyframe_every=10**9))
        feeder = BookFeeder(LevelsConfig())
        rows: list[dict[str, float]] = []
        try:
            for i, raw in enumerate(docs):
                stages: dict[str, float] = {}
                t0 = time.perf_counter()
                columns = parse_cboe_json_columns(raw, time.time_ns())
                t1 = time.perf_counter()
                parts = differ.frame(columns, time.time_ns())
                t2 = time.perf_counter()
                for part in parts:
                    await producer.send_record(topics.options, part)
                await producer.flush()
                t3 = time.perf_counter()
                received = []
                while len(received) < len(parts):
                    batch = await consumer.getmany(tp, timeout_ms=1_000)
                    received.extend(batch.get(tp, []))
                t4 = time.perf_counter()
                records = [decode_record(message.value) for message in received]
                t5 = time.perf_counter()
                feeder.apply(records)
                book = feeder.books["SPX"]
                book.advance_time(columns.asof_ns) if i == 0 else None
                t6 = time.perf_counter()
                levels = compute_levels(book)
                t7 = time.perf_counter()
                stages = {
                    "parse_ms": (t1 - t0) * 1e3,
                    "diff_frame_ms": (t2 - t1) * 1e3,
                    "produce_acked_ms": (t3 - t2) * 1e3,
                    "fetch_ms": (t4 - t3) * 1e3,
                    "decode_ms": (t5 - t4) * 1e3,
                    "apply_ms": (t6 - t5) * 1e3,
                    "levels_ms": (t7 - t6) * 1e3,
                    "total_ms": (t7 - t0) * 1e3,
                    "parts": len(parts),
                    "rows_sent": sum(p.size for p in parts),
                    "bytes": sum(len(m.value) for m in received),
                }
                rows.append(stages)
                assert levels.buckets["all"].contracts_used > 0
        finally:
            await consumer.stop()
            await producer.stop()
    first, steady = rows[0], rows[1:]

    def median(key: str) -> float:
        return round(statistics.median(r[key] for r in steady), 2)

    return {
        "first_snapshot_ms": round(first["total_ms"], 2),
        "first_snapshot_stages": {k: round(v, 2) for k, v in first.items()},
        "snapshot_ms": median("total_ms"),
        "snapshot_ms_p90": round(float(np.percentile([r["total_ms"] for r in steady], 90)), 2),
        "stages_median": {key: median(key) for key in steady[0] if key not in ("total_ms",)},
        "last_levels": {
            "zero_gamma": levels.buckets["all"].zero_gamma,
            "call_wall": levels.buckets["all"].call_wall,
            "put_wall": levels.buckets["all"].put_wall,
            "contracts_used": levels.buckets["all"].contracts_used,
        },
    }


# ---------------------------------------------------------------- the pandas method


def _bs_gamma_row(spot: float, strike: float, vol: float, tau: float) -> float:
    if tau <= 0 or vol <= 0 or strike <= 0:
        return 0.0
    d1 = (math.log(spot / strike) + 0.5 * vol * vol * tau) / (vol * math.sqrt(tau))
    return math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi) / (spot * vol * math.sqrt(tau))


def pandas_method(raw: bytes) -> dict[str, Any]:
    """The widely used script's way, on the same body: returns timing and its levels."""
    t0 = time.perf_counter()
    doc = orjson.loads(raw)
    spot = float(doc["data"]["current_price"])
    quote_date = pd.Timestamp(doc["timestamp"])
    frame = pd.DataFrame(doc["data"]["options"])
    frame["root"] = frame["option"].str[:-15]
    frame["expiration"] = pd.to_datetime(frame["option"].str[-15:-9], format="%y%m%d")
    frame["right"] = frame["option"].str[-9]
    frame["strike"] = frame["option"].str[-8:].astype(int) / 1000.0
    calls = frame[frame["right"] == "C"].set_index(["expiration", "strike"])
    puts = frame[frame["right"] == "P"].set_index(["expiration", "strike"])
    df = calls[["iv", "open_interest", "gamma"]].merge(
        puts[["iv", "open_interest", "gamma"]],
        left_index=True,
        right_index=True,
        suffixes=("_call", "_put"),
    )
    df = df.reset_index()
    business_days = np.busday_count(
        quote_date.date(), df["expiration"].values.astype("datetime64[D]")
    )
    df["tau"] = np.where(business_days == 0, 1 / 262, business_days / 262)
    levels = np.linspace(0.8 * spot, 1.2 * spot, 60)
    profile = []
    for level in levels:
        call_gex = df.apply(
            lambda row, s=level: (
                _bs_gamma_row(s, row["strike"], row["iv_call"], row["tau"])
                * 100
                * row["open_interest_call"]
                * s
                * s
                * 0.01
            ),
            axis=1,
        )
        put_gex = df.apply(
            lambda row, s=level: (
                _bs_gamma_row(s, row["strike"], row["iv_put"], row["tau"])
                * 100
                * row["open_interest_put"]
                * s
                * s
                * 0.01
                * -1
            ),
            axis=1,
        )
        profile.append(call_gex.sum() + put_gex.sum())
    profile_arr = np.array(profile)
    sign_change = np.flatnonzero(np.diff(np.sign(profile_arr)) != 0)
    zero_gamma = None
    if len(sign_change):
        j = int(sign_change[0])
        lo, hi = profile_arr[j], profile_arr[j + 1]
        zero_gamma = float(levels[j] - lo * (levels[j + 1] - levels[j]) / (hi - lo))
    df["call_gex"] = df["gamma_call"] * df["open_interest_call"] * 100 * spot * spot * 0.01
    df["put_gex"] = -df["gamma_put"] * df["open_interest_put"] * 100 * spot * spot * 0.01
    by_strike = df.groupby("strike")[["call_gex", "put_gex"]].sum()
    elapsed = time.perf_counter() - t0
    return {
        "ms": round(elapsed * 1e3, 1),
        "rows": len(df),
        "zero_gamma": zero_gamma,
        "call_wall": float(by_strike["call_gex"].idxmax()),
        "put_wall": float(by_strike["put_gex"].idxmin()),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    parser.add_argument("--contracts", type=int, default=24_000)
    parser.add_argument("--snapshots", type=int, default=11, help="1 cold + N-1 steady")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--skip-pandas", action="store_true")
    args = parser.parse_args()
    if args.snapshots < 2:
        parser.error("--snapshots must be at least 2")
    docs = snapshot_documents(args.contracts, args.snapshots, args.seed)
    out: dict[str, Any] = {
        "contracts": args.contracts,
        "document_bytes": len(docs[0]),
        **asyncio.run(pipeline(args, docs)),
    }
    if not args.skip_pandas:
        baseline = pandas_method(docs[-1])
        out["pandas_ms"] = baseline["ms"]
        out["pandas_levels"] = baseline
        out["speedup_vs_pandas"] = round(baseline["ms"] / out["snapshot_ms"], 1)
    out["target"] = {"snapshot_ms": 50, "speedup_vs_pandas": 400}
    if args.json:
        print(json.dumps(out))
    else:
        for key, value in out.items():
            print(f"{key}: {value}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

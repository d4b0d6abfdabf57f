"""CBOE snapshots end to end: delayed-quotes bodies → ChainDelta → Kafka → engine → Redis.

A seeded SPX chain (a 0DTE SPXW expiry settling 16:00 New York, dailies, weeklies, AM
monthlies) is served as a sequence of delayed-quotes documents a minute apart in which spot
walks down through the 0DTE zero-gamma level while staying below the all-expiries one, then
one document after the 16:00 settlement.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest
from redis.asyncio import Redis

from connectors.common.capture import CapturedMessage, CaptureWriter
from connectors.common.ingest import replay_capture
from connectors.common.kafka.embedded import ensure_topics
from connectors.common.kafka.producer import ProducerConfig, RecordProducer
from connectors.simulator.chains import spx_like_chain, to_cboe_delayed_quotes
from connectors.venues import StagePerVenue
from schemas.channels import levels_key
from schemas.levels import decode_levels
from schemas.topics import Topics
from tests import reference as ref
from tests.integration.test_pipeline import engine_config, run_engine, stream

NS = 1_000_000_000
NEW_YORK = ZoneInfo("America/New_York")
URL = "https://cdn.cboe.com/api/global/delayed_quotes/options/_SPX.json"
ASOF = datetime(2025, 3, 14, 14, 30, tzinfo=UTC)  # Friday 10:30 New York; SPXW 0DTE expires
SETTLED = datetime(2025, 3, 14, 20, 5, tzinfo=UTC)  # 16:05 New York: the 0DTE has settled
AFTER_SETTLEMENT = 2  # documents from 16:05 on, a minute apart (a change confirms over time)


def zero_gamma_levels() -> tuple[float, float]:
    """(0dte, all) zero gamma of the chain at its quote time, straight from the CBOE
    document and DESIGN §2.1 with the slow reference (not the engine's book): an OSI symbol
    gives root, date, right and strike (SPXW settles 16:00 New York, SPX at the 09:30
    open), T = time to settlement / 365 days, dealers long calls and short puts, and the
    profile's sign change nearest spot refined by bisection."""
    doc = to_cboe_delayed_quotes(spx_like_chain(2_000))
    spot = doc["data"]["current_price"]
    asof = datetime.strptime(doc["timestamp"], "%Y-%m-%d %H:%M:%S").replace(tzinfo=UTC)
    today = asof.astimezone(NEW_YORK).date()
    everything, zero_dte = [], []
    for row in doc["data"]["options"]:
        symbol = row["option"]
        root, day, right, strike = symbol[:-15], symbol[-15:-9], symbol[-9], symbol[-8:]
        date = datetime.strptime(day, "%y%m%d").date()
        hour, minute = (16, 0) if root == "SPXW" else (9, 30)
        settles = datetime(date.year, date.month, date.day, hour, minute, tzinfo=NEW_YORK)
        contract = ref.RefContract(
            strike=int(strike) / 1000,
            tau=(settles - asof).total_seconds() / (365 * 86400),
            iv=row["iv"],
            basis=1.0,
            position=row["open_interest"] * (1 if right == "C" else -1),
            multiplier=100.0,
            is_call=right == "C",
        )
        everything.append(contract)
        if date == today:
            zero_dte.append(contract)
    return _root_nearest(zero_dte, spot), _root_nearest(everything, spot)


def _root_nearest(contracts: list[ref.RefContract], spot: float) -> float:
    """The dealer GEX profile's root nearest ``spot`` (a scan of ±5 %, then bisection)."""

    def gex(s: float) -> float:
        return sum(ref.contract_gex(c, s) for c in contracts)

    grid = [spot * (0.95 + 0.1 * i / 100) for i in range(101)]
    values = [gex(s) for s in grid]
    brackets = [(i, i + 1) for i in range(100) if values[i] * values[i + 1] < 0]
    assert brackets, "the reference profile has no root within 5 % of spot"
    i, j = min(brackets, key=lambda b: abs((grid[b[0]] + grid[b[1]]) / 2 - spot))
    (lo, at_lo), hi = (grid[i], values[i]), grid[j]
    for _ in range(40):
        mid = (lo + hi) / 2
        at_mid = gex(mid)
        if (at_lo < 0) == (at_mid < 0):
            lo, at_lo = mid, at_mid
        else:
            hi = mid
    return (lo + hi) / 2


def write_capture(path: Path, spots: list[float]) -> None:
    base = spx_like_chain(2_000)
    before, after = spots[:-AFTER_SETTLEMENT], spots[-AFTER_SETTLEMENT:]
    moments = [ASOF.timestamp() + 60 * i for i in range(len(before))]
    moments += [SETTLED.timestamp() + 60 * i for i in range(len(after))]
    with CaptureWriter(path) as writer:
        for spot, moment in zip(spots, moments, strict=True):
            doc = to_cboe_delayed_quotes(base)
            doc["timestamp"] = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(moment))
            doc["data"]["current_price"] = spot
            recv_ns = int(moment * NS) + 900_000_000
            writer.write(CapturedMessage(recv_ns, "cboe", orjson.dumps(doc), url=URL))


@pytest.mark.asyncio
async def test_spot_through_the_0dte_flip_fires_in_the_0dte_bucket(
    kafka_bootstrap: str, topics: Topics, redis_url: str, tmp_path: Path
) -> None:
    zero_0dte, zero_all = zero_gamma_levels()
    assert zero_0dte < zero_all - 6  # the walk below stays clear of the all-expiries flip
    start = zero_0dte + 0.6 * (zero_all - zero_0dte)
    walk = [start - step * 1.5 for step in range(12)] + [zero_0dte - 15.0] * 3
    spots = [*walk] + [zero_0dte - 15.0] * AFTER_SETTLEMENT  # after the 16:00 settlement
    capture = tmp_path / "spx.jsonl"
    write_capture(capture, [round(s, 2) for s in spots])

    await ensure_topics(kafka_bootstrap, topics.all(), partitions=3)
    producer = RecordProducer(ProducerConfig(kafka_bootstrap, enable_idempotence=False), topics)
    await producer.start()
    try:
        stages = StagePerVenue(producer, topics)
        await replay_capture(capture, stages)
    finally:
        await producer.stop()
    assert stages.stages["cboe"].counts["dead_letters"] == 0

    report = await run_engine(engine_config(kafka_bootstrap, redis_url, topics))
    assert report.dead_letters == 0
    events = [event for _, event in await stream(redis_url, "SPX")]
    flips = [e for e in events if e.type == "flip_cross"]
    assert [(e.bucket, e.direction) for e in flips if e.bucket == "0dte"] == [("0dte", "down")]
    assert not [e for e in flips if e.bucket == "all"]  # the aggregate did not flip
    flip = next(e for e in flips if e.bucket == "0dte")
    assert flip.level == pytest.approx(zero_0dte, rel=2e-3)
    assert flip.spot < flip.level * (1 - 10e-4)  # confirmed beyond the 10 bp band
    assert flip.levels["zero_gamma"] == flip.level
    assert flip.underlying == "SPX" and flip.ts_event < int(SETTLED.timestamp() * NS)

    # At the settlement the 0DTE contracts leave the state: the 0dte levels vanish.
    after = [e for e in events if e.ts_event >= int(SETTLED.timestamp() * NS)]
    shifts = [e for e in after if e.type == "level_shift" and e.bucket == "0dte"]
    assert {e.detail["level_name"] for e in shifts} >= {"zero_gamma", "call_wall", "put_wall"}
    assert all(e.detail["to"] is None for e in shifts)
    assert all(e.levels["contracts_used"] == 0 for e in shifts)

    client = Redis.from_url(redis_url)
    try:
        latest = decode_levels(await client.get(levels_key("SPX")))
    finally:
        await client.aclose()
    assert latest.asof_ns == (int(SETTLED.timestamp()) + 60 * (AFTER_SETTLEMENT - 1)) * NS
    assert latest.buckets["0dte"].contracts_used == 0
    assert latest.buckets["all"].contracts_used == 2_000 - 200  # the 0DTE's 200 are gone
    assert latest.spot == pytest.approx(zero_0dte - 15.0, abs=0.01)

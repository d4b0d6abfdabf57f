"""Levels from a simulator capture: the same through Kafka, and what the simulator saw."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from connectors.common.ingest import IngestStage, MemorySink, replay_capture
from connectors.common.kafka.producer import ProducerConfig
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_session import SessionConfig, write_session
from connectors.sources import Source
from engine.app.capture_levels import levels_from_capture, levels_from_capture_async
from engine.app.cli import main
from engine.app.run_ingest import run_ingest
from engine.core.config import LevelsConfig
from engine.core.feed import BookFeeder
from schemas.contracts import OptionContract
from schemas.records import UnderlyingTick, decode_record
from schemas.ticks import OptionTicks
from schemas.topics import Topics
from tests.kafka_helpers import consume_all
from tests.reference_levels import reference_at


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "btc.jsonl"
    summary = write_session(
        SessionConfig(n_instruments=300, duration_s=240, seed=11, ticker_interval_s=10.0), path
    )
    return path, summary


def normalised(path) -> list:
    """The capture's records as the live parse path normalises them, in capture order."""
    sink = MemorySink()
    stage = IngestStage("deribit", DeribitNormaliser(), sink, Topics(), source="replay")
    asyncio.run(replay_capture(path, stage))
    return [record for _, record in sink.records]


def test_capture_levels_match_the_slow_reference(session):
    """Levels as of the capture's last venue time (DESIGN §2.5), against the slow reference
    on the capture's records (not the simulator's levels, which the engine's code computes)."""
    path, _ = session
    (levels,) = levels_from_capture(path, LevelsConfig())
    records = normalised(path)
    last = max(r.ts_event_ns for r in records)
    options = [r for r in records if type(r) is OptionContract]
    expected = reference_at(records, options, last)
    assert (levels.underlying, levels.asof_ns, levels.spot) == ("BTC", last, expected.spot)
    assert (levels.call_wall, levels.put_wall) == expected.walls
    assert levels.zero_gamma == pytest.approx(expected.zero_gamma, rel=1e-9)
    assert levels.net_gex == pytest.approx(expected.net_gex, rel=1e-9)
    # The scripted session went through the flip into negative gamma: positive net GEX at
    # the first index price (the book summary's), negative at the end.
    first = min(r.ts_event_ns for r in records if type(r) is UnderlyingTick)
    assert reference_at(records, options, first).net_gex > 0 > levels.net_gex
    assert levels.regime == "negative"


def test_cli_levels_from_capture(session, capsys):
    path, _ = session
    assert main(["levels", str(path), "--format", "capture", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    # against the slow reference (not the function the CLI calls)
    records = normalised(path)
    options = [r for r in records if type(r) is OptionContract]
    expected = reference_at(records, options, max(r.ts_event_ns for r in records))
    assert (out["spot"], out["call_wall"], out["put_wall"]) == (expected.spot, *expected.walls)
    assert out["zero_gamma"] == pytest.approx(expected.zero_gamma, rel=1e-9)
    assert out["net_gex"] == pytest.approx(expected.net_gex, rel=1e-9)
    assert out["model"] == "long_calls_short_puts"
    assert main(["levels", str(path), "--format", "capture", "--model", "flow", "--json"]) == 0
    flow = orjson.loads(capsys.readouterr().out)
    assert flow["model"] == "flow" and flow["net_gex"] != out["net_gex"]  # trades moved inventory


@pytest.mark.asyncio
async def test_capture_levels_equal_levels_through_kafka(session, kafka_bootstrap, topics):
    path, _ = session
    report = await run_ingest(
        [Source("replay", str(path))],
        ProducerConfig(bootstrap=kafka_bootstrap, enable_idempotence=False),
        topics,
    )
    assert report.counts["dead_letters"] == 0
    by_topic = {
        topic: await consume_all(kafka_bootstrap, topic)
        for topic in (
            topics.options,
            topics.underlying,
            topics.trades,
            topics.funding,
            topics.volindex,
        )
    }
    updates = sum(  # nothing lost: a pack of option tickers counts its ticks
        len(r) if isinstance(r, OptionTicks) else 1
        for v in by_topic.values()
        for r in (decode_record(m.value) for m in v)
    )
    assert updates == report.counts["records"]
    feeder = BookFeeder(LevelsConfig())
    for topic in (topics.options, topics.trades, topics.underlying):
        feeder.apply(decode_record(m.value) for m in by_topic[topic])
    asof = max(feeder.last_event_ns.values())
    via_kafka = feeder.levels("BTC", asof)
    (direct,) = await levels_from_capture_async(path, LevelsConfig())
    assert via_kafka.asof_ns == direct.asof_ns
    assert via_kafka.spot == direct.spot
    assert via_kafka.net_gex == pytest.approx(direct.net_gex, rel=1e-9)
    assert via_kafka.zero_gamma == pytest.approx(direct.zero_gamma, rel=1e-9)
    for bucket in ("all", "0dte", "front"):
        a, b = via_kafka.buckets[bucket], direct.buckets[bucket]
        assert (a.call_wall, a.put_wall, a.abs_gamma_strike, a.contracts_used) == (
            b.call_wall,
            b.put_wall,
            b.abs_gamma_strike,
            b.contracts_used,
        )
        assert a.net_gex == pytest.approx(b.net_gex, rel=1e-9)

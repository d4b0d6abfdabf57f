"""Levels from a simulator capture: the same through Kafka, and what the simulator saw."""

from __future__ import annotations

import orjson
import pytest

from connectors.common.kafka.producer import ProducerConfig
from connectors.simulator.deribit_session import SessionConfig, write_session
from connectors.sources import Source
from engine.app.capture_levels import levels_from_capture, levels_from_capture_async
from engine.app.cli import main
from engine.app.run_ingest import run_ingest
from engine.core.config import LevelsConfig
from engine.core.feed import BookFeeder
from schemas.records import decode_record
from schemas.ticks import OptionTicks
from tests.kafka_helpers import consume_all


@pytest.fixture(scope="module")
def session(tmp_path_factory):
    path = tmp_path_factory.mktemp("sim") / "btc.jsonl"
    summary = write_session(
        SessionConfig(n_instruments=300, duration_s=240, seed=11, ticker_interval_s=10.0), path
    )
    return path, summary


def test_capture_levels_match_what_the_simulator_saw(session):
    path, summary = session
    (levels,) = levels_from_capture(path, LevelsConfig())
    final = summary.final_levels
    assert levels.underlying == "BTC"
    # The capture carries wire-rounded marks (IV to 0.01 %, prices to ticks) and the simulator
    # read its levels at its last 2 s refresh: equal walls, zero gamma within 0.2 %.
    assert (levels.call_wall, levels.put_wall) == (final["call_wall"], final["put_wall"])
    assert levels.zero_gamma == pytest.approx(final["zero_gamma"], rel=2e-3)
    assert levels.net_gex == pytest.approx(final["net_gex"], rel=0.05)
    assert levels.spot == pytest.approx(summary.spot_final, rel=1e-3)
    # The scripted session went through the flip into negative gamma.
    assert summary.initial_levels["net_gex"] > 0 > levels.net_gex
    assert levels.regime == "negative"


def test_cli_levels_from_capture(session, capsys):
    path, summary = session
    assert main(["levels", str(path), "--format", "capture", "--json"]) == 0
    out = orjson.loads(capsys.readouterr().out)
    (expected,) = levels_from_capture(path, LevelsConfig())
    assert out == orjson.loads(orjson.dumps(expected.to_dict()))
    # and against what the simulator saw (not the function the CLI calls)
    final = summary.final_levels
    assert (out["call_wall"], out["put_wall"]) == (final["call_wall"], final["put_wall"])
    assert out["zero_gamma"] == pytest.approx(final["zero_gamma"], rel=2e-3)
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

"""``--source simulator:BTC``: a seeded Deribit session through the Deribit parse path."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from pathlib import Path

import pytest

from connectors.common.capture import read_capture
from connectors.common.ingest import IngestStage, MemorySink, replay_messages
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_config import SessionConfig
from connectors.simulator.deribit_session import generate_session, write_session
from connectors.simulator.source import SimulatorConfig
from connectors.sources import parse_source
from connectors.venues import live_clients
from engine.app.capture_levels import levels_from_capture
from engine.app.cli import main
from engine.app.settings import load_settings
from engine.core.config import LevelsConfig
from schemas.config import ConfigError
from schemas.topics import Topics
from tests.conditions import eventually

SESSION = SessionConfig(n_instruments=300, duration_s=20.0, seed=3, ticker_interval_s=2.0)


@pytest.mark.asyncio
async def test_the_source_streams_exactly_the_session_through_the_deribit_parser():
    sink = MemorySink()
    config = SimulatorConfig(speed=0, session=SESSION)
    ((name, stage, client),) = live_clients(
        [parse_source("simulator:eth")], sink, Topics(), {"simulator": config}
    )
    await asyncio.wait_for(client.run(), 120)  # a session ends by itself
    assert (name, stage.venue) == ("simulator", "simulator")
    expected = MemorySink()
    reference = IngestStage("deribit", DeribitNormaliser(), expected, Topics())
    await replay_messages(generate_session(replace(SESSION, currency="ETH")), reference)
    assert sink.records == expected.records and len(sink.records) > 100
    assert stage.counts == reference.counts and not sink.dead_letters
    assert {record.underlying for _, record in sink.records} == {"ETH"}


@pytest.mark.asyncio
async def test_stop_ends_a_paced_session_early():
    sink = MemorySink()
    config = SimulatorConfig(speed=1.0, session=replace(SESSION, duration_s=600.0))
    ((_, stage, client),) = live_clients(
        [parse_source("simulator:BTC")], sink, Topics(), {"simulator": config}
    )
    task = asyncio.create_task(client.run())
    await eventually(lambda: stage.counts["records"] > 0, 60.0, "no record from the session")
    await client.stop()
    await asyncio.wait_for(task, 60)  # a cap: a 600 s session at real speed, stopped early
    total = sum(1 for _ in generate_session(replace(config.session, currency="BTC")))
    assert stage.counts["messages"] < total


def test_the_simulator_table(tmp_path: Path):
    path = tmp_path / "regime.toml"
    path.write_text("[simulator]\nspeed = 0\n[simulator.session]\nn_instruments = 300\n")
    config = load_settings({}, {}, str(path)).venues["simulator"]
    assert config == SimulatorConfig(speed=0, session=SessionConfig(n_instruments=300))
    for text, message in (
        ("[simulator]\nspeed = -1\n", "simulator speed must be >= 0"),
        ("[simulator.session]\nn_instruments = 7\n", "n_instruments must be an integer"),
        ("[simulator.session]\nseeds = 1\n", "unknown simulator.session config keys: seeds"),
    ):
        path.write_text(text)
        with pytest.raises(ConfigError, match=message):
            load_settings({}, {}, str(path))


def test_record_a_simulated_session_then_its_levels(tmp_path: Path, capsys):
    config = tmp_path / "regime.toml"
    config.write_text(
        "[simulator]\nspeed = 0\n[simulator.session]\n"
        "n_instruments = 300\nduration_s = 20.0\nseed = 3\nticker_interval_s = 2.0\n"
    )
    out = tmp_path / "sim.jsonl"
    argv = ["record", "--source", "simulator:BTC", "--out", str(out), "--config", str(config)]
    assert main([*argv, "--duration", "3"]) == 0
    lines = list(read_capture(out))
    assert {m.venue for m in lines} == {"simulator"}
    assert f"recorded {len(lines)} messages" in capsys.readouterr().err
    written = tmp_path / "written.jsonl"
    write_session(SESSION, written)
    assert levels_from_capture(out, LevelsConfig()) == levels_from_capture(written, LevelsConfig())

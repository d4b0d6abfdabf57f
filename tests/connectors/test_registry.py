"""The venue registry: every spec is complete, and sources, tables and replays resolve
through it (adding a venue is its folder and one registry line)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from connectors.common.capture import CapturedMessage, CaptureWriter
from connectors.common.ingest import MemorySink, replay_capture
from connectors.common.sources import Source, SourceError
from connectors.common.venue import VenueSpec
from connectors.registry import SPECS
from connectors.sources import KINDS, REPLAY, parse_source
from connectors.venues import (
    StagePerVenue,
    live_clients,
    locate,
    normaliser_for,
    targets_by_venue,
)
from engine.app.cli import main
from engine.app.settings import load_settings
from schemas.config import Config, ConfigError
from schemas.topics import Topics

IDS = [spec.venue for spec in SPECS]


def test_one_spec_per_venue_with_distinct_names_prefixes_and_tables():
    assert IDS == ["deribit", "cboe", "cme", "binance", "bybit", "okx", "simulator"]
    for attribute in ("venue", "prefix", "table"):
        values = [getattr(spec, attribute) for spec in SPECS]
        assert len(set(values)) == len(values), attribute
    assert KINDS == ("deribit", "cboe", "cme", "funding", "simulator", REPLAY)


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_every_spec_is_complete(spec: VenueSpec):
    assert all(getattr(spec, f.name) != "" for f in dataclasses.fields(spec))
    assert issubclass(spec.config, Config) and dataclasses.is_dataclass(spec.config)
    assert spec.config.__dataclass_params__.frozen
    assert spec.example.startswith(spec.prefix + ":")
    assert spec.table.replace(".", ":") == spec.prefix
    assert callable(spec.normaliser) and callable(spec.client) and callable(spec.target)
    assert hasattr(spec.normaliser(None), "normalise")
    assert type(normaliser_for(spec.venue)) is type(spec.normaliser(None))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_each_prefix_is_accepted_by_the_source_parser(spec: VenueSpec):
    source = parse_source(spec.example)
    assert source.spec == spec.example
    found = locate(source)
    assert found is not None and found[0] is spec
    assert spec.prefix + ":" + found[1] == spec.example
    assert targets_by_venue([source, source]) == {spec.venue: (found[1],)}
    with pytest.raises(SourceError, match=f"^bad source '{spec.prefix}:ZZZ-NOT-IT': ") as info:
        parse_source(f"{spec.prefix}:ZZZ-NOT-IT")
    assert "\n" not in str(info.value)


def test_an_unknown_prefix_is_one_line_naming_the_known_kinds(capsys):
    with pytest.raises(SourceError) as info:
        parse_source("kraken:XBTUSD")
    message = str(info.value)
    assert message == (
        "unknown source kind 'kraken' in 'kraken:XBTUSD'; "
        "known: deribit, cboe, cme, funding, simulator, replay"
    )
    assert main(["ingest", "--source", "kraken:XBTUSD", "--kafka", "h:1"]) == 2
    err = capsys.readouterr().err
    assert err == f"regime-engine: error: {message}\n"


def test_replay_is_not_a_venue(tmp_path: Path):
    path = tmp_path / "c.jsonl"
    path.write_text("")
    source = parse_source(f"replay:{path}")
    assert source == Source(REPLAY, str(path)) and locate(source) is None
    assert targets_by_venue([source]) == {}


def test_live_clients_one_per_venue_named_by_its_prefix():
    sources = [parse_source(s) for s in ("deribit:btc", "funding:okx:BTC-USDT-SWAP", "deribit:ETH")]
    clients = live_clients(sources, MemorySink(), Topics())
    assert [(c.name, c.stage.venue) for c in clients] == [
        ("deribit", "deribit"),
        ("funding-okx", "okx"),
    ]
    assert clients[0].client.config.currencies == ("BTC", "ETH")


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_each_venue_table_resolves_to_its_config(spec: VenueSpec, tmp_path: Path):
    path = tmp_path / "regime.toml"
    path.write_text(f"[{spec.table}]\nbogus = 1\n")
    with pytest.raises(ConfigError, match="config keys: bogus"):
        load_settings({}, {}, str(path))
    table = {"cme": f'directory = "{tmp_path}"\n'}.get(spec.venue, "")
    path.write_text(f"[{spec.table}]\n{table}")
    loaded = load_settings({}, {}, str(path))
    assert set(loaded.venues) == {spec.venue}
    assert isinstance(loaded.venues[spec.venue], spec.config)


def test_cli_help_lists_every_prefix_and_table(capsys):
    with pytest.raises(SystemExit):
        main(["ingest", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for spec in SPECS:
        assert spec.example in text and f"[{spec.table}]" in text


@pytest.mark.asyncio
async def test_a_capture_line_of_every_venue_reaches_its_normaliser(tmp_path: Path):
    path = tmp_path / "junk.jsonl"
    with CaptureWriter(path) as writer:
        for i, spec in enumerate(SPECS):
            writer.write(CapturedMessage(i + 1, spec.venue, b"{not json"))
    sink = MemorySink()
    stages = StagePerVenue(sink, Topics())
    await replay_capture(path, stages)
    assert set(stages.stages) == set(IDS)
    assert all(stage.counts["dead_letters"] == 1 for stage in stages.stages.values())

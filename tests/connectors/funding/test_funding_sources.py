"""``--source funding:VENUE:SYMBOL``: accepted specs, one-line errors, grouping by venue."""

from __future__ import annotations

import pytest

from connectors.registry import SPECS
from connectors.sources import Source, SourceError, parse_source
from connectors.venues import locate, targets_by_venue
from engine.app.cli import main


@pytest.mark.parametrize(
    ("spec", "target"),
    [
        ("funding:binance:BTCUSDT", "binance:BTCUSDT"),
        ("funding:bybit:BTCUSDT", "bybit:BTCUSDT"),
        ("funding:okx:BTC-USDT-SWAP", "okx:BTC-USDT-SWAP"),
        ("funding:Binance:1000pepeusdt", "binance:1000PEPEUSDT"),
    ],
)
def test_funding_sources(spec, target):
    source = parse_source(spec)
    assert source == Source("funding", target)
    spec, symbol = locate(source)
    assert (spec.venue, symbol) == tuple(target.split(":"))
    assert spec in SPECS


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("funding:kraken:XBTUSD", "funding venue must be one of binance, bybit, okx"),
        ("funding:binance", "expected funding:binance:SYMBOL"),
        ("funding:binance:", "expected funding:binance:SYMBOL, a USD-M perpetual"),
        ("funding:binance:BTCUSDT_250328", "a USD-M perpetual such as BTCUSDT"),
        ("funding:bybit:BTC-26DEC25", "a linear perpetual such as BTCUSDT"),
        ("funding:okx:BTC-USDT", "a perpetual swap such as BTC-USDT-SWAP"),
        ("funding:okx:BTC-USD-250328", "a perpetual swap such as BTC-USDT-SWAP"),
    ],
)
def test_bad_funding_sources_are_one_line(spec, message):
    with pytest.raises(SourceError, match=message) as info:
        parse_source(spec)
    assert "\n" not in str(info.value)


def test_cli_reports_a_bad_funding_source_in_one_line(capsys):
    assert main(["ingest", "--source", "funding:ftx:BTC-PERP", "--kafka", "h:1"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "funding venue must be one of" in err


def test_sources_are_grouped_by_venue_once_each():
    sources = [
        parse_source(s)
        for s in (
            "funding:bybit:ETHUSDT",
            "deribit:BTC",
            "funding:binance:BTCUSDT",
            "funding:bybit:BTCUSDT",
            "funding:bybit:ethusdt",
        )
    ]
    assert targets_by_venue(sources) == {
        "bybit": ("ETHUSDT", "BTCUSDT"),
        "deribit": ("BTC",),
        "binance": ("BTCUSDT",),
    }

"""Every verbatim Deribit message in ../shared/fixtures/protocol_samples parses or is
dead-lettered with a reason, as pinned per sample (skips when ../shared is absent)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from connectors.common.ingest import IngestStage, MemorySink, decode_json
from connectors.deribit.normaliser import DeribitNormaliser
from schemas.contracts import OptionContract
from schemas.records import FundingRate, InstrumentState, OptionTrade, UnderlyingTick, VolIndexTick
from schemas.topics import Topics
from tests.paths import PROTOCOL_SAMPLES, shared_fixture

SAMPLES = PROTOCOL_SAMPLES
FILES = sorted(SAMPLES.glob("deribit_*.json")) if SAMPLES.is_dir() else []

# data-only samples (DERIBIT-SPEC gives params.data only): the channel to wrap them in
DATA_ONLY_CHANNELS = {
    "deribit_ticker_perpetual_data_only_docs.json": "ticker.BTC-PERPETUAL.100ms",
    "deribit_incremental_ticker_snapshot_data_only_docs.json": "incremental_ticker.BTC-PERPETUAL",
    "deribit_trades_option_kind_currency_data_only_docs.json": "trades.option.BTC.100ms",
    "deribit_trades_instrument_data_only_docs.json": "trades.BTC-PERPETUAL.100ms",
    "deribit_book_snapshot_data_only_docs.json": "book.BTC-PERPETUAL.100ms",
    "deribit_book_change_data_only_docs.json": "book.BTC-PERPETUAL.100ms",
    "deribit_book_grouped_data_only_docs.json": "book.BTC-PERPETUAL.none.10.100ms",
    "deribit_volatility_index_data_only_docs.json": "deribit_volatility_index.btc_usd",
    "deribit_markprice_options_data_only_docs.json": "markprice.options.btc_usd",
    "deribit_instrument_state_data_only_docs.json": "instrument.state.future.BTC",
    "deribit_perpetual_interest_data_only_docs.json": "perpetual.BTC-PERPETUAL.100ms",
    "deribit_platform_state_data_only_docs.json": "platform_state",
}


def _frame(path: Path) -> tuple[bytes, dict | None]:
    raw = path.read_bytes()
    if path.name in DATA_ONLY_CHANNELS:
        data = orjson.loads(raw)
        raw = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "method": "subscription",
                "params": {"channel": DATA_ONLY_CHANNELS[path.name], "data": data},
            }
        )
    request = None
    if "_response_" in path.name:
        method = path.name.removeprefix("deribit_").split("_response")[0]
        method = {
            "get_book_summary_by_currency_option_btc": "get_book_summary_by_currency",
            "get_book_summary_by_currency_option_eth": "get_book_summary_by_currency",
            "get_book_summary_by_currency_perpetual": "get_book_summary_by_currency",
            "get_instrument_option": "get_instrument",
            "public_ticker_perpetual": "ticker",
        }.get(method, method)
        method = method.removeprefix("public_")
        request = {"method": f"public/{method}", "params": {}}
    return raw, request


def _venue_times_ms(doc) -> list[int]:
    if isinstance(doc, dict):
        found = [v for k, v in doc.items() if k.endswith("timestamp") and type(v) is int]
        return found + [t for v in doc.values() for t in _venue_times_ms(v)]
    if isinstance(doc, list):
        return [t for v in doc for t in _venue_times_ms(v)]
    return []


def _received_ns(doc) -> int:
    """When the sample was received: the server's send time (``usOut``), else 1 ms after
    its earliest venue timestamp (the samples come from different years; an instrument's
    expiry is later than its listing, so the earliest is the message's own time)."""
    if isinstance(doc, dict) and type(doc.get("usOut")) is int:
        return doc["usOut"] * 1_000
    times = [t for t in _venue_times_ms(doc) if t > 946_684_800_000]  # 0 / tiny: not times
    return (min(times) + 1) * 1_000_000 if times else 1


def _run(path: Path) -> tuple[MemorySink, list]:
    sink = MemorySink()
    stage = IngestStage("deribit", DeribitNormaliser(), sink, Topics(), source="test")
    raw, request = _frame(path)
    doc, error = decode_json(raw)
    recv_ns = _received_ns(doc)
    routed = asyncio.run(stage.on_message(raw, doc, recv_ns, request, decode_error=error))
    return sink, routed


DEAD_LETTER = "dead_letter"
NOTHING = "nothing"

# The outcome each sample must have: dead-lettered, nothing routed (a response or
# heartbeat the stage ignores), or that many records.
EXPECTED_OUTCOME: dict[str, str | int] = {
    "deribit_book_change_data_only_docs.json": DEAD_LETTER,
    "deribit_book_future_change_notification_capture.json": DEAD_LETTER,
    "deribit_book_grouped_data_only_docs.json": DEAD_LETTER,
    "deribit_book_grouped_option_notification_capture.json": DEAD_LETTER,
    "deribit_book_grouped_perpetual_notification_nautilus.json": DEAD_LETTER,
    "deribit_book_option_snapshot_notification_capture.json": DEAD_LETTER,
    "deribit_book_snapshot_data_only_docs.json": DEAD_LETTER,
    "deribit_get_book_summary_by_currency_option_btc_response_capture.json": 3,
    "deribit_get_book_summary_by_currency_option_eth_response_capture.json": 2,
    "deribit_get_book_summary_by_currency_perpetual_response_capture.json": NOTHING,
    "deribit_get_book_summary_by_currency_request_docs.json": DEAD_LETTER,
    "deribit_get_book_summary_by_currency_response_docs.json": NOTHING,
    "deribit_get_funding_rate_history_request_docs.json": DEAD_LETTER,
    "deribit_get_funding_rate_history_response_docs.json": NOTHING,
    "deribit_get_funding_rate_value_request_docs.json": DEAD_LETTER,
    "deribit_get_funding_rate_value_response_docs.json": NOTHING,
    "deribit_get_instrument_option_request_docs.json": DEAD_LETTER,
    "deribit_get_instrument_option_response_docs.json": NOTHING,
    "deribit_get_instruments_request_docs.json": DEAD_LETTER,
    "deribit_get_instruments_response_docs.json": NOTHING,
    "deribit_get_order_book_option_response_capture.json": NOTHING,
    "deribit_get_volatility_index_data_request_docs.json": DEAD_LETTER,
    "deribit_get_volatility_index_data_response_docs.json": NOTHING,
    "deribit_heartbeat_test_request_nautilus.json": NOTHING,
    "deribit_incremental_ticker_snapshot_data_only_docs.json": DEAD_LETTER,
    "deribit_instrument_state_data_only_docs.json": NOTHING,
    "deribit_jsonrpc_error_docs.json": DEAD_LETTER,
    "deribit_jsonrpc_error_too_many_requests_nautilus.json": DEAD_LETTER,
    "deribit_markprice_options_data_only_docs.json": DEAD_LETTER,
    "deribit_perpetual_interest_data_only_docs.json": DEAD_LETTER,
    "deribit_platform_state_data_only_docs.json": DEAD_LETTER,
    "deribit_price_index_notification_docs.json": 1,
    "deribit_public_subscribe_request_docs.json": DEAD_LETTER,
    "deribit_public_subscribe_response_docs.json": NOTHING,
    "deribit_public_test_request_docs.json": DEAD_LETTER,
    "deribit_public_test_response_docs.json": NOTHING,
    "deribit_public_ticker_perpetual_request_docs.json": DEAD_LETTER,
    "deribit_public_ticker_perpetual_response_docs.json": NOTHING,
    "deribit_public_unsubscribe_request_docs.json": DEAD_LETTER,
    "deribit_public_unsubscribe_response_docs.json": NOTHING,
    "deribit_quote_notification_nautilus.json": DEAD_LETTER,
    "deribit_set_heartbeat_request_docs.json": DEAD_LETTER,
    "deribit_set_heartbeat_response_docs.json": NOTHING,
    "deribit_subscribe_response_nautilus.json": NOTHING,
    "deribit_ticker_future_notification_capture.json": DEAD_LETTER,
    "deribit_ticker_option_notification_btc_23feb24_45000_c_capture.json": 1,
    "deribit_ticker_option_notification_btc_30sep22_60000_c_capture.json": 1,
    "deribit_ticker_option_notification_expired_btc_2apr20_7125_p_capture.json": 1,
    "deribit_ticker_perpetual_data_only_docs.json": 1,
    "deribit_ticker_perpetual_notification_capture.json": 1,
    "deribit_ticker_perpetual_notification_nautilus.json": 1,
    "deribit_ticker_subscribe_request_docs.json": DEAD_LETTER,
    "deribit_trades_instrument_data_only_docs.json": DEAD_LETTER,
    "deribit_trades_option_any_raw_notification_capture.json": 1,
    "deribit_trades_option_kind_currency_data_only_docs.json": 1,
    "deribit_trades_perpetual_100ms_notification_nautilus.json": DEAD_LETTER,
    "deribit_trades_perpetual_raw_notification_capture.json": DEAD_LETTER,
    "deribit_volatility_index_data_only_docs.json": 1,
    "deribit_volatility_index_notification_nautilus.json": 1,
}


def test_every_sample_has_a_pinned_outcome():
    shared_fixture(SAMPLES / sorted(EXPECTED_OUTCOME)[0])
    assert [p.name for p in FILES] == sorted(EXPECTED_OUTCOME)


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTCOME))
def test_every_sample_parses_or_is_dead_lettered_with_a_reason(name):
    path = _sample(name)
    sink, routed = _run(path)
    expected = EXPECTED_OUTCOME[name]
    if expected == DEAD_LETTER:
        assert routed == [] and sink.records == []
        ((raw, reason, venue, source, recv_ns),) = sink.dead_letters
        assert reason and venue == "deribit" and source == "test"
        assert recv_ns == _received_ns(decode_json(raw)[0])
        assert raw == _frame(path)[0]
    elif expected == NOTHING:
        assert (routed, sink.records, sink.dead_letters) == ([], [], [])
    else:
        assert sink.dead_letters == []
        assert len(sink.records) == len(routed) == expected


def _sample(name: str) -> Path:
    """The sample's path; skips when ../shared is absent, fails when only the file is."""
    return shared_fixture(SAMPLES / name)


def test_option_ticker_capture_values():
    sink, _ = _run(_sample("deribit_ticker_option_notification_btc_23feb24_45000_c_capture.json"))
    (contract,) = sink.on("md.options.v1")
    assert isinstance(contract, OptionContract)
    assert (contract.instrument, str(contract.strike), contract.right.value) == (
        "BTC-23FEB24-45000-C",
        "45000",
        "C",
    )
    assert (
        contract.iv,
        contract.open_interest,
        contract.underlying_price,
        contract.index_price,
    ) == (0.4617, 1716.9, 48559.14, 48321.99)
    assert (contract.gamma, contract.delta, contract.bid, contract.ask) == (
        0.00006,
        0.82809,
        0.0775,
        0.0865,
    )
    assert contract.expiry_ns == 1_708_675_200_000_000_000  # 2024-02-23T08:00Z
    assert contract.ts_event_ns == 1_707_627_659_690_000_000


def test_expired_option_ticker_keeps_the_index_price():
    sink, _ = _run(
        _sample("deribit_ticker_option_notification_expired_btc_2apr20_7125_p_capture.json")
    )
    (contract,) = sink.on("md.options.v1")
    assert contract.index_price == 6662.29  # "estimated_delivery_price": "expired" is not a price
    assert contract.ts_event_ns > contract.expiry_ns  # the engine excludes it by time


def test_other_channels_values():
    sink, _ = _run(_sample("deribit_ticker_perpetual_notification_capture.json"))
    (funding,) = sink.on("md.funding.v1")
    assert isinstance(funding, FundingRate) and funding.rate_8h == 0.00000255
    sink, _ = _run(_sample("deribit_price_index_notification_docs.json"))
    (tick,) = sink.on("md.underlying.v1")
    assert isinstance(tick, UnderlyingTick) and (tick.underlying, tick.price) == ("BTC", 6521.17)
    sink, _ = _run(_sample("deribit_volatility_index_notification_nautilus.json"))
    (dvol,) = sink.on("md.volindex.v1")
    assert isinstance(dvol, VolIndexTick) and dvol.value == 129.36
    sink, _ = _run(_sample("deribit_trades_option_any_raw_notification_capture.json"))
    (trade,) = sink.on("md.trades.v1")
    assert isinstance(trade, OptionTrade)
    assert (trade.direction, trade.amount, trade.iv, trade.trade_id) == (
        "buy",
        0.1,
        0.7844,
        "137488100",
    )
    sink, routed = _run(_sample("deribit_heartbeat_test_request_nautilus.json"))
    assert routed == [] and sink.dead_letters == []


def test_error_responses_are_dead_lettered_with_the_code():
    sink, _ = _run(_sample("deribit_jsonrpc_error_too_many_requests_nautilus.json"))
    assert "10028" in sink.dead_letters[0][1]


def test_instrument_state_of_an_option():
    sink, _ = _run(_sample("deribit_instrument_state_data_only_docs.json"))
    assert sink.records == []  # the docs' example is a future: not an option, nothing to do
    assert sink.dead_letters == []
    assert InstrumentState  # (options are covered with the fake server's listings)

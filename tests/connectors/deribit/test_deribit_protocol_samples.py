"""Every verbatim Deribit message in ../shared/fixtures/protocol_samples parses or is
dead-lettered with a reason, as pinned per sample (skips when ../shared is absent)."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path
from typing import NamedTuple

import orjson
import pytest

from connectors.common.ingest import IngestStage, MemorySink, decode_json
from connectors.deribit.normaliser import DeribitNormaliser
from schemas.contracts import OptionContract
from schemas.records import FundingRate, OptionTrade, UnderlyingTick, VolIndexTick
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


# how a request (not something a venue sends) is refused: its repr follows
UNRECOGNISED = "unrecognised Deribit message: {'jsonrpc': '2.0', "


class DeadLetter(NamedTuple):
    """A sample that must be dead-lettered: its reason class and how its reason starts."""

    reason_class: str
    reason: str


# The outcome each sample must have: dead-lettered (with that class and reason), or the
# topics of the records it produces, in order (``()``: nothing routed, a response or
# heartbeat the stage ignores). A book summary gives one contract per option listed plus
# one underlying tick; a perpetual's summary lists no option.
EXPECTED_OUTCOME: dict[str, DeadLetter | tuple[str, ...]] = {
    "deribit_book_change_data_only_docs.json": DeadLetter(
        "unsupported", "unsupported Deribit channel book.BTC-PERPETUAL.100ms"
    ),
    "deribit_book_future_change_notification_capture.json": DeadLetter(
        "unsupported", "unsupported Deribit channel book.BTC-25JUN21.100ms"
    ),
    "deribit_book_grouped_data_only_docs.json": DeadLetter(
        "unsupported", "unsupported Deribit channel book.BTC-PERPETUAL.none.10.100ms"
    ),
    "deribit_book_grouped_option_notification_capture.json": DeadLetter(
        "unsupported", "unsupported Deribit channel book.BTC-30SEP22-60000-C.none.20.100ms"
    ),
    "deribit_book_grouped_perpetual_notification_nautilus.json": DeadLetter(
        "unsupported", "unsupported Deribit channel book.BTC-PERPETUAL.none.10.100ms"
    ),
    "deribit_book_option_snapshot_notification_capture.json": DeadLetter(
        "unsupported", "unsupported Deribit channel book.BTC-11JUN21-25000-P.100ms"
    ),
    "deribit_book_snapshot_data_only_docs.json": DeadLetter(
        "unsupported", "unsupported Deribit channel book.BTC-PERPETUAL.100ms"
    ),
    "deribit_get_book_summary_by_currency_option_btc_response_capture.json": (
        "md.options.v1",
        "md.options.v1",
        "md.underlying.v1",
    ),
    "deribit_get_book_summary_by_currency_option_eth_response_capture.json": (
        "md.options.v1",
        "md.underlying.v1",
    ),
    "deribit_get_book_summary_by_currency_perpetual_response_capture.json": (),
    "deribit_get_book_summary_by_currency_request_docs.json": DeadLetter(
        "malformed",
        UNRECOGNISED + "'id': 9344, 'method': 'public/get_book_summary_by_currency'",
    ),
    "deribit_get_book_summary_by_currency_response_docs.json": (),
    "deribit_get_funding_rate_history_request_docs.json": DeadLetter(
        "malformed",
        UNRECOGNISED + "'id': 7617, 'method': 'public/get_funding_rate_history'",
    ),
    "deribit_get_funding_rate_history_response_docs.json": (),
    "deribit_get_funding_rate_value_request_docs.json": DeadLetter(
        "malformed",
        UNRECOGNISED + "'id': 7617, 'method': 'public/get_funding_rate_value'",
    ),
    "deribit_get_funding_rate_value_response_docs.json": (),
    "deribit_get_instrument_option_request_docs.json": DeadLetter(
        "malformed",
        UNRECOGNISED + "'id': 2, 'method': 'public/get_instrument'",
    ),
    "deribit_get_instrument_option_response_docs.json": (),
    "deribit_get_instruments_request_docs.json": DeadLetter(
        "malformed",
        UNRECOGNISED + "'id': 1, 'method': 'public/get_instruments'",
    ),
    "deribit_get_instruments_response_docs.json": (),
    "deribit_get_order_book_option_response_capture.json": (),
    "deribit_get_volatility_index_data_request_docs.json": DeadLetter(
        "malformed",
        UNRECOGNISED + "'id': 833, 'method': 'public/get_volatility_index_data'",
    ),
    "deribit_get_volatility_index_data_response_docs.json": (),
    "deribit_heartbeat_test_request_nautilus.json": (),
    "deribit_incremental_ticker_snapshot_data_only_docs.json": DeadLetter(
        "unsupported", "unsupported Deribit channel incremental_ticker.BTC-PERPETUAL"
    ),
    "deribit_instrument_state_data_only_docs.json": (),
    "deribit_jsonrpc_error_docs.json": DeadLetter(
        "rpc_error", "Deribit error 13009 invalid_token (answering unknown)"
    ),
    "deribit_jsonrpc_error_too_many_requests_nautilus.json": DeadLetter(
        "rpc_error", "Deribit error 10028 too_many_requests (answering unknown)"
    ),
    "deribit_markprice_options_data_only_docs.json": DeadLetter(
        "unsupported", "unsupported Deribit channel markprice.options.btc_usd"
    ),
    "deribit_perpetual_interest_data_only_docs.json": DeadLetter(
        "unsupported", "unsupported Deribit channel perpetual.BTC-PERPETUAL.100ms"
    ),
    "deribit_platform_state_data_only_docs.json": DeadLetter(
        "unsupported", "unsupported Deribit channel platform_state"
    ),
    "deribit_price_index_notification_docs.json": ("md.underlying.v1",),
    "deribit_public_subscribe_request_docs.json": DeadLetter(
        "malformed",
        UNRECOGNISED + "'id': 3600, 'method': 'public/subscribe'",
    ),
    "deribit_public_subscribe_response_docs.json": (),
    "deribit_public_test_request_docs.json": DeadLetter(
        "malformed",
        UNRECOGNISED + "'id': 8212, 'method': 'public/test'",
    ),
    "deribit_public_test_response_docs.json": (),
    "deribit_public_ticker_perpetual_request_docs.json": DeadLetter(
        "malformed",
        UNRECOGNISED + "'id': 8106, 'method': 'public/ticker'",
    ),
    "deribit_public_ticker_perpetual_response_docs.json": (),
    "deribit_public_unsubscribe_request_docs.json": DeadLetter(
        "malformed",
        UNRECOGNISED + "'id': 8691, 'method': 'public/unsubscribe'",
    ),
    "deribit_public_unsubscribe_response_docs.json": (),
    "deribit_quote_notification_nautilus.json": DeadLetter(
        "unsupported", "unsupported Deribit channel quote.BTC-PERPETUAL"
    ),
    "deribit_set_heartbeat_request_docs.json": DeadLetter(
        "malformed",
        UNRECOGNISED + "'id': 9098, 'method': 'public/set_heartbeat'",
    ),
    "deribit_set_heartbeat_response_docs.json": (),
    "deribit_subscribe_response_nautilus.json": (),
    "deribit_ticker_future_notification_capture.json": DeadLetter(
        "unsupported", "unsupported Deribit channel ticker.BTC-30SEP22.100ms"
    ),
    "deribit_ticker_option_notification_btc_23feb24_45000_c_capture.json": ("md.options.v1",),
    "deribit_ticker_option_notification_btc_30sep22_60000_c_capture.json": ("md.options.v1",),
    "deribit_ticker_option_notification_expired_btc_2apr20_7125_p_capture.json": ("md.options.v1",),
    "deribit_ticker_perpetual_data_only_docs.json": ("md.funding.v1",),
    "deribit_ticker_perpetual_notification_capture.json": ("md.funding.v1",),
    "deribit_ticker_perpetual_notification_nautilus.json": ("md.funding.v1",),
    "deribit_ticker_subscribe_request_docs.json": DeadLetter(
        "malformed", UNRECOGNISED + "'method': 'public/subscribe'"
    ),
    "deribit_trades_instrument_data_only_docs.json": DeadLetter(
        "unsupported", "unsupported Deribit channel trades.BTC-PERPETUAL.100ms"
    ),
    "deribit_trades_option_any_raw_notification_capture.json": ("md.trades.v1",),
    "deribit_trades_option_kind_currency_data_only_docs.json": ("md.trades.v1",),
    "deribit_trades_perpetual_100ms_notification_nautilus.json": DeadLetter(
        "unsupported", "unsupported Deribit channel trades.BTC-PERPETUAL.100ms"
    ),
    "deribit_trades_perpetual_raw_notification_capture.json": DeadLetter(
        "unsupported", "unsupported Deribit channel trades.BTC-PERPETUAL.raw"
    ),
    "deribit_volatility_index_data_only_docs.json": ("md.volindex.v1",),
    "deribit_volatility_index_notification_nautilus.json": ("md.volindex.v1",),
}


def test_every_sample_has_a_pinned_outcome():
    shared_fixture(SAMPLES / sorted(EXPECTED_OUTCOME)[0])
    assert [p.name for p in FILES] == sorted(EXPECTED_OUTCOME)


def test_the_pinned_outcomes_cover_each_kind():
    kinds = Counter(
        type(o).__name__ if isinstance(o, DeadLetter) else ("records" if o else "nothing")
        for o in EXPECTED_OUTCOME.values()
    )
    assert kinds == {"DeadLetter": 30, "nothing": 16, "records": 13}


@pytest.mark.parametrize("name", sorted(EXPECTED_OUTCOME))
def test_every_sample_parses_or_is_dead_lettered_with_a_reason(name):
    path = _sample(name)
    sink, routed = _run(path)
    expected = EXPECTED_OUTCOME[name]
    if isinstance(expected, DeadLetter):
        assert (routed, sink.records) == ([], [])
        ((raw, reason, venue, source, recv_ns),) = sink.dead_letters
        assert sink.dead_letter_classes == [expected.reason_class]
        assert reason.startswith(expected.reason), reason
        assert (venue, source) == ("deribit", "test")
        assert recv_ns == _received_ns(decode_json(raw)[0])
        assert raw == _frame(path)[0]
    else:
        assert sink.dead_letters == []
        assert tuple(topic for topic, _ in sink.records) == expected
        assert [r.record for r in routed] == [record for _, record in sink.records]


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
    # after its expiry (2020-04-02T08:00Z): the engine excludes it by time
    assert contract.expiry_ns == 1_585_814_400_000_000_000
    assert contract.ts_event_ns == 1_585_814_403_026_000_000  # 3.026 s later


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
    ((_, reason, *_),) = sink.dead_letters
    assert reason == "Deribit error 10028 too_many_requests (answering unknown)"
    assert sink.dead_letter_classes == ["rpc_error"]


def test_instrument_state_of_an_option():
    sink, _ = _run(_sample("deribit_instrument_state_data_only_docs.json"))
    # the docs' example is a future: not an option, nothing to do (options' states are
    # covered with the fake server's listings)
    doc = orjson.loads(_sample("deribit_instrument_state_data_only_docs.json").read_bytes())
    assert doc["instrument_name"] == "BTC-22MAR19"
    assert (sink.records, sink.dead_letters) == ([], [])

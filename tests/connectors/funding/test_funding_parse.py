"""Funding parsers of Binance USD-M, Bybit v5 and OKX v5, and the shared normalisation."""

from __future__ import annotations

import asyncio

import orjson
import pytest

from connectors.common.errors import ParseError
from connectors.common.funding import IntervalFallback, funding_rate, underlying_of
from connectors.common.ingest import IngestStage, MemorySink, decode_json
from connectors.deribit.parse import parse_perpetual_ticker
from connectors.funding.binance.parse import (
    FUNDING_INFO,
    PREMIUM_INDEX,
    BinanceFundingNormaliser,
)
from connectors.funding.bybit.parse import BybitFundingNormaliser, merge_ticker
from connectors.funding.frames import ACK, ERROR, NOTICE, PONG
from connectors.funding.okx.parse import OkxFundingNormaliser
from schemas.records import FundingRate
from schemas.topics import Topics
from tests.fakes.funding import (
    H_MS,
    NEXT_FUNDING_MS,
    T0_MS,
    binance_combined,
    binance_funding_info,
    binance_mark_price,
    binance_premium_index,
    bybit_message,
    bybit_ticker,
    okx_funding,
    okx_push,
)
from tests.paths import PROTOCOL_SAMPLES, shared_fixture

SAMPLES = PROTOCOL_SAMPLES
MS = 1_000_000
RECV = 1_710_000_000_123_000_000
YEAR_8H = 3 * 365


def sample(name: str) -> bytes:
    path = shared_fixture(SAMPLES / name)
    return path.read_bytes()


def doc(raw: bytes):
    return orjson.loads(raw)


def one(records: list) -> FundingRate:
    assert len(records) == 1, records
    (routed,) = records
    assert routed.topic == "funding"
    return routed.record


# ---------------------------------------------------------------------------- shared


@pytest.mark.parametrize(
    ("rate", "hours", "rate_8h"),
    [(0.0001, 8.0, 0.0001), (0.0001, 4.0, 0.0002), (-0.00005, 1.0, -0.0004), (0.0003, 2.0, 0.0012)],
)
def test_rate_is_normalised_to_8h_and_annualised(rate, hours, rate_8h):
    record = funding_rate(
        venue="x",
        instrument="BTCUSDT",
        rate=rate,
        interval_hours=hours,
        ts_event_ns=1,
        ts_recv_ns=2,
    )
    assert record.rate == rate and record.interval_hours == hours
    assert record.rate_8h == pytest.approx(rate_8h, rel=1e-15)
    assert record.annualized == pytest.approx(rate_8h * 1095, rel=1e-15)
    assert record.underlying == "BTC"


def test_a_4h_rate_annualises_to_twice_the_same_8h_rate():
    as_8h = funding_rate(
        venue="x", instrument="A", rate=0.0001, interval_hours=8, ts_event_ns=0, ts_recv_ns=0
    )
    as_4h = funding_rate(
        venue="x", instrument="A", rate=0.0001, interval_hours=4, ts_event_ns=0, ts_recv_ns=0
    )
    assert as_4h.annualized == pytest.approx(2 * as_8h.annualized) == pytest.approx(0.219)


@pytest.mark.parametrize("hours", [0.0, -4.0, float("nan"), float("inf")])
def test_a_bad_interval_is_a_parse_error(hours):
    with pytest.raises(ParseError, match="funding interval must be positive"):
        funding_rate(
            venue="x", instrument="A", rate=0.1, interval_hours=hours, ts_event_ns=0, ts_recv_ns=0
        )
    with pytest.raises(ValueError, match="positive hours"):
        IntervalFallback(hours)


@pytest.mark.parametrize(
    ("symbol", "coin"),
    [
        ("BTCUSDT", "BTC"),
        ("ETHUSDC", "ETH"),
        ("BTC-USDT-SWAP", "BTC"),
        ("ETH-USD-SWAP", "ETH"),
        ("BTC-PERPETUAL", "BTC"),
        ("BTC_USDC-PERPETUAL", "BTC"),
        ("BTCUSD_PERP", "BTC"),
        ("BTCPERP", "BTC"),
        ("1000PEPEUSDT", "PEPE"),
        ("1INCHUSDT", "1INCH"),
    ],
)
def test_underlying_is_the_coin(symbol, coin):
    assert underlying_of(symbol) == coin


def test_deribit_perpetual_goes_through_the_shared_helper():
    data = {
        "instrument_name": "BTC-PERPETUAL",
        "timestamp": T0_MS,
        "mark_price": 65_010.0,
        "index_price": 65_001.5,
        "funding_8h": 0.00012,
        "current_funding": 0.00001,
    }
    record = parse_perpetual_ticker(data, RECV)
    assert record == funding_rate(
        venue="deribit",
        instrument="BTC-PERPETUAL",
        rate=0.00012,
        interval_hours=8.0,
        mark_price=65_010.0,
        index_price=65_001.5,
        ts_event_ns=T0_MS * MS,
        ts_recv_ns=RECV,
    )
    assert (record.rate_8h, record.annualized) == (0.00012, pytest.approx(0.1314))


# ---------------------------------------------------------------------------- Binance


def test_binance_mark_price_event():
    normaliser = BinanceFundingNormaliser()
    raw = binance_combined(binance_mark_price("BTCUSDT", "0.00038167", event_ms=T0_MS + 7))
    record = one(normaliser.normalise(doc(raw), RECV))
    assert record == FundingRate(
        venue="binance",
        underlying="BTC",
        instrument="BTCUSDT",
        rate=0.00038167,
        interval_hours=8.0,
        rate_8h=0.00038167,
        annualized=pytest.approx(0.00038167 * YEAR_8H),
        mark_price=65010.12,
        index_price=65001.5,
        next_funding_ns=NEXT_FUNDING_MS * MS,
        ts_event_ns=(T0_MS + 7) * MS,
        ts_recv_ns=RECV,
        open_interest_usd=None,
    )


def test_binance_interval_comes_from_funding_info_and_follows_its_changes():
    normaliser = BinanceFundingNormaliser(IntervalFallback(8.0, (("ETHUSDT", 1.0),)))
    event = doc(binance_combined(binance_mark_price("BTCUSDT", "0.00010000")))
    eth = doc(binance_combined(binance_mark_price("ETHUSDT", "0.00010000")))
    assert one(normaliser.normalise(event, RECV)).rate_8h == pytest.approx(0.0001)
    assert one(normaliser.normalise(eth, RECV)).interval_hours == 1.0  # configured fallback
    # Binance switches BTCUSDT to 4 h: fundingInfo now lists it
    info = [binance_funding_info("BTCUSDT", 4), binance_funding_info("LPTUSDT", 4)]
    assert normaliser.normalise(info, RECV, {"method": FUNDING_INFO, "params": {}}) == []
    record = one(normaliser.normalise(event, RECV))
    assert (record.rate, record.interval_hours) == (0.0001, 4.0)
    assert record.rate_8h == pytest.approx(0.0002) and record.annualized == pytest.approx(0.219)
    # ... and back: a symbol no longer listed is 8 h again (the table is replaced)
    normaliser.normalise([], RECV, {"method": FUNDING_INFO, "params": {}})
    assert one(normaliser.normalise(event, RECV)).interval_hours == 8.0


def test_binance_settlement_that_moves_t_by_4h_switches_the_interval_at_once():
    normaliser = BinanceFundingNormaliser()
    t1 = NEXT_FUNDING_MS

    def event(event_ms: int, next_ms: int) -> FundingRate:
        raw = binance_combined(binance_mark_price("BTCUSDT", "0.00300000", next_ms, event_ms))
        return one(normaliser.normalise(doc(raw), event_ms * MS))  # received as sent

    assert event(t1 - 2_000, t1).interval_hours == 8.0
    assert event(t1 - 1_000, t1).interval_hours == 8.0
    assert event(t1 + 500, t1).interval_hours == 8.0  # T not rolled yet
    after = event(t1 + 1_500, t1 + 4 * H_MS)  # settled; the next one is 4 h later
    assert (after.interval_hours, after.rate_8h) == (4.0, pytest.approx(0.006))
    assert event(t1 + 2_500, t1 + 4 * H_MS).interval_hours == 4.0
    assert event(t1 + 4 * H_MS - 100, t1 + 4 * H_MS).interval_hours == 4.0
    assert event(t1 + 4 * H_MS + 900, t1 + 12 * H_MS).interval_hours == 8.0  # and back
    # a gap across a settlement proves nothing: T may have moved on by several intervals
    gap = BinanceFundingNormaliser()
    gap.normalise(doc(binance_combined(binance_mark_price("BTCUSDT", "0.1", t1, t1 - 600_000))), 0)
    later = binance_combined(binance_mark_price("BTCUSDT", "0.1", t1 + 4 * H_MS, t1 + 1_000))
    assert one(gap.normalise(doc(later), 0)).interval_hours == 8.0
    assert gap.intervals == {}


def test_binance_premium_index_seed_and_array_stream():
    normaliser = BinanceFundingNormaliser()
    normaliser.normalise([binance_funding_info("SOLUSDT", 4)], RECV, {"method": FUNDING_INFO})
    response = binance_premium_index("SOLUSDT", "-0.00020000", time_ms=T0_MS + 5)
    request = {"method": PREMIUM_INDEX, "params": {"symbol": "SOLUSDT"}}
    record = one(normaliser.normalise(response, RECV, request))
    assert (record.underlying, record.rate, record.interval_hours) == ("SOL", -0.0002, 4.0)
    assert record.rate_8h == pytest.approx(-0.0004)
    assert record.ts_event_ns == (T0_MS + 5) * MS and record.mark_price == 65010.12
    array = binance_combined(
        [
            binance_mark_price("BTCUSDT", "0.0001", event_ms=T0_MS + 6),
            binance_mark_price("SOLUSDT", "0.0002", event_ms=T0_MS + 6),  # after the seed
        ]
    )
    records = [r.record for r in normaliser.normalise(doc(array), RECV)]
    assert [(r.instrument, r.interval_hours) for r in records] == [
        ("BTCUSDT", 8.0),
        ("SOLUSDT", 4.0),
    ]


def test_binance_rest_bodies_may_arrive_undecoded():
    normaliser = BinanceFundingNormaliser()
    info = orjson.dumps([binance_funding_info("BTCUSDT", 4)])
    assert normaliser.normalise(info, RECV, {"method": FUNDING_INFO, "params": {}}) == []
    body = orjson.dumps(binance_premium_index("BTCUSDT", "0.00010000"))
    request = {"method": PREMIUM_INDEX, "params": {"symbol": "BTCUSDT"}}
    assert one(normaliser.normalise(body, RECV, request)).rate_8h == pytest.approx(0.0002)
    with pytest.raises(ParseError, match="malformed JSON"):
        normaliser.normalise(b'{"symbol": "BTCUSDT", "markPrice"', RECV, request)
    with pytest.raises(ParseError, match="unknown request 'GET /fapi/v1/ticker/price'"):
        normaliser.normalise(body, RECV, {"method": "GET /fapi/v1/ticker/price"})


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ({"result": None, "id": 1}, ACK),
        ({"error": {"code": 2, "msg": "Invalid request"}, "id": 3}, ERROR),
        ({"code": -1121, "msg": "Invalid symbol."}, ERROR),
    ],
)
def test_binance_control_frames(frame, kind):
    normaliser = BinanceFundingNormaliser()
    assert normaliser.control(frame).kind == kind
    assert normaliser.normalise(frame, RECV) == []


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"r": "abc"}, r"r='abc' \(expected float \| null, got str\)"),
        ({"p": None}, r"p=None \(expected float, got null\)"),
        ({"r": "", "T": 0}, "not a perpetual"),
        ({"E": "soon"}, r"E='soon' \(expected int, got str\)"),
        ({"r": "NaN"}, r"r='NaN' \(expected float \| null, got str\)"),
        ({"e": "aggTrade"}, "not a markPriceUpdate"),
    ],
)
def test_binance_malformed_events_are_parse_errors(change, reason):
    event = {**binance_mark_price("BTCUSDT", "0.0001"), **change}
    with pytest.raises(ParseError, match=reason):
        BinanceFundingNormaliser().normalise(doc(binance_combined(event, "x")), RECV)


def test_binance_verbatim_samples():
    normaliser = BinanceFundingNormaliser()
    record = one(
        normaliser.normalise(doc(sample("binance_markprice_combined_btcusdt_capture.json")), 0)
    )
    assert (record.instrument, record.underlying, record.rate, record.interval_hours) == (
        "BTCUSDT",
        "BTC",
        0.00058455,
        8.0,
    )
    assert (record.mark_price, record.index_price) == (58940.14924532, 58857.26693664)
    assert record.next_funding_ns == 1617321600000 * MS
    assert record.ts_event_ns == 1617308820003 * MS
    assert record.annualized == pytest.approx(0.00058455 * YEAR_8H)
    raw_event = one(
        # a 2019 sample: older than the 2021 one, so a normaliser of its own
        BinanceFundingNormaliser().normalise(
            doc(sample("binance_markprice_stream_event_docs.json")), 0
        )
    )
    assert (raw_event.rate, raw_event.next_funding_ns) == (0.00038167, 1562306400000 * MS)
    arr = normaliser.normalise(
        doc(sample("binance_markprice_all_arr_combined_usdm_capture.json")), 0
    )
    assert [(r.record.instrument, r.record.rate) for r in arr] == [
        ("BTCUSDT", 0.00058959),
        ("ETHUSDT", 0.00059142),
    ]
    coinm = one(
        normaliser.normalise(
            doc(sample("binance_markprice_combined_coinm_btcusd_perp_capture.json")), 0
        )
    )
    assert (coinm.underlying, coinm.index_price, coinm.rate) == ("BTC", None, 0.00073689)
    premium = one(  # a 2020 sample: older than the 2021 ones
        BinanceFundingNormaliser().normalise(
            doc(sample("binance_premium_index_rest_docs.json")),
            0,
            {"method": PREMIUM_INDEX, "params": {"symbol": "BTCUSDT"}},
        )
    )
    assert (premium.rate, premium.mark_price, premium.ts_event_ns) == (
        0.00038246,
        11793.63104562,
        1597370495002 * MS,
    )
    assert premium.next_funding_ns == 1597392000000 * MS


# ---------------------------------------------------------------------------- Bybit


def test_bybit_merge_keeps_unchanged_fields_and_needs_a_snapshot():
    snapshot = bybit_ticker("BTCUSDT", "0.0001")
    merged = merge_ticker(None, "snapshot", snapshot)
    assert merged == snapshot and merged is not snapshot
    after = merge_ticker(merged, "delta", {"symbol": "BTCUSDT", "markPrice": "65100.00"})
    assert after["markPrice"] == "65100.00" and after["fundingRate"] == "0.0001"
    assert merged["markPrice"] == "65010.10"  # the previous ticker is not mutated
    with pytest.raises(ParseError, match="delta before any snapshot"):
        merge_ticker(None, "delta", {"symbol": "BTCUSDT", "markPrice": "1"})
    with pytest.raises(ParseError, match="snapshot or delta"):
        merge_ticker(merged, "update", {})


def test_bybit_snapshot_then_deltas():
    normaliser = BybitFundingNormaliser(min_emit_interval_ms=1000)
    snap = bybit_message("BTCUSDT", "snapshot", bybit_ticker("BTCUSDT", "0.0001"), T0_MS)
    first = one(normaliser.normalise(doc(snap), RECV))
    assert first == FundingRate(
        venue="bybit",
        underlying="BTC",
        instrument="BTCUSDT",
        rate=0.0001,
        interval_hours=8.0,
        rate_8h=0.0001,
        annualized=pytest.approx(0.1095),
        mark_price=65010.1,
        index_price=65001.55,
        next_funding_ns=NEXT_FUNDING_MS * MS,
        ts_event_ns=T0_MS * MS,
        ts_recv_ns=RECV,
        open_interest_usd=5012345678.91,
    )

    def delta(ts_ms: int, **fields: str):
        raw = bybit_message("BTCUSDT", "delta", {"symbol": "BTCUSDT", **fields}, ts_ms)
        return [r.record for r in normaliser.normalise(doc(raw), RECV)]

    # mark-price-only deltas: at most one record per second of venue time
    assert delta(T0_MS + 100, markPrice="65011.00") == []
    assert delta(T0_MS + 900, markPrice="65012.00", openInterestValue="5100000000.00") == []
    (late,) = delta(T0_MS + 1000, markPrice="65013.00")
    assert (late.mark_price, late.rate, late.open_interest_usd) == (65013.0, 0.0001, 5.1e9)
    # a funding change is published at once
    (changed,) = delta(T0_MS + 1100, fundingRate="0.00025")
    assert (changed.rate, changed.mark_price, changed.rate_8h) == (0.00025, 65013.0, 0.00025)
    # the venue moves the symbol to 4 h funding: rate_8h doubles, the rate does not
    (four,) = delta(T0_MS + 1200, fundingIntervalHour="4", nextFundingTime=str(T0_MS + 4 * H_MS))
    assert (four.rate, four.interval_hours) == (0.00025, 4.0)
    assert four.rate_8h == pytest.approx(0.0005) and four.annualized == pytest.approx(0.5475)
    assert four.next_funding_ns == (T0_MS + 4 * H_MS) * MS


def test_bybit_malformed_delta_is_rejected_and_leaves_the_ticker_as_it_was():
    normaliser = BybitFundingNormaliser(min_emit_interval_ms=0)
    snap = bybit_message("BTCUSDT", "snapshot", bybit_ticker("BTCUSDT", "0.0001"), T0_MS)
    normaliser.normalise(doc(snap), RECV)
    bad = bybit_message("BTCUSDT", "delta", {"symbol": "BTCUSDT", "fundingRate": "x"}, T0_MS + 1)
    with pytest.raises(ParseError, match=r"fundingRate='x' \(expected float \| null, got str\)"):
        normaliser.normalise(doc(bad), RECV)
    good = bybit_message("BTCUSDT", "delta", {"symbol": "BTCUSDT", "markPrice": "1.5"}, T0_MS + 2)
    record = one(normaliser.normalise(doc(good), RECV))
    assert (record.rate, record.mark_price) == (0.0001, 1.5)
    other = bybit_message("ETHUSDT", "delta", {"symbol": "ETHUSDT", "markPrice": "1"}, T0_MS)
    with pytest.raises(ParseError, match="delta before any snapshot"):
        normaliser.normalise(doc(other), RECV)
    wrong = bybit_message("ETHUSDT", "snapshot", bybit_ticker("BTCUSDT", "0.0001"), T0_MS)
    with pytest.raises(ParseError, match="data is for BTCUSDT"):
        normaliser.normalise(doc(wrong), RECV)
    orderbook = {"topic": "orderbook.50.BTCUSDT", "type": "snapshot", "data": {}, "ts": T0_MS}
    with pytest.raises(ParseError, match=r"unsupported Bybit topic orderbook\.50\.BTCUSDT"):
        normaliser.normalise(orderbook, RECV)


def test_bybit_without_interval_field_uses_the_configured_interval():
    data = bybit_ticker("BTCUSDT", "0.0002", interval_hour=None)
    raw = bybit_message("BTCUSDT", "snapshot", data, T0_MS)
    assert one(BybitFundingNormaliser().normalise(doc(raw), RECV)).interval_hours == 8.0
    normaliser = BybitFundingNormaliser(IntervalFallback(8.0, (("BTCUSDT", 4.0),)))
    record = one(normaliser.normalise(doc(raw), RECV))
    assert (record.interval_hours, record.rate_8h) == (4.0, pytest.approx(0.0004))


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        (
            {"success": True, "ret_msg": "", "conn_id": "c", "req_id": "t", "op": "subscribe"},
            ACK,
        ),
        ({"success": True, "ret_msg": "pong", "conn_id": "c", "req_id": "", "op": "ping"}, PONG),
        ({"op": "pong", "args": ["1672916271846"]}, PONG),
        (
            {
                "success": False,
                "ret_msg": "error:Invalid symbol",
                "conn_id": "c",
                "op": "subscribe",
            },
            ERROR,
        ),
    ],
)
def test_bybit_control_frames(frame, kind):
    normaliser = BybitFundingNormaliser()
    assert normaliser.control(frame).kind == kind
    assert normaliser.normalise(frame, RECV) == []


def test_bybit_verbatim_samples():
    normaliser = BybitFundingNormaliser()
    record = one(
        normaliser.normalise(
            doc(sample("bybit_tickers_linear_perpetual_snapshot_docs_2025.json")), 0
        )
    )
    assert (record.instrument, record.underlying, record.rate, record.interval_hours) == (
        "BTCUSDT",
        "BTC",
        -0.005,
        8.0,
    )
    assert (record.rate_8h, record.annualized) == (-0.005, pytest.approx(-5.475))
    assert (record.mark_price, record.index_price, record.open_interest_usd) == (
        66666.6,
        115418.19,
        32824881841.75,
    )
    assert record.next_funding_ns == 1760342400000 * MS
    assert record.ts_event_ns == 1760325052630 * MS
    old = one(
        BybitFundingNormaliser().normalise(
            doc(sample("bybit_tickers_linear_perpetual_snapshot_docs_2023.json")), 0
        )
    )
    assert (old.rate, old.interval_hours, old.open_interest_usd) == (-0.000212, 8.0, 1183601235.91)
    with pytest.raises(ParseError, match="not a perpetual"):
        normaliser.normalise(doc(sample("bybit_tickers_linear_futures_snapshot_docs_2025.json")), 0)
    with pytest.raises(ParseError, match="no fundingRate"):
        normaliser.normalise(doc(sample("bybit_tickers_option_snapshot_docs.json")), 0)
    for name, kind in (
        ("bybit_pong_linear_docs.json", PONG),
        ("bybit_pong_option_docs.json", PONG),
        ("bybit_subscribe_response_public_docs.json", ACK),
    ):
        frame = doc(sample(name))
        assert normaliser.control(frame).kind == kind
        assert normaliser.normalise(frame, RECV) == []


# ---------------------------------------------------------------------------- OKX


def test_okx_interval_is_the_gap_between_funding_times():
    normaliser = OkxFundingNormaliser()
    entry = okx_funding("BTC-USDT-SWAP", "0.0001875391284828", ts_ms=T0_MS + 3)
    record = one(normaliser.normalise(doc(okx_push(entry)), RECV))
    assert record == FundingRate(
        venue="okx",
        underlying="BTC",
        instrument="BTC-USDT-SWAP",
        rate=0.0001875391284828,
        interval_hours=8.0,
        rate_8h=0.0001875391284828,
        annualized=pytest.approx(0.0001875391284828 * YEAR_8H),
        mark_price=None,
        index_price=None,
        next_funding_ns=NEXT_FUNDING_MS * MS,  # fundingTime: when this rate is charged
        ts_event_ns=(T0_MS + 3) * MS,
        ts_recv_ns=RECV,
        open_interest_usd=None,
    )
    four = okx_funding(
        "BTC-USDT-SWAP", "0.0001", next_ms=NEXT_FUNDING_MS + 4 * H_MS, ts_ms=T0_MS + 3
    )
    switched = one(normaliser.normalise(doc(okx_push(four)), RECV))
    assert (switched.interval_hours, switched.rate_8h) == (4.0, pytest.approx(0.0002))
    hourly = okx_funding("DOGE-USDT-SWAP", "-0.0001", next_ms=NEXT_FUNDING_MS + H_MS)
    record = one(normaliser.normalise(doc(okx_push(hourly)), RECV))
    assert (record.underlying, record.interval_hours, record.rate_8h) == (
        "DOGE",
        1.0,
        pytest.approx(-0.0008),
    )


def test_okx_old_shape_falls_back_to_configured_interval_and_receive_time():
    entry = okx_funding("ETH-USDT-SWAP", "0.0002", next_ms=None, ts_ms=None)
    record = one(OkxFundingNormaliser().normalise(doc(okx_push(entry)), RECV))
    assert (record.interval_hours, record.ts_event_ns, record.rate_8h) == (8.0, RECV, 0.0002)
    fallback = IntervalFallback(8.0, (("ETH-USDT-SWAP", 4.0),))
    record = one(OkxFundingNormaliser(fallback).normalise(doc(okx_push(entry)), RECV))
    assert (record.interval_hours, record.rate_8h) == (4.0, pytest.approx(0.0004))


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            okx_push(okx_funding("BTC-USDT-SWAP", "0.1", next_ms=NEXT_FUNDING_MS - H_MS)),
            "nextFundingTime=1710025200000 is not after fundingTime=1710028800000",
        ),
        (
            okx_push(okx_funding("BTC-USDT-SWAP", "1e-4x")),
            r"fundingRate='1e-4x' \(expected float, got str\)",
        ),
        (okx_push({"instId": "BTC-USDT-SWAP", "fundingRate": "0.1"}), "fundingTime missing"),
        (b'{"arg":{"channel":"funding-rate","instId":"X"},"data":[]}', "non-empty list"),
        (b'{"arg":{"channel":"tickers","instId":"X"},"data":[{}]}', "unsupported OKX channel"),
        (b'{"data":[{}]}', "unrecognised OKX message"),
    ],
)
def test_okx_malformed_pushes_are_parse_errors(message, reason):
    with pytest.raises(ParseError, match=reason):
        OkxFundingNormaliser().normalise(doc(message), RECV)


@pytest.mark.parametrize(
    ("frame", "kind"),
    [
        ({"event": "subscribe", "arg": {"channel": "funding-rate"}, "connId": "a"}, ACK),
        ({"event": "error", "code": "60012", "msg": "Invalid request", "connId": "a"}, ERROR),
        ({"event": "notice", "code": "64008", "msg": "service upgrade", "connId": "a"}, NOTICE),
    ],
)
def test_okx_control_frames(frame, kind):
    normaliser = OkxFundingNormaliser()
    assert normaliser.control(frame).kind == kind
    assert normaliser.normalise(frame, RECV) == []


def test_okx_verbatim_samples():
    normaliser = OkxFundingNormaliser()
    # a sample read offline (receive clock 0: not checked against one)
    record = one(normaliser.normalise(doc(sample("okx_funding_rate_push_docs.json")), 0))
    assert (record.instrument, record.underlying, record.rate, record.interval_hours) == (
        "BTC-USD-SWAP",
        "BTC",
        0.0001875391284828,
        8.0,
    )
    assert record.next_funding_ns == 1700726400000 * MS
    assert record.ts_event_ns == 1700724675402 * MS
    for name, rate in (
        ("okx_funding_rate_push_btc_usd_swap_capture_2022.json", 0.0000734174532791),
        ("okx_funding_rate_push_btc_usdt_swap_capture_2022.json", 0.0001534702159002),
    ):
        old = one(normaliser.normalise(doc(sample(name)), RECV))
        assert (old.rate, old.interval_hours, old.ts_event_ns) == (rate, 8.0, RECV)
        assert old.next_funding_ns == 1646323200000 * MS
    assert (
        normaliser.control(doc(sample("okx_funding_rate_subscribe_response_docs.json"))).kind == ACK
    )
    error = normaliser.control(doc(sample("okx_subscribe_error_response_docs.json")))
    assert error.kind == ERROR and "60012" in error.detail
    with pytest.raises(ParseError, match="unsupported OKX channel opt-summary"):
        normaliser.normalise(doc(sample("okx_opt_summary_push_docs.json")), RECV)


# ---------------------------------------------------------------------------- through a stage


def test_stage_dead_letters_malformed_frames_and_passes_control_frames():
    sink = MemorySink()
    stage = IngestStage("okx", OkxFundingNormaliser(), sink, Topics())
    frames = [
        b'{"event":"subscribe","arg":{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},"connId":"a"}',
        okx_push(okx_funding("BTC-USDT-SWAP", "0.0001")),
        b'{"arg":{"channel":"funding-rate","instId":"BTC-USDT-SWAP"},"data":[{"instId":',
        okx_push(okx_funding("BTC-USDT-SWAP", "oops")),
        okx_push(okx_funding("BTC-USDT-SWAP", "0.0002")),
    ]

    async def feed() -> None:
        for raw in frames:
            document, error = decode_json(raw)
            await stage.on_message(raw, document, RECV, decode_error=error)

    asyncio.run(feed())
    assert [r.rate for r in sink.on("md.funding.v1")] == [0.0001, 0.0002]
    assert [(raw, reason.split(":")[0]) for raw, reason, *_ in sink.dead_letters] == [
        (frames[2], "malformed JSON"),
        (frames[3], "OKX funding-rate BTC-USDT-SWAP"),
    ]
    assert "fundingRate='oops' (expected float, got str)" in sink.dead_letters[1][1]
    assert stage.counts == {"messages": 5, "records": 2, "dead_letters": 2}


@pytest.mark.parametrize(
    ("name", "open_interest", "expected_usd"),
    [
        ("BTC-PERPETUAL", 812_345_670.0, 812_345_670.0),  # inverse: OI already in USD
        ("BTC_USDC-PERPETUAL", 120.5, 120.5 * 65_010.0),  # linear: coins x mark
    ],
)
def test_deribit_perpetual_open_interest_in_usd(name, open_interest, expected_usd):
    data = {
        "instrument_name": name,
        "timestamp": T0_MS,
        "mark_price": 65_010.0,
        "funding_8h": 0.00012,
        "open_interest": open_interest,
    }
    assert parse_perpetual_ticker(data, RECV).open_interest_usd == pytest.approx(expected_usd)

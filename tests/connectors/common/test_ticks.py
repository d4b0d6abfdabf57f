"""Packed option ticks: the wire record, the packer's flush rules, the engine's apply."""

from __future__ import annotations

import base64
import math
from dataclasses import replace
from decimal import Decimal

import numpy as np
import orjson
import pytest
from aiokafka.structs import ConsumerRecord, TopicPartition
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.common.ingest import IngestStage, MemorySink
from connectors.common.packing import PackConfig, TickPacker
from connectors.deribit.normaliser import DeribitNormaliser
from engine.core.config import LevelsConfig
from engine.core.feed import BookFeeder
from engine.stream.decode import decode_messages
from engine.stream.task import feed_of
from schemas.contracts import OptionContract, OptionRight
from schemas.records import (
    InstrumentState,
    OptionTrade,
    UnderlyingTick,
    decode_record,
    encode_record,
)
from schemas.ticks import OptionTicks
from schemas.topics import Topics
from tests.fakes.deribit import T0_MS, envelope, option_ticker, rpc_response, summary_row

T0 = 1_741_962_600_000_000_000  # 2025-03-14T14:30:00Z
HOUR = 3_600_000_000_000
EXPIRIES = (T0 + 5 * HOUR, T0 + 26 * HOUR, T0 + 30 * 24 * HOUR)
STRIKES = (90, 95, 100, 105, 110)
OPTIONS = "md.options.v1"


def contract(
    strike: int = 100,
    expiry: int = 0,
    right: str = "C",
    *,
    iv: float | None = 0.6,
    oi: float = 10.0,
    forward: float = 100.5,
    index: float | None = 100.0,
    gamma: float | None = None,
    ts: int = T0,
    underlying: str = "TST",
) -> OptionContract:
    return OptionContract(
        venue="deribit",
        underlying=underlying,
        instrument=f"{underlying}-{expiry}-{strike}-{right}",
        root=underlying,
        expiry_ns=EXPIRIES[expiry],
        strike=Decimal(strike),
        right=OptionRight(right),
        multiplier=1.0,
        open_interest=oi,
        iv=iv,
        underlying_price=forward,
        index_price=index,
        ts_event_ns=ts,
        ts_recv_ns=ts + 1_000,
        gamma=gamma,
    )


# ---------------------------------------------------------------- the wire record


def test_pack_round_trip_keeps_every_value_and_nan():
    ticks = [
        contract(90, iv=0.55, gamma=0.0001, ts=T0 + 5),
        contract(100, 1, "P", iv=None, oi=0.0, index=None, ts=T0 + 9),
        contract(90, iv=0.56, oi=12.5, ts=T0 + 7),  # the same instrument again, older time
    ]
    pack = OptionTicks.from_contracts(ticks)
    raw = encode_record(pack)
    assert b'"schema":"md.option_ticks/1"' in raw and b'"iv":{"f8":' in raw
    back = decode_record(raw)
    assert type(back) is OptionTicks and len(back) == 3
    assert back.instrument == ["TST-0-90-C", "TST-1-100-P", "TST-0-90-C"]
    assert back.iv[0] == 0.55 and math.isnan(back.iv[1]) and back.iv[2] == 0.56
    assert back.open_interest.tolist() == [10.0, 0.0, 12.5]
    assert back.underlying_price.tolist() == [100.5] * 3
    assert back.index_price[0] == 100.0 and math.isnan(back.index_price[1])
    assert back.gamma[0] == 0.0001 and np.isnan(back.gamma[1:]).all()
    assert back.event_ns.tolist() == [T0 + 5, T0 + 9, T0 + 7]
    assert back.recv_ns.tolist() == [T0 + 1_005, T0 + 1_009, T0 + 1_007]
    assert (back.ts_event_ns, back.ts_recv_ns) == (T0 + 9, T0 + 1_009)  # the latest tick's
    assert back.event_ns.dtype == np.int64 and back.iv.dtype == np.float64
    assert feed_of(back) == "options"


def _bad(change) -> bytes:
    doc = orjson.loads(encode_record(OptionTicks.from_contracts([contract(), contract(95)])))
    change(doc)
    return orjson.dumps(doc)


def _f8(values) -> dict[str, str]:
    return {"f8": base64.b64encode(np.asarray(values, "<f8").tobytes()).decode()}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(iv=[0.5, 0.6]), "column iv must be packed"),
        (lambda d: d.update(event_ns=_f8([1.0, 2.0])), "column event_ns must be packed"),
        (lambda d: d.update(gamma={"f8": "not base64!"}), "column gamma: bad base64"),
        (lambda d: d.update(gamma={"f8": "AAAA"}), "not a whole number of values"),
        (lambda d: d.update(open_interest=_f8([1.0])), "do not have 2 rows"),
        (lambda d: d.update(instrument=["A", 7]), "instrument must be a list of strings"),
        (lambda d: d.pop("recv_ns"), "missing OptionTicks fields"),
        (lambda d: d.update(bid=_f8([1.0, 2.0])), "unknown OptionTicks fields"),
        (
            lambda d: d.update(instrument=[], **{c: _f8([]) for c in ("iv", "gamma")}),
            "empty pack",
        ),
    ],
)
def test_bad_packs_are_rejected_with_the_reason(change, message):
    with pytest.raises(ValueError, match=message):
        decode_record(_bad(change))


def test_an_undecodable_pack_goes_to_the_dead_letters_not_the_books():
    tp = TopicPartition(OPTIONS, 0)
    good = encode_record(OptionTicks.from_contracts([contract()]))
    bad = _bad(lambda d: d.update(iv={"i8": d["iv"]["f8"]}))
    messages = [
        ConsumerRecord(OPTIONS, 0, offset, 0, 0, b"TST", value, None, 0, len(value), [])
        for offset, value in enumerate((good, bad))
    ]
    dead: list = []
    decoded = decode_messages(tp, messages, 0, dead)
    items = decoded.items
    assert type(items[0].record) is OptionTicks and items[1].record is None
    assert decoded.option_ticks == 1
    assert items[1].ts == items[0].ts == T0  # the undecodable one takes its predecessor's time
    assert [(m.offset, reason) for m, reason in dead] == [
        (1, "undecodable record: ValueError: option ticks: column iv must be packed as {'f8': …}")
    ]


# ---------------------------------------------------------------- the packer


def _summary(packer: TickPacker, *contracts: OptionContract, now: float = 0.0) -> None:
    for c in contracts:
        assert packer.before(c, now) == []  # nothing open yet: nothing to send first


def _kinds(out) -> list:
    return [
        (type(r).__name__, r.instrument if type(r) is not OptionTicks else tuple(r.instrument))
        for _, r in out
    ]


def test_first_sight_goes_out_in_full_then_ticks_are_packed_until_full():
    packer = TickPacker(PackConfig(max_ticks=3, max_wait_s=1.0, keyframe_s=100.0))
    a, b = contract(90), contract(95)
    out = packer.add(OPTIONS, a, 0.0)
    assert _kinds(out) == [("OptionContract", a.instrument)]  # never announced: full terms
    assert packer.add(OPTIONS, a, 0.1) == [] and packer.add(OPTIONS, a, 0.2) == []
    out = packer.add(OPTIONS, b, 0.3)  # b unannounced: the open pack goes first, then b
    assert _kinds(out) == [
        ("OptionTicks", (a.instrument, a.instrument)),
        ("OptionContract", b.instrument),
    ]
    assert packer.add(OPTIONS, a, 0.4) == [] and packer.add(OPTIONS, b, 0.5) == []
    out = packer.add(OPTIONS, a, 0.6)  # the third tick fills the pack
    assert _kinds(out) == [("OptionTicks", (a.instrument, b.instrument, a.instrument))]
    assert packer.pending == 0 and packer.packs_sent == 2 and packer.ticks_packed == 5


def test_packs_go_out_after_max_wait_on_the_timer_or_the_next_add():
    packer = TickPacker(PackConfig(max_ticks=100, max_wait_s=0.001))
    a, b = contract(90), contract(95)
    _summary(packer, a, b)
    assert packer.add(OPTIONS, a, 10.0) == [] and packer.add(OPTIONS, b, 10.0005) == []
    assert packer.next_due() == pytest.approx(10.001)
    assert packer.due(10.0009) == []
    out = packer.due(10.001)
    assert _kinds(out) == [("OptionTicks", (a.instrument, b.instrument))]
    assert packer.next_due() is None
    assert packer.add(OPTIONS, a, 11.0) == []
    out = packer.add(OPTIONS, b, 11.002)  # no timer ran: the late add sends the old pack
    assert _kinds(out) == [("OptionTicks", (a.instrument,))]
    assert _kinds(packer.drain()) == [("OptionTicks", (b.instrument,))]


def test_any_other_record_of_the_underlying_sends_its_pack_first_order_kept_per_underlying():
    packer = TickPacker(PackConfig(max_ticks=100, max_wait_s=1.0))
    btc = [contract(k, underlying="BTC") for k in (90, 95)]
    eth = [contract(k, underlying="ETH") for k in (90, 95)]
    _summary(packer, *btc, *eth)
    for c in (btc[0], eth[0], btc[1], eth[1], btc[0]):
        assert packer.add(OPTIONS, c, 0.5) == []
    index = UnderlyingTick("deribit", "BTC", "btc_usd", "index", 100.0, T0, T0)
    out = packer.before(index, 0.6)  # only BTC's pack: ETH's stays open
    assert _kinds(out) == [
        ("OptionTicks", (btc[0].instrument, btc[1].instrument, btc[0].instrument))
    ]
    assert packer.holds("ETH") and not packer.holds("BTC")
    trade = OptionTrade(
        "deribit", "ETH", eth[0].instrument, "t1", "buy", 1.0, 0.01, "ETH", 0.6, 100.0, T0, T0
    )
    out = packer.before(trade, 0.7)
    assert _kinds(out) == [("OptionTicks", (eth[0].instrument, eth[1].instrument))]
    # An ended instrument is forgotten: a later tick of it goes out in full again.
    ended = InstrumentState("deribit", "BTC", btc[1].instrument, "settled", T0, T0)
    assert packer.before(ended, 0.8) == []
    assert _kinds(packer.add(OPTIONS, btc[1], 0.9)) == [("OptionContract", btc[1].instrument)]


def test_terms_are_resent_after_the_keyframe_interval():
    packer = TickPacker(PackConfig(max_ticks=100, max_wait_s=10.0, keyframe_s=60.0))
    a = contract(90)
    _summary(packer, a, now=0.0)
    assert packer.add(OPTIONS, a, 59.9) == []
    assert _kinds(packer.add(OPTIONS, a, 60.0)) == [
        ("OptionTicks", (a.instrument,)),
        ("OptionContract", a.instrument),
    ]


@pytest.mark.parametrize(
    "kwargs", [{"max_ticks": 0}, {"max_wait_s": -1.0}, {"keyframe_s": math.nan}]
)
def test_pack_config_rejects_nonsense(kwargs):
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        PackConfig(**kwargs)


@pytest.mark.asyncio
async def test_the_stage_hands_only_ticker_updates_to_a_packing_sink():
    class PackingSink(MemorySink):
        def __init__(self) -> None:
            super().__init__()
            self.ticks: list = []

        async def send_tick(self, topic, record):
            self.ticks.append((topic, record))

    sink = PackingSink()
    stage = IngestStage("deribit", DeribitNormaliser(), sink, Topics())
    name = "BTC-29MAR24-70000-C"
    summary = rpc_response(1, [summary_row(name, 65_400.0, 65_000.0, 100.0, 55.0)])
    request = {"method": "public/get_book_summary_by_currency", "params": {}}
    recv_ns = T0_MS * 1_000_000  # the receive clock, at the fake venue's time
    await stage.on_message(summary, orjson.loads(summary), recv_ns, request)
    ticker = envelope(
        f"ticker.{name}.100ms",
        option_ticker(name, T0_MS + 1_000, 65_500.0, 65_100.0, 60.0, 50.0, 0.00004),
    )
    await stage.on_message(ticker, orjson.loads(ticker), recv_ns + 2_000_000_000)
    assert [type(r).__name__ for _, r in sink.records] == ["OptionContract", "UnderlyingTick"]
    assert [(t, r.instrument) for t, r in sink.ticks] == [("md.options.v1", name)]


# ---------------------------------------------------------------- the engine


def _book_contracts() -> list[OptionContract]:
    return [
        contract(k, e, r, oi=5.0 + k / 10, ts=T0)
        for k in STRIKES
        for e in range(len(EXPIRIES))
        for r in ("C", "P")
    ]


tick_strategy = st.tuples(
    st.integers(0, len(STRIKES) * len(EXPIRIES) * 2 - 1),  # which contract
    st.one_of(st.none(), st.floats(0.05, 2.0)),  # iv
    st.floats(0.0, 500.0),  # open interest
    st.floats(0.9, 1.1),  # forward / index
    st.one_of(st.none(), st.floats(50.0, 150.0)),  # index (None: missing)
    st.one_of(st.none(), st.floats(0.0, 0.01)),  # venue gamma
)


@pytest.mark.parametrize("model", ["long_calls_short_puts", "short_all", "flow"])
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    ticks=st.lists(tick_strategy, min_size=1, max_size=120),
    cuts=st.lists(st.integers(1, 40), min_size=1, max_size=10),
)
def test_packs_apply_exactly_like_the_same_ticks_one_by_one(model, ticks, cuts):
    base = _book_contracts()
    updates = []
    for step, (which, iv, oi, basis, index, gamma) in enumerate(ticks):
        spot = index if index is not None else 100.0
        updates.append(
            replace(
                base[which],
                iv=iv,
                open_interest=oi,
                underlying_price=spot * basis,
                index_price=index,
                gamma=gamma,
                ts_event_ns=T0 + 1 + step,
            )
        )
    config = LevelsConfig(model=model)
    one_by_one, packed = BookFeeder(config), BookFeeder(config)
    one_by_one.apply(base)
    packed.apply(base)
    for update in updates:
        one_by_one.apply([update])
    packs, start, i = [], 0, 0
    while start < len(updates):  # the ticks cut into packs of random sizes
        size = cuts[i % len(cuts)]
        packs.append(OptionTicks.from_contracts(updates[start : start + size]))
        start += size
        i += 1
    packed.apply(decode_record(encode_record(p)) for p in packs)  # through the wire

    a, b = one_by_one.books["TST"], packed.books["TST"]
    np.testing.assert_array_equal(a.slot_f[:, : a.n_slots], b.slot_f[:, : b.n_slots])
    np.testing.assert_array_equal(a.profile, b.profile)
    asof = T0 + len(updates) + 1
    assert one_by_one.levels("TST", asof) == packed.levels("TST", asof)


def test_ticks_of_unknown_instruments_and_underlyings_are_skipped_and_counted():
    feeder = BookFeeder(LevelsConfig())
    known = contract(100, 1, "C", iv=0.5, oi=20.0)
    feeder.apply([known])
    before = feeder.books["TST"].profile.copy()
    stranger = contract(105, 1, "P", iv=0.7, oi=99.0)  # its terms never came
    pack = OptionTicks.from_contracts(
        [stranger, replace(known, iv=0.55, ts_event_ns=T0 + 5), stranger]
    )
    feeder.apply([pack])
    book = feeder.books["TST"]
    assert book.skipped_unknown == 2 and book.n_contracts == 1
    assert book.slot_f[2, book.instrument_slot[known.instrument]] == 0.55  # F_IV
    assert not np.array_equal(book.profile, before)
    assert book.ts_event_ns == T0 + 5 and feeder.last_event_ns["TST"] == T0 + 5

    other = OptionTicks.from_contracts([contract(100, underlying="XYZ")])
    feeder.apply([other])
    assert "XYZ" not in feeder.books and feeder.ticks_without_book == 1


def test_a_taker_trade_requotes_the_stored_quote_with_the_new_dealer_position():
    """Under the flow model a trade re-applies the contract's last quote (packed or not)
    with the moved inventory: the same book as upserting that last quote again."""
    config = LevelsConfig(model="flow")
    quote = contract(100, 1, "C", iv=0.5, oi=20.0)
    later = replace(quote, iv=0.62, open_interest=25.0, underlying_price=101.0, ts_event_ns=T0 + 5)
    trade = OptionTrade(
        "deribit",
        "TST",
        quote.instrument,
        "t1",
        "buy",
        4.0,
        0.01,
        "BTC",
        0.6,
        100.0,
        T0 + 6,
        T0 + 6,
    )
    fed = BookFeeder(config)
    fed.apply([quote, OptionTicks.from_contracts([later]), trade])
    book = fed.books["TST"]
    assert book.flow.positions[quote.instrument] == 20.0 - 4.0  # prior at first sight, a taker buy

    reference = BookFeeder(config)
    reference.apply([quote, later])
    ref_book = reference.books["TST"]
    ref_book.flow.apply_trade(quote.instrument, "buy", 4.0)
    ref_book.upsert([later])  # what the feeder did before quotes could arrive packed
    np.testing.assert_array_equal(book.profile, ref_book.profile)
    np.testing.assert_array_equal(book.slot_f, ref_book.slot_f)
    assert fed.apply([trade]) is None and book.flow.trades_applied == 1  # a duplicate: no-op

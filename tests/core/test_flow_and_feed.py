"""The flow dealer model and the feeder that applies records to books."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.core.config import LevelsConfig
from engine.core.feed import BookFeeder
from engine.core.flow import FlowInventory
from schemas.records import InstrumentState, OptionTrade, UnderlyingTick
from tests import reference as ref
from tests.core.test_book_incremental import SPOT, T0, make_contract


def trade(contract, direction, amount, trade_id, ts=T0 + 1):
    return OptionTrade(
        "deribit",
        "TST",
        contract.instrument,
        trade_id,
        direction,
        amount,
        0.01,
        "TST",
        0.6,
        SPOT,
        ts,
        ts,
    )


def test_flow_inventory_prior_trades_and_bounds():
    flow = FlowInventory(prior_weight=0.5)
    assert flow.position("C1", True, 100.0) == 50.0  # prior: dealers long calls
    assert flow.position("P1", False, 100.0) == -50.0  # … and short puts
    assert flow.apply_trade("C1", "buy", 30.0) == 20.0  # taker buys: dealer sells
    assert flow.apply_trade("P1", "sell", 20.0) == -30.0  # taker sells: dealer buys
    assert flow.apply_trade("C1", "buy", 500.0) == -100.0  # bounded by open interest
    assert flow.position("C1", True, 40.0) == -40.0  # OI falls: the bound follows
    assert flow.apply_trade("unknown", "buy", 1.0) is None
    with pytest.raises(ValueError, match=r"prior_weight must be in \[0, 1\]"):
        FlowInventory(prior_weight=1.5)


def test_flow_model_levels_follow_taker_flow_and_ignore_duplicate_trades():
    cfg = LevelsConfig(model="flow", grid_points=41)
    call = make_contract(100, 4, True, 0.6, 200.0, 1.0)
    put = make_contract(95, 4, False, 0.6, 200.0, 1.0)
    feeder = BookFeeder(cfg)
    feeder.apply([call, put, UnderlyingTick("deribit", "TST", "tst_usd", "index", SPOT, T0, T0)])
    base = feeder.levels("TST", T0).net_gex
    ref_call = ref.RefContract(
        100.0, (call.expiry_ns - T0) / (365 * 86_400e9), 0.6, 1.0, 200.0, 1.0, True
    )
    ref_put = replace(ref_call, strike=95.0, position=-200.0, is_call=False)
    assert base == pytest.approx(
        ref.contract_gex(ref_call, SPOT) + ref.contract_gex(ref_put, SPOT), rel=1e-12
    )
    buy = trade(call, "buy", 150.0, "t1")
    feeder.apply([buy])
    after = feeder.levels("TST", T0).net_gex
    expected = ref.contract_gex(replace(ref_call, position=50.0), SPOT) + ref.contract_gex(
        ref_put, SPOT
    )
    assert after == pytest.approx(expected, rel=1e-12)
    feeder.apply([buy])  # the same trade again (a redelivered record): nothing changes
    assert feeder.levels("TST", T0).net_gex == after


def test_feeder_applies_spot_removals_and_is_idempotent():
    cfg = LevelsConfig(grid_points=41)
    contracts = [
        make_contract(k, 4, c, 0.5, 10.0, 1.0) for k in (90, 100, 110) for c in (True, False)
    ]
    once, twice = BookFeeder(cfg), BookFeeder(cfg)
    tick = UnderlyingTick("deribit", "TST", "tst_usd", "index", 101.5, T0 + 5, T0 + 5)
    gone = InstrumentState("deribit", "TST", contracts[0].instrument, "settled", T0 + 6, T0 + 6)
    once.apply([*contracts, tick, gone])
    twice.apply([*contracts, tick, gone, *contracts[1:], tick, gone])
    a, b = once.levels("TST"), twice.levels("TST")
    assert a.to_dict() == b.to_dict()
    assert a.spot == 101.5
    assert a.contracts_used == 5
    assert once.last_event_ns["TST"] == T0 + 6


def test_index_before_any_option_is_ignored_not_fatal():
    feeder = BookFeeder(LevelsConfig())
    feeder.apply([UnderlyingTick("deribit", "XYZ", "xyz_usd", "index", 10.0, T0, T0)])
    assert feeder.books == {} and feeder.ignored == 1

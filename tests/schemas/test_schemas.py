"""orjson codecs of the normalised types round-trip exactly."""

from __future__ import annotations

from decimal import Decimal

import orjson
import pytest

from schemas.contracts import OptionContract, OptionRight, decode_contract, encode_contract
from schemas.levels import BucketLevels, Levels, decode_levels, encode_levels


def test_option_contract_round_trip_keeps_the_exact_strike():
    contract = OptionContract(
        venue="cboe",
        underlying="VIX",
        instrument="VIX260617C00010500",
        root="VIX",
        expiry_ns=1_781_702_400_000_000_000,
        strike=Decimal("10.5"),
        right=OptionRight.CALL,
        multiplier=100.0,
        open_interest=3856.0,
        iv=1.3271,
        underlying_price=17.2,
        index_price=17.2,
        ts_event_ns=1,
        ts_recv_ns=2,
        bid=9.85,
        ask=10.15,
        gamma=0.0001,
    )
    raw = encode_contract(contract)
    assert orjson.loads(raw)["strike"] == "10.5"
    assert orjson.loads(raw)["schema"] == "md.option/1"
    assert decode_contract(raw) == contract


def test_option_contract_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown OptionContract fields"):
        OptionContract.from_dict({"strike": "1", "right": "C", "surprise": 1})


def test_levels_round_trip_and_top_level_keys_mirror_all():
    bucket = BucketLevels(
        2.5e9,
        4961.8,
        (4961.8,),
        5100.0,
        4900.0,
        5000.0,
        "positive",
        18250,
        ("2025-03-14T20:00:00Z",),
    )
    empty = BucketLevels(0.0, None, (), None, None, None, None, 0)
    levels = Levels(
        "SPX",
        5012.3,
        1_741_962_600_000_000_000,
        "long_calls_short_puts",
        None,
        "iv",
        {"all": bucket, "0dte": empty, "front": bucket},
    )
    doc = orjson.loads(encode_levels(levels))
    assert doc["asof"] == "2025-03-14T14:30:00Z"
    assert doc["units"] == "usd_per_1pct"
    for key in (
        "net_gex",
        "zero_gamma",
        "zero_gamma_crossings",
        "call_wall",
        "put_wall",
        "abs_gamma_strike",
        "regime",
        "contracts_used",
    ):
        assert doc[key] == doc["buckets"]["all"][key]
    assert list(doc["buckets"]) == ["all", "0dte", "front"]
    assert decode_levels(encode_levels(levels)) == levels

"""The fast constructors of the frozen record types behave like the dataclass ones."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from schemas.codec import fast_frozen_init, slotted_decoder
from schemas.contracts import OptionContract, OptionRight
from schemas.records import UnderlyingTick, decode_record, encode_record


@dataclasses.dataclass(frozen=True, slots=True)
class Plain:
    a: int
    b: str = "x"
    c: float | None = None


Fast = fast_frozen_init(
    dataclasses.dataclass(frozen=True, slots=True)(
        type(
            "Fast",
            (),
            {"__annotations__": {"a": "int", "b": "str", "c": "float | None"}, "b": "x", "c": None},
        )
    )
)


@given(a=st.integers(), b=st.text(), c=st.none() | st.floats(allow_nan=False))
def test_fast_init_takes_the_same_arguments_as_the_dataclass_init(
    a: int, b: str, c: object
) -> None:
    for args, kwargs in (
        ((a,), {}),
        ((a, b), {}),
        ((a,), {"c": c}),
        ((), {"a": a, "b": b, "c": c}),
    ):
        fast, plain = Fast(*args, **kwargs), Plain(*args, **kwargs)
        assert (fast.a, fast.b, fast.c) == (plain.a, plain.b, plain.c)
    with pytest.raises(TypeError, match=r"missing 1 required positional argument: 'a'"):
        Fast()
    with pytest.raises(TypeError, match=r"got an unexpected keyword argument 'd'"):
        Fast(a, d=1)
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'a'"):
        Fast(a).a = 2  # type: ignore[misc]


def test_records_keep_equality_hash_and_immutability() -> None:
    tick = UnderlyingTick("deribit", "BTC", "btc_usd", "index", 1.5, 1, 2)
    same = UnderlyingTick(
        venue="deribit",
        underlying="BTC",
        source="btc_usd",
        kind="index",
        price=1.5,
        ts_event_ns=1,
        ts_recv_ns=2,
    )
    assert tick == same and hash(tick) == hash(same) and tick.schema == "md.underlying/1"
    with pytest.raises(dataclasses.FrozenInstanceError, match="cannot assign to field 'price'"):
        tick.price = 2.0  # type: ignore[misc]
    assert decode_record(encode_record(tick)) == tick


@settings(max_examples=50)
@given(
    strike=st.decimals(min_value=1, max_value=10**6, places=2),
    iv=st.none() | st.floats(min_value=0.01, max_value=5),
    gamma=st.none() | st.floats(min_value=0, max_value=1),
)
def test_option_contract_round_trips_through_the_fast_decoder(
    strike: Decimal, iv: float | None, gamma: float | None
) -> None:
    contract = OptionContract(
        "deribit",
        "BTC",
        "BTC-X",
        "BTC",
        10,
        strike,
        OptionRight.PUT,
        1.0,
        5.0,
        iv,
        100.0,
        99.0,
        1,
        2,
        gamma=gamma,
    )
    decoded = decode_record(encode_record(contract))
    assert decoded == contract and decoded.strike == strike and decoded.right is OptionRight.PUT


def test_fast_decoder_rejects_unknown_missing_and_bad_values() -> None:
    data = OptionContract(
        "deribit",
        "BTC",
        "BTC-X",
        "BTC",
        10,
        Decimal(1),
        OptionRight.CALL,
        1.0,
        5.0,
        None,
        100.0,
        None,
        1,
        2,
    ).to_dict()
    with pytest.raises(ValueError, match="unknown OptionContract fields: \\['bogus'\\]"):
        OptionContract.from_dict({**data, "bogus": 1})
    del data["ts_recv_ns"]
    with pytest.raises(ValueError, match="missing OptionContract fields: \\['ts_recv_ns'\\]"):
        OptionContract.from_dict(data)
    with pytest.raises(ValueError, match="bad strike"):
        OptionContract.from_dict({**data, "ts_recv_ns": 1, "strike": "abc"})
    with pytest.raises(ValueError, match="'X' is not a valid OptionRight"):
        OptionContract.from_dict({**data, "ts_recv_ns": 1, "right": "X"})
    with pytest.raises(TypeError, match="__post_init__"):
        slotted_decoder(type("V", (), {"__post_init__": lambda self: None}))

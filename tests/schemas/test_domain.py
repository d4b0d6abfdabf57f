"""schemas.domain: constrained wire types decode and validate in one step; reasons name
the field and the value; the receive-clock window; the record checks."""

from __future__ import annotations

import math
from decimal import Decimal

import msgspec
import numpy as np
import pytest

from schemas.contracts import OptionContract, OptionRight
from schemas.domain import (
    MAX_EVENT_AGE_NS,
    MAX_EVENT_LEAD_NS,
    DomainError,
    EpochMs,
    IvPercent,
    OpenInterest,
    Price,
    check_event_time,
    column_problem,
    contract_problem,
    convert,
    price_problem,
)


class Tick(msgspec.Struct, kw_only=True):
    name: str
    price: Price
    open_interest: OpenInterest
    iv: IvPercent | None = None
    timestamp: EpochMs
    nested: list[Price] = []


GOOD = {"name": "X", "price": 10.0, "open_interest": 0, "timestamp": 1_700_000_000_000}


def reason(**changes) -> tuple[str, str]:
    doc = {**GOOD, **changes}
    doc = {k: v for k, v in doc.items() if v is not ...}
    with pytest.raises(DomainError) as err:
        convert(doc, Tick)
    return err.value.reason, err.value.kind


def test_a_good_document_converts_with_ints_as_floats():
    tick = convert(GOOD, Tick)
    assert (tick.price, tick.open_interest, tick.iv) == (10.0, 0.0, None)
    assert type(tick.open_interest) is float


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        ({"open_interest": -21.0}, ("open_interest=-21.0 (expected >= 0.0)", "out_of_domain")),
        ({"price": 0}, ("price=0 (expected > 0.0)", "out_of_domain")),
        ({"price": 2e9}, ("price=2000000000.0 (expected <= 1000000000.0)", "out_of_domain")),
        ({"iv": -1.0}, ("iv=-1.0 (expected >= 0.0)", "out_of_domain")),
        ({"iv": 1000.5}, ("iv=1000.5 (expected <= 1000.0)", "out_of_domain")),
        ({"price": "10"}, ("price='10' (expected float, got str)", "wrong_type")),
        ({"price": True}, ("price=True (expected float, got bool)", "wrong_type")),
        (
            {"timestamp": 1.7e12},
            ("timestamp=1700000000000.0 (expected int, got float)", "wrong_type"),
        ),
        ({"timestamp": 17}, ("timestamp=17 (expected >= 946684800000)", "out_of_domain")),
        ({"price": ...}, ("price missing", "missing_field")),
        ({"nested": [1.0, -2.0]}, ("nested[1]=-2.0 (expected > 0.0)", "out_of_domain")),
    ],
)
def test_reasons_name_the_field_the_value_and_the_domain(changes, expected):
    assert reason(**changes) == expected


def test_nan_and_infinity_are_out_of_every_domain():
    for value in (math.nan, math.inf, -math.inf):
        text, kind = reason(price=value)
        assert text.startswith(f"price={value!r} (expected") and kind == "out_of_domain"


def test_a_long_value_is_shortened_in_the_reason():
    text, _ = reason(price="9" * 200)
    assert text.startswith("price='999") and "..." in text and len(text) < 120


def test_the_receive_clock_window():
    recv = 1_700_000_000_000_000_000
    check_event_time(recv - MAX_EVENT_AGE_NS, recv)
    check_event_time(recv + MAX_EVENT_LEAD_NS, recv)
    check_event_time(5, 0)  # no receive clock: not checked
    with pytest.raises(DomainError) as err:
        check_event_time(recv + MAX_EVENT_LEAD_NS + 1, recv, "creation_timestamp")
    assert err.value.kind == "bad_timestamp"
    assert err.value.reason.startswith(f"creation_timestamp={recv + MAX_EVENT_LEAD_NS + 1} ns")
    with pytest.raises(DomainError, match=r"is \+604800 s from the receive clock"):
        check_event_time(recv - MAX_EVENT_AGE_NS - 1, recv)


def contract(**changes) -> OptionContract:
    fields = dict(
        venue="v", underlying="U", instrument="U-1", root="U", expiry_ns=1, strike=Decimal(100),
        right=OptionRight.CALL, multiplier=1.0, open_interest=5.0, iv=0.5,
        underlying_price=100.0, index_price=None, ts_event_ns=1, ts_recv_ns=1,
    )  # fmt: skip
    return OptionContract(**{**fields, **changes})


def test_contract_problem_names_the_first_bad_field():
    assert contract_problem(contract()) is None
    assert contract_problem(contract(iv=None, gamma=0.0, open_interest=0.0)) is None
    assert (
        contract_problem(contract(open_interest=-1.0)) == "U-1: open_interest=-1.0 (expected >= 0)"
    )
    assert contract_problem(contract(strike=Decimal(0))) == "U-1: strike=0 (expected > 0)"
    assert contract_problem(contract(strike=Decimal("NaN"))) == "U-1: strike=NaN (expected > 0)"
    assert contract_problem(contract(underlying_price=None)) == (
        "U-1: underlying_price=None (expected a number)"
    )
    assert price_problem("spot", -3.0) == "spot=-3.0 (expected > 0)"


def test_column_problem_finds_the_first_bad_row_and_lets_none_be_nan():
    names = ["a", "b", "c"]
    assert column_problem("iv", np.array([0.5, math.nan, 0.0]), names) is None
    assert column_problem("iv", np.array([0.5, math.nan, 0.0]), names, nan_ok=False) == (
        "b: iv=nan (expected a finite number)"
    )
    assert column_problem("open_interest", np.array([1.0, -2.0, -3.0]), names) == (
        "b: open_interest=-2.0 (expected >= 0)"
    )
    assert (
        column_problem("multiplier", np.array([1.0, 0.0])) == "row 1: multiplier=0.0 (expected > 0)"
    )


def test_booleans_are_not_numbers_for_a_contract():
    for name in ("open_interest", "iv", "underlying_price", "index_price", "multiplier", "gamma"):
        assert contract_problem(contract(**{name: True})) == f"U-1: {name}=True (expected a number)"

"""Defence in depth: the book refuses values outside their domain and changes nothing.

A record from another producer or an older version may carry what the wire boundary
would have refused; the book checks every value it is given before it changes anything.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.levels import compute_levels
from schemas.chain import ChainDelta
from schemas.ticks import OptionTicks
from tests.core.test_book_incremental import SPOT, STRIKES, T0, make_contract

# (field, a value outside its domain, the words the refusal must contain)
BAD_VALUES = [
    ("open_interest", -21.0, "open_interest=-21.0 (expected >= 0)"),
    ("open_interest", math.nan, "open_interest=nan (expected a finite number)"),
    ("open_interest", math.inf, "open_interest=inf (expected a finite number)"),
    ("open_interest", 1e13, "open_interest=10000000000000.0 (expected <= 1e+12)"),
    ("iv", -0.2, "iv=-0.2 (expected >= 0)"),
    ("iv", 12.0, "iv=12.0 (expected <= 10)"),
    ("iv", math.nan, "iv=nan (expected a finite number)"),
    ("underlying_price", math.nan, "underlying_price=nan (expected a finite number)"),
    ("underlying_price", -65_000.0, "underlying_price=-65000.0 (expected > 0)"),
    ("underlying_price", 0.0, "underlying_price=0.0 (expected > 0)"),
    ("index_price", -1.0, "index_price=-1.0 (expected > 0)"),
    ("multiplier", 0.0, "multiplier=0.0 (expected > 0)"),
    ("gamma", -1e-5, "gamma=-1e-05 (expected >= 0)"),
    ("gamma", math.inf, "gamma=inf (expected a finite number)"),
]


def filled_book() -> GammaBook:
    book = GammaBook("TST", "deribit", LevelsConfig(grid_points=41), SPOT, T0, capacity=8)
    book.upsert(
        make_contract(strike, expiry, is_call, 0.5 + strike / 1000, 100.0 + strike, 1.0)
        for strike in STRIKES
        for expiry in (1, 2)
        for is_call in (True, False)
    )
    return book


def state(book: GammaBook) -> tuple:
    levels = compute_levels(book)
    return (book.profile.copy(), book.n_contracts, book.spot, book.ts_event_ns, levels)


def assert_unchanged(before: tuple, after: tuple) -> None:
    assert np.array_equal(before[0], after[0])
    assert before[1:] == after[1:]


@pytest.mark.parametrize(("field", "value", "words"), BAD_VALUES)
def test_upsert_refuses_a_bad_value_and_changes_nothing(field, value, words):
    book = filled_book()
    before = state(book)
    good = make_contract(90, 1, True, 0.7, 55.0, 1.0, ts=T0 + 1)
    bad = dataclasses.replace(
        make_contract(95, 2, False, 0.6, 40.0, 1.0, ts=T0 + 2), **{field: value}
    )
    with pytest.raises(ValueError) as err:
        book.upsert([good, bad])  # the good one first: refused with it, the batch is one
    assert str(err.value) == f"{bad.instrument}: {words}"
    assert_unchanged(before, state(book))


# NaN is "none" in a pack's iv, index and gamma columns; multipliers are terms, not ticks
IN_A_PACK = [
    b
    for b in BAD_VALUES
    if b[0] != "multiplier" and not (math.isnan(b[1]) and b[0] in ("iv", "index_price", "gamma"))
]


@pytest.mark.parametrize(("field", "value", "words"), IN_A_PACK)
def test_a_tick_pack_with_a_bad_value_is_refused_whole(field, value, words):
    book = filled_book()
    before = state(book)
    contracts = [
        make_contract(strike, 1, True, 0.55, 70.0, 1.01, ts=T0 + 5) for strike in STRIKES[:3]
    ]
    contracts[1] = dataclasses.replace(contracts[1], **{field: value})
    with pytest.raises(ValueError) as err:
        book.apply_ticks(OptionTicks.from_contracts(contracts))
    assert str(err.value) == f"{contracts[1].instrument}: {words}"
    assert_unchanged(before, state(book))


@given(
    field=st.sampled_from(["open_interest", "iv", "underlying_price", "gamma"]),
    value=st.one_of(
        st.floats(max_value=-1e-300),
        st.just(math.nan),
        st.just(math.inf),
        st.just(-math.inf),
        st.floats(min_value=1e13, allow_infinity=False),
    ),
    row=st.integers(0, 3),
)
@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_a_chain_delta_with_any_bad_value_is_refused_before_its_removals(field, value, row):
    if field in ("iv", "underlying_price", "gamma") and math.isnan(value):
        value = -1.0  # NaN means "none" in these columns
    book = filled_book()
    before = state(book)
    names = [f"TST-1-{strike}-C" for strike in STRIKES[:4]]
    columns = {
        "instrument": names,
        "open_interest": np.array([10.0, 20.0, 30.0, 40.0]),
        "iv": np.array([0.5, 0.6, 0.7, 0.8]),
        "underlying_price": np.array([SPOT] * 4),
        "gamma": np.array([math.nan] * 4),
    }
    columns[field][row] = value
    delta = ChainDelta(
        venue="deribit", underlying="TST", snapshot_ns=T0 + 9, part=0, parts=1, full=False,
        upserts=4, spot=SPOT, premium_currency="USD", removed=["TST-2-80-P"], columns=columns,
        ts_event_ns=T0 + 9, ts_recv_ns=T0 + 9,
    )  # fmt: skip
    with pytest.raises(ValueError) as err:
        book.apply_delta(delta)
    assert str(err.value).startswith(f"{names[row]}: {field}=")
    assert_unchanged(before, state(book))


def test_a_bad_spot_is_refused():
    book = filled_book()
    before = state(book)
    for spot in (0.0, -1.0, math.nan, math.inf):
        with pytest.raises(ValueError, match=r"^spot=.* \(expected"):
            book.set_spot(spot)
    assert_unchanged(before, state(book))

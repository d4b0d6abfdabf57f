"""Net DEX / VEX / CHEX of a bucket against a scipy reference, and incremental == rebuild."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.core import kernels as k
from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.levels import compute_levels
from engine.core.models import dealer_position
from schemas.levels import EXPOSURE_UNITS, decode_levels, encode_levels
from schemas.time import NS_PER_YEAR
from tests import reference as ref
from tests.core.test_book_incremental import EXPIRY_OFFSETS, SPOT, T0, make_contract

contract_rows = st.lists(
    st.tuples(
        st.sampled_from([80, 90, 95, 100, 105, 110, 120]),
        st.integers(0, len(EXPIRY_OFFSETS) - 1),
        st.booleans(),
        st.floats(0.1, 1.5),  # iv
        st.floats(0.0, 5_000.0),  # OI
        st.floats(0.95, 1.05),  # basis
    ),
    min_size=1,
    max_size=25,
)


def as_ref(book: GammaBook, contract) -> ref.RefContract:
    return ref.RefContract(
        strike=float(contract.strike),
        tau=(contract.expiry_ns - book.t_ref_ns) / NS_PER_YEAR,
        iv=contract.iv,
        basis=contract.underlying_price / contract.index_price,
        position=dealer_position(book.config.model, contract.is_call, contract.open_interest),
        multiplier=contract.multiplier,
        is_call=contract.is_call,
    )


def assert_close(got: float, terms: list[float], weight: float) -> None:
    """Within 1e-6 of the terms' size, plus the finite differences' rounding (~eps / h of
    each contract's position × multiplier × spot, ``weight`` their sum)."""
    scale = sum(abs(t) for t in terms)
    assert got == pytest.approx(sum(terms), rel=1e-6, abs=1e-6 * scale + 1e-9 * weight + 1e-12)


@given(rows=contract_rows, model=st.sampled_from(["long_calls_short_puts", "short_all"]),
       spot=st.floats(85.0, 115.0))  # fmt: skip
@settings(max_examples=60, deadline=None)
def test_exposures_equal_the_scipy_reference(rows, model, spot):
    book = GammaBook("TST", "deribit", LevelsConfig(model=model), SPOT, T0)
    final = {}
    for strike, e, is_call, iv, oi, basis in rows:
        c = make_contract(strike, e, is_call, iv, oi, basis)
        final[c.instrument] = c
    book.upsert(final.values())
    book.set_spot(spot)
    levels = compute_levels(book)
    refs = [as_ref(book, c) for c in final.values()]
    per = [ref.exposures(r, spot) for r in refs]
    b = levels.buckets["all"]
    weight = sum(abs(r.position * r.multiplier * spot) for r in refs)
    assert_close(b.net_dex, [p[0] for p in per], weight)
    assert_close(b.net_vex, [p[1] for p in per], weight)
    assert_close(b.net_chex, [p[2] for p in per], weight)
    front = min(c.expiry_ns for c in final.values())
    in_front = [p for c, p in zip(final.values(), per, strict=True) if c.expiry_ns == front]
    assert_close(levels.buckets["front"].net_dex, [p[0] for p in in_front], weight)


@given(rows=contract_rows, updates=contract_rows)
@settings(max_examples=40, deadline=None)
def test_incremental_updates_give_the_exposures_of_a_fresh_book(rows, updates):
    book = GammaBook("TST", "deribit", LevelsConfig(), SPOT, T0)
    final = {}
    for batch in (rows, updates):
        contracts = [make_contract(*row) for row in batch]
        book.upsert(contracts)
        final.update({c.instrument: c for c in contracts})
    fresh = GammaBook("TST", "deribit", LevelsConfig(), SPOT, T0)
    fresh.upsert(final.values())
    for name in ("all", "0dte", "front"):
        a, b = compute_levels(book).buckets[name], compute_levels(fresh).buckets[name]
        for field in ("net_dex", "net_vex", "net_chex"):
            assert getattr(a, field) == pytest.approx(getattr(b, field), rel=1e-12, abs=1e-9)


def test_a_long_call_book_has_the_signs_and_units_of_the_definitions():
    # A dealer-long OTM call (strike 110, spot 100, 30 days): 0 < Δ < 0.5; more vol raises
    # its delta (vanna > 0); a day passing lowers it (charm < 0).
    book = GammaBook("TST", "deribit", LevelsConfig(), SPOT, T0)
    book.upsert([make_contract(110, 4, True, 0.5, 10.0, 1.0)])  # OTM call, dealer long 10
    b = compute_levels(book).buckets["all"]
    c = as_ref(book, make_contract(110, 4, True, 0.5, 10.0, 1.0))
    dex, vex, chex = ref.exposures(c, SPOT)
    assert b.net_dex == pytest.approx(dex, rel=1e-7) and 0 < b.net_dex < 10 * SPOT * 0.5
    assert b.net_vex == pytest.approx(vex, rel=1e-6) and b.net_vex > 0  # OTM call: vol up, Δ up
    assert b.net_chex == pytest.approx(chex, rel=1e-6) and b.net_chex < 0  # OTM: Δ decays
    data = encode_levels(compute_levels(book))
    assert decode_levels(data).buckets["all"].net_vex == b.net_vex
    assert EXPOSURE_UNITS == {
        "net_dex": "usd",
        "net_vex": "usd_per_vol_point",
        "net_chex": "usd_per_day",
    }


def test_unpriceable_slots_are_left_out():
    slot_f = np.zeros((k.N_SLOT_F, 2))
    slot_i = np.zeros((k.N_SLOT_I, 2), dtype=np.int64)
    slot_i[k.I_BUCKETS, :] = k.BUCKET_ALL  # present in the bucket but never admitted (not live)
    assert k.exposures_at_spot(100.0, slot_f, slot_i, 2, k.BUCKET_ALL) == (0.0, 0.0, 0.0)

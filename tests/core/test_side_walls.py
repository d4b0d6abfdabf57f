"""Side-aware walls and the open-interest walls (DESIGN §2.6) against the slow reference."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.app.cli import render_table
from engine.core import kernels as k
from engine.core.book import GammaBook
from engine.core.config import PRESETS, ConfigError, LevelsConfig
from engine.core.levels import compute_levels, strike_gex, strike_open_interest
from schemas.chain import ChainDelta
from schemas.ticks import OptionTicks
from tests import reference as ref
from tests.core.test_book_incremental import SPOT, T0, make_contract

# One expiry; heavy call OI at 95 (below spot) and heavy put OI at 105 (above spot): the
# whole-chain walls sit on the wrong side of spot.
OI = {80: 50.0, 85: 80.0, 90: 300.0, 95: 5_000.0, 100: 900.0, 105: 700.0, 110: 400.0,
      115: 60.0, 120: 20.0}  # fmt: skip
PUT_OI = {80: 60.0, 85: 100.0, 90: 3_000.0, 95: 600.0, 100: 700.0, 105: 6_000.0, 110: 200.0,
          115: 30.0, 120: 10.0}  # fmt: skip


def wrong_side_book(config: LevelsConfig) -> GammaBook:
    book = GammaBook("TST", "deribit", config, SPOT, T0)
    contracts = [make_contract(s, 4, True, 0.5, oi, 1.0) for s, oi in OI.items()]
    contracts += [make_contract(s, 4, False, 0.5, oi, 1.0) for s, oi in PUT_OI.items()]
    book.upsert(contracts)
    return book


def test_side_rule_picks_the_strike_on_the_right_side_where_global_does_not():
    side = compute_levels(wrong_side_book(LevelsConfig()))
    glob = compute_levels(wrong_side_book(LevelsConfig(wall_rule="global")))
    assert (glob.call_wall, glob.put_wall) == (95.0, 105.0)
    assert (side.call_wall, side.put_wall) == (100.0, 90.0)
    assert (side.call_wall_oi, side.put_wall_oi) == (100.0, 90.0)
    assert side.abs_gamma_strike == glob.abs_gamma_strike  # not a wall: unchanged
    assert (side.wall_rule, glob.wall_rule) == ("side", "global")


def test_the_window_bounds_the_search():
    # ±4 % around 100: strikes 96..104 only; the put OI at 95 and the call OI at 105 are out.
    levels = compute_levels(wrong_side_book(LevelsConfig(wall_window=0.04)))
    assert (levels.call_wall, levels.put_wall) == (100.0, 100.0)
    assert (levels.call_wall_oi, levels.put_wall_oi) == (100.0, 100.0)
    narrow = compute_levels(wrong_side_book(LevelsConfig(wall_window=0.01)))
    assert (narrow.call_wall, narrow.put_wall) == (100.0, 100.0)


def test_walls_never_sit_on_the_wrong_side_of_spot_as_spot_moves():
    book = wrong_side_book(LevelsConfig())
    for spot in np.linspace(82.0, 118.0, 37):
        book.set_spot(float(spot))
        levels = compute_levels(book)
        for b in levels.buckets.values():
            assert b.call_wall is None or b.call_wall >= spot
            assert b.put_wall is None or b.put_wall <= spot
            assert b.call_wall_oi is None or b.call_wall_oi >= spot
            assert b.put_wall_oi is None or b.put_wall_oi <= spot


def test_book_walls_equal_the_reference_at_many_spots():
    book = wrong_side_book(LevelsConfig())
    for spot in (83.0, 97.5, 100.0, 104.9, 111.0):
        book.set_spot(spot)
        _, _, call, put = strike_gex(book, "all")
        strikes = book.strike_values[: book.n_strikes]
        by_strike = {float(s): (call[i], put[i]) for i, s in enumerate(strikes)}
        lo, hi = spot - spot * 0.15, spot + spot * 0.15
        assert (book_levels := compute_levels(book)).call_wall == ref.side_walls(
            by_strike, spot, lo, hi
        )[0]
        assert book_levels.put_wall == ref.side_walls(by_strike, spot, lo, hi)[1]
        rows = [(float(s), True, oi) for s, oi in OI.items()]
        rows += [(float(s), False, oi) for s, oi in PUT_OI.items()]
        oi_walls = ref.side_walls(ref.strike_open_interest(rows), spot, lo, hi)
        assert (book_levels.call_wall_oi, book_levels.put_wall_oi) == oi_walls


def test_perfiliev_preset_keeps_the_global_walls_and_config_checks_the_rule():
    assert PRESETS["perfiliev"].wall_rule == "global"
    assert LevelsConfig().wall_rule == "side" and LevelsConfig().wall_window == 0.15
    with pytest.raises(ConfigError, match="wall_rule must be one of side, global"):
        LevelsConfig(wall_rule="nearest")
    for bad in (0.0, 1.5, "wide", True):
        with pytest.raises(ConfigError, match="wall_window must be in"):
            replace(LevelsConfig(), wall_window=bad)


def test_open_interest_follows_updates_and_removals():
    book = wrong_side_book(LevelsConfig())
    book.upsert([make_contract(110, 4, True, 0.5, 9_000.0, 1.0)])
    assert compute_levels(book).call_wall_oi == 110.0
    book.remove(make_contract(110, 4, True, 0.5, 0.0, 1.0).instrument)
    assert compute_levels(book).call_wall_oi == 100.0
    call_oi, put_oi = strike_open_interest(book, "all")
    strikes = book.strike_values[: book.n_strikes]
    assert dict(zip(strikes.tolist(), call_oi.tolist(), strict=True)) == {
        float(s): (0.0 if s == 110 else oi) for s, oi in OI.items()
    }
    assert dict(zip(strikes.tolist(), put_oi.tolist(), strict=True)) == {
        float(s): oi for s, oi in PUT_OI.items()
    }


values = st.lists(
    st.sampled_from([0.0, 1.0, 2.0, -3.0, 3.0, 0.5]) | st.floats(-1e9, 1e9), min_size=1, max_size=30
)


@given(
    calls=values,
    puts=values,
    spot=st.floats(50.0, 150.0),
    window=st.floats(0.01, 1.0),
    seed=st.integers(0, 2**16),
)
@settings(max_examples=200, deadline=None)
def test_side_walls_kernel_equals_the_reference(calls, puts, spot, window, seed):
    n = min(len(calls), len(puts))
    rng = np.random.default_rng(seed)
    strikes = rng.permutation(np.arange(n) * 5.0 + 60.0)  # strikes in arrival order
    call = np.array(calls[:n])
    put = np.array(puts[:n])
    lo, hi = spot * (1 - window), spot * (1 + window)
    call_idx, put_idx = k.side_walls(call, put, strikes, spot, lo, hi)
    by_strike = {float(strikes[i]): (call[i], put[i]) for i in range(n)}
    expected = ref.side_walls(by_strike, spot, lo, hi)
    got = tuple(None if i < 0 else float(strikes[i]) for i in (call_idx, put_idx))
    assert got == expected


@given(
    rows=st.lists(
        st.tuples(st.integers(0, 6), st.booleans(), st.sampled_from([0.0, -1.0, 1.5, 10.0, 7.25])),
        max_size=40,
    ),
    bits=st.lists(st.integers(0, 7), min_size=40, max_size=40),
    bit=st.sampled_from([k.BUCKET_ALL, k.BUCKET_0DTE, k.BUCKET_FRONT]),
)
@settings(max_examples=100, deadline=None)
def test_strike_open_interest_kernel_equals_the_reference(rows, bits, bit):
    n = len(rows)
    slot_f = np.zeros((k.N_SLOT_F, max(n, 1)))
    slot_i = np.zeros((k.N_SLOT_I, max(n, 1)), dtype=np.int64)
    for i, (strike_idx, is_call, oi) in enumerate(rows):
        slot_i[k.I_STATE, i] = k.SLOT_PRESENT
        slot_i[k.I_STRIKE_IDX, i] = strike_idx
        slot_i[k.I_IS_CALL, i] = int(is_call)
        slot_i[k.I_BUCKETS, i] = bits[i]
        slot_f[k.F_OI, i] = oi
    call = np.full(7, np.nan)
    put = np.full(7, np.nan)
    k.strike_open_interest(slot_f, slot_i, n, bit, call, put)
    member = [(float(s), c, oi) for (s, c, oi), b in zip(rows, bits, strict=False) if b & bit]
    expected = ref.strike_open_interest(member)
    for s in range(7):
        assert (call[s], put[s]) == expected.get(float(s), (0.0, 0.0))


def test_the_levels_table_shows_the_oi_walls_exposures_and_same_as():
    text = render_table(compute_levels(wrong_side_book(LevelsConfig())))
    lines = text.splitlines()
    start = next(i for i, line in enumerate(lines) if "call OI" in line) + 1
    rows = {line.split()[0]: line.split() for line in lines[start : start + 3]}
    assert rows["all"][1:3] == ["100.00", "90.00"] and rows["all"][-2:] == [
        "none_in_range",
        "front",
    ]
    assert rows["0dte"][-2:] == ["empty", "-"]
    assert "walls: side rule; DEX in USD, VEX in USD per vol point, CHEX in USD per day" in text


def test_open_interest_of_ticker_packs_and_chain_deltas_moves_the_oi_walls():
    book = wrong_side_book(LevelsConfig())
    # a pack where 110 C ticks twice: the last tick's OI counts, as the quotes do
    ticks = OptionTicks.from_contracts(
        [
            make_contract(110, 4, True, 0.5, 9_000.0, 1.0),
            make_contract(110, 4, True, 0.5, 50.0, 1.0),
            make_contract(115, 4, True, 0.5, 8_000.0, 1.0),
        ]
    )
    book.apply_ticks(ticks)
    assert compute_levels(book).call_wall_oi == 115.0  # exactly at the +15 % edge: inside
    call_oi, _ = strike_open_interest(book, "all")
    by_strike = dict(
        zip(book.strike_values[: book.n_strikes].tolist(), call_oi.tolist(), strict=True)
    )
    assert (by_strike[110.0], by_strike[115.0]) == (50.0, 8_000.0)
    names = [make_contract(s, 4, False, 0.5, 0.0, 1.0).instrument for s in (90, 95)]
    delta = ChainDelta(
        venue="deribit", underlying="TST", snapshot_ns=T0 + 9, part=0, parts=1, full=False,
        upserts=2, spot=SPOT, premium_currency="USD", removed=[],
        columns={"instrument": names, "open_interest": np.array([10.0, 7_000.0])},
        ts_event_ns=T0 + 9, ts_recv_ns=T0 + 9,
    )  # fmt: skip
    book.apply_delta(delta)
    assert compute_levels(book).put_wall_oi == 95.0

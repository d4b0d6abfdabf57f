"""zero_gamma_status and the searched range, per bucket."""

from __future__ import annotations

from dataclasses import replace

import pytest

from engine.app.cli import render_table
from engine.core.book import GammaBook
from engine.core.config import PRESETS, LevelsConfig
from engine.core.levels import compute_levels
from schemas.levels import decode_levels, encode_levels
from tests.core.test_book_incremental import SPOT, T0, make_contract


def book_of(rows, config: LevelsConfig | None = None) -> GammaBook:
    """rows: (strike, expiry index, is_call, OI); a venue gamma for the perfiliev preset."""
    book = GammaBook("TST", "deribit", config or LevelsConfig(), SPOT, T0)
    book.upsert([replace(make_contract(s, e, c, 0.4, oi, 1.0), gamma=0.01) for s, e, c, oi in rows])
    return book


def test_one_root_is_ok_with_the_grid_range():
    levels = compute_levels(book_of([(95, 4, False, 1_000.0), (105, 4, True, 1_000.0)]))
    b = levels.buckets["all"]
    assert b.zero_gamma_status == "ok" and len(b.zero_gamma_crossings) == 1
    assert b.zero_gamma_range == pytest.approx((80.0, 120.0))
    assert levels.zero_gamma_status == "ok"  # the top level mirrors "all"


def test_only_positive_gamma_is_none_in_range():
    b = compute_levels(book_of([(100, 4, True, 1_000.0)])).buckets["all"]
    assert (b.zero_gamma, b.zero_gamma_crossings, b.zero_gamma_status) == (
        None,
        (),
        "none_in_range",
    )


def test_several_roots_are_multiple_and_the_nearest_is_chosen():
    rows = [(90, 2, True, 3_000.0), (100, 2, False, 2_000.0), (110, 2, True, 3_000.0)]
    b = compute_levels(book_of(rows)).buckets["all"]
    assert b.zero_gamma_status == "multiple" and len(b.zero_gamma_crossings) == 2
    assert b.zero_gamma == min(b.zero_gamma_crossings, key=lambda r: abs(r - SPOT))
    first = compute_levels(book_of(rows, PRESETS["perfiliev"])).buckets["all"]
    assert first.zero_gamma_status == "multiple"
    assert first.zero_gamma == first.zero_gamma_crossings[0]


def test_a_bucket_without_contracts_is_empty():
    levels = compute_levels(book_of([(100, 4, True, 1_000.0)]))  # 30 days: no 0DTE expiry
    b = levels.buckets["0dte"]
    assert (b.contracts_used, b.zero_gamma_status, b.zero_gamma_range) == (0, "empty", None)
    again = decode_levels(encode_levels(levels))
    assert again.buckets["0dte"].zero_gamma_status == "empty"
    assert again.buckets["all"].zero_gamma_range == levels.buckets["all"].zero_gamma_range


def test_the_levels_table_notes_the_searched_range_when_there_is_no_root():
    text = render_table(compute_levels(book_of([(100, 4, True, 1_000.0)])))
    assert "note: no zero-gamma crossing for 'all' in 80.00..120.00 (zero_gamma_status" in text

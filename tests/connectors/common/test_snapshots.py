"""Polled chain snapshots: the fast columnar CBOE parse, the differ/framer, the engine apply."""

from __future__ import annotations

import dataclasses
from datetime import date
from decimal import Decimal

import numpy as np
import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.cboe.columns import _terms, parse_cboe_json_columns
from connectors.cboe.normaliser import CboeNormaliser, parse_cboe_body
from connectors.cboe.parse import parse_cboe_csv, parse_cboe_json, parse_occ_symbol
from connectors.cboe.products import product_for_root
from connectors.common.errors import ParseError
from connectors.common.snapshots import SnapshotDiffer, SnapshotFramingConfig
from connectors.simulator.chains import spx_like_chain, to_cboe_delayed_quotes
from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.feed import BookFeeder
from engine.core.levels import compute_levels
from schemas.chain import CHAIN_COLUMNS, ChainColumns, ChainDelta
from schemas.records import decode_record, encode_record
from tests.paths import DATA, SHARED_FIXTURES, shared_fixture

FIXTURES = SHARED_FIXTURES
RECV = 1_741_963_600_000_000_123
S = 1_000_000_000


def columns_equal(a: ChainColumns, b: ChainColumns) -> None:
    for name in ("venue", "underlying", "spot", "asof_ns", "premium_currency"):
        assert getattr(a, name) == getattr(b, name), name
    for name in CHAIN_COLUMNS:
        left, right = getattr(a, name), getattr(b, name)
        if isinstance(left, np.ndarray):
            np.testing.assert_array_equal(left, right, err_msg=name)
        else:
            assert list(left) == list(right), name


def chain(n: int = 400, seed: int = 3) -> ChainColumns:
    return ChainColumns.from_snapshot(spx_like_chain(n, seed=seed))


# ---------------------------------------------------------------------------- parse


def test_fast_json_columns_equal_the_full_parser():
    raw = (DATA / "cboe_small.json").read_bytes()
    fast = parse_cboe_json_columns(raw, RECV)
    slow = ChainColumns.from_snapshot(parse_cboe_json(raw, RECV))
    columns_equal(fast, slow)
    assert fast.instrument[0] == "SPXW250314C05590000"
    assert fast.iv[0] == 0.1921 and fast.open_interest[0] == 1287.0
    assert parse_cboe_json_columns(orjson.loads(raw), RECV).instrument == fast.instrument


def test_fast_json_columns_on_a_large_simulated_document():
    snapshot = spx_like_chain(3_000, seed=11, n_expiries=34)
    raw = orjson.dumps(to_cboe_delayed_quotes(snapshot))
    fast = parse_cboe_json_columns(raw, RECV)
    columns_equal(fast, ChainColumns.from_snapshot(parse_cboe_json(raw, RECV)))
    assert len(fast) == len(snapshot.contracts)
    assert set(fast.root) == {"SPX", "SPXW"}


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (
            lambda d: d["data"]["options"][1].update(open_interest=None),
            r"P05590000: open_interest=None \(expected float, got null\)",
        ),
        (
            lambda d: d["data"]["options"][1].update(open_interest=-3.0),
            r"P05590000: open_interest=-3.0 \(expected >= 0\)",
        ),
        (lambda d: d["data"]["options"][1].update(iv=11.0), r"iv=11.0 \(expected <= 10\)"),
        (lambda d: d["data"]["options"][1].update(iv="0.19"), "iv='0.19' \\(expected"),
        (lambda d: d["data"]["options"][1].update(option="SPXW250314Q05590000"), "bad OCC"),
        (lambda d: d["data"]["options"][1].update(option="RUT250314P05590000"), "'RUT'"),
        (lambda d: d["data"]["options"][1].update(option="SPXW251314P05590000"), "date"),
        (lambda d: d["data"].update(options=[]), "no option rows"),
        (lambda d: d.update(timestamp="yesterday"), "bad timestamp"),
        (lambda d: d["data"].update(current_price=-1.0), "must be a positive"),
    ],
)
def test_fast_json_columns_errors(mutate, message):
    doc = orjson.loads((DATA / "cboe_small.json").read_bytes())
    mutate(doc)
    for form in (doc, orjson.dumps(doc)):
        with pytest.raises(ParseError, match=message):
            parse_cboe_json_columns(form, RECV)


def test_truncated_json_is_a_parse_error():
    raw = (DATA / "cboe_small.json").read_bytes()
    with pytest.raises(ParseError, match="not valid JSON"):
        parse_cboe_json_columns(raw[: len(raw) // 2], RECV)


@given(
    root=st.sampled_from(["SPX", "SPXW", "NDX", "NDXP", "SPY", "QQQ", "XSP", "VIX"]),
    day=st.dates(min_value=date(2001, 1, 1), max_value=date(2099, 12, 31)),
    right=st.sampled_from("CP"),
    strike_milli=st.integers(min_value=1, max_value=99_999_999),
)
@settings(max_examples=300, deadline=None)
def test_positional_occ_terms_match_the_regex_parser(root, day, right, strike_milli):
    symbol = f"{root}{day:%y%m%d}{right}{strike_milli:08d}"
    underlying, got_root, expiry_ns, strike, got_right, multiplier = _terms(symbol)
    occ = parse_occ_symbol(symbol)
    product = product_for_root(occ.root)
    assert (got_root, got_right, Decimal(strike)) == (occ.root, occ.right.value, occ.strike)
    assert strike == str(occ.strike)
    assert expiry_ns == product.expiry_ns(occ.expiry)
    assert (underlying, multiplier) == (product.underlying, product.multiplier)


def test_every_fixture_symbol_parses_the_same_both_ways():
    path = shared_fixture(FIXTURES / "cboe-spx-2024-01-07-phammings" / "spx_quotedata.csv")
    snapshot = parse_cboe_csv(path.read_text(), RECV)
    assert len(snapshot.contracts) > 10_000
    for contract in snapshot.contracts:
        _, root, expiry_ns, strike, right, _ = _terms(contract.instrument)
        assert (root, expiry_ns, Decimal(strike), right) == (
            contract.root,
            contract.expiry_ns,
            contract.strike,
            contract.right.value,
        ), contract.instrument


def test_body_sniffing_csv_and_json():
    csv_text = (DATA / "cboe_small.csv").read_text()
    from_csv = parse_cboe_body(csv_text.encode(), RECV)
    columns_equal(from_csv, ChainColumns.from_snapshot(parse_cboe_csv(csv_text, RECV)))
    json_raw = (DATA / "cboe_small.json").read_bytes()
    assert parse_cboe_body(b"  \n" + json_raw, RECV).instrument[0] == "SPXW250314C05590000"
    with pytest.raises(ParseError, match="empty body"):
        parse_cboe_body(b"   ", RECV)


# ---------------------------------------------------------------------------- differ


def moved(snapshot: ChainColumns, seconds: int, **changes) -> ChainColumns:
    return dataclasses.replace(snapshot, asof_ns=snapshot.asof_ns + seconds * S, **changes)


def upserted(parts: list[ChainDelta]) -> list[str]:
    return [name for part in parts for name in part.columns["instrument"]]


def removed(parts: list[ChainDelta]) -> list[str]:
    return [name for part in parts for name in part.removed]


def test_first_snapshot_is_full_then_only_changes_travel():
    first = chain()
    differ = SnapshotDiffer(SnapshotFramingConfig(keyframe_every=100))
    parts = differ.frame(first, RECV)
    assert [p.full for p in parts] == [True] * len(parts)
    assert upserted(parts) == first.instrument and removed(parts) == []
    assert [(p.part, p.parts) for p in parts] == [(i, len(parts)) for i in range(len(parts))]

    assert differ.frame(first, RECV) == []  # the same document served again

    iv = first.iv.copy()
    iv[[5, 17]] += 0.01
    oi = first.open_interest.copy()
    oi[40] += 1
    second = moved(first, 15, iv=iv, open_interest=oi, spot=first.spot + 2)
    parts = differ.frame(second, RECV)
    assert len(parts) == 1 and not parts[0].full
    assert upserted(parts) == [first.instrument[i] for i in (5, 17, 40)]
    assert parts[0].spot == first.spot + 2 and parts[0].snapshot_ns == second.asof_ns
    # known contracts: no terms, and only the value columns that changed somewhere
    assert set(parts[0].columns) == {"instrument", "iv", "open_interest"}

    third = moved(second, 15)  # nothing changed but time: one empty part completes it
    parts = differ.frame(third, RECV)
    assert len(parts) == 1 and parts[0].size == 0 and parts[0].last


def test_removed_expiry_and_added_contracts():
    first = chain()
    differ = SnapshotDiffer(SnapshotFramingConfig(keyframe_every=100))
    differ.frame(first, RECV)
    expiry = int(first.expiry_ns.min())
    keep = np.flatnonzero(first.expiry_ns != expiry)
    rows = keep.tolist()

    def take(values):
        return values[keep] if isinstance(values, np.ndarray) else [values[i] for i in rows]

    without = moved(first, 15, **{name: take(getattr(first, name)) for name in CHAIN_COLUMNS})
    parts = differ.frame(without, RECV)
    gone = {first.instrument[i] for i in np.flatnonzero(first.expiry_ns == expiry)}
    assert set(removed(parts)) == gone and upserted(parts) == []
    iv = first.iv.copy()
    kept = int(keep[0])
    iv[kept] += 0.01  # one known contract changes as the expiry comes back
    columns = {name: getattr(first, name) for name in CHAIN_COLUMNS}
    back = moved(without, 15, **{**columns, "iv": iv})
    parts = differ.frame(back, RECV)
    assert set(upserted(parts)) == gone | {first.instrument[kept]} and removed(parts) == []
    with_terms = [p for p in parts if "root" in p.columns]
    assert set(upserted(with_terms)) == gone  # the returning contracts carry their terms
    assert upserted([p for p in parts if "root" not in p.columns]) == [first.instrument[kept]]


def test_keyframes_resend_everything():
    first = chain(100)
    differ = SnapshotDiffer(SnapshotFramingConfig(keyframe_every=3))
    fulls = []
    for i in range(7):
        parts = differ.frame(moved(first, 15 * i), RECV)
        fulls.append(parts[0].full)
        if parts[0].full:
            assert upserted(parts) == first.instrument
    assert fulls == [True, False, False, True, False, False, True]


def test_duplicate_instrument_is_a_parse_error():
    first = chain(20)
    twice = dataclasses.replace(first, instrument=[first.instrument[0]] * len(first))
    with pytest.raises(ParseError, match="appears twice"):
        SnapshotDiffer().frame(twice, RECV)


@pytest.mark.parametrize("max_record_bytes", [10_000, 50_000, 900_000])
def test_parts_stay_under_the_record_size_limit(max_record_bytes):
    first = chain(6_000)
    config = SnapshotFramingConfig(max_record_bytes=max_record_bytes, keyframe_every=100)
    differ = SnapshotDiffer(config)
    parts = differ.frame(first, RECV)
    sizes = [len(encode_record(p)) for p in parts]
    assert max(sizes) <= max_record_bytes
    assert len(parts) >= sum(sizes) // max_record_bytes
    assert upserted(parts) == first.instrument
    # removing everything but one row sends the removed names in bounded parts too
    one = moved(first, 15, **{name: getattr(first, name)[:1] for name in CHAIN_COLUMNS})
    parts = differ.frame(one, RECV)
    assert max(len(encode_record(p)) for p in parts) <= max_record_bytes
    assert sorted(removed(parts)) == sorted(first.instrument[1:])
    assert parts[-1].last and all(not p.last for p in parts[:-1])


def test_chain_delta_round_trips_through_the_record_codec():
    parts = SnapshotDiffer().frame(chain(50), RECV)
    decoded = decode_record(encode_record(parts[0]))
    assert isinstance(decoded, ChainDelta)
    assert decoded.columns["instrument"] == parts[0].columns["instrument"]
    np.testing.assert_array_equal(decoded.columns["iv"], parts[0].columns["iv"])  # NaN kept
    assert decoded.columns["expiry_ns"].dtype == np.int64
    np.testing.assert_array_equal(decoded.columns["expiry_ns"], parts[0].columns["expiry_ns"])
    raw = orjson.loads(encode_record(parts[0]))
    assert set(raw["columns"]["iv"]) == {"f8"} and set(raw["columns"]["expiry_ns"]) == {"i8"}
    assert raw["columns"]["right"][:2] == ["C", "P"]


@pytest.mark.parametrize(
    ("column", "message"),
    [
        ({"f8": "!!!"}, "bad base64"),
        ({"f8": "AAAA"}, "not a whole number"),
        ({"f4": "AAAAAAAAAAA="}, "expected a list"),
    ],
)
def test_bad_packed_columns_are_rejected(column, message):
    part = SnapshotDiffer().frame(chain(20), RECV)[0]
    raw = orjson.loads(encode_record(part))
    raw["columns"]["iv"] = column
    with pytest.raises(ValueError, match=message):
        decode_record(orjson.dumps(raw))


# ---------------------------------------------------------------------------- engine apply


def reference_book(snapshot: ChainColumns, like: GammaBook) -> GammaBook:
    """The slow path: every contract as an OptionContract through GammaBook.upsert, on the
    same grid and reference time as ``like``."""
    book = GammaBook(
        snapshot.underlying, snapshot.venue, like.config, like.grid_center, like.t_ref_ns
    )
    book.set_spot(snapshot.spot)
    book.upsert(snapshot.contracts(RECV))
    return book


def feed(feeder: BookFeeder, parts: list[ChainDelta]) -> None:
    feeder.apply([decode_record(encode_record(p)) for p in parts])  # as the engine sees them


def assert_same_state(book: GammaBook, reference: GammaBook) -> None:
    assert set(book.instrument_slot) == set(reference.instrument_slot)
    np.testing.assert_allclose(book.profile, reference.profile, rtol=1e-9, atol=1e-6)
    mine, theirs = compute_levels(book), compute_levels(reference)
    for bucket in ("all", "0dte", "front"):
        a, b = mine.buckets[bucket], theirs.buckets[bucket]
        assert (a.call_wall, a.put_wall, a.contracts_used) == (
            b.call_wall,
            b.put_wall,
            b.contracts_used,
        )
        assert a.net_gex == pytest.approx(b.net_gex, rel=1e-9, abs=1e-3)


def test_applied_deltas_equal_a_fresh_load():
    config = LevelsConfig()
    first = chain(600)
    differ = SnapshotDiffer(SnapshotFramingConfig(keyframe_every=100))
    feeder = BookFeeder(config)
    feed(feeder, differ.frame(first, RECV))
    book = feeder.books["SPX"]
    assert_same_state(book, reference_book(first, book))
    iv = first.iv * 1.05
    second = moved(first, 0, iv=iv, spot=first.spot * 1.001)  # most rows change: rebuild path
    feed(feeder, differ.frame(second, RECV))
    assert book.spot == second.spot
    assert_same_state(book, reference_book(second, book))


def test_full_snapshot_drops_what_it_no_longer_lists():
    """A restarted connector sends a full snapshot: vanished contracts leave the book."""
    config = LevelsConfig()
    first = chain(300)
    feeder = BookFeeder(config)
    feed(feeder, SnapshotDiffer().frame(first, RECV))
    keep = list(range(0, len(first), 2))
    half = moved(
        first,
        15,
        **{
            name: (
                getattr(first, name)[keep]
                if isinstance(getattr(first, name), np.ndarray)
                else [getattr(first, name)[i] for i in keep]
            )
            for name in CHAIN_COLUMNS
        },
    )
    restarted = SnapshotDiffer(SnapshotFramingConfig(max_record_bytes=10_000))
    parts = restarted.frame(half, RECV)
    assert len(parts) > 1 and all(p.full for p in parts) and removed(parts) == []
    feed(feeder, parts[:-1])
    assert feeder.books["SPX"].n_contracts == len(first)  # not complete yet: nothing dropped
    feed(feeder, parts[-1:])
    assert_same_state(feeder.books["SPX"], reference_book(half, feeder.books["SPX"]))


def test_updates_of_unknown_contracts_wait_for_a_full_snapshot():
    """An engine that joined mid-stream gets value-only updates of contracts it never saw."""
    config = LevelsConfig()
    first = chain(80)
    differ = SnapshotDiffer(SnapshotFramingConfig(keyframe_every=2))
    differ.frame(first, RECV)  # the engine missed this full snapshot
    second = moved(first, 15, iv=first.iv * 1.02)
    parts = differ.frame(second, RECV)
    assert not parts[0].full and "root" not in parts[0].columns
    feeder = BookFeeder(config)
    feed(feeder, parts)
    book = feeder.books["SPX"]
    assert book.n_contracts == 0 and book.skipped_unknown == len(first)
    feed(feeder, differ.frame(moved(second, 15), RECV))  # the keyframe
    assert_same_state(book, reference_book(moved(second, 15), book))


def test_bad_columns_are_rejected_before_anything_changes():
    config = LevelsConfig()
    first = chain(60)
    feeder = BookFeeder(config)
    feed(feeder, SnapshotDiffer().frame(first, RECV))
    book = feeder.books["SPX"]
    before = book.profile.copy()
    fresh = SnapshotDiffer().frame(chain(60, seed=9), RECV)[0]
    renamed = {**fresh.columns, "instrument": [f"NEW{n}" for n in fresh.columns["instrument"]]}
    good = dataclasses.replace(fresh, columns=renamed)
    for columns, message in [
        ({**good.columns, "right": ["X"] * good.size}, "right must be"),
        ({**good.columns, "strike": ["abc"] * good.size}, "bad strike"),
        ({**good.columns, "iv": good.columns["iv"][:-1]}, "differ in length"),
        ({k: v for k, v in good.columns.items() if k != "gamma"}, "lacks columns"),
        ({**good.columns, "vega": good.columns["iv"]}, "unknown columns"),
        ({**good.columns, "iv": ["x"] * good.size}, "not a number"),
    ]:
        bad = ChainDelta(**{**{f: getattr(good, f) for f in good.__slots__}, "columns": columns})
        with pytest.raises(ValueError, match=message):
            book.apply_delta(bad)
        np.testing.assert_array_equal(book.profile, before)
        assert book.n_contracts == len(first)


@given(
    steps=st.lists(
        st.tuples(
            st.floats(min_value=0.0, max_value=1.0),  # fraction of rows whose IV changes
            st.floats(min_value=0.0, max_value=0.3),  # fraction removed
            st.booleans(),  # re-add what was removed earlier
            st.floats(min_value=-0.01, max_value=0.01),  # spot move
        ),
        min_size=1,
        max_size=6,
    ),
    seed=st.integers(0, 10_000),
)
@settings(max_examples=25, deadline=None)
def test_random_snapshot_sequences_match_a_fresh_load(steps, seed):
    config = LevelsConfig()
    universe = chain(240, seed=5)
    rng = np.random.default_rng(seed)
    differ = SnapshotDiffer(SnapshotFramingConfig(max_record_bytes=12_000, keyframe_every=3))
    feeder = BookFeeder(config)
    present = np.ones(len(universe), dtype=bool)
    iv = universe.iv.copy()
    spot = universe.spot
    current = universe
    for i, (change, drop, readd, move) in enumerate(steps):
        iv = np.where(rng.random(len(iv)) < change, iv * rng.uniform(0.9, 1.1, len(iv)), iv)
        if readd:
            present[:] = True
        present &= rng.random(len(iv)) >= drop
        present[0] = True
        spot *= 1 + move
        rows = np.flatnonzero(present)
        picked = rows.tolist()
        values = {
            name: (
                getattr(universe, name)[rows]
                if isinstance(getattr(universe, name), np.ndarray)
                else [getattr(universe, name)[j] for j in picked]
            )
            for name in CHAIN_COLUMNS
        }
        values["iv"] = iv[rows]
        current = moved(universe, 15 * i, spot=spot, **values)
        feed(feeder, differ.frame(current, RECV))
    book = feeder.books["SPX"]
    assert_same_state(book, reference_book(current, book))


def test_normaliser_routes_parts_to_the_options_topic():
    normaliser = CboeNormaliser()
    raw = (DATA / "cboe_small.json").read_bytes()
    routed = normaliser.normalise(raw, RECV)
    assert [r.topic for r in routed] == ["options"]
    assert routed[0].record.full and routed[0].record.size == 8
    assert normaliser.normalise(raw, RECV) == []

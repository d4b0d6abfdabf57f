"""The incremental profile equals a full rebuild and the slow reference after random sequences."""

from __future__ import annotations

import math
from decimal import Decimal

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from engine.core import kernels as k
from engine.core.book import BUCKET_ROWS, GammaBook
from engine.core.calendar import session_end_ns
from engine.core.config import LevelsConfig
from engine.core.models import dealer_position
from schemas.contracts import OptionContract, OptionRight
from schemas.time import NS_PER_YEAR
from tests import reference as ref

T0 = 1_741_962_600_000_000_000  # 2025-03-14T14:30:00Z
HOUR = 3_600_000_000_000
EXPIRY_OFFSETS = (2 * HOUR, 5 * HOUR + 1, 26 * HOUR, 80 * HOUR, 30 * 24 * HOUR, 400 * 24 * HOUR)
STRIKES = tuple(range(80, 125, 5))
SPOT = 100.0


def make_contract(strike, expiry_idx, is_call, iv, oi, basis, ts=T0) -> OptionContract:
    right = OptionRight.CALL if is_call else OptionRight.PUT
    return OptionContract(
        venue="deribit",
        underlying="TST",
        instrument=f"TST-{expiry_idx}-{strike}-{right.value}",
        root="TST",
        expiry_ns=T0 + EXPIRY_OFFSETS[expiry_idx],
        strike=Decimal(strike),
        right=right,
        multiplier=1.0,
        open_interest=oi,
        iv=iv,
        underlying_price=SPOT * basis,
        index_price=SPOT,
        ts_event_ns=ts,
        ts_recv_ns=ts,
    )


def reference_profile(
    book: GammaBook, live: dict[str, OptionContract], bucket: str
) -> tuple[np.ndarray, float]:
    """The bucket's profile by the slow reference, and :func:`cutoff_bound` of it."""
    t_ref = book.t_ref_ns
    alive = [c for c in live.values() if c.expiry_ns > t_ref]
    front = min((c.expiry_ns for c in alive), default=None)
    session_end = session_end_ns(book.venue, t_ref)

    def member(c: OptionContract) -> bool:
        if bucket == "all":
            return True
        if bucket == "front":
            return c.expiry_ns == front
        return c.expiry_ns <= session_end

    contracts = [
        ref.RefContract(
            strike=float(c.strike),
            tau=(c.expiry_ns - t_ref) / NS_PER_YEAR,
            iv=c.iv if c.iv is not None else math.nan,
            basis=c.underlying_price / c.index_price,
            position=dealer_position(book.config.model, c.is_call, c.open_interest),
            multiplier=c.multiplier,
            is_call=c.is_call,
        )
        for c in alive
        if member(c)
    ]
    return np.array(ref.profile(contracts, list(book.grid_spots))), cutoff_bound(
        contracts, max(book.grid_spots)
    )


def cutoff_bound(contracts: list[ref.RefContract], top_spot: float) -> float:
    """What the kernels may leave out by design: every term beyond |d1| = D1_CUTOFF, at
    most exp(-D1_CUTOFF²/2) of each contract's peak GEX (|pos|·mult·F·0.01 / (σ√T√(2π)))."""
    tail = math.exp(-0.5 * k.D1_CUTOFF**2) / math.sqrt(2 * math.pi)
    return sum(
        tail * abs(c.position) * c.multiplier * top_spot * c.basis * 0.01 / (c.iv * c.tau**0.5)
        for c in contracts
        if c.tau > 0 and c.iv > 0
    )


def assert_profiles_close(actual: np.ndarray, expected: np.ndarray, cut: float = 0.0) -> None:
    # A profile that is all but zero (every contract far from the grid, ~1e-58 USD) is
    # compared absolutely: below 1e-21 USD per 1 % a difference means nothing; against the
    # reference, what the kernels' d1 cutoff leaves out is allowed too.
    scale = max(float(np.max(np.abs(expected))), 1e-12)
    assert float(np.max(np.abs(actual - expected))) <= 1e-9 * scale + cut, (actual, expected)


contract_fields = st.tuples(
    st.sampled_from(STRIKES),
    st.integers(0, len(EXPIRY_OFFSETS) - 1),
    st.booleans(),
    st.one_of(st.none(), st.just(0.0), st.floats(0.05, 3.0)),
    st.one_of(st.just(0.0), st.floats(0.1, 5_000.0)),
    st.floats(0.97, 1.03),
)
operation = st.one_of(
    st.tuples(st.just("upsert"), contract_fields),
    st.tuples(st.just("remove"), st.integers(0, 10_000)),
    st.tuples(st.just("advance"), st.integers(1, 30 * HOUR // 1_000_000_000)),
    st.tuples(st.just("spot"), st.floats(0.85, 1.15)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@example(  # the front expiry's last contract is removed: the next expiry becomes the front
    ops=[
        ("upsert", (80, 0, False, None, 0.0, 1.0)),
        ("remove", 0),
        ("upsert", (80, 1, False, None, 0.0, 1.0)),
        ("upsert", (80, 1, False, 1.0, 1.0, 1.0)),
    ],
    model="long_calls_short_puts",
    spacing="log",
)
@example(  # one put far from every grid point: ~1e-21 USD, all of it beyond the d1 cutoff
    ops=[("upsert", (80, 1, False, 0.09375, 2.0, 1.0234375))],
    model="long_calls_short_puts",
    spacing="log",
)
@given(
    ops=st.lists(operation, min_size=1, max_size=120),
    model=st.sampled_from(["long_calls_short_puts", "short_all", "short_calls_long_puts"]),
    spacing=st.sampled_from(["log", "linear"]),
)
def test_incremental_profile_equals_rebuild_and_reference(ops, model, spacing):
    cfg = LevelsConfig(model=model, grid_points=41, grid_spacing=spacing, recenter_fraction=0.5)
    book = GammaBook("TST", "deribit", cfg, SPOT, T0, capacity=8)
    live: dict[str, OptionContract] = {}
    t_now = T0
    for kind, arg in ops:
        if kind == "upsert":
            contract = make_contract(*arg, ts=t_now)
            book.upsert([contract])
            live[contract.instrument] = contract
        elif kind == "remove" and live:
            instrument = sorted(live)[arg % len(live)]
            assert book.remove(instrument)
            del live[instrument]
        elif kind == "advance":
            t_now += arg * 1_000_000_000
            settled = book.advance_time(t_now)
            assert sorted(settled) == sorted(i for i, c in live.items() if c.expiry_ns <= t_now)
            for instrument in settled:
                del live[instrument]
        elif kind == "spot":
            book.set_spot(SPOT * arg)
    incremental = book.profile.copy()
    book.rebuild()
    for bucket, row in BUCKET_ROWS.items():
        assert_profiles_close(incremental[row], book.profile[row])
        assert_profiles_close(incremental[row], *reference_profile(book, live, bucket))
    assert book.n_contracts == len(live)


def test_long_random_sequence_stays_within_drift_bound():
    """10,000 random quote updates on 200 contracts: incremental vs rebuild ≤ 1e-9 relative."""
    rng = np.random.default_rng(11)
    cfg = LevelsConfig(grid_points=200)
    book = GammaBook("TST", "deribit", cfg, SPOT, T0)
    live = {}
    for strike in STRIKES:
        for e in range(len(EXPIRY_OFFSETS)):
            for is_call in (True, False):
                c = make_contract(strike, e, is_call, 0.6, 100.0, 1.0)
                live[c.instrument] = c
    book.upsert(live.values())
    names = sorted(live)
    for _ in range(10_000):
        name = names[rng.integers(len(names))]
        old = live[name]
        c = make_contract(
            int(old.strike),
            EXPIRY_OFFSETS.index(old.expiry_ns - T0),
            old.is_call,
            float(rng.uniform(0.1, 2.0)),
            float(rng.uniform(0, 1e4)),
            float(rng.uniform(0.98, 1.02)),
        )
        live[name] = c
        book.upsert([c])
    incremental = book.profile.copy()
    book.rebuild()
    for bucket, row in BUCKET_ROWS.items():
        assert_profiles_close(incremental[row], book.profile[row])
        assert_profiles_close(incremental[row], *reference_profile(book, live, bucket))


def test_apply_quotes_kernel_batch_equals_one_by_one():
    cfg = LevelsConfig(grid_points=64)
    contracts = [
        make_contract(s, e, c, 0.5, 10.0, 1.0)
        for s in STRIKES
        for e in (2, 4)
        for c in (True, False)
    ]
    one, batch = (GammaBook("TST", "deribit", cfg, SPOT, T0) for _ in range(2))
    for b in (one, batch):
        b.upsert(contracts)
    updates = [
        make_contract(
            int(c.strike), EXPIRY_OFFSETS.index(c.expiry_ns - T0), c.is_call, 0.7, 20.0, 1.01
        )
        for c in contracts
    ]
    for u in updates:
        one.upsert([u])
    batch.upsert(updates)
    np.testing.assert_allclose(
        one.profile, batch.profile, rtol=0, atol=1e-9 * np.abs(one.profile).max()
    )
    assert np.array_equal(
        one.slot_i[k.I_LIVE, : one.n_slots], batch.slot_i[k.I_LIVE, : batch.n_slots]
    )

"""Funding extremes, DVOL bands, term-structure inversion and the joined read, on scripted
inputs: exact events, hysteresis, dwell, intervals counted by the venue's clock, ids."""

from __future__ import annotations

import re
from decimal import Decimal
from pathlib import Path

import orjson
import pytest
from aiokafka.structs import TopicPartition
from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.simulator.deribit_session import SessionConfig, generate_session
from engine.app.settings import load_settings
from engine.core.book import GammaBook
from engine.core.config import ConfigError, LevelsConfig
from engine.signals.crypto_regime import (
    COMPOSITE_READS,
    DVOL_BANDS,
    FUNDING_STATES,
    GAMMA_STATES,
    CryptoRegime,
    FundingConfig,
    Signal,
    VolConfig,
    atm_iv,
    term_structure,
)
from engine.signals.detector import DetectorConfig, RegimeDetector, Trigger
from engine.stream.merge import InputItem
from engine.stream.task import PartitionTask, TaskConfig
from schemas.contracts import OptionContract, OptionRight
from schemas.levels import BucketLevels, Levels
from schemas.records import FundingRate, UnderlyingTick, VolIndexTick
from tests.paths import README

S = 1_000_000_000
HOUR = 3_600 * S
DAY = 24 * HOUR
T0 = 1_700_006_400 * S  # a whole hour (and 8 h) boundary, UTC


def funding(
    rate_8h: float,
    ts: int,
    venue: str = "binance",
    instrument: str = "BTCUSDT",
    interval_hours: float | None = 1.0,
    oi: float | None = None,
    underlying: str = "BTC",
) -> FundingRate:
    """A funding record; ``interval_hours`` None: continuous funding (no next funding time)."""
    hours = 8.0 if interval_hours is None else interval_hours
    next_ns = None if interval_hours is None else (ts // int(hours * HOUR) + 1) * int(hours * HOUR)
    return FundingRate(
        venue=venue,
        underlying=underlying,
        instrument=instrument,
        rate=rate_8h * hours / 8.0,
        interval_hours=hours,
        rate_8h=rate_8h,
        annualized=rate_8h * 3 * 365,
        mark_price=None,
        index_price=None,
        next_funding_ns=next_ns,
        ts_event_ns=ts,
        ts_recv_ns=ts,
        open_interest_usd=oi,
    )


def dvol(value: float, ts: int) -> VolIndexTick:
    return VolIndexTick("deribit", "BTC", "btc_usd", value, ts, ts)


def regime(funding_cfg: FundingConfig | None = None, vol_cfg: VolConfig | None = None):
    return CryptoRegime(funding_cfg or FundingConfig(), vol_cfg or VolConfig())


def run(state: CryptoRegime, records: list) -> list[tuple[int, Signal]]:
    out = []
    for record in records:
        out.extend((record.ts_event_ns, signal) for signal in state.observe(record))
    return out


def funding_events(signals: list[tuple[int, Signal]]) -> list[tuple[str, str, str | None, str]]:
    return [
        (s.detail["venue"], s.detail["state"], s.direction, s.suffix)
        for _, s in signals
        if s.event_type == "funding_extreme"
    ]


def every_second(rate_of_hour: list[float], step_s: int = 1, **kw: object) -> list:
    """One record per ``step_s`` for each hour, the hour's rate (a venue streaming its rate)."""
    return [
        funding(rate, T0 + h * HOUR + s * S, **kw)  # type: ignore[arg-type]
        for h, rate in enumerate(rate_of_hour)
        for s in range(0, 3_600, step_s)
    ]


# --------------------------------------------------------------------------- funding


def test_funding_extreme_counts_intervals_not_messages() -> None:
    # 1-hour intervals, the rate sent every second: 2 extreme hours start nothing, the
    # third does, at the first record of the next hour (when the third has closed).
    records = every_second([0.0001, 0.0008, 0.0008, 0.0001, 0.0008, 0.0008, 0.0008, 0.0002])
    records.append(funding(0.0002, T0 + 8 * HOUR))
    state = regime()
    signals = run(state, records)
    assert funding_events(signals) == [
        ("binance", "started", "up", "binance/BTCUSDT/started"),
        ("binance", "ended", "up", "binance/BTCUSDT/ended"),
    ]
    (ts_start, start), (ts_end, end) = signals
    assert ts_start == T0 + 7 * HOUR  # the hours 4, 5, 6 were extreme
    assert start.detail == {
        "state": "started",
        "venue": "binance",
        "instrument": "BTCUSDT",
        "side": "positive",
        "rate_8h": 0.0008,
        "annualized": pytest.approx(0.0008 * 3 * 365),
        "threshold_8h": 0.0005,
        "exit_8h": pytest.approx(0.0004),
        "intervals": 3,
        "interval_end_ns": T0 + 7 * HOUR,
        "interval_s": 3_600.0,
    }
    assert ts_end == T0 + 8 * HOUR
    assert end.detail["state"] == "ended" and end.detail["rate_8h"] == 0.0002
    assert end.detail["intervals"] == 3
    # The cross-venue rate has 8-hour intervals (default): its first one settled at 0.02 %.
    assert state.funding == "neutral"


def test_consecutive_rule_holds_for_one_config_and_funding_interval_of_the_venue() -> None:
    cfg = FundingConfig(intervals=2, aggregate_interval_s=3_600)
    records = every_second([0.0008, 0.0001, 0.0008, 0.0008], step_s=60)
    assert funding_events(run(regime(cfg), records)) == []  # the 4th hour has not closed
    records += [funding(0.0001, T0 + 4 * HOUR + 5 * S)]
    assert [e[:3] for e in funding_events(run(regime(cfg), records))] == [
        ("binance", "started", "up"),
        ("all", "started", "up"),
    ]


def test_between_exit_and_threshold_neither_starts_nor_ends_and_negative_is_down() -> None:
    cfg = FundingConfig(aggregate_interval_s=3_600)
    hours = [-0.0007, -0.0006, -0.0009, -0.00045, -0.00041, -0.0006, -0.00039, -0.00049]
    signals = run(regime(cfg), every_second(hours, step_s=30))
    # Started after 3 hours below -0.05 %; -0.045 % and -0.041 % are inside the exit band
    # (80 % of the threshold) so the extreme lasts; -0.039 % ends it; -0.049 % starts nothing.
    assert [(e[0], e[1], e[2]) for e in funding_events(signals)] == [
        ("binance", "started", "down"),
        ("all", "started", "down"),
        ("binance", "ended", "down"),
        ("all", "ended", "down"),
    ]
    started, _, ended, _ = (s for _, s in signals if s.event_type == "funding_extreme")
    assert started.detail["side"] == "negative" and started.detail["rate_8h"] == -0.0009
    assert ended.detail["rate_8h"] == -0.00039 and ended.detail["intervals"] == 6


def test_the_last_rate_of_an_interval_is_what_counts() -> None:
    # The predicted rate is extreme for most of each hour but settles below the threshold.
    cfg = FundingConfig(intervals=1, aggregate_interval_s=3_600)
    records = []
    for h in range(4):
        records += [funding(0.0009, T0 + h * HOUR + s * S) for s in range(0, 3_000, 10)]
        records += [funding(0.0003, T0 + h * HOUR + 3_500 * S)]
    assert funding_events(run(regime(cfg), records)) == []


def test_continuous_funding_uses_a_utc_grid_and_duplicates_or_stale_records_change_nothing() -> (
    None
):
    cfg = FundingConfig(continuous_interval_s=60, aggregate_interval_s=60, intervals=2)
    state = regime(cfg)
    base = T0 + 15 * S
    records = [
        funding(
            0.0007, base + i * S, venue="deribit", instrument="BTC-PERPETUAL", interval_hours=None
        )
        for i in range(0, 150, 2)
    ]
    clean = run(regime(cfg), records)
    noisy = []
    for record in records:
        noisy.extend(state.observe(record))
        noisy.extend(state.observe(record))  # a duplicate delivery
        # A late record of an interval that has closed (out of order) is ignored.
        noisy.extend(
            state.observe(
                funding(0.0, base, venue="deribit", instrument="BTC-PERPETUAL", interval_hours=None)
            )
        )
    assert (
        [s.suffix for s in noisy]
        == [s.suffix for _, s in clean]
        == [
            "deribit/BTC-PERPETUAL/started",
            "all/started",
        ]
    )
    # Intervals [T0, T0+60 s) and [T0+60, T0+120) were extreme: confirmed by the first
    # record past T0 + 120 s.
    assert clean[0][0] == T0 + 121 * S
    assert clean[0][1].detail["interval_end_ns"] == T0 + 120 * S


def test_a_missing_interval_breaks_the_run() -> None:
    cfg = FundingConfig(intervals=3, aggregate_interval_s=3_600)
    hours = [0.0008, 0.0008, None, 0.0008, 0.0008, 0.0001]  # the venue was silent in hour 2
    records = [
        funding(rate, T0 + h * HOUR + s * S)
        for h, rate in enumerate(hours)
        if rate is not None
        for s in range(0, 3_600, 600)
    ]
    assert funding_events(run(regime(cfg), records)) == []


def test_cross_venue_rate_is_open_interest_weighted_with_mean_weight_for_unknown_oi() -> None:
    cfg = FundingConfig(intervals=1, aggregate_interval_s=3_600)
    state = regime(cfg)
    records = []
    for h in range(2):
        t = T0 + h * HOUR
        records += [
            funding(0.0010, t + 10 * S, "binance", "BTCUSDT", 8.0, oi=3e9),
            funding(0.0000, t + 20 * S, "okx", "BTC-USDT-SWAP", 8.0, oi=1e9),
            funding(0.0002, t + 30 * S, "deribit", "BTC-PERPETUAL", None, oi=None),
        ]
    records.append(funding(0.0, T0 + 2 * HOUR + 1 * S, "okx", "BTC-USDT-SWAP", 8.0, oi=1e9))
    signals = [s for _, s in run(state, records)]
    # Deribit's unknown OI weighs as the mean of the known (2e9): (3·10 + 1·0 + 2·2) / 6.
    assert [s.suffix for s in signals] == ["all/started"]
    detail = signals[0].detail
    assert detail["rate_8h"] == pytest.approx((3 * 0.0010 + 2 * 0.0002) / 6)
    assert {v["venue"]: round(v["weight"], 6) for v in detail["venues"]} == {
        "binance": 0.5,
        "okx": round(1 / 6, 6),
        "deribit": round(2 / 6, 6),
    }
    assert state.funding == "extreme_positive"


def test_a_silent_venue_leaves_the_cross_venue_rate() -> None:
    cfg = FundingConfig(intervals=1, aggregate_interval_s=3_600, stale_after_s=600)
    records = [funding(0.0030, T0 + 5 * S, "okx", "BTC-USDT-SWAP", 8.0)]
    records += [
        funding(0.0001, T0 + s * S, "binance", "BTCUSDT", 8.0) for s in range(700, 7_300, 60)
    ]
    signals = [s for _, s in run(regime(cfg), records)]
    assert [s.suffix for s in signals] == []  # OKX's 0.3 % stopped counting after 10 minutes


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(-0.000499, 0.000499), min_size=1, max_size=40),
    st.lists(st.floats(0.00040, 0.01), min_size=1, max_size=40),
)
def test_funding_jitter_inside_the_hysteresis_band_never_emits(
    neutral: list[float], extreme: list[float]
) -> None:
    cfg = FundingConfig(intervals=2, aggregate_interval_s=3_600)
    state = regime(cfg)
    # Neutral: any path inside ±threshold starts nothing.
    assert funding_events(run(state, every_second(neutral, step_s=900))) == []
    # Establish a positive extreme, then any path at or above the exit never ends it.
    start = T0 + len(neutral) * HOUR
    setup = [funding(0.001, start + h * HOUR + 1 * S) for h in range(3)]
    assert len(funding_events(run(state, setup))) == 2
    later = [
        funding(rate, start + (3 + h) * HOUR + s * S)
        for h, rate in enumerate(extreme)
        for s in range(1, 3_600, 900)
    ]
    assert funding_events(run(state, later)) == []


# --------------------------------------------------------------------------- DVOL bands


def dvol_path(values: list[float], start: int = T0) -> list[VolIndexTick]:
    return [dvol(v, start + i * S) for i, v in enumerate(values)]


def test_dvol_bands_with_hysteresis_and_dwell() -> None:
    cfg = VolConfig(dwell_s=10, hysteresis_points=2)
    state = regime(vol_cfg=cfg)
    path = [60.0] * 5 + [91.5] * 30 + [93.0] * 9 + [60.0] * 3 + [93.0] * 11
    path += [89.0, 91.0] * 20 + [70.0] * 12 + [49.0] * 20 + [47.0] * 11
    signals = run(state, dvol_path(path))
    events = [(s.direction, s.level, s.detail["from"], s.detail["to"]) for _, s in signals]
    # 91.5 is inside the band above 90; 93 for 9 s is shorter than the dwell; then 93 for
    # 11 s confirms (at its 11th second); 89/91 jitter stays elevated; 70 ends it; 49 is
    # inside the band below 50; 47 for 11 s confirms compressed.
    assert events == [
        ("up", 90.0, "normal", "elevated"),
        ("down", 90.0, "elevated", "normal"),
        ("down", 50.0, "normal", "compressed"),
    ]
    first = signals[0]
    assert first[0] == T0 + (5 + 30 + 9 + 3 + 10) * S
    assert first[1].detail == {
        "kind": "dvol_band",
        "from": "normal",
        "to": "elevated",
        "dvol": 93.0,
        "venue": "deribit",
        "index": "btc_usd",
        "compressed_below": 50.0,
        "elevated_above": 90.0,
        "hysteresis_points": 2.0,
        "dwell_s": 10.0,
    }
    assert first[1].suffix == "dvol_band/elevated"
    assert state.dvol == "compressed"


def test_dvol_jump_across_two_bands_and_another_index_is_ignored() -> None:
    state = regime(vol_cfg=VolConfig(dwell_s=0))
    run(state, [dvol(40.0, T0)])
    other = VolIndexTick("deribit", "BTC", "btc_usd_other", 99.0, T0 + S, T0 + S)
    assert run(state, [other]) == []
    ((_, signal),) = run(state, [dvol(120.0, T0 + 2 * S)])
    assert (signal.direction, signal.level, signal.detail["to"]) == ("up", 90.0, "elevated")


@settings(max_examples=80, deadline=None)
@given(
    st.sampled_from([(50.0, "compressed"), (50.0, "normal"), (90.0, "normal"), (90.0, "elevated")]),
    st.lists(st.floats(-1.99, 1.99), min_size=1, max_size=200),
)
def test_dvol_jitter_inside_the_hysteresis_band_never_emits(
    start: tuple[float, str], jitter: list[float]
) -> None:
    threshold, band = start
    state = regime(vol_cfg=VolConfig(dwell_s=3, hysteresis_points=2))
    setup = {"compressed": 30.0, "normal": 70.0, "elevated": 110.0}[band]
    run(state, [dvol(setup, T0)])
    assert state.dvol == band
    assert run(state, dvol_path([threshold + j for j in jitter], T0 + S)) == []


# --------------------------------------------------------------------------- term structure


def option(
    strike: int, expiry_ns: int, iv: float, is_call: bool, forward: float, ts: int = T0
) -> OptionContract:
    return OptionContract(
        venue="deribit",
        underlying="BTC",
        instrument=f"BTC-{expiry_ns // DAY}-{strike}-{'C' if is_call else 'P'}",
        root="BTC",
        expiry_ns=expiry_ns,
        strike=Decimal(strike),
        right=OptionRight.CALL if is_call else OptionRight.PUT,
        multiplier=1.0,
        open_interest=100.0,
        iv=iv,
        underlying_price=forward,
        index_price=60_000.0,
        ts_event_ns=ts,
        ts_recv_ns=ts,
        premium_currency="BTC",
    )


FRONT, NEXT, BACK = T0 + 2 * DAY, T0 + 9 * DAY, T0 + 45 * DAY


def chain(front_iv: float, back_iv: float, ts: int = T0) -> list[OptionContract]:
    """Three expiries; the front's smile is linear in strike around its ATM vol."""
    out = []
    for expiry, atm, forward in (
        (FRONT, front_iv, 60_300.0),
        (NEXT, 0.6, 60_600.0),
        (BACK, back_iv, 61_200.0),
    ):
        for strike in range(56_000, 66_000, 1_000):
            iv = atm + 0.1 * (forward - strike) / forward  # put skew
            for is_call in (True, False):
                out.append(option(strike, expiry, iv, is_call, forward, ts))
    return out


def book_of(contracts: list[OptionContract]) -> GammaBook:
    book = GammaBook("BTC", "deribit", LevelsConfig(), 60_000.0, T0)
    book.upsert(contracts)
    return book


def test_atm_iv_is_interpolated_at_the_forward_in_log_strike() -> None:
    book = book_of(chain(0.70, 0.60))
    forward = 60_300.0
    low, high = 60_000.0, 61_000.0
    iv_low = 0.70 + 0.1 * (forward - low) / forward
    iv_high = 0.70 + 0.1 * (forward - high) / forward
    w = (Decimal(forward / low).ln() / Decimal(high / low).ln()).__float__()
    assert atm_iv(book, FRONT) == pytest.approx(iv_low + w * (iv_high - iv_low), rel=1e-9)
    assert atm_iv(book, T0 + 99 * DAY) is None  # no such expiry
    assert term_structure(book, T0, VolConfig()) == (
        FRONT,
        pytest.approx(atm_iv(book, FRONT) * 100),
        BACK,
        pytest.approx(atm_iv(book, BACK) * 100),
    )
    # Too close to expiry for the front: the next expiry leads.
    cfg = VolConfig(term_front_min_days=3.0)
    assert term_structure(book, T0, cfg)[0] == NEXT


def test_term_structure_inversion_starts_and_ends_with_hysteresis_and_dwell() -> None:
    cfg = VolConfig(dwell_s=10, term_margin_points=2.0, term_hysteresis_points=1.0)
    state = regime(vol_cfg=cfg)
    book = book_of(chain(0.60, 0.60))
    out: list[tuple[int, Signal]] = []

    def step(front_iv: float, seconds: int, start: int) -> int:
        for i in range(seconds):
            ts = start + i * S
            book.upsert(chain(front_iv, 0.60, ts)[:20])  # the front expiry's quotes
            out.extend((ts, s) for s in state.observe_book(book, "positive", ts))
        return start + seconds * S

    t = step(0.60, 3, T0)  # flat: not inverted (first sight, no event)
    t = step(0.625, 20, t)  # 2.5 points above: inverted once it held 10 s
    t = step(0.615, 20, t)  # 1.5 points: inside the hysteresis band, still inverted
    t = step(0.605, 5, t)  # 0.5 points for 5 s: shorter than the dwell
    t = step(0.615, 5, t)
    step(0.600, 12, t)  # flat for 12 s: ended
    assert [(s.suffix, s.detail["state"]) for _, s in out] == [
        ("term_structure/started", "started"),
        ("term_structure/ended", "ended"),
    ]
    (ts_start, started), (ts_end, ended) = out
    assert ts_start == T0 + (3 + 10) * S and ts_end == t + 10 * S
    assert started.event_type == "vol_regime" and started.direction is None
    assert started.detail["kind"] == "term_structure"
    assert started.detail["front_expiry"].startswith("2023-11-17")
    assert started.detail["spread_points"] == pytest.approx(2.5, abs=1e-3)
    assert ended.detail["spread_points"] == pytest.approx(0.0, abs=1e-3)
    assert state.term_inverted is False


# --------------------------------------------------------------------------- the joined read


def test_composite_table_covers_every_combination_with_unique_names() -> None:
    combos = {(g, d, f) for g in GAMMA_STATES for d in DVOL_BANDS for f in FUNDING_STATES}
    assert set(COMPOSITE_READS) == combos
    names = [r.name for r in COMPOSITE_READS.values()]
    assert len(set(names)) == len(names) == 27
    assert COMPOSITE_READS[("negative", "elevated", "extreme_positive")].name == "long_squeeze_risk"


def test_readme_table_matches_the_code_table() -> None:
    text = README.read_text()
    section = text.split("## Crypto regime read: gamma × DVOL × funding", 1)[1].split("\n## ", 1)[0]
    rows = re.findall(
        r"^\| `(\w+)` \| `(\w+)` \| `(\w+)` \| `(\w+)` \| (.+?) \|$", section, re.MULTILINE
    )
    table = {(g, d, f): (name, meaning) for g, d, f, name, meaning in rows}
    assert table == {key: (r.name, r.meaning) for key, r in COMPOSITE_READS.items()}


def empty_book() -> GammaBook:
    return GammaBook("BTC", "deribit", LevelsConfig(), 60_000.0, T0)


def test_composite_changes_are_signalled_once_with_what_changed() -> None:
    cfg = FundingConfig(intervals=1, continuous_interval_s=60, aggregate_interval_s=60)
    state = regime(cfg, VolConfig(dwell_s=0))
    book = empty_book()
    perp = dict(venue="deribit", instrument="BTC-PERPETUAL", interval_hours=None)
    assert state.composite() == {"gamma": None, "dvol": None, "funding": None, "read": None}
    assert state.observe_book(book, "positive", T0) == []
    assert state.observe(dvol(60.0, T0 + S)) == []
    assert state.observe(funding(0.0001, T0 + 2 * S, **perp)) == []  # type: ignore[arg-type]
    # The first closed interval makes funding known: the read is established, no change.
    assert state.observe(funding(0.0001, T0 + 61 * S, **perp)) == []  # type: ignore[arg-type]
    assert state.composite()["read"] == "mean_reverting"
    (signal,) = state.observe(dvol(95.0, T0 + 62 * S))[1:]
    assert (signal.event_type, signal.suffix, signal.direction) == (
        "regime_change",
        "composite",
        None,
    )
    assert signal.detail == {
        "kind": "composite",
        "from": "mean_reverting",
        "to": "rich_vol_range",
        "meaning": COMPOSITE_READS[("positive", "elevated", "neutral")].meaning,
        "changed": ["dvol"],
        "previous": {"gamma": "positive", "dvol": "normal", "funding": "neutral"},
    }
    assert state.observe(funding(0.002, T0 + 70 * S, **perp)) == []  # type: ignore[arg-type]
    assert state.observe_book(book, "negative", T0 + 80 * S)[0].detail["to"] == "volatile_trend"
    signals = state.observe(funding(0.002, T0 + 121 * S, **perp))  # type: ignore[arg-type]
    assert [s.suffix for s in signals] == [
        "deribit/BTC-PERPETUAL/started",
        "all/started",
        "composite",
    ]
    assert signals[-1].detail["to"] == "long_squeeze_risk"
    assert signals[-1].detail["changed"] == ["funding"]
    assert state.observe_book(book, "negative", T0 + 122 * S) == []  # unchanged: no signal


# --------------------------------------------------------------------------- config


def test_config_checks_values_and_keys_and_nests_in_the_detector_table(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"threshold_8h must be finite and > 0, got 0$"):
        FundingConfig(threshold_8h=0)
    with pytest.raises(ConfigError, match=r"intervals must be an integer >= 1, got 0$"):
        FundingConfig(intervals=0)
    with pytest.raises(ConfigError, match=r"exit_fraction must be in \[0, 1\], got 1\.5$"):
        FundingConfig(exit_fraction=1.5)
    with pytest.raises(ConfigError, match="compressed_below \\+ 2 × hysteresis_points < elevated"):
        VolConfig(compressed_below=89, elevated_above=90)
    with pytest.raises(ValueError, match=r"unknown detector\.funding config keys: bogus"):
        DetectorConfig.from_mapping({"funding": {"bogus": 1}})
    path = tmp_path / "engine.toml"
    path.write_text(
        "[detector]\nband_bps = 12.0\n[detector.funding]\nthreshold_8h = 0.001\nintervals = 2\n"
        "[detector.vol]\nelevated_above = 85.0\ndwell_s = 30.0\n"
    )
    detector = load_settings({}, {}, str(path)).engine["detector"]
    assert detector.band_bps == 12.0
    assert detector.funding == FundingConfig(threshold_8h=0.001, intervals=2)
    assert detector.vol == VolConfig(elevated_above=85.0, dwell_s=30.0)
    path.write_text("[detector.vol]\ndvol_max = 3\n")
    with pytest.raises(ConfigError, match="dvol_max"):
        load_settings({}, {}, str(path))


# --------------------------------------------------------------------------- detector label


def levels(spot: float, ts: int, zero_gamma: float, regime_: str, net: float) -> Levels:
    bucket = BucketLevels(net, zero_gamma, (zero_gamma,), 110.0, 90.0, 100.0, regime_, 10)
    empty = BucketLevels(0.0, None, (), None, None, None, None, 0)
    return Levels(
        "BTC",
        spot,
        ts,
        "long_calls_short_puts",
        None,
        "iv",
        {"all": bucket, "0dte": empty, "front": empty},
    )


def test_gamma_label_confirms_transition_with_dwell_and_leaves_it_beyond_a_band() -> None:
    detector = RegimeDetector("BTC", DetectorConfig(band_bps=10, dwell_s=3), transition_band_bps=25)
    labels = []
    # Spot 1 % above zero gamma (positive), then 20 bp (transition), then 30 bp: outside the
    # 25 bp transition band but inside its 10 bp hysteresis, then 40 bp: positive again.
    path = [100.0] * 3 + [99.2] * 5 + [99.3] * 6 + [99.4] * 5
    for i, spot in enumerate(path):
        zero = (
            spot / 1.01
            if i < 3
            else {99.2: spot * (1 - 0.0020), 99.3: spot * (1 - 0.0030), 99.4: spot * (1 - 0.0040)}[
                spot
            ]
        )
        regime_ = "transition" if abs(spot - zero) <= spot * 25e-4 else "positive"
        detector.evaluate(
            levels(spot, T0 + i * S, zero, regime_, 1e6), Trigger("t", 0, i, T0 + i * S)
        )
        labels.append(detector.gamma_regime("all"))
    assert (
        labels
        == ["positive"] * 3
        + ["positive"] * 3
        + ["transition"] * 2
        + ["transition"] * 6
        + ["transition"] * 3
        + ["positive"] * 2
    )


# --------------------------------------------------------------------------- in the task


def test_task_emits_funding_and_dvol_events_at_their_records_with_the_read_stamped() -> None:
    tp = {
        name: TopicPartition(f"md.{name}.v1", 0)
        for name in ("options", "underlying", "funding", "volindex")
    }
    detector_config = DetectorConfig(
        stale_after_s=300,
        funding=FundingConfig(intervals=2, continuous_interval_s=10, aggregate_interval_s=10),
        vol=VolConfig(dwell_s=5),
    )
    levels_config = LevelsConfig(model="short_all")
    task = PartitionTask(0, None, levels_config, detector_config, TaskConfig(), lambda: 7)  # type: ignore[arg-type]
    items = []
    offsets = dict.fromkeys(tp, 0)

    def add(topic: str, record: object) -> None:
        items.append(InputItem(tp[topic], offsets[topic], record.ts_event_ns, record))  # type: ignore[attr-defined]
        offsets[topic] += 1

    for contract in chain(0.60, 0.60):
        add("options", contract)
    perp = dict(venue="deribit", instrument="BTC-PERPETUAL", interval_hours=None)
    for second in range(60):
        t = T0 + second * S + 500_000_000
        add("underlying", UnderlyingTick("deribit", "BTC", "btc_usd", "index", 60_000.0, t, t))
        add("volindex", dvol(60.0 if second < 20 else 95.0, t + 1))
        add("funding", funding(0.0001 if second < 30 else 0.002, t + 2, **perp))  # type: ignore[arg-type]
    out = task.process(items)
    events = [event for _, event in out.events]
    kinds = [(e.type, e.direction, e.detail.get("kind") or e.detail.get("venue")) for e in events]
    assert kinds == [
        ("vol_regime", "up", "dvol_band"),
        ("regime_change", None, "composite"),
        ("funding_extreme", "up", "deribit"),
        ("funding_extreme", "up", "all"),
        ("regime_change", None, "composite"),
    ]
    names = {"vol_regime": "dvol_band/elevated", "regime_change": "composite"}
    suffixes = ["deribit/BTC-PERPETUAL/started", "all/started"]
    for trigger, event in out.events:
        name = names.get(event.type) or suffixes.pop(0)
        assert event.id == f"{trigger.topic}/0/{trigger.offset}/{event.type}/all/{name}"
        assert event.ts_event == trigger.ts_event_ns and event.bucket == "all"
        assert event.levels["spot"] == 60_000.0 and event.levels["contracts_used"] == 60
    dvol_event, first_read, venue_event, _, second_read = events
    assert out.events[0][0].topic == "md.volindex.v1"
    assert out.events[2][0].topic == "md.funding.v1"
    # DVOL above 92 from second 20, confirmed 5 s later; funding extreme from second 30 for
    # the intervals [30, 40) and [40, 50), confirmed by the first record after 50 s.
    assert dvol_event.ts_event == T0 + 25 * S + 500_000_001
    assert venue_event.ts_event == T0 + 50 * S + 500_000_002
    # Dealers short every contract: negative gamma everywhere, so this is the long squeeze.
    assert dvol_event.detail["composite"] == {
        "gamma": "negative",
        "dvol": "elevated",
        "funding": "neutral",
        "read": "volatile_trend",
    }
    assert (first_read.detail["from"], first_read.detail["to"]) == ("trend_prone", "volatile_trend")
    assert second_read.detail["to"] == "long_squeeze_risk"
    assert venue_event.detail["composite"]["read"] == "long_squeeze_risk"
    assert task.crypto["BTC"].term_inverted is False


# --------------------------------------------------------------------------- simulator paths


def test_simulator_paths_are_checked_and_followed() -> None:
    for bad in ({"funding_path": ((10, 0.001), (5, 0.002))}, {"dvol_path": ((0, 0.5),)}):
        with pytest.raises(ValueError, match=next(iter(bad))):
            SessionConfig(n_instruments=300, duration_s=10.0, **bad)  # type: ignore[arg-type]
    config = SessionConfig(
        n_instruments=300,
        duration_s=60.0,
        scenario="none",
        funding_path=[(0, 0.0001), (10, 0.002)],  # type: ignore[arg-type]
        dvol_path=[(0, 40.0), (15, 120.0)],  # type: ignore[arg-type]
    )
    assert config.funding_path == ((0.0, 0.0001), (10.0, 0.002))
    funding_8h, dvol_values = [], []
    for message in generate_session(config):
        params = orjson.loads(message.raw).get("params", {})
        channel = params.get("channel", "")
        if channel.startswith("ticker.BTC-PERPETUAL"):
            funding_8h.append(params["data"]["funding_8h"])
        elif channel.startswith("deribit_volatility_index"):
            dvol_values.append(params["data"]["volatility"])
    assert funding_8h[0] == pytest.approx(0.0001, abs=1e-4)
    # The premium reverts to the path with a 20 s time constant.
    assert funding_8h[-1] == pytest.approx(0.002, abs=3e-4)
    assert dvol_values[0] == pytest.approx(40.0, rel=0.03)
    assert dvol_values[-1] == pytest.approx(120.0, rel=0.03)

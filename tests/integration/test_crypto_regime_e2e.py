"""End to end: a simulated Deribit session with scripted funding and DVOL paths, through the
real broker (Tansu) and Redis, yields funding_extreme, vol_regime and composite regime_change
events on the Redis stream, with the joined read on every event."""

from __future__ import annotations

import asyncio
from itertools import pairwise
from pathlib import Path

import pytest

from connectors.common.ingest import IngestStage, MemorySink, replay_capture
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_session import SessionConfig, write_session
from engine.signals.crypto_regime import COMPOSITE_READS, FundingConfig, VolConfig
from engine.signals.detector import DetectorConfig
from schemas.records import FundingRate, VolIndexTick
from schemas.topics import Topics
from tests.integration.test_pipeline import engine_config, ingest, run_engine, stream

S = 1_000_000_000
START = SessionConfig().start_ns
# Funding 0.01 % → 0.10 % per 8 h from 70-80 s until 170-180 s; DVOL 65 → 100 from 40-60 s
# until 200-220 s, then 70.
SESSION = SessionConfig(
    n_instruments=300,
    duration_s=240.0,
    seed=11,
    scenario="none",
    funding_path=((0, 0.0001), (70, 0.0001), (80, 0.0010), (170, 0.0010), (180, 0.0001)),
    dvol_path=((0, 65.0), (40, 65.0), (60, 100.0), (200, 100.0), (220, 70.0)),
)
# Deribit's continuous funding cut into 20 s intervals (the default would be 8 hours).
DETECTOR = DetectorConfig(
    funding=FundingConfig(continuous_interval_s=20.0, aggregate_interval_s=20.0, intervals=3),
    vol=VolConfig(dwell_s=10.0),
)


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list]:
    path = tmp_path_factory.mktemp("crypto") / "session.jsonl"
    write_session(SESSION, path)
    sink = MemorySink()
    stage = IngestStage("deribit", DeribitNormaliser(), sink, Topics(), source="replay")
    asyncio.run(replay_capture(path, stage))
    return path, [record for _, record in sink.records]


def expected_funding(records: list, length_s: float = 20.0) -> list[tuple[str, int]]:
    """(state, first record past the interval) from the session's own funding records."""
    rates = [r for r in records if isinstance(r, FundingRate)]
    length = int(length_s * S)
    closes, end, last = [], None, None
    for r in rates:
        key = (r.ts_event_ns // length + 1) * length
        if end is not None and key > end:
            closes.append((last, r.ts_event_ns))
        end, last = key, r.rate_8h
    out, run, extreme = [], 0, False
    for rate, ts in closes:
        if extreme:
            if rate < 0.0004:
                extreme = False
                out.append(("ended", ts))
            continue
        run = run + 1 if rate > 0.0005 else 0
        if run >= 3:
            extreme = True
            out.append(("started", ts))
    return out


@pytest.mark.asyncio
async def test_scripted_session_yields_funding_vol_and_composite_events_on_the_stream(
    kafka_bootstrap: str, redis_url: str, topics: Topics, session: tuple[Path, list]
) -> None:
    path, records = session
    await ingest(kafka_bootstrap, topics, path)
    report = await run_engine(engine_config(kafka_bootstrap, redis_url, topics, detector=DETECTOR))
    events = [event for _, event in await stream(redis_url)]
    assert len({e.id for e in events}) == len(events) == sum(report.events.values())

    # Every event of BTC carries the joined read.
    for event in events:
        composite = event.detail["composite"]
        assert set(composite) == {"gamma", "dvol", "funding", "read"}
        if composite["read"] is not None:
            key = (composite["gamma"], composite["dvol"], composite["funding"])
            assert composite["read"] == COMPOSITE_READS[key].name

    # funding_extreme: the Deribit perpetual and the cross-venue rate (only Deribit here),
    # started and ended exactly where the session's own funding records say.
    funding = [e for e in events if e.type == "funding_extreme"]
    expected = expected_funding(records)
    assert [state for state, _ in expected] == ["started", "ended"]
    assert [(e.detail["venue"], e.detail["state"], e.direction, e.ts_event) for e in funding] == [
        (venue, state, "up", ts) for state, ts in expected for venue in ("deribit", "all")
    ]
    started = funding[0]
    assert started.id.startswith(f"{topics.funding}/")
    assert started.id.endswith("/funding_extreme/all/deribit/BTC-PERPETUAL/started")
    assert started.detail["instrument"] == "BTC-PERPETUAL" and started.detail["intervals"] == 3
    assert started.detail["rate_8h"] > 0.0005 and started.detail["interval_s"] == 20.0
    assert funding[1].detail["venues"][0]["weight"] == 1.0
    assert started.detail["composite"]["funding"] == "extreme_positive"
    assert funding[2].detail["composite"]["funding"] == "neutral"
    # Confirmed 3 intervals after the rate crossed the threshold, ended after it came back.
    assert START + 80 * S < expected[0][1] <= START + 160 * S
    assert START + 180 * S < expected[1][1] <= START + 240 * S

    # vol_regime: DVOL normal → elevated → normal, once each way (no flapping).
    vol = [e for e in events if e.type == "vol_regime"]
    assert [(e.detail["kind"], e.direction, e.detail["from"], e.detail["to"]) for e in vol] == [
        ("dvol_band", "up", "normal", "elevated"),
        ("dvol_band", "down", "elevated", "normal"),
    ]
    dvol = [r for r in records if isinstance(r, VolIndexTick)]
    up, down = vol
    # Confirmed after 10 s beyond 92 (90 + 2 points of hysteresis), and below 88 for down.
    first_above = next(r.ts_event_ns for r in dvol if r.value > 92.0)
    assert up.ts_event >= first_above + 10 * S and up.detail["dvol"] > 92.0
    assert up.level == down.level == 90.0
    assert down.detail["dvol"] < 88.0 and down.ts_event > START + 200 * S
    assert up.id.startswith(f"{topics.volindex}/") and up.id.endswith("/dvol_band/elevated")
    assert up.detail["composite"]["dvol"] == "elevated"

    # Composite regime_change: one event per change of read, each naming what changed; the
    # DVOL and funding changes are all there, at the inputs that confirmed them.
    composites = [
        e for e in events if e.type == "regime_change" and e.detail["kind"] == "composite"
    ]
    assert composites, "no composite regime_change"
    for before, after in pairwise(composites):
        assert after.detail["from"] == before.detail["to"]
    for event in composites:
        assert event.detail["to"] == event.detail["composite"]["read"] != event.detail["from"]
        assert event.detail["meaning"] == next(
            r.meaning for r in COMPOSITE_READS.values() if r.name == event.detail["to"]
        )
    changes = [
        (e.ts_event, component, e.detail["composite"][component])
        for e in composites
        for component in e.detail["changed"]
        if component != "gamma"
    ]
    assert changes == sorted(
        [(up.ts_event, "dvol", "elevated"), (down.ts_event, "dvol", "normal")]
        + [
            (ts, "funding", "extreme_positive" if state == "started" else "neutral")
            for state, ts in expected
        ]
    )
    squeeze = next(e for e in composites if e.detail["composite"]["funding"] == "extreme_positive")
    gamma = squeeze.detail["composite"]["gamma"]
    assert squeeze.detail["to"] == COMPOSITE_READS[(gamma, "elevated", "extreme_positive")].name
    assert squeeze.id.endswith("/regime_change/all/composite")

"""The CME source: assembling settlement documents into ChainDeltas, polling, capture, replay.

Documents are the hand-written CME shapes of tests/test_cme_parse.py; expected values come
from :func:`parse_cme_settlements` on the same documents (itself checked against scipy).
"""

from __future__ import annotations

import asyncio
import copy
import math
from datetime import date

import orjson
import pytest
import pytest_asyncio

from connectors.cme.client import CmeClient, CmeConfig, CmeSeriesConfig, futures_settlements_url
from connectors.cme.normaliser import CmeNormaliser, futures_request, series_request
from connectors.cme.parse import CmeOptionSeries, parse_cme_settlements
from connectors.common.capture import CaptureWriter, read_capture
from connectors.common.errors import ParseError
from connectors.common.ingest import IngestStage, MemorySink, replay_capture
from connectors.sources import SourceError, parse_source
from connectors.venues import StagePerVenue
from schemas.config import ConfigError
from schemas.records import encode_record
from schemas.topics import Topics
from tests.connectors.cme.test_cme_parse import (
    ES_FUTURES,
    RECV,
    document,
    es_quarterly_rows,
    ew3_rows,
    row,
)
from tests.fakes.http_chain import FakeHttpChain, FakeTime, HalfRandom, Reply

TOPICS = Topics()
EW3_LTD = ES_LTD = date(2025, 3, 21)
EW4_LTD = date(2025, 3, 28)
EXPECTED = ["ES:2025-03-21", "EW3:2025-03-21"]


def futures_msg(doc, expected=EXPECTED):
    return orjson.dumps(doc), futures_request("ES", expected)


def series_msg(doc, code, ltd, expected=EXPECTED):
    return orjson.dumps(doc), series_request("ES", code, ltd, expected)


# Day 2 (Mon 2025-03-17): the June future is unchanged, March moves; one EW3 premium and
# one open interest change.
FUTURES_2 = copy.deepcopy(ES_FUTURES)
FUTURES_2["tradeDate"] = "03/17/2025"
FUTURES_2["settlements"][0]["settle"] = "5,660.00"
EW3_1 = document("03/14/2025", ew3_rows())
ES_1 = document("03/14/2025", es_quarterly_rows())
EW3_2 = document("03/17/2025", ew3_rows())
EW3_2["settlements"][10]["settle"] = "60.00"  # 5700 call
EW3_2["settlements"][19]["openInterest"] = "12"  # 6500 put: OI only (no volatility)
ES_2 = document("03/17/2025", es_quarterly_rows())
# Day 3 (Mon 2025-03-24): March has expired, EW3 and ES quarterly too; EW4 is listed.
FUTURES_3 = document(
    "03/24/2025",
    [
        row("JUN 25", settle="5,693.25", oi="2,189,001"),
        row("SEP 25", settle="5,748.00", oi="2,234"),
    ],
)
EW4_3 = document("03/24/2025", ew3_rows())
EXPECTED_3 = [*EXPECTED, "EW4:2025-03-28"]


def chain(futures, *series):
    return parse_cme_settlements(
        [CmeOptionSeries(doc, code, ltd) for doc, code, ltd in series], futures, "ES", RECV
    )


def merged(deltas, held: dict[str, dict[str, float]] | None = None):
    """Per snapshot: (full, {instrument: (oi, iv, underlying)}, removed).

    A part of known contracts carries only the value columns that changed; an absent column
    keeps the instrument's last value (``held``, shared across calls for one stream).
    """
    out = []
    held = {} if held is None else held
    for d in deltas:
        if d.part == 0:
            out.append((d.full, {}, []))
        cols = d.columns
        for i, name in enumerate(cols["instrument"]):
            values = held.setdefault(name, {})
            for column in ("open_interest", "iv", "underlying_price"):
                if column in cols:
                    values[column] = float(cols[column][i])
            iv, forward = values["iv"], values["underlying_price"]
            out[-1][1][name] = (
                values["open_interest"],
                None if math.isnan(iv) else iv,
                None if math.isnan(forward) else forward,  # None: the spot (front future)
            )
        out[-1][2].extend(d.removed)
    return out


def same(got, want):
    """Same instruments, equal counts and prices, volatilities equal to 1e-12 (None: none)."""
    assert set(got) == set(want)
    for name, (oi, iv, forward) in want.items():
        assert got[name][0] == oi and got[name][2] == forward, name
        assert (got[name][1] is None) == (iv is None), name
        assert iv is None or math.isclose(got[name][1], iv, rel_tol=1e-12), name
    return True


def values(snapshot):
    return {
        c.instrument: (
            c.open_interest,
            c.iv,
            None if c.underlying_price == snapshot.spot else c.underlying_price,
        )
        for c in snapshot.contracts
    }


def feed(normaliser, *messages):
    return [[r.record for r in normaliser.normalise(body, RECV, req)] for body, req in messages]


def test_futures_and_two_series_assemble_one_full_chain_then_only_changes():
    n = CmeNormaliser()
    held: dict[str, dict[str, float]] = {}
    first = feed(
        n,
        futures_msg(ES_FUTURES),
        series_msg(EW3_1, "EW3", EW3_LTD),
        series_msg(ES_1, "ES", ES_LTD),
    )
    assert first[0] == [] and first[1] == []  # waiting for the set
    day1 = chain(ES_FUTURES, (EW3_1, "EW3", EW3_LTD), (ES_1, "ES", ES_LTD))
    assert len(day1.contracts) == 26  # 20 EW3 rows + 6 ES rows
    [(full, upserts, removed)] = merged(first[2], held)
    assert full and removed == []
    assert same(upserts, values(day1))
    assert upserts["EW3-20250321-5700-C"][2] == 5693.25  # June future
    assert upserts["ES-20250321-5600-P"][2] is None  # the March future: the spot
    assert first[2][0].spot == 5638.5
    assert upserts["EW3-20250321-5700-C"][1] == pytest.approx(0.18, abs=0.005)
    assert upserts["EW3-20250321-6500-C"][1] is None  # no settle

    # Day 2: nothing until the whole set is in; a stale day-1 body is ignored.
    second = feed(
        n,
        futures_msg(FUTURES_2),
        series_msg(EW3_1, "EW3", EW3_LTD),
        series_msg(EW3_2, "EW3", EW3_LTD),
        series_msg(ES_2, "ES", ES_LTD),
    )
    assert second[:3] == [[], [], []]
    assert n.counts["older_trade_date"] == 1 and n.counts["waiting"] == 4
    day2 = values(chain(FUTURES_2, (EW3_2, "EW3", EW3_LTD), (ES_2, "ES", ES_LTD)))
    [(full, upserts, removed)] = merged(second[3], held)
    assert not full and removed == []
    # A new trade date moves every volatility; rows without one change only through OI.
    unchanged = {"EW3-20250321-5000-C", "EW3-20250321-5000-P", "EW3-20250321-6500-C"}
    assert set(upserts) == set(day2) - unchanged
    assert upserts["EW3-20250321-6500-P"] == (12.0, None, 5693.25)
    assert same(upserts, {k: day2[k] for k in upserts})
    assert second[3][0].spot == 5660.0 and not second[3][0].full

    # Day 3: the expired series leave, the new one arrives.
    third = feed(
        n,
        series_msg(EW4_3, "EW4", EW4_LTD, EXPECTED_3),
        futures_msg(FUTURES_3, EXPECTED_3),
    )
    assert third[0] == []
    [(full, upserts, removed)] = merged(third[1], held)
    assert sorted(removed) == sorted(day2)
    day3 = values(chain(FUTURES_3, (EW4_3, "EW4", EW4_LTD)))
    assert len(day3) == 20 and full is False
    assert same(upserts, day3)
    assert n.counts["snapshots"] == 3


def test_bad_bodies_are_dead_lettered_and_not_kept():
    sink = MemorySink()
    stage = IngestStage("cme", CmeNormaliser(), sink, TOPICS)
    broken = orjson.dumps(EW3_1)[:200]
    bad_row = copy.deepcopy(ES_1)
    bad_row["settlements"][2]["settle"] = "82..00"

    async def run():
        for body, req in (
            futures_msg(ES_FUTURES),
            (broken, series_request("ES", "EW3", EW3_LTD, EXPECTED)),
            series_msg(bad_row, "ES", ES_LTD),
            series_msg(EW3_1, "XYZ", EW3_LTD),
            (orjson.dumps(EW3_1), None),
            series_msg(EW3_1, "EW3", EW3_LTD),
            series_msg(ES_1, "ES", ES_LTD),
        ):
            await stage.on_message(body, body, RECV, req, url="http://x/y")

    asyncio.run(run())
    reasons = [reason for _, reason, *_ in sink.dead_letters]
    assert len(reasons) == 4
    assert "not valid JSON" in reasons[0]
    assert "settlements[2]" in reasons[1] and "settle" in reasons[1]
    assert "unknown CME option code 'XYZ'" in reasons[2]
    assert "without its request" in reasons[3]
    [(full, upserts, _)] = merged(sink.on(TOPICS.options))
    assert full and len(upserts) == 26  # the good bodies still make the chain


def test_config_and_sources():
    fut = futures_settlements_url("ES")
    assert fut.endswith("/Settlements/Futures/Settlements/133/FUT?strategy=DEFAULT")
    config = CmeConfig.from_mapping(
        {
            "product": "ES",
            "series": [
                {"option_code": "EW3", "last_trading_day": "2025-03-21", "url": "https://a/oof1"},
                {"option_code": "ES", "last_trading_day": "2025-03-21", "url": "https://a/oof2"},
            ],
            "chain": {"rate": 0.04},
            "poller": {"user_agent": "me"},
        }
    )
    assert config.poller_config().urls == (fut, "https://a/oof1", "https://a/oof2")
    assert config.poller.interval_s == 600.0 and config.chain.rate == 0.04
    requests = config.requests()
    assert requests["https://a/oof1"]["option_code"] == "EW3"
    assert requests[fut]["expected"] == EXPECTED and requests[fut]["rate"] == 0.04
    with pytest.raises(ConfigError, match="unknown CME config keys: products"):
        CmeConfig.from_mapping({"products": "ES"})
    with pytest.raises(ConfigError, match="unknown CME option code 'LO' for ES"):
        CmeConfig(series=(CmeSeriesConfig("LO", EW3_LTD, "https://a/b"),))
    with pytest.raises(ConfigError, match="either option series"):
        CmeConfig()
    with pytest.raises(ConfigError, match="unknown CME product 'XX'"):
        CmeConfig(product="XX", directory="/tmp")
    assert parse_source("cme:ES").spec == "cme:ES"
    assert parse_source("cme:nq").target == "NQ"
    with pytest.raises(SourceError, match="CME product must be one of CL, ES, GC, NQ, ZN"):
        parse_source("cme:SPX")


@pytest_asyncio.fixture
async def cme_site():
    fake = await FakeHttpChain().start()
    yield fake
    await fake.stop()


@pytest.mark.asyncio
async def test_polled_settlements_become_chain_deltas_and_replay_identically(cme_site, tmp_path):
    fut, ew3, es = "/fut", "/oof/ew3", "/oof/es"
    cme_site.honour_validators = True
    cme_site.script(
        fut,
        Reply(200, orjson.dumps(ES_FUTURES), {"ETag": '"f1"'}),
        Reply(200, orjson.dumps(ES_FUTURES), {"ETag": '"f1"'}),  # → 304
        Reply(200, orjson.dumps(FUTURES_2), {"ETag": '"f2"'}),
    )
    cme_site.script(
        ew3,
        Reply(200, orjson.dumps(EW3_1)),
        Reply(200, b'{"settlements": [{"strike": "5,0'),  # truncated → dead letter
        Reply(200, orjson.dumps(EW3_2)),
    )
    cme_site.script(ew3, Reply(503, b"busy"))
    cme_site.script(es, Reply(200, orjson.dumps(ES_1)), Reply(200, orjson.dumps(ES_2)))
    cme_site.repeat_last = True
    config = CmeConfig(
        futures_url=cme_site.url(fut),
        series=(
            CmeSeriesConfig("EW3", EW3_LTD, cme_site.url(ew3)),
            CmeSeriesConfig("ES", ES_LTD, cme_site.url(es)),
        ),
        warm_up=False,
    )
    sink = MemorySink()
    capture_path = tmp_path / "cme.jsonl"
    fake_time = FakeTime(budget=14)
    with CaptureWriter(capture_path) as capture:
        stage = IngestStage("cme", CmeNormaliser(), sink, TOPICS, capture)
        client = CmeClient(
            config, stage, sleep=fake_time.sleep, clock=fake_time.clock, rng=HalfRandom()
        )
        task = asyncio.create_task(client.run())
        await asyncio.wait_for(fake_time.exhausted.wait(), 10)
        await client.stop()
        await task
    assert fake_time.sleeps[:2] == [200.0, 400.0]  # three URLs staggered over 600 s
    assert 600.0 in fake_time.sleeps  # the polite default interval
    assert client.counts["delivered"] == 7 and client.counts["not_modified"] >= 1
    assert len(sink.dead_letters) == 1 and "not valid JSON" in sink.dead_letters[0][1]
    snapshots = merged(sink.on(TOPICS.options))
    assert len(snapshots) == 2
    day1 = values(chain(ES_FUTURES, (EW3_1, "EW3", EW3_LTD), (ES_1, "ES", ES_LTD)))
    day2 = values(chain(FUTURES_2, (EW3_2, "EW3", EW3_LTD), (ES_2, "ES", ES_LTD)))
    assert snapshots[0][0] and same(snapshots[0][1], day1)
    assert not snapshots[1][0] and len(snapshots[1][1]) == len(day2) - 3

    captured = list(read_capture(capture_path))
    assert len(captured) == 7 and all(m.venue == "cme" and m.request for m in captured)
    replayed = MemorySink()
    per_venue = StagePerVenue(replayed, TOPICS)
    await replay_capture(capture_path, per_venue)
    assert [encode_record(d) for d in replayed.on(TOPICS.options)] == [
        encode_record(d) for d in sink.on(TOPICS.options)
    ]
    assert len(replayed.dead_letters) == 1


def test_normaliser_rejects_a_chain_that_does_not_build():
    n = CmeNormaliser()
    futures = copy.deepcopy(ES_FUTURES)
    del futures["settlements"][1]  # no June future: EW3 exercises into it
    feed(n, futures_msg(futures), series_msg(ES_1, "ES", ES_LTD))
    with pytest.raises(ParseError, match="no settle for Jun 2025"):
        n.normalise(orjson.dumps(EW3_1), RECV, series_request("ES", "EW3", EW3_LTD, EXPECTED))
    # The offending document was dropped: a good futures document completes nothing yet.
    assert feed(n, futures_msg(ES_FUTURES)) == [[]]
    [[*parts]] = feed(n, series_msg(EW3_1, "EW3", EW3_LTD))
    assert len(merged(parts)[0][1]) == 26


@pytest.mark.asyncio
async def test_saved_files_by_name_make_the_same_chain(tmp_path):
    (tmp_path / "futures.json").write_bytes(orjson.dumps(ES_FUTURES))
    (tmp_path / "options_EW3_20250321.json").write_bytes(orjson.dumps(EW3_1))
    (tmp_path / "options_ES_20250321.json").write_bytes(orjson.dumps(ES_1))
    (tmp_path / "notes.json").write_bytes(b"{}")  # not a settlement file name: not read
    config = CmeConfig.from_mapping(
        {"directory": str(tmp_path), "file_poll_interval_s": 1.0, "warm_up": False}
    )
    sink = MemorySink()
    stage = IngestStage("cme", CmeNormaliser(), sink, TOPICS)
    fake_time = FakeTime(budget=3)
    client = CmeClient(config, stage, sleep=fake_time.sleep)
    task = asyncio.create_task(client.run())
    await asyncio.wait_for(fake_time.exhausted.wait(), 10)
    await client.stop()
    await task
    assert client.counts["delivered"] == 3 and sink.dead_letters == []
    [(full, upserts, removed)] = merged(sink.on(TOPICS.options))
    day1 = values(chain(ES_FUTURES, (EW3_1, "EW3", EW3_LTD), (ES_1, "ES", ES_LTD)))
    assert full and removed == [] and same(upserts, day1)

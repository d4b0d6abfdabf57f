"""The CBOE client: URLs and config, then polling a local CDN through the real normaliser.

The documents are hand-written in the exact delayed-quotes shape (``connectors/cboe/wire.py``);
the assertions are the ChainDelta changes each snapshot must produce.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import time
from typing import Any

import orjson
import pytest
import pytest_asyncio

from connectors.cboe.client import (
    CBOE_INDEX_SYMBOLS,
    CBOE_SYMBOLS,
    CboeClient,
    CboeConfig,
    delayed_quotes_url,
)
from connectors.cboe.normaliser import CboeNormaliser
from connectors.cboe.parse import parse_cboe_csv, parse_cboe_json
from connectors.common.capture import CaptureWriter
from connectors.common.file_watch import FileWatch, FileWatchConfig
from connectors.common.http_poller import HttpPollerConfig
from connectors.common.ingest import IngestStage, MemorySink, replay_capture
from schemas.chain import ChainDelta
from schemas.config import ConfigError
from schemas.topics import Topics
from tests.fakes.http_chain import FakeHttpChain, FakeTime, HalfRandom, Reply
from tests.paths import DATA

TOPICS = Topics()
S = 1_000_000_000
SPXW_0314_PM = 1_741_982_400 * S  # 2025-03-14 16:00 EDT
SPX_0321_AM = 1_742_563_800 * S  # 2025-03-21 09:30 EDT
SPXW_0321_PM = 1_742_587_200 * S  # 2025-03-21 16:00 EDT


# ---------------------------------------------------------------------------- URLs, config


def test_urls_index_roots_get_an_underscore():
    assert delayed_quotes_url("SPX") == (
        "https://cdn.cboe.com/api/global/delayed_quotes/options/_SPX.json"
    )
    assert delayed_quotes_url("SPY") == (
        "https://cdn.cboe.com/api/global/delayed_quotes/options/SPY.json"
    )
    config = CboeConfig(symbols=("SPX", "NDX", "SPY", "QQQ", "VIX", "XSP"))
    assert [url.rsplit("/", 1)[1] for url in config.urls()] == [
        "_SPX.json",
        "_NDX.json",
        "SPY.json",
        "QQQ.json",
        "_VIX.json",
        "_XSP.json",
    ]
    assert {"SPX", "NDX", "VIX", "XSP"} == CBOE_INDEX_SYMBOLS
    assert {"SPY", "QQQ"} == CBOE_SYMBOLS - CBOE_INDEX_SYMBOLS
    local = CboeConfig(base_url="http://127.0.0.1:8080/options/")
    assert local.urls() == ("http://127.0.0.1:8080/options/_SPX.json",)


def test_config_defaults_and_validation():
    config = CboeConfig()
    assert config.symbols == ("SPX",)
    poller = config.poller_config()
    assert poller.urls == (delayed_quotes_url("SPX"),)
    assert poller.interval_s == 15.0 and poller.max_body_bytes >= 14 * 1024 * 1024

    parsed = CboeConfig.from_mapping(
        {"symbols": ["SPX", "SPY"], "poller": {"interval_s": 30, "user_agent": "me"}}
    )
    assert parsed.symbols == ("SPX", "SPY")
    assert parsed.poller == HttpPollerConfig(interval_s=30, user_agent="me")
    with pytest.raises(ConfigError, match="unknown CBOE config keys: symbol"):
        CboeConfig.from_mapping({"symbol": "SPX"})
    with pytest.raises(ConfigError, match="unknown HTTP poller config keys: every"):
        CboeConfig.from_mapping({"poller": {"every": 3}})
    with pytest.raises(ConfigError, match="unknown CBOE symbols AAPL, spx"):
        CboeConfig(symbols=("AAPL", "spx"))
    with pytest.raises(ConfigError, match="distinct"):
        CboeConfig(symbols=("SPX", "SPX"))
    with pytest.raises(ConfigError, match=r"leave poller\.urls empty"):
        CboeConfig(poller=HttpPollerConfig(urls=("https://x/y.json",)))
    with pytest.raises(ConfigError, match=r">= 2\.0"):
        CboeConfig.from_mapping({"poller": {"interval_s": 1}})


# ---------------------------------------------------------------------------- documents


def option_row(
    option: str, open_interest: float, iv: float, gamma: float, bid: float, ask: float
) -> dict[str, Any]:
    """One ``data.options[]`` row with every field CBOE sends (wire.CboeDelayedOptionRow)."""
    mid = round((bid + ask) / 2, 4)
    return {
        "option": option,
        "bid": bid,
        "bid_size": 10.0,
        "ask": ask,
        "ask_size": 12.0,
        "iv": iv,
        "open_interest": open_interest,
        "volume": 412.0,
        "delta": 0.51 if option[-9] == "C" else -0.49,
        "gamma": gamma,
        "vega": 0.5428,
        "theta": -23.8392,
        "rho": 0.0167,
        "theo": mid,
        "change": 1.25,
        "open": 7.8,
        "high": 13.2,
        "low": 6.69,
        "tick": "up",
        "last_trade_price": mid,
        "last_trade_time": "2025-03-14T10:44:58",
        "percent_change": 11.5,
        "prev_day_close": round(mid - 1.25, 4),
    }


def document(timestamp: str, spot: float, rows: list[dict[str, Any]], seqno: int) -> bytes:
    """A whole ``_SPX.json`` document (wire.CboeDelayedQuotesDocument)."""
    return orjson.dumps(
        {
            "timestamp": timestamp,
            "data": {
                "symbol": "_SPX",
                "security_type": "index",
                "exchange_id": 5,
                "current_price": spot,
                "price_change": round(spot - 5521.52, 2),
                "price_change_percent": round((spot / 5521.52 - 1) * 100, 4),
                "bid": round(spot - 2.3, 2),
                "ask": round(spot + 2.3, 2),
                "bid_size": 1.0,
                "ask_size": 1.0,
                "open": 5563.85,
                "high": 5597.27,
                "low": 5563.85,
                "close": spot,
                "prev_day_close": 5521.52,
                "volume": 0.0,
                "iv30": 22.514,
                "iv30_change": -1.742,
                "iv30_change_percent": -7.1817,
                "seqno": seqno,
                "last_trade_time": timestamp.replace(" ", "T"),
                "tick": "up",
                "options": rows,
            },
            "symbol": "_SPX",
        }
    )


# (open_interest, iv, gamma, bid, ask) per instrument
ROWS_1 = {
    "SPXW250314C05590000": (1287.0, 0.1921, 0.0151, 11.9, 12.1),
    "SPXW250314P05590000": (2264.0, 0.1978, 0.0146, 9.3, 9.5),
    "SPXW250314C05600000": (3410.0, 0.1890, 0.0149, 7.2, 7.4),
    "SPXW250314P05600000": (1950.0, 0.1960, 0.0147, 14.5, 14.8),
    "SPX250321C05600000": (10512.0, 0.1884, 0.0027, 52.4, 53.5),
    "SPX250321P05600000": (14233.0, 0.1930, 0.0026, 61.0, 62.1),
    "SPXW250321C05600000": (4100.0, 0.1850, 0.0028, 55.1, 56.0),
    "SPXW250321P05600000": (3900.0, 0.1910, 0.0027, 58.2, 59.3),
}
# 15 s later: gamma/IV of one call and OI of one put change, one quote moves (not a
# change that matters for gamma), a strike is listed.
ROWS_2 = {
    **ROWS_1,
    "SPXW250314C05590000": (1287.0, 0.1925, 0.0153, 12.4, 12.6),
    "SPXW250314P05590000": (2264.0, 0.1978, 0.0146, 9.0, 9.2),
    "SPX250321P05600000": (14240.0, 0.1930, 0.0026, 61.0, 62.1),
    "SPXW250321C05650000": (2210.0, 0.1790, 0.0024, 30.1, 30.9),
}
# The 0DTE expiry (SPXW 2025-03-14) has gone from the document; one IV moves.
ROWS_3 = {
    **{k: v for k, v in ROWS_2.items() if not k.startswith("SPXW250314")},
    "SPX250321C05600000": (10512.0, 0.1880, 0.0027, 52.9, 54.0),
}
DOC_1 = document("2025-03-14 14:45:03", 5592.85, [option_row(k, *v) for k, v in ROWS_1.items()], 1)
DOC_2 = document("2025-03-14 14:45:18", 5594.10, [option_row(k, *v) for k, v in ROWS_2.items()], 2)
DOC_3 = document("2025-03-14 14:45:33", 5595.00, [option_row(k, *v) for k, v in ROWS_3.items()], 3)
ASOF_1, ASOF_2, ASOF_3 = (1_741_963_503 * S, 1_741_963_518 * S, 1_741_963_533 * S)


def summarise(deltas: list[ChainDelta]) -> list[dict[str, Any]]:
    """Each snapshot's parts merged: upserted values per instrument and removed instruments.

    A part of known contracts carries only the value columns that changed; an absent column
    means the instrument keeps its last value (as the engine does).
    """
    out: list[dict[str, Any]] = []
    held: dict[str, dict[str, float]] = {}  # instrument → value columns as last sent
    for delta in deltas:
        if delta.part == 0:
            out.append(
                {
                    "snapshot_ns": delta.snapshot_ns,
                    "spot": delta.spot,
                    "full": delta.full,
                    "upserts": {},
                    "removed": [],
                    "parts": [],
                }
            )
        snap = out[-1]
        assert (delta.snapshot_ns, delta.full, delta.spot) == (
            snap["snapshot_ns"],
            snap["full"],
            snap["spot"],
        )
        snap["parts"].append((delta.part, delta.parts))
        snap["removed"].extend(delta.removed)
        cols = delta.columns
        for i, name in enumerate(cols["instrument"]):
            terms = (  # only contracts new to the connector carry their terms
                (cols["root"][i], int(cols["expiry_ns"][i]), cols["strike"][i], cols["right"][i])
                if "root" in cols
                else (None, None, None, None)
            )
            values = held.setdefault(name, {})
            for column in ("open_interest", "iv", "gamma", "underlying_price"):
                if column in cols:
                    values[column] = float(cols[column][i])
            snap["upserts"][name] = (*terms, values["open_interest"], values["iv"], values["gamma"])
            assert math.isnan(values["underlying_price"])  # CBOE: quoted against spot
    for snap in out:
        count = snap["parts"][0][1]
        assert snap["parts"] == [(i, count) for i in range(count)]  # complete, in order
        del snap["parts"]
    return out


def expected_row(
    name: str, rows: dict[str, tuple[float, ...]], new: bool = True
) -> tuple[Any, ...]:
    oi, iv, gamma, _, _ = rows[name]
    if not new:
        return (None, None, None, None, oi, iv, gamma)
    root = name[:-15]
    expiry = {"SPXW250314": SPXW_0314_PM, "SPX250321": SPX_0321_AM, "SPXW250321": SPXW_0321_PM}
    strike = str(int(name[-8:]) // 1000)
    return (root, expiry[name[:-9]], strike, name[-9], oi, iv, gamma)


EXPECTED = [
    {  # first snapshot: everything, full
        "snapshot_ns": ASOF_1,
        "spot": 5592.85,
        "full": True,
        "upserts": {name: expected_row(name, ROWS_1) for name in ROWS_1},
        "removed": [],
    },
    {  # the changed call, the changed put, the new strike; the requote alone is no change
        "snapshot_ns": ASOF_2,
        "spot": 5594.10,
        "full": False,
        "upserts": {
            "SPXW250314C05590000": expected_row("SPXW250314C05590000", ROWS_2, new=False),
            "SPX250321P05600000": expected_row("SPX250321P05600000", ROWS_2, new=False),
            "SPXW250321C05650000": expected_row("SPXW250321C05650000", ROWS_2),
        },
        "removed": [],
    },
    {  # the expiry that left, and the one IV change
        "snapshot_ns": ASOF_3,
        "spot": 5595.00,
        "full": False,
        "upserts": {"SPX250321C05600000": expected_row("SPX250321C05600000", ROWS_3, new=False)},
        "removed": [name for name in ROWS_1 if name.startswith("SPXW250314")],
    },
]


# ---------------------------------------------------------------------------- polling


@pytest_asyncio.fixture
async def cdn():
    fake = await FakeHttpChain().start()
    yield fake
    await fake.stop()


@pytest.mark.asyncio
async def test_polled_spx_documents_become_exact_chain_deltas(cdn, tmp_path):
    path = "/api/global/delayed_quotes/options/_SPX.json"
    truncated = DOC_2[: len(DOC_2) * 2 // 3]
    cdn.honour_validators = True  # a matching If-None-Match gets a 304
    cdn.script(
        path,
        Reply(200, DOC_1, {"ETag": '"d1"', "Content-Type": "application/json"}),
        Reply(200, DOC_1, {"ETag": '"d1"'}),  # → 304: the client sent If-None-Match "d1"
        Reply(200, truncated),  # a broken object: parse error → dead letter
        Reply(403, b"<html>Access Denied</html>"),
        Reply(200, b""),  # → dead letter "empty body"
        Reply(200, DOC_2, {"ETag": '"d2"'}),
        Reply(500, b"<html>Internal Server Error</html>"),
        Reply(200, DOC_2, {"ETag": '"d2"'}),  # → 304
        Reply(200, DOC_3, {"ETag": '"d3"'}),
    )
    sink = MemorySink()
    capture_path = tmp_path / "cboe.capture.jsonl"
    capture = CaptureWriter(capture_path)
    stage = IngestStage("cboe", CboeNormaliser(), sink, TOPICS, capture=capture)
    fake = FakeTime(budget=8)
    config = CboeConfig(base_url=cdn.url("/api/global/delayed_quotes/options"))
    client = CboeClient(config, stage, sleep=fake.sleep, clock=fake.clock, rng=HalfRandom())
    started_ns = time.time_ns()
    task = asyncio.create_task(client.run())
    await asyncio.wait_for(fake.exhausted.wait(), 10)
    await client.stop()
    await asyncio.wait_for(task, 5)
    capture.close()

    assert [status for _, status in cdn.answered] == [200, 304, 200, 403, 200, 200, 500, 304, 200]
    deltas = [record for topic, record in sink.records]
    assert {topic for topic, _ in sink.records} == {TOPICS.options}
    assert all(isinstance(d, ChainDelta) and d.underlying == "SPX" for d in deltas)
    assert summarise(deltas) == EXPECTED
    assert all(started_ns <= d.ts_recv_ns <= time.time_ns() for d in deltas)
    assert all(d.ts_event_ns == d.snapshot_ns for d in deltas)

    # The truncated body and the empty one went to dead letter, with the bytes and why.
    (raw_1, reason_1, venue_1, *_), (raw_2, reason_2, *_) = sink.dead_letters
    assert raw_1 == truncated and "not valid JSON" in reason_1 and venue_1 == "cboe"
    assert (raw_2, reason_2) == (b"", "empty body")

    # Recovery after each failure: the interval after success, backoff after failures.
    assert fake.sleeps == [15.0, 15.0, 15.0, 10.0, 20.0, 15.0, 2.5, 15.0, 15.0]
    assert [r.header("If-None-Match") for r in cdn.requests] == [
        None,
        '"d1"',
        '"d1"',
        None,  # the truncated body came without validators: nothing to send
        None,
        None,
        '"d2"',
        '"d2"',
        '"d2"',
    ]
    assert client.counts["delivered"] == 4 and client.counts["not_modified"] == 2
    assert client.counts["rate_limited"] == 1 and client.counts["empty_body"] == 1
    assert client.counts["server_error"] == 1
    assert stage.counts["dead_letters"] == 2 and stage.counts["messages"] == 5
    assert client.stale_symbols() == []

    # The capture replays through a fresh normaliser into the same deltas.
    replay_sink = MemorySink()
    replay_stage = IngestStage("cboe", CboeNormaliser(), replay_sink, TOPICS, source="replay")
    await replay_capture(capture_path, replay_stage)
    replayed = [record for _, record in replay_sink.records]
    assert summarise(replayed) == EXPECTED
    assert [d.ts_recv_ns for d in replayed] == [d.ts_recv_ns for d in deltas]
    assert len(replay_sink.dead_letters) == 2


@pytest.mark.asyncio
async def test_saved_chain_files_become_chain_deltas(tmp_path):
    """CBOE's download CSV, then a delayed-quotes JSON, dropped into a watched directory."""
    sink = MemorySink()
    stage = IngestStage("cboe", CboeNormaliser(), sink, TOPICS, source="files")
    watch = FileWatch(FileWatchConfig(path=str(tmp_path), stable_polls=1), stage)
    shutil.copy(DATA / "cboe_small.csv", tmp_path / "spx_quotedata.csv")
    assert await watch.poll_once() == [tmp_path / "spx_quotedata.csv"]
    shutil.copy(DATA / "cboe_small.json", tmp_path / "_SPX.json")
    assert await watch.poll_once() == [tmp_path / "_SPX.json"]
    assert await watch.poll_once() == []

    csv = parse_cboe_csv((DATA / "cboe_small.csv").read_text(), 0)
    json = parse_cboe_json((DATA / "cboe_small.json").read_bytes(), 0)
    csv_names = [c.instrument for c in csv.contracts]
    json_names = [c.instrument for c in json.contracts]
    first, second = summarise([record for _, record in sink.records])
    assert first["full"] and first["snapshot_ns"] == 1_741_962_600 * S and first["spot"] == 5589.41
    assert list(first["upserts"]) == csv_names and first["removed"] == []
    assert not second["full"] and second["snapshot_ns"] == 1_741_963_503 * S
    assert sorted(second["removed"]) == sorted(set(csv_names) - set(json_names))
    assert set(json_names) - set(csv_names) <= set(second["upserts"]) <= set(json_names)
    assert sink.dead_letters == []

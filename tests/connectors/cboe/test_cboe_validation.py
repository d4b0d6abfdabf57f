"""CBOE documents with bad rows: the good rows are applied, one dead letter lists the bad.

The same document, large enough for the byte scanner, takes the same decisions.
"""

from __future__ import annotations

import asyncio
import copy

import numpy as np
import orjson
import pytest

from connectors.cboe.columns import SCAN_MIN_BYTES
from connectors.cboe.normaliser import CboeNormaliser
from connectors.common.ingest import IngestStage, MemorySink
from connectors.simulator.chains import spx_like_chain, to_cboe_delayed_quotes
from engine.core.config import LevelsConfig
from engine.core.feed import BookFeeder
from schemas.topics import Topics
from tests.paths import DATA

RECV = 1_741_963_503_000_000_000  # 2025-03-14T14:45:03Z, the document's time


def small() -> dict:
    return orjson.loads((DATA / "cboe_small.json").read_bytes())


def through_stage(raw: bytes, doc=None) -> tuple[MemorySink, IngestStage]:
    """The body through a CBOE stage as the poller hands it over (or already decoded)."""
    sink = MemorySink()
    stage = IngestStage("cboe", CboeNormaliser(), sink, Topics(), source="test")
    body = raw if doc is None else doc
    asyncio.run(stage.on_message(raw, body, RECV, None, "https://cdn.cboe.com/x.json"))
    return sink, stage


def levels_of(sink: MemorySink):
    feeder = BookFeeder(LevelsConfig())
    feeder.apply(record for _, record in sink.records)
    return feeder.levels("SPX", RECV)


def test_bad_rows_are_left_out_and_listed_in_one_dead_letter():
    doc = small()
    options = doc["data"]["options"]
    bad_one, bad_two = options[1]["option"], options[4]["option"]
    options[1]["open_interest"] = -21.0
    options[4]["iv"] = "high"
    sink, stage = through_stage(orjson.dumps(doc))
    ((raw, reason, venue, _, _),) = sink.dead_letters
    assert raw == orjson.dumps(doc) and venue == "cboe"
    assert reason == (
        f"2 rows rejected, 6 applied: {bad_one}: open_interest=-21.0 (expected >= 0); "
        f"{bad_two}: iv='high' (expected float | null, got str)"
    )
    assert sink.dead_letter_classes == ["out_of_domain"]
    assert stage.counts["dead_letters"] == 1
    applied = {name for _, delta in sink.records for name in delta.columns["instrument"]}
    assert applied == {o["option"] for o in options} - {bad_one, bad_two}

    # The good rows give the levels of the document without the bad rows.
    clean = small()
    clean["data"]["options"] = [o for o in clean["data"]["options"] if o["option"] in applied]
    expected, _ = through_stage(orjson.dumps(clean))
    assert levels_of(sink) == levels_of(expected)


def test_a_document_bad_as_a_whole_is_dead_lettered_whole():
    for mutate, words in [
        (lambda d: d["data"].update(current_price=-1.0), "underlying price must be a positive"),
        (lambda d: d.update(timestamp="soon"), "bad timestamp 'soon'"),
        (lambda d: d["data"].update(options="none"), "data.options is missing or not a list"),
    ]:
        doc = small()
        mutate(doc)
        sink, _ = through_stage(orjson.dumps(doc))
        assert sink.records == []
        ((_, reason, *_),) = sink.dead_letters
        assert words in reason


def test_every_row_bad_rejects_the_document():
    doc = small()
    for option in doc["data"]["options"]:
        option["open_interest"] = -1.0
    sink, _ = through_stage(orjson.dumps(doc))
    assert sink.records == []
    ((_, reason, *_),) = sink.dead_letters
    assert reason.startswith("CBOE JSON: every row rejected: SPXW")


@pytest.mark.parametrize("field", ["open_interest", "iv", "gamma"])
def test_the_byte_scanner_path_rejects_the_same_rows(field):
    doc = to_cboe_delayed_quotes(spx_like_chain(n_contracts=6_000, seed=3))
    rows = doc["data"]["options"]
    picked = np.random.default_rng(1).choice(len(rows), 5, replace=False)
    for i in picked:
        rows[i][field] = -0.5
    raw = orjson.dumps(doc)
    assert len(raw) >= SCAN_MIN_BYTES
    scanned, _ = through_stage(raw)
    decoded, _ = through_stage(raw, copy.deepcopy(doc))  # decoded: the typed path
    for sink in (scanned, decoded):
        ((_, reason, *_),) = sink.dead_letters
        assert sink.records
        assert reason.startswith(f"5 rows rejected, {len(rows) - 5} applied: ")
        assert reason.count(f"{field}=-0.5 (expected >= 0)") == 5
    assert levels_of(scanned) == levels_of(decoded)


def test_a_csv_body_with_bad_rows_applies_the_rest():
    lines = (DATA / "cboe_small.csv").read_text().splitlines()
    fields = lines[5].split(",")
    fields[10] = "-812"  # the call's open interest
    lines[5] = ",".join(fields)
    fields = lines[6].split(",")
    fields[18] = "nan"  # the put's IV
    lines[6] = ",".join(fields)
    body = ("\n".join(lines) + "\n").encode()
    sink, _ = through_stage(body)
    ((_, reason, *_),) = sink.dead_letters
    call = lines[5].split(",")[1]
    put = lines[6].split(",")[12]
    rows = 2 * (len([line for line in lines[4:] if line.strip()]))
    assert reason == (
        f"2 rows rejected, {rows - 4} applied: CBOE CSV line 6: {call}: open_interest=-812.0 "
        f"(expected >= 0); CBOE CSV line 7: {put}: iv=nan (expected a finite number)"
    )
    applied = {name for _, delta in sink.records for name in delta.columns["instrument"]}
    assert len(applied) == rows - 4  # both contracts of each bad line are left out
    assert call not in applied and put not in applied

"""load_chain_file: every format on the hand-made data files, and every failure mode."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from connectors.chain_files import CHAIN_FORMATS, ChainFileError, load_chain_file
from connectors.common.errors import ParseError
from tests.paths import DATA

S = 1_000_000_000
RECV = 1_741_963_600_000_000_000


def test_formats():
    assert CHAIN_FORMATS == ("cboe-csv", "cboe-json", "deribit-summary")


def test_cboe_csv_file():
    snap = load_chain_file(DATA / "cboe_small.csv", "cboe-csv", recv_ns=RECV)
    assert (snap.venue, snap.underlying, snap.spot) == ("cboe", "SPX", 5589.41)
    assert snap.asof_ns == 1_741_962_600 * S
    assert len(snap.contracts) == 14
    assert {c.ts_recv_ns for c in snap.contracts} == {RECV}


def test_cboe_json_file():
    snap = load_chain_file(str(DATA / "cboe_small.json"), "cboe-json", recv_ns=RECV)
    assert (snap.venue, snap.underlying, snap.spot) == ("cboe", "SPX", 5592.85)
    assert snap.asof_ns == 1_741_963_503 * S
    assert len(snap.contracts) == 8


def test_deribit_summary_file():
    snap = load_chain_file(DATA / "deribit_summary_small.json", "deribit-summary", recv_ns=RECV)
    assert (snap.venue, snap.underlying, snap.spot) == ("deribit", "BTC", 104275.31)
    assert snap.asof_ns == 1_734_343_200_123_000_000
    assert len(snap.contracts) == 8
    assert {c.strike for c in snap.contracts} == {Decimal(100000), Decimal(105000)}


def test_default_recv_ns_is_now():
    snap = load_chain_file(DATA / "cboe_small.json", "cboe-json")
    assert len({c.ts_recv_ns for c in snap.contracts}) == 1
    assert snap.contracts[0].ts_recv_ns > snap.asof_ns


@pytest.mark.parametrize(
    "shape",
    [
        lambda doc: {
            "get_book_summary_by_currency": doc["book_summary"],
            "get_instruments": doc["instruments"],
        },
        lambda doc: {"book_summary": doc["book_summary"]},  # instruments are optional
        lambda doc: doc["book_summary"],  # a bare response
        lambda doc: doc["book_summary"]["result"],  # a bare result list
    ],
)
def test_deribit_summary_file_shapes(tmp_path, shape):
    doc = json.loads((DATA / "deribit_summary_small.json").read_text())
    path = tmp_path / "summary.json"
    path.write_text(json.dumps(shape(doc)))
    snap = load_chain_file(path, "deribit-summary", recv_ns=RECV)
    assert snap == load_chain_file(DATA / "deribit_summary_small.json", "deribit-summary", RECV)


def _error(path, fmt: str) -> str:
    with pytest.raises(ChainFileError) as err:
        load_chain_file(path, fmt, recv_ns=RECV)
    message = str(err.value)
    assert message and "\n" not in message and "\r" not in message
    return message


def test_missing_file(tmp_path):
    message = _error(tmp_path / "nope.csv", "cboe-csv")
    assert message == f"{tmp_path / 'nope.csv'}: no such file"


def test_directory(tmp_path):
    assert "is a directory" in _error(tmp_path, "cboe-csv")


def test_unknown_format():
    message = _error(DATA / "cboe_small.csv", "cboe-xlsx")
    assert message == (
        "unknown chain format 'cboe-xlsx'; expected one of: cboe-csv, cboe-json, deribit-summary"
    )


@pytest.mark.parametrize("fmt", ["cboe-json", "deribit-summary"])
def test_undecodable_json(tmp_path, fmt):
    path = tmp_path / "broken.json"
    path.write_text('{"timestamp": "2025-03-14 14:45:03", "data": {')
    assert _error(path, fmt).startswith("broken.json: not valid JSON (")


def test_not_utf8(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes((DATA / "cboe_small.csv").read_bytes().replace(b"S&P", b"S\xe9P"))
    assert _error(path, "cboe-csv").startswith("latin1.csv: not UTF-8 text")


def test_parse_error_is_prefixed_with_the_file_name(tmp_path):
    path = tmp_path / "headerless.csv"
    lines = (DATA / "cboe_small.csv").read_text().splitlines()
    path.write_text("\n".join(lines[3:]))
    message = _error(path, "cboe-csv")
    assert message.startswith("headerless.csv: CBOE CSV: missing preamble")


def test_wrong_format_for_the_file():
    message = _error(DATA / "cboe_small.json", "deribit-summary")
    assert message.startswith("cboe_small.json: Deribit book summary: expected a JSON-RPC")
    assert _error(DATA / "deribit_summary_small.json", "cboe-json").startswith(
        "deribit_summary_small.json: CBOE JSON: expected an object with a 'data' object"
    )
    assert "missing preamble" in _error(DATA / "cboe_small.json", "cboe-csv")


def test_cboe_file_without_rows(tmp_path):
    path = tmp_path / "empty.json"
    doc = json.loads((DATA / "cboe_small.json").read_text())
    doc["data"]["options"] = []
    path.write_text(json.dumps(doc))
    assert _error(path, "cboe-json") == "empty.json: no option rows in the CBOE JSON document"


def test_empty_deribit_chain(tmp_path):
    # A valid response with only a future in it: parses, but there is no chain.
    doc = json.loads((DATA / "deribit_summary_small.json").read_text())
    rows = [r for r in doc["book_summary"]["result"] if r["instrument_name"] == "BTC-27DEC24"]
    path = tmp_path / "futures_only.json"
    path.write_text(json.dumps({"jsonrpc": "2.0", "result": rows}))
    message = _error(path, "deribit-summary")
    assert message == "futures_only.json: the chain has no option contracts (deribit-summary)"


def test_messages_are_one_line():
    assert str(ParseError("bad row\nat line 3\r\n")) == "bad row at line 3"
    assert ParseError("a\nb").reason == "a b"
    assert str(ChainFileError("x.csv: first\nsecond")) == "x.csv: first second"

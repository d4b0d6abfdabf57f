"""Record a live (fake) Deribit session, replay it: the same bytes, the same records."""

from __future__ import annotations

import asyncio

import pytest

from connectors.common.capture import (
    CapturedMessage,
    CaptureWriter,
    decode_capture_line,
    encode_capture_line,
    read_capture,
)
from connectors.common.ingest import IngestStage, MemorySink, replay_capture
from connectors.deribit.client import DeribitClient, DeribitConfig
from connectors.deribit.normaliser import DeribitNormaliser
from engine.app.cli import main
from schemas.topics import Topics
from tests.conditions import eventually
from tests.connectors.deribit.test_deribit_client import NAMES, fake  # noqa: F401 - fixture
from tests.fakes.deribit import T0_MS, option_ticker, venue_clock

TOPICS = Topics()


def test_capture_line_shapes_and_verbatim_bytes():
    raw = b'{"jsonrpc":"2.0","id":7,"result":[1.50,2.11e-05]}'
    message = CapturedMessage(
        1_700_000_000_000_000_001, "deribit", raw, {"method": "public/test", "params": {}}
    )
    line = encode_capture_line(message)
    assert line == (
        b'{"recv_ns":1700000000000000001,"venue":"deribit","request":{"method":"public/test",'
        b'"params":{}},"msg":{"jsonrpc":"2.0","id":7,"result":[1.50,2.11e-05]}}\n'
    )
    assert decode_capture_line(line) == message  # 1.50 and 2.11e-05 kept as sent
    malformed = CapturedMessage(5, "deribit", b'{"truncated": [1, 2', None)
    assert decode_capture_line(encode_capture_line(malformed)) == malformed
    polled = CapturedMessage(
        6, "cboe", b"Expiration Date,Calls\nFri Jan 05 2024,X\n", None, "https://x"
    )
    assert decode_capture_line(encode_capture_line(polled)) == polled
    with pytest.raises(ValueError, match="needs recv_ns, venue and msg"):
        decode_capture_line(b'{"recv_ns": 1}')


@pytest.mark.asyncio
async def test_record_then_replay_is_byte_faithful_and_yields_the_same_records(fake, tmp_path):  # noqa: F811
    path = tmp_path / "session.jsonl"
    live = MemorySink()
    with CaptureWriter(path) as writer:
        stage = IngestStage(
            "deribit", DeribitNormaliser(), live, TOPICS, writer, clock_ns=venue_clock()
        )
        client = DeribitClient(DeribitConfig(url=fake.url, subscribe_per_s=200.0), stage)
        task = asyncio.create_task(client.run())
        await eventually(lambda: client.sessions_seeded == 1)
        for i, name in enumerate(NAMES):
            await fake.notify(
                f"ticker.{name}.100ms",
                option_ticker(name, T0_MS + i, 65_000.0 + i, 64_900.0, 50.0 + i, 10.0 * i, 0.00005),
            )
        await fake.push(
            b'{"jsonrpc":"2.0","method":"subscription","params":{"channel":"ticker.BTC-15'
        )
        await fake.notify(
            "deribit_price_index.btc_usd",
            {"timestamp": T0_MS + 99, "price": 64_950.25, "index_name": "btc_usd"},
        )
        await eventually(lambda: any(t.price == 64_950.25 for t in live.on(TOPICS.underlying)))
        await client.stop()
        await asyncio.wait_for(task, 5)
    captured = list(read_capture(path))
    # Every frame the server pushed is in the capture, byte for byte, in order.
    pushed = [m.raw for m in captured if m.request is None and b'"type":"heartbeat"' not in m.raw]
    assert pushed == fake.sent
    # RPC responses carry the request they answer.
    requests = [m.request["method"] for m in captured if m.request is not None]
    assert requests[:3] == [
        "public/set_heartbeat",
        "public/get_instruments",
        "public/get_book_summary_by_currency",
    ]
    # Replaying goes through the same parse path and yields exactly the same records.
    replayed = MemorySink()
    await replay_capture(
        path, IngestStage("deribit", DeribitNormaliser(), replayed, TOPICS, source="replay")
    )
    assert replayed.records == live.records
    assert [d[:2] for d in replayed.dead_letters] == [d[:2] for d in live.dead_letters]
    assert len(live.dead_letters) == 1


@pytest.mark.asyncio
async def test_record_cli_against_the_fake(fake, tmp_path, capsys):  # noqa: F811
    out = tmp_path / "rec.jsonl"
    code = await asyncio.to_thread(
        main,
        [
            "record",
            "--source",
            "deribit:BTC",
            "--out",
            str(out),
            "--url",
            fake.url,
            "--duration",
            "1.5",
        ],
    )
    assert code == 0
    lines = list(read_capture(out))
    assert [m.request["method"] for m in lines if m.request][:3] == [
        "public/set_heartbeat",
        "public/get_instruments",
        "public/get_book_summary_by_currency",
    ]
    assert f"recorded {len(lines)} messages to {out}" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["record", "--source", "deribit:DOGE", "--out", "x"],
            "Deribit currency must be one of BTC, ETH",
        ),
        (["record", "--source", "cme:SPX", "--out", "x"], "CME product must be one of"),
        (["record", "--source", "cboe:XYZ", "--out", "x"], "CBOE symbol must be one of"),
        (["record", "--source", "nonsense", "--out", "x"], "expected KIND:TARGET"),
        (["levels", "missing.jsonl", "--format", "capture"], "missing.jsonl"),
    ],
)
def test_bad_record_and_capture_input_is_one_line(args, expected, capsys):
    assert main(args) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err

"""`regime-engine demo` from the command line: embedded broker and Redis, a full session."""

from __future__ import annotations

import orjson
import pytest

from connectors.common.kafka.embedded import resolve_tansu_binary
from engine.app.cli import main
from tests.sessions import EVENTS_BY_TYPE


def test_demo_runs_the_pipeline_and_shows_a_flip_and_a_wall_break(
    capsys: pytest.CaptureFixture[str],
) -> None:
    resolve_tansu_binary()  # a missing broker binary fails the test, never skips it
    assert main(["demo", "--max-speed", "--json"]) == 0
    captured = capsys.readouterr()
    summary = orjson.loads(captured.out)
    assert summary["kafka"] == "embedded" and summary["redis"] == "embedded"
    assert summary["session"]["messages"] == 37_392
    # Option tickers travel packed: fewer Kafka records, the same updates.
    assert summary["ingest"]["records"] == summary["engine"]["updates"] == 37_982
    assert summary["engine"]["records"] < 37_982
    assert summary["events_by_type"] == EVENTS_BY_TYPE
    assert summary["events_received"] == 43
    assert summary["events_received"] == sum(summary["engine"]["events"].values())
    # The live view (plain lines on stderr with --json) showed the events as they fired.
    assert "[all] flip_cross down" in captured.err
    assert "[all] put_wall_break down level 65,000.0" in captured.err

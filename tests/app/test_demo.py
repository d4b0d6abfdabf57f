"""`regime-engine demo` from the command line: embedded broker and Redis, a full session."""

from __future__ import annotations

import orjson
import pytest

from connectors.common.kafka.embedded import resolve_tansu_binary
from engine.app.cli import main


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
    by_type = summary["events_by_type"]
    # The seeded session's events, pinned (event time only: the same on every run and box).
    # Side-rule walls, one event per crossing for 0dte = front (DESIGN 2.6) and a 200 bp
    # level-shift threshold for 0dte/front: 13 events, where there were 43.
    assert by_type == {"level_shift": 3, "flip_cross": 2, "regime_change": 1, "put_wall_break": 7}
    assert summary["events_received"] == 13
    assert summary["events_received"] == sum(summary["engine"]["events"].values())
    # The live view (plain lines on stderr with --json) showed the events as they fired.
    assert "[all] flip_cross down" in captured.err
    assert "[all] put_wall_break down level 65,000.0" in captured.err

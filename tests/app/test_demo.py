"""`regime-engine demo` from the command line: embedded broker and Redis, a full session."""

from __future__ import annotations

import orjson
import pytest

from connectors.common.kafka.apache import apache_kafka_missing
from connectors.common.kafka.embedded import resolve_tansu_binary
from engine.app.cli import main
from tests.sessions import EVENTS_BY_TYPE


@pytest.mark.parametrize("broker", ["tansu", "kafka"])
def test_demo_runs_the_pipeline_and_shows_a_flip_and_a_wall_break(
    broker: str, capsys: pytest.CaptureFixture[str]
) -> None:
    if broker == "tansu":
        resolve_tansu_binary()  # a missing broker binary fails the test, never skips it
    elif (missing := apache_kafka_missing()) is not None:
        pytest.skip(f"apache-kafka: {missing}")
    assert main(["demo", "--max-speed", "--json", "--broker", broker]) == 0
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


def test_demo_broker_choice_with_a_given_kafka_is_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["demo", "--kafka", "127.0.0.1:1", "--broker", "kafka"]) == 2
    assert capsys.readouterr().err == (
        "regime-engine: error: --broker chooses the embedded broker: not with a given Kafka\n"
    )

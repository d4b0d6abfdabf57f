"""Prometheus metrics and health endpoints: a running engine scraped after a known replay."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import aiohttp
import numpy as np
import orjson
import pytest
from prometheus_client.parser import text_string_to_metric_families

from connectors.common.ingest import IngestStage, MemorySink, replay_capture
from connectors.common.kafka.producer import ProducerConfig, RecordProducer
from connectors.common.lifecycle import reconnect_cause
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.simulator.deribit_session import SessionConfig, write_session
from connectors.sources import Source
from connectors.venues import LiveClient
from engine.app.cli import main
from engine.app.metrics import (
    TICK_BUCKETS_S,
    EngineMetrics,
    MetricsCollector,
    MetricsConfig,
    serve_metrics,
)
from engine.app.run_ingest import IngestView, run_ingest
from engine.app.settings import load_settings
from engine.stream.runtime import EngineRuntime
from schemas.config import ConfigError
from schemas.records import encode_record
from schemas.topics import Topics
from tests.app.test_run_embedded import Run, runs, session  # noqa: F401 - fixtures
from tests.conditions import eventually
from tests.integration.test_pipeline import engine_config, stream
from tests.paths import REPO
from tests.processes import reap, stop_gracefully
from tests.sessions import EVENTS_BY_TYPE, SESSION_MESSAGES

SESSION = SessionConfig(n_instruments=300, duration_s=240.0, seed=7)
Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def parse(text: str) -> Samples:
    """Every sample of a scrape by (sample name, sorted labels)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def by_label(samples: Samples, name: str, label: str) -> dict[str, float]:
    return {dict(labels)[label]: v for (n, labels), v in samples.items() if n == name}


async def get(port: int, path: str) -> tuple[int, str]:
    async with (
        aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10)) as http,
        http.get(f"http://127.0.0.1:{port}{path}") as response,
    ):
        return response.status, await response.text()


# -- the pieces -------------------------------------------------------------------------


def test_histogram_binning_matches_one_at_a_time() -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.exponential(0.2, 500), np.array(TICK_BUCKETS_S), [1e6, 0.0]])
    many, one = EngineMetrics(), EngineMetrics()
    many.tick_to_publish.observe_many(values)
    for value in values.tolist():
        one.tick_to_publish.observe(value)
    assert many.tick_to_publish.counts == one.tick_to_publish.counts
    assert many.tick_to_publish.count == len(values) == one.tick_to_publish.count
    assert many.tick_to_publish.sum == pytest.approx(one.tick_to_publish.sum)
    # A value equal to a bound is in that bound's bucket (Prometheus: le is inclusive).
    cumulative = dict(one.tick_to_publish.buckets())
    for bound in TICK_BUCKETS_S:
        assert cumulative[repr(bound)] == float(np.count_nonzero(values <= bound))
    assert cumulative["+Inf"] == float(len(values))


def test_reconnect_causes() -> None:
    assert [
        reconnect_cause(r)
        for r in (
            "connect failed: [Errno 111] refused",
            "seed failed: 503",
            "stale feed: no message for 30 s",
            "connection closed: 1006",
            "rate limited (10028 too_many_requests)",
            "ValueError: x",
        )
    ] == ["connect_failed", "seed_failed", "stale", "closed", "rate_limited", "error"]


class _Client:
    def __init__(self) -> None:
        self.reconnects = Counter({"stale": 2, "closed": 1})


@pytest.mark.asyncio
async def test_ingest_metrics_and_readiness() -> None:
    stage = IngestStage("deribit", DeribitNormaliser(), MemorySink(), Topics())
    view = IngestView(live=[LiveClient("deribit", stage, _Client())])  # type: ignore[arg-type]
    collector = MetricsCollector(ingest=view, config=MetricsConfig(ready_max_stale_s=0.2))
    assert collector.not_ready() == ["ingest: deribit has sent nothing yet"]
    await stage.on_message(b"{", None, 1, decode_error="malformed JSON: x")
    await stage.on_message(b"[]", [], 2)  # not a Deribit message: out of domain or malformed
    assert collector.not_ready() == []
    config = MetricsConfig(port=0)
    async with serve_metrics(config, collector) as server:
        assert server is not None
        status, text = await get(server.port, "/metrics")
        assert status == 200
        samples = parse(text)
        assert by_label(samples, "regime_ingest_messages_total", "venue") == {"deribit": 2.0}
        assert by_label(samples, "regime_ingest_reconnects_total", "cause") == {
            "closed": 1.0,
            "stale": 2.0,
        }
        dead = by_label(samples, "regime_engine_dead_letters_total", "reason")
        assert dead == {k: float(n) for k, n in stage.dead_letter_kinds.items()}
        assert sum(dead.values()) == 2.0
        assert 0 <= samples[("regime_ingest_stale_seconds", (("venue", "deribit"),))] < 60
        assert samples[("regime_engine_ready", ())] == 1.0
        assert await get(server.port, "/readyz") == (200, "ready\n")
        # Silent for longer than the bound: not ready any more.
        await eventually(lambda: bool(collector.not_ready()))
        status, text = await get(server.port, "/readyz")
        assert status == 503 and text.startswith("ingest: deribit silent for ")
        assert await get(server.port, "/healthz") == (200, "ok\n")


def test_metrics_settings_from_toml_and_flag(tmp_path: Path) -> None:
    path = tmp_path / "engine.toml"
    path.write_text("[metrics]\nport = 9100\nready_max_lag_records = 50\n")
    assert load_settings({}, {}, str(path)).metrics == MetricsConfig(
        port=9100, ready_max_lag_records=50
    )
    assert load_settings({"metrics_port": 9200}, {}, str(path)).metrics.port == 9200
    assert load_settings({}, {}).metrics.port is None
    path.write_text("[metrics]\nprot = 1\n")
    with pytest.raises(ConfigError, match="unknown metrics config keys: prot"):
        load_settings({}, {}, str(path))


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["engine", "--kafka", "k:1", "--redis", "redis://r", "--metrics-port", "70000"],
         "metrics port must be 0..65535"),
        (["ingest", "--source", "deribit:BTC", "--kafka", "k:1", "--metrics-port", "x"],
         "invalid int value"),
    ],
)  # fmt: skip
def test_cli_bad_metrics_port(argv: list[str], message: str, capsys: pytest.CaptureFixture) -> None:
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err


# -- a running engine ------------------------------------------------------------------


@pytest.mark.asyncio
async def test_engine_scraped_after_a_known_replay(
    kafka_bootstrap: str, redis_url: str, topics: Topics, tmp_path: Path
) -> None:
    path = tmp_path / "session.jsonl"
    write_session(SESSION, path)
    # What the engine will read, by topic: the replay's records (unpacked: one Kafka record
    # each), plus one undecodable record and one the book cannot apply.
    sink = MemorySink()
    await replay_capture(path, IngestStage("deribit", DeribitNormaliser(), sink, topics))
    expected = Counter(topic for topic, _ in sink.records)
    report = await run_ingest(
        [Source("replay", str(path))],
        ProducerConfig(kafka_bootstrap, enable_idempotence=False, pack_max_ticks=0),
        topics,
    )
    assert report.counts["records"] == sum(expected.values())
    producer = RecordProducer(ProducerConfig(kafka_bootstrap, enable_idempotence=False), topics)
    await producer.start()
    try:
        await producer.send(topics.options, b"BTC", b"\x00not json")
        option = next(r for _, r in sink.records if type(r).__name__ == "OptionContract")
        bad = orjson.loads(encode_record(option))
        bad["open_interest"] = "lots"
        await producer.send(topics.options, b"BTC", orjson.dumps(bad))
        await producer.flush()
    finally:
        await producer.stop()
    expected[topics.options] += 2

    meter = EngineMetrics()
    runtime = EngineRuntime(
        engine_config(kafka_bootstrap, redis_url, topics),
        on_batch=meter.on_batch,
        instrumentation=meter,
    )
    config = MetricsConfig(port=0, host="127.0.0.1", ready_max_lag_records=0)
    stop = asyncio.Event()
    async with serve_metrics(config, MetricsCollector(meter, runtime, config=config)) as server:
        assert server is not None
        # Not ready before it has partitions.
        assert await get(server.port, "/readyz") == (503, "engine: no partitions assigned\n")
        assert await get(server.port, "/healthz") == (200, "ok\n")
        task = asyncio.create_task(runtime.run(stop))
        try:
            async with asyncio.timeout(120):
                await runtime.caught_up.wait()
            # Scraped while it runs, once it holds every record.
            deadline = time.monotonic() + 60
            while True:
                status, text = await get(server.port, "/metrics")
                samples = parse(text)
                consumed = by_label(samples, "regime_engine_records_consumed_total", "topic")
                if (
                    consumed == {t: float(n) for t, n in expected.items()}
                    and (await get(server.port, "/readyz"))[0] == 200
                ):
                    break
                assert time.monotonic() < deadline, (consumed, expected)
                await asyncio.sleep(0.05)
            assert status == 200
        finally:
            stop.set()
            engine_report = await task
    events = [event for _, event in await stream(redis_url)]
    assert events, "the session has events"
    published = {
        (dict(labels)["type"], dict(labels)["bucket"]): v
        for (name, labels), v in samples.items()
        if name == "regime_engine_events_published_total"
    }
    assert published == {
        k: float(n) for k, n in Counter((e.type, e.bucket) for e in events).items()
    }
    assert by_label(samples, "regime_engine_dead_letters_total", "reason") == {
        "malformed": 1.0,
        "not_applied": 1.0,
    }
    assert samples[("regime_engine_updates_applied_total", ())] == engine_report.updates
    lags = by_label(samples, "regime_engine_consumer_lag_records", "topic")
    assert set(lags) == set(topics.market_data()) and set(lags.values()) == {0.0}
    assert samples[("regime_engine_ready", ())] == 1.0
    # Every decoded record's receive-to-publish time was observed once.
    assert (
        samples[("regime_engine_tick_to_publish_seconds_count", ())] == sum(expected.values()) - 1
    )
    assert samples[("regime_engine_restores_total", (("kind", "replay"),))] == 3.0
    fetches = samples[("regime_engine_batch_seconds_count", (("stage", "fetch"),))]
    assert fetches == samples[("regime_engine_batches_total", ())] > 0
    ages = by_label(samples, "regime_engine_feed_age_seconds", "feed")
    assert set(ages) == {"options", "index"} and min(ages.values()) > 0


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.mark.asyncio
async def test_engine_command_serves_the_port_of_its_config_file(
    kafka_bootstrap: str, redis_url: str, topics: Topics, tmp_path: Path
) -> None:
    port = free_port()
    config = tmp_path / "engine.toml"
    config.write_text(f'[metrics]\nport = {port}\nhost = "127.0.0.1"\n')
    argv = ["engine", "--kafka", kafka_bootstrap, "--redis", redis_url, "--topic-prefix",
            topics.prefix, "--group", f"{topics.prefix}m", "--no-idempotence", "--config",
            str(config)]  # fmt: skip
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.app.cli", *argv],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    try:
        statuses: list[int] = []
        deadline = time.monotonic() + 60
        while not statuses or statuses[-1] != 200:  # empty topics: ready once assigned
            assert proc.poll() is None, proc.stderr.read().decode()[-2000:]  # type: ignore[union-attr]
            assert time.monotonic() < deadline, statuses[-5:]
            with contextlib.suppress(aiohttp.ClientConnectionError):
                status, _ = await get(port, "/readyz")
                statuses.append(status)
            await asyncio.sleep(0.05)
        assert await get(port, "/healthz") == (200, "ok\n")
        status, text = await get(port, "/metrics")
        samples = parse(text)
        assert set(by_label(samples, "regime_engine_consumer_lag_records", "topic")) == set(
            topics.market_data()
        )
        assert samples[("regime_engine_ready", ())] == 1.0
        stop_gracefully(proc)
    finally:
        reap(proc)


def test_run_serves_metrics_of_both_halves(
    session: tuple[Path, object],  # noqa: F811 - the fixture
    runs: list[Run],  # noqa: F811
) -> None:
    """`run --metrics-port` on the embedded default: after the replay, exact ingest and
    engine counts for the pinned session, and ready."""
    port = free_port()
    run = Run("--source", f"replay:{session[0]}", "--metrics-port", str(port))
    runs.append(run)
    run.until_status("caught up")
    status, text = asyncio.run(get(port, "/metrics"))
    assert status == 200
    samples = parse(text)
    assert by_label(samples, "regime_ingest_messages_total", "venue") == {
        "deribit": float(SESSION_MESSAGES)
    }
    published: Counter[str] = Counter()
    for (name, labels), value in samples.items():
        if name == "regime_engine_events_published_total":
            published[dict(labels)["type"]] += int(value)
    assert published == EVENTS_BY_TYPE
    assert by_label(samples, "regime_engine_dead_letters_total", "venue") == {}
    assert set(by_label(samples, "regime_engine_consumer_lag_records", "partition").values()) == {
        0.0
    }
    assert asyncio.run(get(port, "/readyz")) == (200, "ready\n")
    run.interrupt()
    assert run.wait() == 0, run.stderr[-2000:]

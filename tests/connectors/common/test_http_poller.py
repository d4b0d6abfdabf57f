"""The HTTP poller against a local scripted server: deliveries, dead letters, backoff."""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import orjson
import pytest
import pytest_asyncio

from connectors.common.errors import ParseError
from connectors.common.http_poller import (
    MIN_INTERVAL_S,
    HttpPoller,
    HttpPollerConfig,
    body_digest,
    retry_after_s,
)
from connectors.common.ingest import IngestStage, MemorySink
from schemas.config import ConfigError
from schemas.topics import Topics
from tests.conditions import eventually
from tests.fakes.http_chain import FakeHttpChain, FakeTime, HalfRandom, Reply

BODY_A = orjson.dumps({"timestamp": "2025-03-14 14:45:03", "data": {"options": ["a"] * 40}})
BODY_B = orjson.dumps({"timestamp": "2025-03-14 14:45:18", "data": {"options": ["b"] * 40}})
TRUNCATED = BODY_A[: len(BODY_A) // 2]
LAST_MODIFIED = "Fri, 14 Mar 2025 14:45:03 GMT"


class RecordingNormaliser:
    """Records every body it is handed; a body that is not JSON raises ParseError."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def normalise(self, doc: Any, recv_ns: int, request: dict[str, Any] | None = None) -> list:
        self.bodies.append(doc)
        try:
            orjson.loads(doc)
        except orjson.JSONDecodeError as exc:
            raise ParseError(f"not valid JSON: {exc}") from None
        return []


@pytest_asyncio.fixture
async def server():
    fake = await FakeHttpChain().start()
    yield fake
    await fake.stop()


def make_stage() -> tuple[IngestStage, RecordingNormaliser, MemorySink]:
    normaliser, sink = RecordingNormaliser(), MemorySink()
    return IngestStage("test", normaliser, sink, Topics()), normaliser, sink


async def run_until(poller: HttpPoller, event: asyncio.Event, timeout: float = 60.0) -> None:
    """Run ``poller`` until ``event`` (``timeout``: a cap for a loaded machine), then stop."""
    task = asyncio.create_task(poller.run())
    try:
        await asyncio.wait_for(event.wait(), timeout)
    finally:
        await poller.stop()
        await asyncio.wait_for(task, 60)


@pytest.mark.asyncio
async def test_scripted_sequence(server):
    path = "/options/_SPX.json"
    server.script(
        path,
        Reply(200, BODY_A, {"ETag": '"a1"', "Last-Modified": LAST_MODIFIED}),
        Reply(304),
        Reply(403, b"Forbidden", {"Retry-After": "120"}),
        Reply(200, b""),
        Reply(200, TRUNCATED),
        Reply(200, BODY_B),
        Reply(500, b"Internal Server Error"),
        Reply(200, BODY_B, delay_s=3600.0),  # the client gives up first
        Reply(200, BODY_B),
    )
    stage, normaliser, sink = make_stage()
    fake = FakeTime(budget=8)
    config = HttpPollerConfig(
        urls=(server.url(path),), request_timeout_s=2.0, stale_after_intervals=100
    )
    poller = HttpPoller(config, stage, sleep=fake.sleep, clock=fake.clock, rng=HalfRandom())
    await run_until(poller, fake.exhausted)

    assert [status for _, status in server.answered] == [200, 304, 403, 200, 200, 200, 500, 200]
    assert len(server.requests) == 9  # the timed-out request was received, never answered in time

    # Exactly A, the truncated body and B reached the normaliser; B's repeat was skipped.
    assert normaliser.bodies == [BODY_A, TRUNCATED, BODY_B]
    reasons = [(raw, reason) for raw, reason, *_ in sink.dead_letters]
    assert reasons[0] == (b"", "empty body")
    assert reasons[1][0] == TRUNCATED and reasons[1][1].startswith("not valid JSON")
    assert len(reasons) == 2
    assert all(venue == "test" and source == "live" for _, _, venue, source, _ in sink.dead_letters)
    assert (stage.counts["messages"], stage.counts["dead_letters"]) == (4, 2)

    # Waits: the interval after each success; capped jittered backoff after each failure
    # (jitter fixed at one half: initial 5 s, doubling); a 403 penalises two steps and its
    # Retry-After (120 s) wins; success resets the backoff.
    assert fake.sleeps == [15.0, 15.0, 120.0, 20.0, 15.0, 15.0, 2.5, 5.0, 15.0]

    # Conditional headers from A's validators until a 200 without validators replaces them.
    sent = [(r.header("If-None-Match"), r.header("If-Modified-Since")) for r in server.requests]
    conditional = ('"a1"', LAST_MODIFIED)
    assert sent == [(None, None), *[conditional] * 4, *[(None, None)] * 4]
    assert all(r.header("User-Agent") == config.user_agent for r in server.requests)

    assert poller.counts == {
        "requests": 9,
        "delivered": 3,
        "not_modified": 1,
        "rate_limited": 1,
        "http_403": 1,
        "empty_body": 1,
        "server_error": 1,
        "http_500": 1,
        "timeout": 1,
        "unchanged": 1,
    }
    state = poller.states[server.url(path)]
    assert state.digest == body_digest(BODY_B) and state.etag is None
    assert state.backoff.attempt == 0  # recovered


@pytest.mark.asyncio
async def test_oversize_bodies_are_dead_lettered_then_recovery(server):
    path = "/big.json"
    big = b'{"x": "' + b"y" * 5000 + b'"}'
    server.script(
        path,
        Reply(200, big),  # Content-Length says too big: not even read
        Reply(200, big, chunked=True),  # no length: cut off while streaming
        Reply(503, b"busy", {"Retry-After": "30"}),
        Reply(200, b'{"x": 1}'),
    )
    stage, normaliser, sink = make_stage()
    fake = FakeTime(budget=3)
    config = HttpPollerConfig(urls=(server.url(path),), max_body_bytes=1000)
    poller = HttpPoller(config, stage, sleep=fake.sleep, clock=fake.clock, rng=HalfRandom())
    await run_until(poller, fake.exhausted)

    assert normaliser.bodies == [b'{"x": 1}']
    (raw1, reason1, *_), (raw2, reason2, *_) = sink.dead_letters
    assert raw1 == b"" and reason1 == f"body over limit: at least {len(big)} bytes > 1000"
    assert reason2.startswith("body over limit: at least ") and reason2.endswith(" > 1000")
    assert 0 < len(raw2) <= 1000 and big.startswith(raw2)
    # backoff 2.5 s, 5 s; the 503's Retry-After (30 s) beats the third step (10 s)
    assert fake.sleeps == [2.5, 5.0, 30.0, 15.0]
    assert poller.counts["oversize"] == 2 and poller.counts["server_error"] == 1
    assert poller.counts["delivered"] == 1


@pytest.mark.asyncio
async def test_dropped_connection_mid_body_is_not_delivered(server):
    path = "/cut.json"
    server.script(path, Reply(200, BODY_A, cut_after=20), Reply(200, BODY_A))
    stage, normaliser, sink = make_stage()
    fake = FakeTime(budget=1)
    config = HttpPollerConfig(urls=(server.url(path),))
    poller = HttpPoller(config, stage, sleep=fake.sleep, clock=fake.clock, rng=HalfRandom())
    await run_until(poller, fake.exhausted)

    assert normaliser.bodies == [BODY_A]  # only the complete transfer
    assert sink.dead_letters == []
    assert poller.counts["connection_error"] == 1 and poller.counts["delivered"] == 1
    assert fake.sleeps == [2.5, 15.0]


@pytest.mark.asyncio
async def test_connection_refused_backs_off_with_cap():
    stage, normaliser, _ = make_stage()
    fake = FakeTime(budget=7)
    config = HttpPollerConfig(urls=("http://127.0.0.1:9/x.json",), backoff_cap_s=40.0)
    poller = HttpPoller(config, stage, sleep=fake.sleep, clock=fake.clock, rng=HalfRandom())
    await run_until(poller, fake.exhausted)
    assert poller.counts["connection_error"] == 8 and normaliser.bodies == []
    assert fake.sleeps == [2.5, 5.0, 10.0, 20.0, 20.0, 20.0, 20.0, 20.0]  # capped at 40/2


@pytest.mark.asyncio
async def test_stale_watchdog_counts_once_and_recovers(server):
    path = "/stale.json"
    server.script(
        path,
        Reply(200, BODY_A, {"ETag": '"a"'}),
        *[Reply(304)] * 6,
        Reply(200, BODY_B, {"ETag": '"b"'}),
    )
    stage, normaliser, _ = make_stage()
    seen: list[list[str]] = []
    fake = FakeTime(budget=7, on_sleep=lambda: seen.append(poller.stale_urls()))
    url = server.url(path)
    config = HttpPollerConfig(urls=(url,), stale_after_intervals=3)
    poller = HttpPoller(config, stage, sleep=fake.sleep, clock=fake.clock)
    await run_until(poller, fake.exhausted)

    # A arrives at t=0; 304s at 15, 30, 45 (age 45 = 3 intervals, not over) and 60 (stale),
    # 75, 90; B at 105 clears it. Counted once.
    assert seen == [[], [], [], [], [url], [url], [url], []]
    assert poller.counts["stale"] == 1 and poller.counts["not_modified"] == 6
    assert normaliser.bodies == [BODY_A, BODY_B]


@pytest.mark.asyncio
async def test_rate_limit_holds_every_url_of_the_host(server):
    """A 429 on one URL holds the other URL of the same host until its Retry-After passes.

    Time runs 100x faster for the poller: 10 s interval = 0.1 s, Retry-After 60 s = 0.6 s.
    """
    server.repeat_last = True
    server.script("/a.json", Reply(429, b"slow down", {"Retry-After": "60"}), Reply(200, BODY_A))
    server.script("/b.json", Reply(200, BODY_B))
    stage, normaliser, _ = make_stage()
    scale = 100.0
    config = HttpPollerConfig(urls=(server.url("/a.json"), server.url("/b.json")), interval_s=10)
    poller = HttpPoller(
        config,
        stage,
        sleep=lambda d: asyncio.sleep(d / scale),
        clock=lambda: time.monotonic() * scale,
    )
    task = asyncio.create_task(poller.run())
    await eventually(
        lambda: server.requests_to("/b.json") and len(server.requests_to("/a.json")) >= 2,
        60.0,
        "requests did not arrive",
    )
    await poller.stop()
    await asyncio.wait_for(task, 60)

    limited_at = server.requests_to("/a.json")[0].at
    # /b was due 5 s (0.05 s) after /a but waited for the hold; /a itself waited too.
    assert server.requests_to("/b.json")[0].at - limited_at >= 0.59
    assert server.requests_to("/a.json")[1].at - limited_at >= 0.59
    assert poller.counts["host_holds"] >= 1 and poller.counts["rate_limited"] == 1
    assert BODY_A in normaliser.bodies and BODY_B in normaliser.bodies


@pytest.mark.asyncio
async def test_stop_cancels_an_in_flight_request_after_the_grace(server):
    path = "/slow.json"
    server.script(path, Reply(200, BODY_A), Reply(200, BODY_B, delay_s=3600.0))
    stage, normaliser, _ = make_stage()
    config = HttpPollerConfig(urls=(server.url(path),), interval_s=2.0, stop_grace_s=0.2)
    poller = HttpPoller(config, stage, sleep=lambda d: asyncio.sleep(d / 100))
    task = asyncio.create_task(poller.run())
    await eventually(lambda: len(server.requests) >= 2, 60.0)  # the slow second is in flight
    # The slow reply takes an hour: stop returning at all (within a cap sized for a loaded CI
    # box, not a wall-clock limit) shows it cancelled the request after its 0.2 s grace.
    await asyncio.wait_for(poller.stop(), 60)
    await asyncio.wait_for(task, 60)
    assert normaliser.bodies == [BODY_A]
    assert all(t.done() for t in poller._tasks)


@pytest.mark.asyncio
async def test_stop_before_run_and_while_sleeping(server):
    stage, _, _ = make_stage()
    server.script("/x.json", Reply(200, BODY_A))
    poller = HttpPoller(HttpPollerConfig(urls=(server.url("/x.json"),)), stage)
    await poller.stop()  # never started: returns at once
    sleeps: list[float] = []

    async def sleep_forever(delay: float) -> None:  # an interval that never ends by itself
        sleeps.append(delay)
        await asyncio.Event().wait()

    config = HttpPollerConfig(urls=(server.url("/x.json"),))
    poller = HttpPoller(config, stage, sleep=sleep_forever)
    task = asyncio.create_task(poller.run())
    await eventually(lambda: poller.counts["delivered"] >= 1 and sleeps, 60.0)
    assert 0 < sleeps[0] <= config.interval_s
    # sleeping an interval that would never end: stop returning at all shows it interrupts the
    # sleep (the cap is sized for a loaded CI box, not a wall-clock limit)
    await asyncio.wait_for(poller.stop(), 60)
    await asyncio.wait_for(task, 60)


def test_config_validation():
    assert HttpPollerConfig().interval_s == 15.0
    config = HttpPollerConfig.from_mapping({"urls": ["https://cdn.cboe.com/x.json"]})
    assert config.urls == ("https://cdn.cboe.com/x.json",)
    with pytest.raises(ConfigError, match="unknown HTTP poller config keys: intervall"):
        HttpPollerConfig.from_mapping({"intervall": 5})
    with pytest.raises(ConfigError, match=f">= {MIN_INTERVAL_S}"):
        HttpPollerConfig(interval_s=1.0)
    with pytest.raises(ConfigError, match="http"):
        HttpPollerConfig(urls=("ftp://x/y",))
    with pytest.raises(ConfigError, match="distinct"):
        HttpPollerConfig(urls=("http://x/y", "http://x/y"))
    with pytest.raises(ValueError, match="at least one URL"):
        HttpPoller(HttpPollerConfig(), make_stage()[0])
    with pytest.raises(AttributeError, match="cannot assign to field 'interval_s'"):
        config.interval_s = 3.0  # type: ignore[misc]


def test_retry_after_forms():
    now = 1_700_000_000.0  # a whole second: an HTTP date has no fraction
    assert retry_after_s("120", now) == 120.0
    later = datetime.fromtimestamp(now, UTC) + timedelta(seconds=90)
    assert retry_after_s(format_datetime(later, usegmt=True), now) == 90.0
    earlier = datetime.fromtimestamp(now, UTC) - timedelta(seconds=90)
    assert retry_after_s(format_datetime(earlier, usegmt=True), now) == 0.0
    assert retry_after_s("soon", now) is None
    assert retry_after_s(None, now) is None
    assert retry_after_s("-5", now) is None

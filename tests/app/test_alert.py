"""`regime-engine alert` against a real (embedded) Redis and a local aiohttp webhook."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

import orjson
import pytest
import pytest_asyncio
import redis.asyncio as aioredis

from connectors.simulator.deribit_session import SessionConfig, write_session
from engine.app.alert import (
    AlertConfig,
    AlertReport,
    alert_key,
    format_payload,
    headline,
    matches,
    run_alerts,
)
from engine.app.cli import main
from engine.client.subscriber import Delivery
from schemas.config import ConfigError
from schemas.events import RegimeEvent, decode_event, encode_event
from schemas.topics import Topics
from tests.conditions import eventually
from tests.fakes.http_chain import FakeHttpChain, HalfRandom, RecordedRequest, Reply
from tests.fakes.regime_events import make_event, new_underlying, publish
from tests.integration.test_pipeline import engine_config, ingest, run_engine, stream
from tests.paths import REPO

HOOK = "/hook"
OK = Reply(200, b"ok")


@pytest_asyncio.fixture
async def writer(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    client = aioredis.Redis.from_url(redis_url, socket_timeout=5.0)
    try:
        yield client
    finally:
        await client.aclose()


@pytest_asyncio.fixture
async def hook() -> AsyncIterator[FakeHttpChain]:
    server = await FakeHttpChain().start()
    try:
        yield server
    finally:
        await server.stop()


@dataclass
class Alerter:
    """One run_alerts task with what it handled, and the delays it slept."""

    config: AlertConfig
    stop: asyncio.Event = field(default_factory=asyncio.Event)
    handled: list[tuple[Delivery, str]] = field(default_factory=list)
    sleeps: list[float] = field(default_factory=list)
    task: asyncio.Task[AlertReport] | None = None

    async def _sleep(self, delay: float) -> None:
        self.sleeps.append(delay)  # recorded, not waited: the test checks the schedule
        await asyncio.sleep(0)

    def start(self) -> Alerter:
        self.task = asyncio.create_task(
            run_alerts(
                self.config,
                self.stop,
                sleep=self._sleep,
                rng=HalfRandom(),
                on_handled=lambda d, outcome: self.handled.append((d, outcome)),
            )
        )
        return self

    async def finish(self) -> AlertReport:
        self.stop.set()
        assert self.task is not None
        return await asyncio.wait_for(self.task, 10.0)

    async def until_handled(self, n: int) -> None:
        await eventually(lambda: len(self.handled) >= n or (self.task and self.task.done()))
        assert self.task is not None
        if self.task.done():
            self.task.result()  # raise what ended it
        assert len(self.handled) == n


def config(redis_url: str, hook: FakeHttpChain, **values: object) -> AlertConfig:
    base = {"start": "0", "block_ms": 100, "retry_min_s": 0.5, "retry_max_s": 4.0}
    return AlertConfig(redis_url, hook.url(HOOK), **{**base, **values})  # type: ignore[arg-type]


async def stream_of(writer: aioredis.Redis, n: int) -> tuple[str, list[RegimeEvent], list[str]]:
    """A new underlying with events 0..n-1 in its stream; the events and their stream ids."""
    u = new_underlying()
    events = [make_event(u, i) for i in range(n)]
    return u, events, [await publish(writer, e) for e in events]


def posted(hook: FakeHttpChain) -> list[RecordedRequest]:
    return hook.requests_to(HOOK)


def keys(requests: list[RecordedRequest]) -> list[str | None]:
    return [r.header("Idempotency-Key") for r in requests]


# -- config and the pure parts ---------------------------------------------------------


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redis_url": "http://x"}, "redis_url must be a redis://"),
        ({"webhook_url": "ftp://x"}, "webhook must be an http"),
        ({"format": "teams"}, "format must be one of json, discord, slack"),
        ({"types": ("flip",)}, "types: unknown 'flip'"),
        ({"buckets": ("1dte",)}, "buckets: unknown '1dte'"),
        ({"underlyings": ()}, "underlyings is empty"),
        ({"underlyings": ("a:b",)}, "underlyings: bad name"),
        ({"group": "a:b"}, "group: bad name"),
        ({"start": "5-0"}, "start must be '0' or '\\$'"),
        ({"timeout_s": 0}, "timeout_s must be a positive number"),
        ({"retry_min_s": 5.0, "retry_max_s": 1.0}, "retry_max_s must be >= retry_min_s"),
        ({"block_ms": 0}, "block_ms must be a positive integer"),
    ],
)
def test_config_rejects_bad_values(values: dict[str, object], message: str) -> None:
    base = {"redis_url": "redis://h:1/0", "webhook_url": "http://h/x"}
    with pytest.raises(ConfigError, match=message):
        AlertConfig(**{**base, **values})  # type: ignore[arg-type]


def test_config_is_frozen_and_from_mapping_rejects_unknown_keys() -> None:
    cfg = AlertConfig.from_mapping(
        {"redis_url": "redis://h:1/0", "webhook_url": "http://h/x", "types": ["flip_cross"]}
    )
    assert cfg.types == ("flip_cross",)
    with pytest.raises(AttributeError):
        cfg.group = "other"  # type: ignore[misc]
    with pytest.raises(ConfigError, match="unknown alert config keys: hook"):
        AlertConfig.from_mapping({"redis_url": "redis://h", "webhook_url": "http://h", "hook": 1})


def test_filters() -> None:
    base = AlertConfig("redis://h:1/0", "http://h/x")
    flip = make_event("BTC", 0, "flip_cross", bucket="0dte")
    front_for_0dte = make_event(
        "BTC", 1, "flip_cross", bucket="front", detail={"buckets": ["0dte", "front"]}
    )
    wall = make_event("SPX", 2, "call_wall_break", bucket="all")
    by = {
        "all": base,
        "btc": AlertConfig("redis://h:1/0", "http://h/x", underlyings=("BTC",)),
        "flip": AlertConfig("redis://h:1/0", "http://h/x", types=("flip_cross",)),
        "0dte": AlertConfig("redis://h:1/0", "http://h/x", buckets=("0dte",)),
        "spx_all": AlertConfig(
            "redis://h:1/0", "http://h/x", underlyings=("SPX",), buckets=("all",)
        ),
    }
    got = {
        name: [e.id for e in (flip, front_for_0dte, wall) if matches(e, cfg)]
        for name, cfg in by.items()
    }
    assert got == {
        "all": [flip.id, front_for_0dte.id, wall.id],
        "btc": [flip.id, front_for_0dte.id],
        "flip": [flip.id, front_for_0dte.id],
        "0dte": [flip.id, front_for_0dte.id],  # a front event standing for 0dte too
        "spx_all": [wall.id],
    }


def test_headline_uses_the_venue_time_zone() -> None:
    # ASOF_NS + n ms = 2023-11-14T22:13:20.00n Z
    assert headline(make_event("BTC", 1, "flip_cross")) == (
        "BTC flip_cross up [all]: level 43,200.00, spot 43,501.00 at 2023-11-14 22:13:20 UTC"
    )
    assert headline(make_event("SPX", 2, "call_wall_break", bucket="0dte")) == (
        "SPX call_wall_break down [0dte]: level 43,200.00, spot 43,502.00 at "
        "2023-11-14 17:13:20 EST"
    )
    assert headline(make_event("ES", 3, "regime_change")).endswith("at 2023-11-14 16:13:20 CST")


def test_formats() -> None:
    event = make_event("SPX", 1, "flip_cross", bucket="0dte")
    assert format_payload(event, "json") == encode_event(event)
    fields = [
        ("Level", "43,200.00"),
        ("Spot", "43,501.00"),
        ("Direction", "up"),
        ("Bucket", "0dte"),
        ("Regime", "negative"),
        ("Zero gamma", "43,200.00"),
        ("Call wall", "-"),  # not in this event's levels
        ("Put wall", "-"),
        ("Time", "2023-11-14 17:13:20 EST"),
    ]
    line = "SPX flip_cross up [0dte]: level 43,200.00, spot 43,501.00 at 2023-11-14 17:13:20 EST"
    context = "id `deribit.raw.v1/0/1001/flip_cross/0dte` · model long_calls_short_puts"
    assert orjson.loads(format_payload(event, "discord")) == {
        "username": "regime-engine",
        "content": line,
        "embeds": [
            {
                "title": "SPX flip cross up",
                "description": context,
                "color": 0x2ECC71,
                "timestamp": "2023-11-14T22:13:20.001000Z",
                "fields": [{"name": n, "value": v, "inline": True} for n, v in fields],
            }
        ],
    }
    assert orjson.loads(format_payload(event, "slack")) == {
        "text": line,
        "blocks": [
            {"type": "header", "text": {"type": "plain_text", "text": "SPX flip cross up"}},
            {
                "type": "section",
                "fields": [{"type": "mrkdwn", "text": f"*{n}*\n{v}"} for n, v in fields],
            },
            {"type": "context", "elements": [{"type": "mrkdwn", "text": context}]},
        ],
    }


# -- delivery --------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_delivers_exactly_the_matching_events(
    redis_url: str, writer: aioredis.Redis, hook: FakeHttpChain
) -> None:
    btc, spx = new_underlying(), new_underlying()
    events = [
        make_event(btc if n % 3 else spx, n, bucket=("0dte", "front", "all")[n % 3])
        for n in range(12)
    ]
    ids = [await publish(writer, e) for e in events]
    hook.repeat_last = True
    hook.script(HOOK, OK)
    cfg = config(
        redis_url,
        hook,
        underlyings=(btc, spx),
        types=("flip_cross", "call_wall_break", "regime_change"),
        buckets=("0dte", "front"),
    )
    alerter = Alerter(cfg).start()
    await alerter.until_handled(12)
    report = await alerter.finish()
    wanted = [e for e in events if matches(e, cfg)]
    # n → type (n % 5 of EVENT_TYPES) and bucket (n % 3): 0 flip 0dte, 1 call wall front,
    # 6 call wall 0dte, 7 regime change front, 10 flip front
    assert [e.detail["n"] for e in wanted] == [0, 1, 6, 7, 10]
    requests = posted(hook)
    sent = [decode_event(r.body) for r in requests]  # the event JSON
    # In stream order per underlying (the subscriber merges the two streams by id).
    for u in (btc, spx):
        assert [e for e in sent if e.underlying == u] == [e for e in wanted if e.underlying == u]
    assert sorted(keys(requests)) == sorted(e.id for e in wanted)  # each exactly once
    assert [r.header("Idempotency-Key") for r in requests] == [e.id for e in sent]
    assert {r.method for r in requests} == {"POST"}
    assert {r.header("Content-Type") for r in requests} == {"application/json"}
    assert report.to_dict() == {"delivered": 5, "filtered": 7}
    assert {d.event.id: outcome for d, outcome in alerter.handled} == {
        e.id: "delivered" if matches(e, cfg) else "filtered" for e in events
    }
    stored = await writer.hgetall(alert_key("default"))
    assert stored == {
        btc.encode(): ids[11].encode(),
        spx.encode(): ids[9].encode(),
    }


@pytest.mark.asyncio
async def test_discord_format_on_the_wire(
    redis_url: str, writer: aioredis.Redis, hook: FakeHttpChain
) -> None:
    u = new_underlying()
    event = make_event(u, 4, "flip_cross")
    await publish(writer, event)
    hook.script(HOOK, Reply(204))
    alerter = Alerter(config(redis_url, hook, format="discord", group=u)).start()
    await alerter.until_handled(1)
    assert (await alerter.finish()).to_dict() == {"delivered": 1}
    (request,) = posted(hook)
    assert request.body == format_payload(event, "discord")
    assert request.header("Idempotency-Key") == event.id


@pytest.mark.asyncio
async def test_retries_failures_then_delivers_without_loss_or_duplicate(
    redis_url: str, writer: aioredis.Redis, hook: FakeHttpChain
) -> None:
    _, events, _ = await stream_of(writer, 4)
    hook.script(
        HOOK,
        Reply(500),
        Reply(502),
        Reply(429, b"slow down", {"Retry-After": "7"}),
        Reply(503),
        Reply(200, delay_s=60.0),  # answered after the client's 0.3 s timeout: a timeout
        OK,
    )
    hook.repeat_last = True
    alerter = Alerter(config(redis_url, hook, timeout_s=0.3)).start()
    await alerter.until_handled(4)
    report = await alerter.finish()
    requests = posted(hook)
    assert keys(requests) == [events[0].id] * 6 + [e.id for e in events[1:]]
    assert [r.body for r in requests[5:]] == [encode_event(e) for e in events]
    assert [status for _, status in hook.answered[:5]] == [500, 502, 429, 503, 200]
    # Backoff 0.5 s doubling to the 4 s cap, jitter drawn at half; Retry-After wins (7 s).
    assert alerter.sleeps == [0.25, 0.5, 7.0, 2.0, 2.0]
    assert report.to_dict() == {
        "delivered": 4,
        "http_429": 1,
        "http_500": 1,
        "http_502": 1,
        "http_503": 1,
        "retries": 5,
        "timeout": 1,
    }


@pytest.mark.asyncio
async def test_retry_after_is_capped(
    redis_url: str, writer: aioredis.Redis, hook: FakeHttpChain
) -> None:
    u = new_underlying()
    await publish(writer, make_event(u, 0))
    hook.script(HOOK, Reply(429, b"", {"Retry-After": "86400"}), OK)
    alerter = Alerter(config(redis_url, hook, max_retry_after_s=30.0)).start()
    await alerter.until_handled(1)
    await alerter.finish()
    assert alerter.sleeps == [30.0]


@pytest.mark.asyncio
async def test_a_rejected_event_is_counted_and_skipped(
    redis_url: str, writer: aioredis.Redis, hook: FakeHttpChain
) -> None:
    _, events, _ = await stream_of(writer, 3)
    hook.script(HOOK, OK, Reply(400, b"bad payload"), Reply(404), OK)
    alerter = Alerter(config(redis_url, hook)).start()
    await alerter.until_handled(3)
    report = await alerter.finish()
    assert keys(posted(hook)) == [e.id for e in events]  # each sent once: no retry of a 4xx
    assert [o for _, o in alerter.handled] == ["delivered", "rejected", "rejected"]
    assert report.to_dict() == {"delivered": 1, "rejected": 2}
    assert alerter.sleeps == []


@pytest.mark.asyncio
async def test_stopped_mid_delivery_resumes_after_the_last_acknowledged(
    redis_url: str, writer: aioredis.Redis, hook: FakeHttpChain
) -> None:
    u, events, ids = await stream_of(writer, 6)
    group = f"g{u}"
    events += [make_event(u, n) for n in range(6, 10)]
    # Four acknowledged, then the receiver hangs on the fifth: the alerter is stopped there.
    hook.script(HOOK, OK, OK, OK, OK, Reply(200, delay_s=60.0))
    first = Alerter(config(redis_url, hook, group=group)).start()
    await first.until_handled(4)
    await eventually(lambda: len(posted(hook)) == 5)
    assert (await first.finish()).to_dict() == {"delivered": 4}
    assert await writer.hgetall(alert_key(group)) == {u.encode(): ids[3].encode()}
    # More events while it is down; then a restart against a receiver that answers.
    ids += [await publish(writer, e) for e in events[6:]]
    hook.script(HOOK, OK)
    hook.repeat_last = True
    second = Alerter(config(redis_url, hook, group=group)).start()
    await second.until_handled(6)
    assert (await second.finish()).to_dict() == {"delivered": 6}
    requests = posted(hook)
    # The fifth was sent twice (never acknowledged the first time), under the same key.
    assert keys(requests) == [e.id for e in events[:5]] + [e.id for e in events[4:]]
    acknowledged = [d.event.id for d, _ in first.handled + second.handled]
    assert acknowledged == [e.id for e in events]  # nothing lost, nothing acknowledged twice
    assert await writer.hgetall(alert_key(group)) == {u.encode(): ids[9].encode()}


@pytest.mark.asyncio
async def test_a_new_group_from_dollar_pins_its_start(
    redis_url: str, writer: aioredis.Redis, hook: FakeHttpChain
) -> None:
    u, _, old = await stream_of(writer, 3)
    group = f"g{u}"
    hook.repeat_last = True
    hook.script(HOOK, OK)
    first = Alerter(config(redis_url, hook, start="$", group=group, underlyings=(u,))).start()

    # The start ("$" = the stream's last id now) is stored before anything is delivered.
    await eventually(lambda: writer.exists(alert_key(group)))
    assert await writer.hgetall(alert_key(group)) == {u.encode(): old[-1].encode()}
    assert (await first.finish()).to_dict() == {}
    new = [make_event(u, n) for n in (3, 4)]
    for e in new:
        await publish(writer, e)
    second = Alerter(config(redis_url, hook, start="$", group=group, underlyings=(u,))).start()
    await second.until_handled(2)
    await second.finish()
    assert keys(posted(hook)) == [e.id for e in new]


# -- command line ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--webhook", "http://h/x"], "alert needs --redis URL"),
        (["--redis", "redis://h:1/0", "--webhook", "ftp://x"], "webhook must be an http"),
        (
            ["--redis", "redis://h:1/0", "--webhook", "http://h/x", "--type", "flip_cross,nope"],
            "types: unknown 'nope'",
        ),
        (
            [
                "--redis",
                "redis://h:1/0",
                "--webhook",
                "http://h/x",
                "--bucket",
                "0dte",
                "--bucket",
                "week",
            ],
            "buckets: unknown 'week'",
        ),
        (["--redis", "redis://h:1/0", "--webhook", "http://h/x", "--from", "7"], "start must be"),
        (
            ["--redis", "redis://h:1/0", "--webhook", "http://h/x", "--format", "x"],
            "invalid choice",
        ),
    ],
)
def test_cli_bad_input_is_one_line_and_exit_2(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["alert", *argv]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1
    assert err.startswith("regime-engine: error: ")
    assert message in err


@pytest.mark.asyncio
async def test_exact_deliveries_for_a_replayed_session(
    kafka_bootstrap: str, redis_url: str, topics: Topics, hook: FakeHttpChain, tmp_path: Path
) -> None:
    """A simulated session through the real engine; the alerter then POSTs exactly the
    stream's events, in order, and its filters keep exactly the matching ones."""
    path = tmp_path / "session.jsonl"
    write_session(SessionConfig(n_instruments=300, duration_s=240.0, seed=7), path)
    await ingest(kafka_bootstrap, topics, path)
    await run_engine(engine_config(kafka_bootstrap, redis_url, topics))
    events = [event for _, event in await stream(redis_url)]
    assert {e.type for e in events} >= {"flip_cross"}
    hook.repeat_last = True
    hook.script(HOOK, Reply(204))
    everything = Alerter(config(redis_url, hook, group="all")).start()
    await everything.until_handled(len(events))
    assert (await everything.finish()).to_dict() == {"delivered": len(events)}
    assert [decode_event(r.body) for r in posted(hook)] == events
    assert keys(posted(hook)) == [e.id for e in events]

    flips = config(redis_url, hook, group="flips", format="slack", types=("flip_cross",))
    before = len(posted(hook))
    filtered = Alerter(flips).start()
    await filtered.until_handled(len(events))
    wanted = [e for e in events if e.type == "flip_cross"]
    assert (await filtered.finish()).to_dict() == {
        "delivered": len(wanted),
        "filtered": len(events) - len(wanted),
    }
    assert [r.body for r in posted(hook)[before:]] == [format_payload(e, "slack") for e in wanted]


async def alert_process(
    redis_url: str, hook: FakeHttpChain, group: str
) -> asyncio.subprocess.Process:
    return await asyncio.create_subprocess_exec(
        sys.executable, "-m", "engine.app.cli", "alert", "--redis", redis_url,
        "--webhook", hook.url(HOOK), "--group", group, "--from", "0", "--format", "slack",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )  # fmt: skip


@pytest.mark.asyncio
async def test_the_command_killed_mid_stream_resumes_after_the_last_acknowledged(
    redis_url: str, writer: aioredis.Redis, hook: FakeHttpChain
) -> None:
    u, events, ids = await stream_of(writer, 8)
    group = f"g{u}"
    hook.script(HOOK, OK, OK, OK, Reply(200, delay_s=60.0))  # hangs on the fourth
    proc = await alert_process(redis_url, hook, group)
    try:
        await eventually(lambda: len(posted(hook)) == 4 or proc.returncode is not None, 30)
        assert proc.returncode is None
        proc.kill()  # SIGKILL: nothing runs on the way out
        await proc.wait()
        assert await writer.hgetall(alert_key(group)) == {u.encode(): ids[2].encode()}
        hook.script(HOOK, OK)
        hook.repeat_last = True
        proc = await alert_process(redis_url, hook, group)
        await eventually(lambda: len(posted(hook)) == 4 + 5 or proc.returncode is not None, 30)
        last = {u.encode(): ids[7].encode()}

        async def resumed_to_the_end() -> bool:
            return await writer.hgetall(alert_key(group)) == last

        await eventually(resumed_to_the_end, 30)
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 30)
        assert proc.returncode == 0, stderr.decode()[-2000:]
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    # The fourth went out twice (never acknowledged the first time), the rest once.
    assert keys(posted(hook)) == [e.id for e in events[:4]] + [e.id for e in events[3:]]
    assert [r.body for r in posted(hook)[4:]] == [format_payload(e, "slack") for e in events[3:]]
    assert stderr.decode().splitlines()[-1] == 'alert: {"delivered":5}'

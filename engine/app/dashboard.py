"""`regime-engine dashboard`: one page fed by Server-Sent Events, read only from Redis.

It reads what any engine publishes (DESIGN §2.4, §2.6): ``regime:levels:{U}``,
``regime:profile:{U}`` and ``regime:stream:{U}``. So it works beside any engine and
never talks to Kafka. Each browser connection (``GET /events?underlying=U&bucket=B``) gets:

- ``tape``: the last ``tape_size`` events of the stream (on connect and after a reconnect),
  then ``events`` with each batch of new ones (``XREAD`` from the last id seen);
- ``levels``: the levels object, plus the profile and strike charts of the chosen bucket
  (built by :mod:`engine.app.chart_data`, as `regime-engine chart` builds them), sent only
  when the keys changed;
- ``status``: ``live`` with the wall-clock age of the last change, or ``reconnecting`` while
  Redis is unreachable.

Updates are coalesced: at most ``max_rate_hz`` cycles per second per connection, each
sending at most one levels message and one batch of events, so a fast engine cannot flood
a browser.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import orjson
from aiohttp import web
from redis.asyncio import Redis
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from connectors.common.lifecycle import Backoff
from connectors.common.redis_conn import NO_SECURITY, RedisSecurity, redis_client
from connectors.common.secrets import redacted_repr
from engine.app.chart_data import profile_chart, strikes_chart
from engine.app.chart_render import static_text
from schemas.channels import (
    STREAM_FIELD,
    as_text,
    events_stream,
    levels_key,
    profile_key,
    underlying_of,
)
from schemas.config import ConfigError
from schemas.levels import BUCKETS, decode_levels
from schemas.profile import decode_profile

REDIS_DOWN = (RedisConnectionError, RedisTimeoutError, OSError)


@dataclass(frozen=True, slots=True)
class DashboardConfig:
    """Where the dashboard reads and serves, and how often it may update a page."""

    redis_url: str
    host: str = "127.0.0.1"
    port: int = 8765
    max_rate_hz: float = 4.0  # update cycles per second per connection (coalesced)
    tape_size: int = 200  # events sent on connect
    stale_after_s: float = 30.0  # the page warns when the levels have not changed for this
    status_every_s: float = 1.0  # a status message (age of the last change) this often
    max_clients: int = 64  # concurrent event streams; more get 503
    security: RedisSecurity = NO_SECURITY  # TLS files, ACL user and password

    def __repr__(self) -> str:
        return redacted_repr(self)

    def __post_init__(self) -> None:
        if not self.redis_url:
            raise ConfigError("dashboard needs a Redis URL")
        self.security.check_url(self.redis_url)
        if not 0 <= self.port <= 65_535:
            raise ConfigError(f"port must be in [0, 65535], got {self.port}")
        for name in ("max_rate_hz", "stale_after_s", "status_every_s"):
            value = getattr(self, name)
            if not value > 0:
                raise ConfigError(f"{name} must be positive, got {value!r}")
        for name in ("tape_size", "max_clients"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)!r}")


def sse(name: str, data: Any) -> bytes:
    """One Server-Sent Events message (``data`` as one line of JSON)."""
    return b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def levels_message(raw_levels: bytes, raw_profile: bytes | None, bucket: str) -> dict[str, Any]:
    """The ``levels`` message: the levels object and the bucket's profile and strike charts
    (none when no profile is published, e.g. by an engine that predates it)."""
    levels = decode_levels(raw_levels)
    charts = []
    if raw_profile is not None:
        profile = decode_profile(raw_profile)
        if profile.asof_ns == levels.asof_ns:  # written together: always, unless mid-upgrade
            charts = [
                {"kind": "profile", **profile_chart(levels, profile, bucket).to_dict()},
                {"kind": "strikes", **strikes_chart(levels, profile, bucket).to_dict()},
            ]
    return {"levels": orjson.loads(raw_levels), "bucket": bucket, "charts": charts}


def _events(entries: list[Any]) -> tuple[list[dict[str, Any]], str | None]:
    """Stream entries → (event JSON objects with their stream id, last id)."""
    out, last = [], None
    for entry_id, fields in entries:
        last = as_text(entry_id)
        raw = fields.get(STREAM_FIELD.encode())
        if raw is None:
            continue
        try:
            event = orjson.loads(raw)
        except orjson.JSONDecodeError:
            continue  # not an event: nothing to show
        if isinstance(event, dict):
            out.append({"stream_id": last, **event})
    return out, last


class Follower:
    """The messages of one page connection: one underlying, one bucket."""

    def __init__(self, redis: Redis, config: DashboardConfig, underlying: str, bucket: str):
        self.redis = redis
        self.config = config
        self.underlying = underlying
        self.bucket = bucket
        self._clock = time.monotonic

    async def messages(self) -> AsyncIterator[bytes]:
        cfg = self.config
        interval = 1.0 / cfg.max_rate_hz
        backoff = Backoff(initial_s=0.1, cap_s=2.0)
        last_id: str | None = None  # None: (re)send the tape
        last_keys: tuple[bytes | None, bytes | None] | None = None
        changed_at = self._clock()
        state = "connecting"
        status_at = -1e18
        stream, keys = (
            events_stream(self.underlying),
            [
                levels_key(self.underlying),
                profile_key(self.underlying),
            ],
        )
        while True:
            began = self._clock()
            try:
                if last_id is None:
                    entries = await self.redis.xrevrange(stream, count=cfg.tape_size)
                    tape, newest = _events(entries[::-1])
                    last_id = newest or "0-0"
                    yield sse("tape", tape)
                else:
                    block = max(1, int(interval * 1000))
                    reply = await self.redis.xread({stream: last_id}, count=500, block=block)
                    if reply:
                        events, newest = _events(reply[0][1])
                        last_id = newest or last_id
                        if events:
                            yield sse("events", events)
                raw = tuple(await self.redis.mget(keys))
                if raw != last_keys and raw[0] is not None:
                    last_keys = raw
                    changed_at = self._clock()
                    try:
                        message = sse("levels", levels_message(raw[0], raw[1], self.bucket))
                    except (ValueError, KeyError, TypeError) as exc:  # not what an engine writes
                        problem = f"{keys[0]} unreadable: {type(exc).__name__}: {exc}"
                        message = sse("status", {**self._status(state, changed_at, False),
                                                 "error": problem})  # fmt: skip
                    yield message
                if state != "live" or self._clock() - status_at >= cfg.status_every_s:
                    state, status_at = "live", self._clock()
                    yield sse("status", self._status(state, changed_at, last_keys is not None))
                backoff.reset()
            except REDIS_DOWN as exc:
                if state != "reconnecting":
                    state = "reconnecting"
                    yield sse("status", {**self._status(state, changed_at, False),
                                         "error": " ".join(str(exc).split())})  # fmt: skip
                last_id = None  # the tape again once back (the server may have lost it)
                last_keys = None
                await asyncio.sleep(backoff.next_delay())
                continue
            await asyncio.sleep(max(0.0, began + interval - self._clock()))

    def _status(self, state: str, changed_at: float, have_levels: bool) -> dict[str, Any]:
        age = self._clock() - changed_at
        return {
            "state": state,
            "underlying": self.underlying,
            "age_s": round(age, 3),
            "stale": (not have_levels) or age > self.config.stale_after_s,
            "stale_after_s": self.config.stale_after_s,
        }


async def underlyings(redis: Redis) -> list[str]:
    """Underlyings with levels in Redis, sorted."""
    names = {underlying_of(as_text(k)) async for k in redis.scan_iter(match=levels_key("*"))}
    return sorted(names)


class Dashboard:
    """The aiohttp application: ``/`` (the page), ``/api/underlyings``, ``/events``."""

    def __init__(self, config: DashboardConfig) -> None:
        self.config = config
        self.redis = redis_client(
            config.redis_url, config.security, socket_timeout=10, socket_connect_timeout=5
        )
        self.clients = 0
        self.app = web.Application()
        self.app.add_routes(
            [
                web.get("/", self.page),
                web.get("/api/underlyings", self.list_underlyings),
                web.get("/events", self.events),
            ]
        )
        self._page = render_page(config)

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=self._page, content_type="text/html")

    async def list_underlyings(self, request: web.Request) -> web.Response:
        try:
            names = await underlyings(self.redis)
        except REDIS_DOWN as exc:
            return web.json_response({"error": " ".join(str(exc).split())}, status=503)
        return web.json_response({"underlyings": names})

    async def events(self, request: web.Request) -> web.StreamResponse:
        underlying = request.query.get("underlying", "")
        bucket = request.query.get("bucket", "all")
        if not underlying or bucket not in BUCKETS:
            raise web.HTTPBadRequest(text=f"need ?underlying=U&bucket={'|'.join(BUCKETS)}")
        if self.clients >= self.config.max_clients:
            raise web.HTTPServiceUnavailable(text="too many dashboard connections")
        response = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        self.clients += 1
        try:
            follower = Follower(self.redis, self.config, underlying, bucket)
            async for message in follower.messages():
                await response.write(message)
        except ConnectionResetError:
            pass  # the page went away
        finally:
            self.clients -= 1
        return response

    async def close(self) -> None:
        await self.redis.aclose()


async def serve(config: DashboardConfig, stop: asyncio.Event, ready: Any = None) -> None:
    """Serve until ``stop`` is set; ``ready(url)`` is called once listening."""
    dashboard = Dashboard(config)
    runner = web.AppRunner(dashboard.app, handle_signals=False, shutdown_timeout=1.0)
    await runner.setup()
    try:
        site = web.TCPSite(runner, config.host, config.port)
        await site.start()
        port = runner.addresses[0][1] if runner.addresses else config.port
        if ready is not None:
            ready(f"http://{config.host}:{port}/")
        await stop.wait()
    finally:
        await runner.cleanup()
        await dashboard.close()


def render_page(config: DashboardConfig) -> str:
    """The page: ECharts, the shared chart code and the dashboard code, all inline."""
    settings = orjson.dumps(
        {"buckets": list(BUCKETS), "stale_after_s": config.stale_after_s}
    ).decode()
    return (  # the large vendored script last: no placeholder is searched inside it
        static_text("dashboard.html")
        .replace("/*SETTINGS*/null", settings)
        .replace("/*DASHBOARD*/", static_text("dashboard.js"))
        .replace("/*REGIME_CHARTS*/", static_text("regime_charts.js"))
        .replace("/*ECHARTS*/", static_text("echarts/echarts.min.js"))
    )

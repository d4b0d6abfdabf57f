"""The WebSocket lifecycle the funding venues share (Binance USD-M, Bybit v5, OKX v5).

Per connection: optional REST seed (Binance: funding intervals and the premium index),
connect, send the venue's subscribe frames, then read until the socket drops or the feed
goes quiet for ``stale_after_s`` (watchdog); send the venue's keepalive frame on a timer;
re-read the REST tables every ``refresh_s``. Reconnects use capped, jittered backoff and
subscribe again. Every frame goes to the ingest stage (capture → normalise → sink) except
a non-JSON keepalive reply (OKX "pong"); control frames (acks, pongs, errors, notices) are
counted here and errors logged. What differs per venue is a :class:`FundingFeed`.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import aiohttp
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI

from connectors.common.funding import IntervalFallback
from connectors.common.ingest import IngestStage, decode_json
from connectors.common.lifecycle import (
    Backoff,
    Watchdog,
    cancel_and_wait,
    describe_disconnect,
    reconnect_cause,
)
from connectors.common.logs import get_logger
from connectors.funding.frames import ERROR, NOTICE, Control, FundingNormaliser
from schemas.config import Config, ConfigError

log = get_logger("funding")
RATE_LIMITED_HTTP = frozenset({418, 429})  # Binance: 429 too many requests, 418 IP banned


@dataclass(frozen=True, slots=True)
class RestRequest:
    """A public GET whose JSON response goes through the normaliser (and the capture)."""

    path: str  # "/fapi/v1/premiumIndex"
    params: tuple[tuple[str, str], ...] = ()

    @property
    def method(self) -> str:
        return f"GET {self.path}"

    def describe(self) -> dict[str, Any]:
        """The ``request`` a capture line and the normaliser see."""
        return {"method": self.method, "params": dict(self.params)}


def _none(symbols: Sequence[str]) -> list[Any]:
    return []


def _same_url(url: str, symbols: Sequence[str]) -> str:
    return url


@dataclass(frozen=True, slots=True)
class FundingFeed:
    """Everything that differs between the funding venues."""

    name: str  # "binance" | "bybit" | "okx"
    url: str  # public WebSocket endpoint
    normaliser: Callable[[FundingClientConfig], FundingNormaliser]
    control: Callable[[Any], Control | None]  # pure: the normaliser's control_frame
    subscribe_frames: Callable[[Sequence[str]], list[str]] = _none
    stream_url: Callable[[str, Sequence[str]], str] = _same_url  # Binance: streams in the URL
    keepalive_frame: str | None = None  # sent every keepalive_s
    keepalive_reply: bytes | None = None  # a reply that is not JSON (OKX "pong")
    keepalive_s: float = 20.0
    stale_after_s: float = 30.0  # the venue's data cadence sets this
    rest_url: str | None = None
    seed_requests: Callable[[Sequence[str]], list[RestRequest]] = _none  # before connecting
    refresh_requests: Callable[[Sequence[str]], list[RestRequest]] = _none  # every refresh_s


@dataclass(frozen=True, slots=True)
class FundingClientConfig(Config):
    """Configuration of one venue's funding connection (frozen; unknown keys rejected)."""

    SECTION: ClassVar[str] = "funding"

    symbols: tuple[str, ...] = ()  # venue symbols: "BTCUSDT", "BTC-USDT-SWAP"
    url: str | None = None  # WebSocket endpoint; None: the venue's public one
    rest_url: str | None = None  # REST base (Binance); None: the venue's public one
    default_interval_hours: float = 8.0  # where the venue does not state the interval
    interval_hours: tuple[tuple[str, float], ...] = ()  # per symbol, same role
    stale_after_s: float | None = None  # no data for this long → reconnect; None: venue's
    keepalive_s: float | None = None  # None: the venue's (Bybit 20 s, OKX 25 s)
    refresh_s: float = 600.0  # re-read the venue's interval table (Binance fundingInfo)
    min_emit_interval_ms: int = 1000  # Bybit: pushes without a funding change, at most
    open_timeout_s: float = 10.0
    rest_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_cap_s: float = 30.0
    rate_limit_penalty: int = 3  # extra backoff steps after HTTP 429/418
    max_frame_bytes: int = 1 << 20

    @classmethod
    def prepare(cls, values: dict[str, Any]) -> dict[str, Any]:
        """``interval_hours`` may be a table of symbol → hours."""
        if isinstance(values.get("interval_hours"), Mapping):
            values["interval_hours"] = tuple(
                (str(k), float(v)) for k, v in values["interval_hours"].items()
            )
        return values

    def __post_init__(self) -> None:
        for name in ("stale_after_s", "keepalive_s"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise ConfigError(f"{name} must be positive")
        if not (self.refresh_s > 0 and self.open_timeout_s > 0 and self.rest_timeout_s > 0):
            raise ConfigError("refresh_s, open_timeout_s and rest_timeout_s must be positive")
        if self.min_emit_interval_ms < 0:
            raise ConfigError("min_emit_interval_ms must be >= 0")
        self.fallback()  # checks the intervals

    def fallback(self) -> IntervalFallback:
        return IntervalFallback(self.default_interval_hours, self.interval_hours)


class RestFailed(Exception):
    """A REST seed request failed (HTTP status or transport)."""


@dataclass
class _Session:
    """What belongs to one connection."""

    ws: ClientConnection
    watchdog: Watchdog
    send_lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    live: bool = False  # a data frame arrived


class FundingClient:
    """Streams one venue's funding for ``config.symbols`` into an ingest stage until stopped."""

    def __init__(self, feed: FundingFeed, config: FundingClientConfig, stage: IngestStage) -> None:
        if not config.symbols:
            raise ValueError(f"{feed.name}: no symbols to subscribe")
        self.feed = feed
        self.config = config
        self.stage = stage
        self.url = feed.stream_url(config.url or feed.url, config.symbols)
        self.rest_url = (config.rest_url or feed.rest_url or "").rstrip("/")
        self.stale_after_s = config.stale_after_s or feed.stale_after_s
        self.keepalive_s = config.keepalive_s or feed.keepalive_s
        self.backoff = Backoff(config.backoff_initial_s, config.backoff_cap_s)
        self.counts: Counter[str] = Counter()  # connections, acks, pongs, venue_errors, …
        self.reconnects: Counter[str] = Counter()  # by reconnect_cause
        self._stopping = asyncio.Event()
        self._session: _Session | None = None
        self._http: aiohttp.ClientSession | None = None

    @property
    def connections(self) -> int:
        return self.counts["connections"]

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Connect, stream and reconnect until :meth:`stop`."""
        try:
            if self.rest_url:
                self._http = aiohttp.ClientSession(
                    timeout=aiohttp.ClientTimeout(total=self.config.rest_timeout_s)
                )
            while not self._stopping.is_set():
                reason = await self._until_stopped(self._one_connection())
                if reason is None or self._stopping.is_set():
                    break
                delay = self.backoff.next_delay()
                self.reconnects[reconnect_cause(reason)] += 1
                log.warning(
                    "funding reconnecting",
                    venue=self.feed.name,
                    reason=reason,
                    delay_s=round(delay, 3),
                )
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), delay)
        finally:
            if self._http is not None:
                await self._http.close()
                self._http = None

    async def stop(self) -> None:
        self._stopping.set()
        session = self._session
        if session is not None:
            await session.ws.close()

    async def _until_stopped(self, work: Coroutine[Any, Any, str]) -> str | None:
        """Run one connection; None when stop() came first (the connection is cancelled)."""
        task = asyncio.create_task(work, name=f"{self.feed.name}-connection")
        stopper = asyncio.create_task(self._stopping.wait(), name=f"{self.feed.name}-stop")
        try:
            await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if task.done():
                return task.result()
            # stop(): the closed socket normally ends the session; a REST seed in flight won't
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(task), 1.0)
            return None
        finally:
            await cancel_and_wait(stopper)
            await cancel_and_wait(task)

    async def _one_connection(self) -> str:
        try:
            for request in self.feed.seed_requests(self.config.symbols):
                await self._get(request)
            async with connect(
                self.url,
                max_size=self.config.max_frame_bytes,
                ping_interval=None,  # venue keepalive frames, and the watchdog
                open_timeout=self.config.open_timeout_s,
            ) as ws:
                self.counts["connections"] += 1
                self._session = _Session(ws, Watchdog(self.stale_after_s))
                return await self._run_session(self._session)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            return f"connect failed: {exc}"
        except RestFailed as exc:
            return f"seed failed: {exc}"
        finally:
            self._session = None

    async def _run_session(self, session: _Session) -> str:
        name = self.feed.name
        tasks = {
            asyncio.create_task(self._read(session), name=f"{name}-reader"),
            asyncio.create_task(session.watchdog.watch(), name=f"{name}-watchdog"),
            asyncio.create_task(self._subscribe_then_refresh(session), name=f"{name}-session"),
        }
        if self.feed.keepalive_frame is not None:
            tasks.add(asyncio.create_task(self._keepalive(session), name=f"{name}-keepalive"))
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                if task.exception() is not None:
                    return describe_disconnect(task.exception())
            return "connection closed"
        finally:
            for task in tasks:
                await cancel_and_wait(task)

    # ------------------------------------------------------------ socket

    async def _read(self, session: _Session) -> None:
        while True:
            raw = await session.ws.recv(decode=False)
            recv_ns = self.stage.clock_ns()
            if raw == self.feed.keepalive_reply:
                self.counts["pongs"] += 1
                continue
            doc, error = decode_json(raw)
            control = self.feed.control(doc) if error is None else None
            if control is not None:
                self._on_control(control)
            else:
                session.watchdog.touch()  # data (or a malformed frame): the feed is alive
                if not session.live:
                    session.live = True
                    self.backoff.reset()
            await self.stage.on_message(raw, doc, recv_ns, decode_error=error)

    def _on_control(self, control: Control) -> None:
        if control.kind == ERROR:
            self.counts["venue_errors"] += 1
            log.warning("funding venue error", venue=self.feed.name, detail=control.detail)
        else:
            self.counts[f"{control.kind}s"] += 1  # acks, pongs, notices
            if control.kind == NOTICE:
                log.info("funding venue notice", venue=self.feed.name, detail=control.detail)

    async def _send(self, session: _Session, frame: str) -> None:
        async with session.send_lock:
            await session.ws.send(frame)

    async def _subscribe_then_refresh(self, session: _Session) -> None:
        for frame in self.feed.subscribe_frames(self.config.symbols):
            await self._send(session, frame)
        self.counts["subscribed"] += 1
        log.info(
            "funding subscribed",
            venue=self.feed.name,
            symbols=list(self.config.symbols),
            connection=self.connections,
        )
        refresh = self.feed.refresh_requests(self.config.symbols)
        while refresh:
            await asyncio.sleep(self.config.refresh_s)
            for request in refresh:
                try:
                    await self._get(request)
                except RestFailed as exc:  # the stream stays up; the last table stays in use
                    log.warning("funding refresh failed", venue=self.feed.name, error=str(exc))

    async def _keepalive(self, session: _Session) -> None:
        assert self.feed.keepalive_frame is not None
        while True:
            await asyncio.sleep(self.keepalive_s)
            await self._send(session, self.feed.keepalive_frame)
            self.counts["pings"] += 1

    # ------------------------------------------------------------ REST

    async def _get(self, request: RestRequest) -> None:
        """GET a REST table and hand the body to the stage; RestFailed unless HTTP 200."""
        assert self._http is not None
        url = self.rest_url + request.path
        try:
            async with self._http.get(url, params=dict(request.params)) as response:
                body = await response.read()
                recv_ns = self.stage.clock_ns()
                status, where = response.status, str(response.url)
        except (aiohttp.ClientError, TimeoutError) as exc:
            self.counts["rest_errors"] += 1
            raise RestFailed(f"{request.method}: {type(exc).__name__}: {exc}") from None
        if status != 200:
            self.counts["rest_errors"] += 1
            if status in RATE_LIMITED_HTTP:
                self.backoff.penalise(self.config.rate_limit_penalty)
            text = body[:200].decode("utf-8", "replace")
            raise RestFailed(f"{request.method}: HTTP {status} {text}")
        # like every polled body, handed over undecoded: replay does the same
        await self.stage.on_message(body, body, recv_ns, request.describe(), url=where)

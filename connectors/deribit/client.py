"""Deribit WebSocket JSON-RPC client: owns the socket, seeds, subscribes, survives failures.

On each connection: ``public/set_heartbeat``; ``public/get_instruments`` and
``public/get_book_summary_by_currency`` per currency (seed: OI, mark IV, forwards); then
``public/subscribe`` in chunks of ≤ 250 channels within the subscribe rate limit. Every
frame goes to the ingest stage (capture → normalise → Kafka); this class only moves bytes
and keeps the session alive: it answers ``test_request`` heartbeats, reconnects with capped
jittered backoff when the socket drops, the feed goes quiet or Deribit says 10028
``too_many_requests``, and re-seeds and re-subscribes from its stored subscription set.
Instruments listed during the session are subscribed; settled ones are dropped.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections import Counter
from dataclasses import dataclass
from typing import Any, ClassVar

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import InvalidHandshake, InvalidURI

from connectors.common.ingest import IngestStage, decode_json
from connectors.common.lifecycle import (
    Backoff,
    Watchdog,
    cancel_and_wait,
    describe_disconnect,
    reconnect_cause,
)
from connectors.common.logs import get_logger
from connectors.deribit.normaliser import rpc_error
from connectors.deribit.parse import is_option_name
from schemas.config import Config, ConfigError
from schemas.records import InstrumentState

TOO_MANY_REQUESTS = 10028
log = get_logger("deribit")


@dataclass(frozen=True, slots=True)
class DeribitConfig(Config):
    """Configuration of one Deribit connection (frozen; unknown keys rejected)."""

    SECTION: ClassVar[str] = "Deribit"

    url: str = "wss://www.deribit.com/ws/api/v2"  # testnet: wss://test.deribit.com/ws/api/v2
    currencies: tuple[str, ...] = ("BTC",)
    interval: str = "100ms"  # public users cannot use "raw"
    heartbeat_interval_s: int = 30  # Deribit's minimum is 10
    stale_after_s: float = 20.0  # no frame at all for this long → reconnect
    instrument_stale_after_s: float = 300.0  # reported, per instrument
    subscribe_chunk: int = 250  # channels per public/subscribe request
    subscribe_per_s: float = 3.0  # Deribit: ~3.3 subscribe requests/s sustained
    rpc_timeout_s: float = 10.0
    backoff_initial_s: float = 0.5
    backoff_cap_s: float = 30.0
    rate_limit_penalty: int = 3  # extra backoff steps after a 10028
    max_frame_bytes: int = 64 * 1024 * 1024

    def __post_init__(self) -> None:
        if not self.currencies:
            raise ConfigError("at least one currency")
        if not 1 <= self.subscribe_chunk <= 250:
            raise ConfigError("subscribe_chunk must be in [1, 250]")
        if self.heartbeat_interval_s < 10:
            raise ConfigError("heartbeat_interval_s must be >= 10 (Deribit's minimum)")
        if self.stale_after_s <= 0 or self.subscribe_per_s <= 0 or self.rpc_timeout_s <= 0:
            raise ConfigError("stale_after_s, subscribe_per_s and rpc_timeout_s must be positive")


class SessionEnded(Exception):
    """The current connection must be replaced (reason in the message)."""


class DeribitClient:
    """Streams one or more Deribit currencies into an ingest stage until stopped."""

    def __init__(self, config: DeribitConfig, stage: IngestStage) -> None:
        self.config = config
        self.stage = stage
        self.backoff = Backoff(config.backoff_initial_s, config.backoff_cap_s)
        self.subscriptions: set[str] = set()  # survives reconnects
        self.connections = 0
        self.sessions_seeded = 0
        self.rate_limited = 0
        self.reconnects: Counter[str] = Counter()  # by reconnect_cause
        self._stopping = asyncio.Event()
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[int, tuple[dict[str, Any], asyncio.Future[Any]]] = {}
        self._watchdog = Watchdog(config.stale_after_s)
        self._send_lock = asyncio.Lock()
        self._followups: asyncio.Queue[InstrumentState] = asyncio.Queue(maxsize=10_000)
        self._rate_limited_now = False  # the venue said 10028 on this connection

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Connect, stream and reconnect until :meth:`stop`."""
        while not self._stopping.is_set():
            reason = await self._one_connection()
            if self._stopping.is_set():
                break
            delay = self.backoff.next_delay()
            self.reconnects[reconnect_cause(reason)] += 1
            log.warning("deribit reconnecting", reason=reason, delay_s=round(delay, 3))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def stop(self) -> None:
        self._stopping.set()
        ws = self._ws
        if ws is not None:
            await ws.close()

    async def _one_connection(self) -> str:
        try:
            async with connect(
                self.config.url,
                max_size=self.config.max_frame_bytes,
                ping_interval=None,  # Deribit's own heartbeat keeps the session alive
                open_timeout=self.config.rpc_timeout_s,
            ) as ws:
                self._ws = ws
                self.connections += 1
                self._watchdog = Watchdog(self.config.stale_after_s)
                return await self._session(ws)
        except (OSError, InvalidHandshake, InvalidURI, TimeoutError) as exc:
            return f"connect failed: {exc}"
        finally:
            self._ws = None
            self._fail_pending(SessionEnded("connection closed"))

    async def _session(self, ws: ClientConnection) -> str:
        reader = asyncio.create_task(self._read(ws), name="deribit-reader")
        watchdog = asyncio.create_task(self._watchdog.watch(), name="deribit-watchdog")
        worker = asyncio.create_task(self._setup_then_follow(), name="deribit-session")
        tasks = {reader, watchdog, worker}
        self._rate_limited_now = False
        try:
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            if self._rate_limited_now:  # Deribit closes the session right after a 10028
                self.rate_limited += 1
                self.backoff.penalise(self.config.rate_limit_penalty)
                return "rate limited (10028 too_many_requests)"
            for task in (worker, reader, watchdog):
                if task in done and task.exception() is not None:
                    return describe_disconnect(task.exception())
            return "connection closed"
        finally:
            for task in tasks:
                await cancel_and_wait(task)

    # ------------------------------------------------------------ reading

    async def _read(self, ws: ClientConnection) -> None:
        while True:
            raw = await ws.recv(decode=False)
            recv_ns = self.stage.clock_ns()
            self._watchdog.touch()
            doc, error = decode_json(raw)
            request = None
            if isinstance(doc, dict):
                msg_id = doc.get("id")
                pending = self._pending.pop(msg_id, None) if isinstance(msg_id, int) else None
                error_code = (doc.get("error") or {}).get("code") if "error" in doc else None
                if error_code == TOO_MANY_REQUESTS:
                    self._rate_limited_now = True
                if pending is not None:
                    request = pending[0]
                    if not pending[1].done():
                        pending[1].set_result(doc)
                elif doc.get("method") == "heartbeat":
                    if (doc.get("params") or {}).get("type") == "test_request":
                        await self._send(
                            {"method": "public/test", "params": {}}, expect_reply=False
                        )
                elif doc.get("method") == "subscription":
                    self._touch_instrument(doc)
            routed = await self.stage.on_message(raw, doc, recv_ns, request, decode_error=error)
            for item in routed:
                if isinstance(item.record, InstrumentState):
                    self._followups.put_nowait(item.record)

    def _touch_instrument(self, doc: dict[str, Any]) -> None:
        channel = (doc.get("params") or {}).get("channel")
        if isinstance(channel, str) and channel.startswith("ticker."):
            self._watchdog.touch(channel)

    # ------------------------------------------------------------ requests

    async def _send(
        self, message: dict[str, Any], expect_reply: bool = True
    ) -> dict[str, Any] | None:
        ws = self._ws
        if ws is None:
            raise SessionEnded("not connected")
        msg_id = next(self._ids)
        request = {"method": message["method"], "params": message.get("params", {})}
        future: asyncio.Future[Any] | None = None
        if expect_reply:
            future = asyncio.get_running_loop().create_future()
            self._pending[msg_id] = (request, future)
        payload = orjson.dumps({"jsonrpc": "2.0", "id": msg_id, **request})
        async with self._send_lock:
            await ws.send(payload.decode())
        if future is None:
            return None
        try:
            doc = await asyncio.wait_for(future, self.config.rpc_timeout_s)
        except TimeoutError:
            self._pending.pop(msg_id, None)
            raise SessionEnded(
                f"no reply to {request['method']} in {self.config.rpc_timeout_s} s"
            ) from None
        if "error" in doc:
            raise rpc_error(doc, request["method"])
        return doc

    async def call(self, method: str, **params: Any) -> Any:
        """One JSON-RPC call on the current connection; returns ``result``."""
        doc = await self._send({"method": method, "params": params})
        assert doc is not None
        return doc.get("result")

    def _fail_pending(self, exc: Exception) -> None:
        for _, future in self._pending.values():
            if not future.done():
                future.set_exception(exc)
                future.exception()  # mark retrieved: nobody may be waiting any more
        self._pending.clear()

    # ------------------------------------------------------------ session work

    def channels_for(self, currency: str, instruments: list[str]) -> list[str]:
        interval = self.config.interval
        index = f"{currency.lower()}_usd"
        return [
            *(f"ticker.{name}.{interval}" for name in instruments),
            f"deribit_price_index.{index}",
            f"deribit_volatility_index.{index}",
            f"ticker.{currency}-PERPETUAL.{interval}",
            f"trades.option.{currency}.{interval}",
            f"instrument.state.option.{currency}",
        ]

    async def _setup_then_follow(self) -> None:
        cfg = self.config
        await self.call("public/set_heartbeat", interval=cfg.heartbeat_interval_s)
        wanted: set[str] = set()
        for currency in cfg.currencies:
            listed = await self.call(
                "public/get_instruments", currency=currency, kind="option", expired=False
            )
            names = [e["instrument_name"] for e in listed or () if isinstance(e, dict)]
            await self.call("public/get_book_summary_by_currency", currency=currency, kind="option")
            wanted.update(self.channels_for(currency, names))
        # Re-subscribe everything known before (listed mid-session) plus what is listed now;
        # drop tickers of instruments that are no longer listed.
        listed_now = {c for c in wanted if c.startswith("ticker.")}
        stale_tickers = {
            c
            for c in self.subscriptions
            if c.startswith("ticker.") and "PERPETUAL" not in c and c not in listed_now
        }
        self.subscriptions = (self.subscriptions - stale_tickers) | wanted
        await self._subscribe(sorted(self.subscriptions))
        self.sessions_seeded += 1
        self.backoff.reset()
        log.info("deribit session ready", channels=len(self.subscriptions))
        await self._follow_listings()

    async def _subscribe(self, channels: list[str]) -> None:
        chunk = self.config.subscribe_chunk
        gap = 1.0 / self.config.subscribe_per_s
        for start in range(0, len(channels), chunk):
            if start:
                await asyncio.sleep(gap)
            acked = await self.call("public/subscribe", channels=channels[start : start + chunk])
            missing = set(channels[start : start + chunk]) - set(acked or ())
            if missing:
                log.warning("deribit refused channels", channels=sorted(missing)[:10])

    async def _follow_listings(self) -> None:
        """Subscribe newly listed options; unsubscribe settled ones."""
        while True:
            state = await self._followups.get()
            channel = f"ticker.{state.instrument}.{self.config.interval}"
            if state.state in ("created", "started") and is_option_name(state.instrument):
                if channel not in self.subscriptions:
                    entry = await self.call(
                        "public/get_instrument", instrument_name=state.instrument
                    )
                    if isinstance(entry, dict):
                        self.stage.normaliser.set_instruments([entry])  # type: ignore[attr-defined]
                    self.subscriptions.add(channel)
                    await self.call("public/subscribe", channels=[channel])
            elif state.ended and channel in self.subscriptions:
                self.subscriptions.discard(channel)
                self._watchdog.forget(channel)
                await self.call("public/unsubscribe", channels=[channel])

    def stale_instruments(self) -> list[str]:
        """Ticker channels that delivered before but not within instrument_stale_after_s."""
        return self._watchdog.stale_keys(self.config.instrument_stale_after_s)

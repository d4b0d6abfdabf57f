"""Local fake Binance USD-M, Bybit v5 and OKX v5 servers in the venues' exact wire shapes.

Each fake is a WebSocket server (Binance also has an aiohttp REST server) with switches:
``silent`` (stop pushing and answering: a dead feed), :meth:`FakeVenue.drop` (cut every
connection without a close handshake), :meth:`FakeVenue.push` of any raw frame (a
malformed one too), and ``tick_every_s`` (push the current state of every subscription on
a timer, like a live feed). Message builders are module functions, used by the tests too.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from typing import Any
from urllib.parse import parse_qs, urlsplit

import orjson
from aiohttp import web
from websockets.asyncio.server import Server, ServerConnection, serve

from tests.fakes.clock import T0_MS, venue_clock  # noqa: F401 - re-exported

H_MS = 3_600_000
NEXT_FUNDING_MS = 1_710_028_800_000  # 2024-03-10T00:00:00Z


# ---------------------------------------------------------------------------- Binance


def binance_mark_price(
    symbol: str,
    rate: str,
    next_funding_ms: int = NEXT_FUNDING_MS,
    event_ms: int = T0_MS,
    mark: str = "65010.12000000",
    index: str = "65001.50000000",
) -> dict[str, Any]:
    """A USD-M ``markPriceUpdate`` event (numbers are strings, times JSON integers)."""
    return {
        "e": "markPriceUpdate",
        "E": event_ms,
        "s": symbol,
        "p": mark,
        "P": "64998.71234000",
        "i": index,
        "r": rate,
        "T": next_funding_ms,
    }


def binance_combined(event: dict[str, Any] | list[dict[str, Any]], stream: str = "") -> bytes:
    """The ``/stream`` envelope around an event."""
    if not stream and isinstance(event, dict):
        stream = f"{event['s'].lower()}@markPrice@1s"
    elif not stream:
        stream = "!markPrice@arr"
    return orjson.dumps({"stream": stream, "data": event})


def binance_premium_index(
    symbol: str,
    rate: str,
    next_funding_ms: int = NEXT_FUNDING_MS,
    time_ms: int = T0_MS,
    mark: str = "65010.12000000",
    index: str = "65001.50000000",
) -> dict[str, Any]:
    """A ``GET /fapi/v1/premiumIndex?symbol=…`` response."""
    return {
        "symbol": symbol,
        "markPrice": mark,
        "indexPrice": index,
        "estimatedSettlePrice": "64998.71234000",
        "lastFundingRate": rate,
        "interestRate": "0.00010000",
        "nextFundingTime": next_funding_ms,
        "time": time_ms,
    }


def binance_funding_info(symbol: str, hours: int) -> dict[str, Any]:
    """One ``GET /fapi/v1/fundingInfo`` element."""
    return {
        "symbol": symbol,
        "adjustedFundingRateCap": "0.02000000",
        "adjustedFundingRateFloor": "-0.02000000",
        "fundingIntervalHours": hours,
        "disclaimer": False,
    }


# ---------------------------------------------------------------------------- Bybit


def bybit_ticker(
    symbol: str,
    rate: str,
    next_funding_ms: int = NEXT_FUNDING_MS,
    interval_hour: str | None = "8",
    mark: str = "65010.10",
    index: str = "65001.55",
    oi_value: str = "5012345678.91",
) -> dict[str, Any]:
    """A full linear ``tickers.{symbol}`` snapshot ``data`` (every value a string)."""
    data = {
        "symbol": symbol,
        "tickDirection": "PlusTick",
        "price24hPcnt": "0.012345",
        "lastPrice": "65010.00",
        "prevPrice24h": "64220.50",
        "highPrice24h": "65500.00",
        "lowPrice24h": "63900.00",
        "prevPrice1h": "64980.00",
        "markPrice": mark,
        "indexPrice": index,
        "openInterest": "77100.123",
        "openInterestValue": oi_value,
        "turnover24h": "3012345678.1234",
        "volume24h": "46512.3450",
        "fundingIntervalHour": interval_hour,
        "fundingCap": "0.005",
        "nextFundingTime": str(next_funding_ms),
        "fundingRate": rate,
        "bid1Price": "65010.00",
        "bid1Size": "12.345",
        "ask1Price": "65010.10",
        "ask1Size": "3.210",
        "preOpenPrice": "",
        "preQty": "",
        "curPreListingPhase": "",
    }
    if interval_hour is None:  # the shape before Bybit added the interval fields
        del data["fundingIntervalHour"], data["fundingCap"]
    return data


_cs = itertools.count(24_987_956_059)


def bybit_message(symbol: str, kind: str, data: dict[str, Any], ts_ms: int) -> bytes:
    """A ``tickers.{symbol}`` push: ``snapshot`` (full data) or ``delta`` (changed fields)."""
    return orjson.dumps(
        {"topic": f"tickers.{symbol}", "type": kind, "data": data, "cs": next(_cs), "ts": ts_ms}
    )


def bybit_op_reply(op: str, success: bool, ret_msg: str, req_id: str = "") -> bytes:
    return orjson.dumps(
        {
            "success": success,
            "ret_msg": ret_msg,
            "conn_id": "2324d924-aa4d-45b0-a858-7b8be29ab52b",
            "req_id": req_id,
            "op": op,
        }
    )


# ---------------------------------------------------------------------------- OKX


def okx_funding(
    inst_id: str,
    rate: str,
    funding_ms: int = NEXT_FUNDING_MS,
    next_ms: int | None = NEXT_FUNDING_MS + 8 * H_MS,
    ts_ms: int | None = T0_MS,
) -> dict[str, Any]:
    """One ``funding-rate`` data element (current field set; ``None`` drops a field)."""
    entry = {
        "formulaType": "withRate",
        "fundingRate": rate,
        "fundingTime": str(funding_ms),
        "impactValue": "",
        "instId": inst_id,
        "instType": "SWAP",
        "interestRate": "0.0001",
        "maxFundingRate": "0.0075",
        "method": "current_period",
        "minFundingRate": "-0.0075",
        "nextFundingRate": "",
        "nextFundingTime": str(next_ms),
        "premium": "0.0001233824646391",
        "settFundingRate": "0.0000950000000000",
        "settState": "settled",
        "ts": str(ts_ms),
    }
    if next_ms is None:
        del entry["nextFundingTime"]
    if ts_ms is None:
        del entry["ts"]
    return entry


def okx_push(*entries: dict[str, Any]) -> bytes:
    return orjson.dumps(
        {"arg": {"channel": "funding-rate", "instId": entries[0]["instId"]}, "data": list(entries)}
    )


# ---------------------------------------------------------------------------- servers


class FakeVenue:
    """A WebSocket server that records what clients send; subclasses speak a venue."""

    def __init__(self, tick_every_s: float | None = None) -> None:
        self.tick_every_s = tick_every_s
        self.connections = 0
        self.paths: list[str] = []  # request path of each connection
        self.received: list[tuple[int, str]] = []  # (connection number, text frame)
        self.subscribed: set[str] = set()  # on the latest connection
        self.sent: list[bytes] = []  # frames pushed with push()
        self.silent = False  # stop pushing and answering on every connection
        self._conns: set[ServerConnection] = set()
        self._silenced: set[ServerConnection] = set()  # connections that went quiet
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}{self.ws_path}"

    ws_path = ""

    async def start(self) -> FakeVenue:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def frames(self, connection: int | None = None) -> list[str]:
        """Text frames received (on one connection, numbered from 1, or all)."""
        return [f for n, f in self.received if connection is None or n == connection]

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        number = self.connections
        self.paths.append(ws.request.path if ws.request else "")
        self.subscribed = set()
        self._conns.add(ws)
        ticker = asyncio.create_task(self._ticks(ws)) if self.tick_every_s else None
        try:
            await self.on_connect(ws)
            async for message in ws:
                text = message if isinstance(message, str) else message.decode()
                self.received.append((number, text))
                if not self._quiet(ws):
                    await self.on_frame(ws, text)
        except Exception:
            pass
        finally:
            if ticker is not None:
                ticker.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await ticker
            self._conns.discard(ws)
            self._silenced.discard(ws)

    async def _ticks(self, ws: ServerConnection) -> None:
        assert self.tick_every_s is not None
        while True:
            await asyncio.sleep(self.tick_every_s)
            if not self._quiet(ws):
                for frame in self.tick_frames():
                    await ws.send(frame.decode())

    def _quiet(self, ws: ServerConnection) -> bool:
        return self.silent or ws in self._silenced

    def silence_current(self) -> None:
        """The open connections go quiet (a dead feed on a live socket); new ones work."""
        self._silenced.update(self._conns)

    async def on_connect(self, ws: ServerConnection) -> None:
        """Called when a client connects (before its first frame)."""

    async def on_frame(self, ws: ServerConnection, text: str) -> None:
        """Answer one client frame."""

    def tick_frames(self) -> list[bytes]:
        """What a live feed pushes every tick for the current subscriptions."""
        return []

    async def push(self, frame: bytes | str) -> None:
        """Send a raw text frame to every connected client that is not quiet."""
        raw = frame if isinstance(frame, bytes) else frame.encode()
        self.sent.append(raw)
        for ws in [ws for ws in self._conns if not self._quiet(ws)]:
            with contextlib.suppress(Exception):
                await ws.send(raw.decode("utf-8", "replace"))

    async def drop(self) -> None:
        """Cut every connection without a close handshake."""
        for ws in list(self._conns):
            ws.transport.abort()
        await asyncio.sleep(0)


class FakeBinance(FakeVenue):
    """``/stream?streams=…`` combined mark-price streams plus the REST endpoints."""

    ws_path = "/stream"

    def __init__(self, rates: dict[str, str], tick_every_s: float | None = None) -> None:
        super().__init__(tick_every_s)
        self.rates = dict(rates)  # symbol → current funding rate (string)
        self.intervals: dict[str, int] = {}  # fundingInfo: adjusted symbols only
        self.rest_requests: list[tuple[str, dict[str, str]]] = []
        self.rest_status: int | None = None  # force this HTTP status (429, 500 …)
        self.event_ms = T0_MS
        self._runner: web.AppRunner | None = None
        self._rest_port = 0

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self._rest_port}"

    async def start(self) -> FakeBinance:
        await super().start()
        app = web.Application()
        app.router.add_get("/fapi/v1/fundingInfo", self._funding_info)
        app.router.add_get("/fapi/v1/premiumIndex", self._premium_index)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self._rest_port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        await super().stop()
        if self._runner is not None:
            await self._runner.cleanup()

    def _rest_error(self, request: web.Request) -> web.Response | None:
        self.rest_requests.append((request.path, dict(request.query)))
        if self.rest_status is None:
            return None
        body = {"code": -1003, "msg": "Too many requests; current limit is 2400 per minute."}
        return web.json_response(body, status=self.rest_status)

    async def _funding_info(self, request: web.Request) -> web.Response:
        error = self._rest_error(request)
        if error is not None:
            return error
        return web.json_response([binance_funding_info(s, h) for s, h in self.intervals.items()])

    async def _premium_index(self, request: web.Request) -> web.Response:
        error = self._rest_error(request)
        if error is not None:
            return error
        symbol = request.query.get("symbol", "")
        if symbol not in self.rates:
            return web.json_response({"code": -1121, "msg": "Invalid symbol."}, status=400)
        return web.json_response(
            binance_premium_index(symbol, self.rates[symbol], time_ms=self.event_ms)
        )

    async def on_connect(self, ws: ServerConnection) -> None:
        query = parse_qs(urlsplit(ws.request.path if ws.request else "").query)
        self.subscribed = {s for streams in query.get("streams", []) for s in streams.split("/")}

    async def on_frame(self, ws: ServerConnection, text: str) -> None:
        doc = orjson.loads(text)  # {"method": "SUBSCRIBE", "params": [...], "id": 1}
        if doc.get("method") == "SUBSCRIBE":
            self.subscribed.update(doc.get("params") or [])
            await ws.send(orjson.dumps({"result": None, "id": doc.get("id")}).decode())
        else:
            error = {"code": 2, "msg": f"Invalid request: unknown variant `{doc.get('method')}`"}
            await ws.send(orjson.dumps({"error": error, "id": doc.get("id")}).decode())

    def tick_frames(self) -> list[bytes]:
        self.event_ms += 1000
        return [
            binance_combined(binance_mark_price(s, r, event_ms=self.event_ms))
            for s, r in self.rates.items()
            if f"{s.lower()}@markPrice@1s" in self.subscribed
        ]

    async def mark_price(self, symbol: str, rate: str, **fields: Any) -> bytes:
        self.rates[symbol] = rate
        raw = binance_combined(binance_mark_price(symbol, rate, **fields))
        await self.push(raw)
        return raw


class FakeBybit(FakeVenue):
    """``/v5/public/linear``: subscribe → ack then snapshot; ``{"op":"ping"}`` → pong."""

    ws_path = "/v5/public/linear"

    def __init__(self, tickers: dict[str, dict[str, Any]], tick_every_s: float | None = None):
        super().__init__(tick_every_s)
        self.tickers = {s: dict(d) for s, d in tickers.items()}  # symbol → full ticker data
        self.ts_ms = T0_MS
        self.answer_pings = True

    async def on_frame(self, ws: ServerConnection, text: str) -> None:
        doc = orjson.loads(text)
        op, req_id = doc.get("op"), doc.get("req_id", "")
        if op == "ping":
            if self.answer_pings:
                await ws.send(bybit_op_reply("ping", True, "pong", req_id).decode())
        elif op == "subscribe":
            topics = doc.get("args") or []
            unknown = [t for t in topics if t.removeprefix("tickers.") not in self.tickers]
            if unknown:
                reply = bybit_op_reply(
                    "subscribe", False, f"error:Invalid symbol :{unknown}", req_id
                )
                await ws.send(reply.decode())
                topics = [t for t in topics if t not in unknown]
            else:
                await ws.send(bybit_op_reply("subscribe", True, "", req_id).decode())
            for topic in topics:
                self.subscribed.add(topic)
                symbol = topic.removeprefix("tickers.")
                self.ts_ms += 1
                await ws.send(
                    bybit_message(symbol, "snapshot", self.tickers[symbol], self.ts_ms).decode()
                )

    def tick_frames(self) -> list[bytes]:
        self.ts_ms += 100
        return [
            bybit_message(s, "delta", {"symbol": s, "markPrice": d["markPrice"]}, self.ts_ms)
            for s, d in self.tickers.items()
            if f"tickers.{s}" in self.subscribed
        ]

    async def delta(self, symbol: str, ts_ms: int | None = None, **changed: str) -> bytes:
        """Push a delta with ``changed`` fields (and apply them to the server's ticker)."""
        self.tickers[symbol].update(changed)
        self.ts_ms = ts_ms if ts_ms is not None else self.ts_ms + 100
        raw = bybit_message(symbol, "delta", {"symbol": symbol, **changed}, self.ts_ms)
        await self.push(raw)
        return raw


class FakeOkx(FakeVenue):
    """``/ws/v5/public``: ``funding-rate`` subscribe → ack then a push; "ping" → "pong"."""

    ws_path = "/ws/v5/public"

    def __init__(self, funding: dict[str, dict[str, Any]], tick_every_s: float | None = None):
        super().__init__(tick_every_s)
        self.funding = {i: dict(e) for i, e in funding.items()}  # instId → data element
        self.answer_pings = True

    async def on_frame(self, ws: ServerConnection, text: str) -> None:
        if text == "ping":
            if self.answer_pings:
                await ws.send("pong")
            return
        doc = orjson.loads(text)
        if doc.get("op") != "subscribe":
            return
        for arg in doc.get("args") or []:
            inst_id = arg.get("instId")
            if arg.get("channel") != "funding-rate" or inst_id not in self.funding:
                msg = (
                    f"Wrong URL or channel:{arg.get('channel')},instId:{inst_id} doesn't exist. "
                    "Please use the correct URL, channel and parameters referring to API document."
                )
                reply = {"event": "error", "code": "60018", "msg": msg, "connId": "a4d3ae55"}
                await ws.send(orjson.dumps(reply).decode())
                continue
            self.subscribed.add(inst_id)
            ack = {"event": "subscribe", "arg": arg, "connId": "a4d3ae55"}
            await ws.send(orjson.dumps(ack).decode())
            await ws.send(okx_push(self.funding[inst_id]).decode())

    def tick_frames(self) -> list[bytes]:
        return [okx_push(self.funding[i]) for i in sorted(self.subscribed)]

    async def publish(self, entry: dict[str, Any]) -> bytes:
        """Push a funding-rate element (and make it the current one)."""
        self.funding[entry["instId"]] = dict(entry)
        raw = okx_push(entry)
        await self.push(raw)
        return raw

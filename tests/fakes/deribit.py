"""A local fake Deribit WebSocket server speaking the JSON-RPC 2.0 wire format, with switches."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import orjson
from websockets.asyncio.server import Server, ServerConnection, serve

from tests.fakes.clock import T0_MS, venue_clock  # noqa: F401 - re-exported


def instrument(name: str, strike: float, right: str, expiry_ms: int, iid: int) -> dict[str, Any]:
    """A ``public/get_instruments`` option entry in Deribit's shape."""
    return {
        "tick_size": 0.0001,
        "taker_commission": 0.0003,
        "strike": strike,
        "settlement_period": "week",
        "settlement_currency": "BTC",
        "quote_currency": "BTC",
        "price_index": "btc_usd",
        "option_type": "call" if right == "C" else "put",
        "min_trade_amount": 0.1,
        "maker_commission": 0.0003,
        "kind": "option",
        "is_active": True,
        "instrument_name": name,
        "instrument_id": iid,
        "expiration_timestamp": expiry_ms,
        "creation_timestamp": T0_MS - 86_400_000,
        "counter_currency": "USD",
        "contract_size": 1.0,
        "base_currency": "BTC",
    }


def summary_row(
    name: str, forward: float, index: float, oi: float, mark_iv: float
) -> dict[str, Any]:
    """A ``public/get_book_summary_by_currency`` option row in Deribit's shape."""
    return {
        "volume": 12.5,
        "underlying_price": forward,
        "underlying_index": "SYN." + name.rsplit("-", 2)[0],
        "quote_currency": "BTC",
        "price_change": -1.2,
        "open_interest": oi,
        "mid_price": 0.0301,
        "mark_price": 0.03,
        "mark_iv": mark_iv,
        "low": 0.028,
        "last": 0.031,
        "interest_rate": 0.0,
        "instrument_name": name,
        "high": 0.033,
        "estimated_delivery_price": index,
        "creation_timestamp": T0_MS,
        "bid_price": 0.0295,
        "base_currency": "BTC",
        "ask_price": 0.0307,
    }


def option_ticker(
    name: str, ts_ms: int, forward: float, index: float, mark_iv: float, oi: float, gamma: float
) -> dict[str, Any]:
    """An option ``ticker.{name}.100ms`` data payload in Deribit's shape."""
    return {
        "estimated_delivery_price": index,
        "best_bid_amount": 3.1,
        "best_ask_amount": 2.0,
        "bid_iv": mark_iv - 1.0,
        "ask_iv": mark_iv + 1.0,
        "underlying_index": "SYN.BTC-15MAR24",
        "underlying_price": forward,
        "mark_iv": mark_iv,
        "best_bid_price": 0.029,
        "best_ask_price": 0.031,
        "interest_rate": 0.0,
        "mark_price": 0.03,
        "open_interest": oi,
        "max_price": 0.06,
        "min_price": 0.01,
        "settlement_price": 0.028,
        "last_price": 0.03,
        "instrument_name": name,
        "index_price": index,
        "greeks": {"rho": 1.2, "theta": -40.1, "vega": 20.5, "gamma": gamma, "delta": 0.51},
        "stats": {
            "volume_usd": 1000.0,
            "volume": 1.0,
            "price_change": 2.0,
            "low": 0.02,
            "high": 0.04,
        },
        "state": "open",
        "timestamp": ts_ms,
    }


def rpc_response(msg_id: int, result: Any) -> bytes:
    """A JSON-RPC 2.0 success response in Deribit's shape."""
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "id": msg_id,
            "result": result,
            "usIn": 1,
            "usOut": 2,
            "usDiff": 1,
            "testnet": False,
        }
    )


def envelope(channel: str, data: Any) -> bytes:
    return orjson.dumps(
        {"jsonrpc": "2.0", "method": "subscription", "params": {"channel": channel, "data": data}}
    )


class FakeDeribit:
    """Answers the RPCs the client makes and pushes whatever a test asks it to."""

    def __init__(
        self,
        instruments: list[dict[str, Any]],
        summary: list[dict[str, Any]],
        heartbeat_every_s: float = 0.2,
    ) -> None:
        self.heartbeat_every_s = heartbeat_every_s  # Deribit heartbeats after set_heartbeat
        self.instruments = {e["instrument_name"]: e for e in instruments}
        self.summary = {r["instrument_name"]: r for r in summary}
        self.requests: list[dict[str, Any]] = []  # every request received, in order
        self.connections = 0
        self.subscribed: set[str] = set()  # on the current connection
        self.sent: list[bytes] = []  # every frame pushed by the server, in order
        self.reject_next_subscribe = False  # reply 10028 too_many_requests, then close
        self.silent = False  # stop answering and pushing (simulates a dead feed)
        self._conns: set[ServerConnection] = set()
        self._server: Server | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        port = next(iter(self._server.sockets)).getsockname()[1]
        return f"ws://127.0.0.1:{port}"

    async def start(self) -> FakeDeribit:
        self._server = await serve(self._handle, "127.0.0.1", 0)
        return self

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def methods(self) -> list[str]:
        return [r["method"] for r in self.requests]

    async def _reply(self, ws: ServerConnection, msg_id: int, result: Any) -> None:
        await ws.send(rpc_response(msg_id, result).decode())

    async def _heartbeats(self, ws: ServerConnection) -> None:
        while True:
            await asyncio.sleep(self.heartbeat_every_s)
            if not self.silent:
                await ws.send(
                    '{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"heartbeat"}}'
                )

    async def _handle(self, ws: ServerConnection) -> None:
        self.connections += 1
        self.subscribed = set()
        self._conns.add(ws)
        beats = asyncio.create_task(self._heartbeats(ws))
        try:
            async for message in ws:
                doc = orjson.loads(message)
                self.requests.append(doc)
                if self.silent:
                    continue
                method, params, msg_id = doc["method"], doc.get("params", {}), doc.get("id")
                if method in {"public/set_heartbeat", "public/test"}:
                    await self._reply(
                        ws, msg_id, "ok" if method.endswith("heartbeat") else {"version": "1.2.26"}
                    )
                elif method == "public/get_instruments":
                    await self._reply(ws, msg_id, list(self.instruments.values()))
                elif method == "public/get_instrument":
                    await self._reply(ws, msg_id, self.instruments[params["instrument_name"]])
                elif method == "public/get_book_summary_by_currency":
                    await self._reply(ws, msg_id, list(self.summary.values()))
                elif method == "public/subscribe":
                    if self.reject_next_subscribe:
                        self.reject_next_subscribe = False
                        await ws.send(
                            orjson.dumps(
                                {
                                    "jsonrpc": "2.0",
                                    "id": msg_id,
                                    "error": {
                                        "code": 10028,
                                        "message": "too_many_requests",
                                        "data": None,
                                    },
                                }
                            ).decode()
                        )
                        await ws.close()
                        return
                    self.subscribed.update(params["channels"])
                    await self._reply(ws, msg_id, params["channels"])
                elif method == "public/unsubscribe":
                    self.subscribed.difference_update(params["channels"])
                    await self._reply(ws, msg_id, params["channels"])
        except Exception:
            pass
        finally:
            beats.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await beats
            self._conns.discard(ws)

    async def push(self, frame: bytes | str) -> None:
        """Send a raw text frame to every connected client."""
        raw = frame if isinstance(frame, bytes) else frame.encode()
        self.sent.append(raw)
        for ws in list(self._conns):
            with contextlib.suppress(Exception):
                await ws.send(raw.decode("utf-8", "replace"))

    async def notify(self, channel: str, data: Any) -> bytes:
        raw = envelope(channel, data)
        await self.push(raw)
        return raw

    async def test_request(self) -> None:
        await self.push(b'{"jsonrpc":"2.0","method":"heartbeat","params":{"type":"test_request"}}')

    async def drop(self) -> None:
        """Cut every connection without a close handshake."""
        for ws in list(self._conns):
            ws.transport.abort()
        await asyncio.sleep(0)

    async def list_instrument(self, entry: dict[str, Any], ts_ms: int) -> None:
        self.instruments[entry["instrument_name"]] = entry
        await self.notify(
            "instrument.state.option.BTC",
            {"timestamp": ts_ms, "state": "created", "instrument_name": entry["instrument_name"]},
        )

    async def expire(self, name: str, ts_ms: int) -> None:
        self.instruments.pop(name, None)
        self.summary.pop(name, None)
        await self.notify(
            "instrument.state.option.BTC",
            {"timestamp": ts_ms, "state": "settled", "instrument_name": name},
        )

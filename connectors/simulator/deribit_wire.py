"""The session's wire output: receive times, RPC responses and the subscription preamble.

:class:`SessionWire` is mixed into the session (``deribit_session._Session``): it stamps
every message with a receive time (send time plus a drawn latency, strictly increasing),
counts it, and writes the RPC responses a client records before the notifications start
(``public/get_instruments``, ``public/get_book_summary_by_currency``,
``public/set_heartbeat``, ``public/subscribe``).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import orjson

from connectors.common.capture import CapturedMessage
from connectors.simulator.deribit_quotes import Draws, MarketQuotes, dec
from connectors.simulator.deribit_types import HEARTBEAT_INTERVAL_S, VENUE, Totals
from engine.core.pricing import black76_quote
from schemas.time import MS_PER_YEAR, NS_PER_MS


class SessionWire(MarketQuotes):
    """Receive times, counts, RPC responses and the preamble (mixed into the session)."""

    rng_lat: np.random.Generator
    latency: Draws
    last_recv_ns: int
    rpc_id: int
    totals: Totals

    def _latency_ns(self) -> int:
        return 1_500_000 + int(self.latency())

    def _emit(
        self, kind: str, raw: bytes, send_ns: int, request: dict[str, Any] | None = None
    ) -> CapturedMessage:
        recv_ns = max(send_ns + self._latency_ns(), self.last_recv_ns + 1)
        self.last_recv_ns = recv_ns
        totals = self.totals
        if totals.messages == 0:
            totals.first_recv_ns = recv_ns
        totals.messages += 1
        totals.counts[kind] += 1
        totals.last_recv_ns = recv_ns
        return CapturedMessage(recv_ns, VENUE, raw, request)

    def _rpc_times(self, send_ns: int, work_us: int) -> tuple[int, int]:
        """(usIn, usOut) of a request the client sent at ``send_ns``: µs since the epoch."""
        us_in = send_ns // 1000 + int(self.rng_lat.integers(800, 2_500))
        return us_in, us_in + work_us

    def _rpc(
        self,
        kind: str,
        method: str,
        params: dict[str, Any],
        result: Any,
        times: tuple[int, int],
    ) -> CapturedMessage:
        """An RPC response (with its request on the capture line)."""
        self.rpc_id += 1
        us_in, us_out = times
        raw = orjson.dumps(
            {
                "jsonrpc": "2.0",
                "id": self.rpc_id,
                "result": result,
                "usIn": us_in,
                "usOut": us_out,
                "usDiff": us_out - us_in,
                "testnet": False,
            }
        )
        return self._emit(kind, raw, us_out * 1000, {"method": method, "params": params})

    # ----------------------------------------------------------------- RPC preamble

    def _preamble(self) -> Iterator[CapturedMessage]:
        cfg, ch = self.config, self.chain
        times = self._rpc_times(cfg.start_ns, 3_000 + 2 * ch.n)
        params = {"currency": self.cur, "kind": "option", "expired": False}
        msg = self._rpc(
            "get_instruments", "public/get_instruments", params, self._instruments(), times
        )
        yield msg
        times = self._rpc_times(msg.recv_ns + 1_000_000, 2_000 + 3 * ch.n)
        self.summary_ms = times[1] // 1000  # creation_timestamp of the summary rows
        params = {"currency": self.cur, "kind": "option"}
        summary = self._book_summary(self.summary_ms)
        msg = self._rpc(
            "get_book_summary_by_currency",
            "public/get_book_summary_by_currency",
            params,
            summary,
            times,
        )
        yield msg
        times = self._rpc_times(msg.recv_ns + 1_000_000, int(self.rng_lat.integers(20, 80)))
        params = {"interval": HEARTBEAT_INTERVAL_S}
        msg = self._rpc("set_heartbeat", "public/set_heartbeat", params, "ok", times)
        yield msg
        channels = [f"ticker.{name}.100ms" for name in ch.names] + [
            f"deribit_price_index.{self.index_name}",
            f"deribit_volatility_index.{self.index_name}",
            f"ticker.{self.cur}-PERPETUAL.100ms",
            f"trades.option.{self.cur}.100ms",
            f"instrument.state.option.{self.cur}",
        ]
        times = self._rpc_times(msg.recv_ns + 1_000_000, 200 + ch.n // 4)
        msg = self._rpc("subscribe", "public/subscribe", {"channels": channels}, channels, times)
        yield msg
        self.stream_start_ms = msg.recv_ns // NS_PER_MS + 1

    def _instruments(self) -> list[dict[str, Any]]:
        ch, spec = self.chain, self.spec
        out = []
        for i, name in enumerate(ch.names):
            expiry = self.expiry_of[i]
            out.append(
                {
                    "tick_size": 0.0001,
                    "tick_size_steps": [{"above_price": 0.005, "tick_size": 0.0005}],
                    "taker_commission": 0.0003,
                    "strike": self.strike[i],
                    "settlement_period": expiry.period,
                    "settlement_currency": self.cur,
                    "quote_currency": self.cur,
                    "price_index": self.index_name,
                    "option_type": "call" if self.is_call[i] else "put",
                    "min_trade_amount": spec.min_trade_amount,
                    "maker_commission": 0.0003,
                    "kind": "option",
                    "is_active": True,
                    "instrument_name": name,
                    "instrument_id": self.instrument_id0 + i,
                    "expiration_timestamp": expiry.expiry_ms,
                    "creation_timestamp": expiry.listed_ms,
                    "counter_currency": "USD",
                    "contract_size": 1,
                    "block_trade_tick_size": 0.0001,
                    "block_trade_min_trade_amount": 25,
                    "block_trade_commission": 0.00015,
                    "base_currency": self.cur,
                }
            )
        return out

    def _book_summary(self, ts_ms: int) -> list[dict[str, Any]]:
        ch = self.chain
        index = dec(self.spot, 100.0)
        rows = []
        for i, name in enumerate(ch.names):
            expiry = self.expiry_of[i]
            tau = (expiry.expiry_ms - ts_ms) / MS_PER_YEAR
            forward = self._forward(index, tau)
            iv = self._iv(i)
            quote = black76_quote(forward, self.strike[i], tau, iv / 100.0, self.is_call[i])
            mark = quote.price / index
            bid, ask = self._bid_ask(mark)
            last = self.last_price[i]
            traded = last is not None
            rows.append(
                {
                    "volume_usd": float(self.volume_usd[i]),
                    "volume": self.volume[i],
                    "underlying_price": forward,
                    "underlying_index": expiry.underlying_index,
                    "quote_currency": self.cur,
                    "price_change": self._price_change(i),
                    "open_interest": self.oi[i],
                    "mid_price": round((bid + ask) / 2, 5) if bid else None,
                    "mark_price": round(mark, 8),
                    "mark_iv": iv,
                    "low": self.low[i] if traded else None,
                    "last": last,
                    "interest_rate": 0.0,
                    "instrument_name": name,
                    "high": self.high[i] if traded else None,
                    "estimated_delivery_price": index,
                    "creation_timestamp": ts_ms,
                    "bid_price": bid if bid else None,
                    "base_currency": self.cur,
                    "ask_price": ask,
                }
            )
        return rows

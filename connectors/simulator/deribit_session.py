"""A deterministic (seeded) Deribit session: capture files in Deribit's exact wire format.

``generate_session(config)`` yields :class:`connectors.common.capture.CapturedMessage` in receive
order; ``write_session(config, path)`` writes them as a capture file (DESIGN §2.5) and
returns a :class:`SessionSummary`. The same config always gives byte-identical output.

What a session holds, as a live client subscribed to one currency's options would record:

1. the RPC responses, each line carrying its request: ``public/get_instruments`` (options),
   ``public/get_book_summary_by_currency`` (options), ``public/set_heartbeat`` and
   ``public/subscribe``;
2. then, in time order, the notifications: ``ticker.{option}.100ms`` (greeks, marks, IVs,
   OI), ``deribit_price_index.{index}``, ``deribit_volatility_index.{index}`` (DVOL),
   ``ticker.{CUR}-PERPETUAL.100ms``, ``trades.option.{CUR}.100ms``, heartbeats
   (``test_request``, answered by ``public/test``) and ``instrument.state.option.{CUR}`` when
   an expiry settles during the session.

Message shapes (key names, order, nesting, number formats) follow the verbatim samples in
``shared/fixtures/protocol_samples`` (see SOURCES.md there). Units are Deribit's: option
prices in the coin per 1 coin of underlying, IVs in PERCENT, OI and amounts in coins,
greeks in USD (gamma per 1 USD of the expiry's forward per coin), times in ms.

Pricing: Black-76 on each expiry's forward ``F = index × exp(basis_rate × T)`` with r = 0,
``T = (expiration_timestamp − timestamp) / (365 days)``; greeks are computed from the
published (rounded) forward and mark_iv and rounded to 5 decimals, as Deribit does, so a
consumer that re-prices ``bsm_gamma(F, K, T, mark_iv / 100, 0, 0)`` gets the published gamma.

The index follows a random walk whose volatility the dealers' hedging damps in positive
gamma and amplifies in negative gamma: every ``feedback_interval_s`` the simulator loads the
live book into an :class:`engine.core.book.GammaBook` and reads the net GEX and levels with
:func:`engine.core.levels.compute_levels` (model ``long_calls_short_puts``). The default scenario
(``"flip_and_wall"``) adds a scripted drift: calm at first, then a sell-off through the
zero-gamma level (which the chain puts a little below spot), then on through the put wall.

Scripted funding and DVOL (``funding_path``, ``dvol_path``: piecewise-linear knots
``(seconds from the start, value)``): the perpetual's premium reverts to three times the
scripted 8-hour funding rate, so the published ``funding_8h`` follows the path with noise;
every option IV is scaled so that DVOL follows the path at the initial spot (the spot-vol
link and the slow vol wiggle stay on top). Without paths a session is unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from connectors.common.capture import CapturedMessage, CaptureWriter
from connectors.simulator.deribit_chain import Chain, atm_vol
from connectors.simulator.deribit_config import CURRENCIES, SessionConfig, path_at
from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.levels import compute_levels, strike_gex
from engine.core.pricing import black76_quote
from schemas.contracts import OptionContract, OptionRight
from schemas.time import MS_PER_YEAR, NS_PER_MS

VENUE = "deribit"
STEP_MS = 100  # simulation step: the index path is piecewise constant over 100 ms
WINDOW_STEPS = 100  # ticker arrival times are drawn 10 s of simulated time at a time
HEARTBEAT_INTERVAL_S = 30  # public/set_heartbeat interval
CROSSING_BAND = 0.0003  # the index must be 3 bp beyond a level to count as having crossed it
# Message kinds counted in SessionSummary.counts.
KINDS = (
    "get_instruments",
    "get_book_summary_by_currency",
    "set_heartbeat",
    "subscribe",
    "test",
    "heartbeat",
    "ticker_option",
    "ticker_perpetual",
    "price_index",
    "volatility_index",
    "trades",
    "instrument_state",
)


@dataclass(frozen=True, slots=True)
class LevelCrossing:
    """The index crossing a level, as the simulator's own book saw it."""

    ts_ns: int  # venue time of the first 100 ms step beyond the level, ns since the epoch
    level: str  # "zero_gamma" | "call_wall" | "put_wall"
    direction: str  # "up" | "down"
    price: float  # the level, USD
    spot: float  # the index just after the crossing, USD

    def to_dict(self) -> dict[str, Any]:
        return {
            "ts_ns": self.ts_ns,
            "level": self.level,
            "direction": self.direction,
            "price": self.price,
            "spot": self.spot,
        }


@dataclass(frozen=True, slots=True)
class SessionSummary:
    """What a generated session contains and what its index did (prices in USD)."""

    currency: str
    n_instruments: int
    expiries: tuple[str, ...]  # expiry codes, e.g. "29MAR24"
    messages: int
    counts: dict[str, int]  # messages per kind (see KINDS)
    option_trades: int  # individual trades inside the trades notifications
    first_recv_ns: int
    last_recv_ns: int
    spot_start: float
    spot_min: float
    spot_max: float
    spot_final: float
    initial_levels: dict[str, float | None]  # zero_gamma, call_wall, put_wall, net_gex
    final_levels: dict[str, float | None]
    crossings: tuple[LevelCrossing, ...]
    settled: tuple[str, ...] = ()  # instruments that settled during the session

    def to_dict(self) -> dict[str, Any]:
        return {
            "currency": self.currency,
            "n_instruments": self.n_instruments,
            "expiries": list(self.expiries),
            "messages": self.messages,
            "counts": dict(self.counts),
            "option_trades": self.option_trades,
            "first_recv_ns": self.first_recv_ns,
            "last_recv_ns": self.last_recv_ns,
            "spot_start": self.spot_start,
            "spot_min": self.spot_min,
            "spot_max": self.spot_max,
            "spot_final": self.spot_final,
            "initial_levels": dict(self.initial_levels),
            "final_levels": dict(self.final_levels),
            "crossings": [c.to_dict() for c in self.crossings],
            "settled": list(self.settled),
        }


def generate_session(config: SessionConfig) -> Iterator[CapturedMessage]:
    """The session's messages in receive order (deterministic for a given config)."""
    return _Session(config).messages()


def write_session(config: SessionConfig, path: str | Path) -> SessionSummary:
    """Write the session as a capture file (replacing ``path``) and summarise it."""
    session = _Session(config)
    target = Path(path)
    target.write_bytes(b"")  # CaptureWriter appends: start from an empty file
    with CaptureWriter(target) as writer:
        for message in session.messages():
            writer.write(message)
    return session.summary()


# --------------------------------------------------------------------------- quote helpers


def _dec(value: float, scale: float) -> float:
    """``value`` to the nearest 1/scale (scale 100 → 2 decimals), fast; prints short."""
    return round(value * scale) / scale


def _on_tick(price: float, up: bool) -> float:
    """A coin price on Deribit's option tick: 0.0001 below 0.005, 0.0005 above."""
    tick = 1 if price < 0.005 else 5  # in units of 0.0001
    x = price * 10_000.0 / tick
    units = math.ceil(x - 1e-9) if up else math.floor(x + 1e-9)
    return units * tick / 10_000.0


class _Draws:
    """Blocks of random numbers from one generator, handed out one at a time (fast)."""

    def __init__(self, rng: np.random.Generator, draw: str, *args: float) -> None:
        self._rng, self._draw, self._args = rng, draw, args
        self._block: list[float] = []
        self._next = 0

    def __call__(self) -> float:
        if self._next == len(self._block):
            self._block = getattr(self._rng, self._draw)(*self._args, 4096).tolist()
            self._next = 0
        self._next += 1
        return self._block[self._next - 1]


# --------------------------------------------------------------------------- the session


@dataclass(slots=True)
class _Event:
    send_ms: int  # venue send time, ms (ordering key)
    order: int  # tie-break between kinds at the same ms
    seq: int  # tie-break within a kind
    kind: str
    raw: bytes
    request: dict[str, Any] | None = None


_ORDER = {
    "instrument_state": 0,
    "price_index": 1,
    "ticker_perpetual": 2,
    "ticker_option": 3,
    "trades": 4,
    "volatility_index": 5,
    "heartbeat": 6,
    "test": 7,
}


@dataclass(slots=True)
class _Levels:
    zero_gamma: float | None = None
    call_wall: float | None = None
    put_wall: float | None = None
    net_gex: float = 0.0

    def as_dict(self) -> dict[str, float | None]:
        return {
            "zero_gamma": self.zero_gamma,
            "call_wall": self.call_wall,
            "put_wall": self.put_wall,
            "net_gex": self.net_gex,
        }


@dataclass(slots=True)
class _Totals:
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(KINDS, 0))
    messages: int = 0
    option_trades: int = 0
    first_recv_ns: int = 0
    last_recv_ns: int = 0


class _Session:
    def __init__(self, config: SessionConfig) -> None:
        self.config = config
        self.spec = CURRENCIES[config.currency]
        self.cur = config.currency
        self.index_name = f"{config.currency.lower()}_usd"
        streams = np.random.SeedSequence(config.seed).spawn(8)
        self.rng_chain, self.rng_path, self.rng_tick, self.rng_trade = (
            np.random.default_rng(s) for s in streams[:4]
        )
        self.rng_lat, self.rng_perp, self.rng_misc, self.rng_vol = (
            np.random.default_rng(s) for s in streams[4:]
        )
        self.chain = ch = Chain(config, self.rng_chain)
        # Per-instrument constants as Python lists: scalar access on the hot path.
        self.strike = ch.strike.tolist()
        self.is_call = ch.is_call.tolist()
        self.expiry_ms = ch.expiry_ms.tolist()
        self.expiry_of = [ch.expiries[e] for e in ch.expiry_idx.tolist()]
        self.base_iv = ch.base_iv.tolist()
        self.latency = _Draws(self.rng_lat, "exponential", 1_200_000.0)
        self.book_amount = _Draws(self.rng_tick, "integers", 1, 400)
        self.start_ms = config.start_ns // NS_PER_MS
        self.end_ms = self.start_ms + round(config.duration_s * 1000)
        self.spot0 = config.initial_spot
        self.spot = self.spot0
        self.vol_factor = 1.0  # common multiplier of every sticky-strike IV
        self.dvol_base = atm_vol(self.spec, 30 / 365) * 100.0  # DVOL at vol_factor 1
        if config.dvol_path:
            self.vol_factor = path_at(config.dvol_path, 0.0) / self.dvol_base
        self.vol_noise = 0.0
        self.last_recv_ns = 0
        self.rpc_id = 0
        self.totals = _Totals()
        self.crossings: list[LevelCrossing] = []
        self.settled: list[str] = []
        self.spot_min = self.spot_max = self.spot0
        self._init_market_state()

    # ----------------------------------------------------------------- state

    def _init_market_state(self) -> None:
        ch, rng = self.chain, self.rng_misc
        n = ch.n
        tau = ch.tau0
        forward = self.spot0 * np.exp(self.spec.basis_rate * tau)
        sd = ch.base_iv * np.sqrt(tau)
        x = np.log(ch.strike / forward) / sd
        # How often each option trades: OI-weighted, near the money, near-dated.
        self.activity = (ch.oi + 1.0) * np.exp(-0.5 * (x / 1.5) ** 2) / np.sqrt(tau + 0.02)
        traded = rng.random(n) < np.clip(0.15 + 0.8 * self.activity / self.activity.max(), 0, 1)
        start_mark = np.array(
            [
                black76_quote(f, k, t, s, c).price / self.spot0
                for f, k, t, s, c in zip(
                    forward.tolist(),
                    ch.strike.tolist(),
                    tau.tolist(),
                    ch.base_iv.tolist(),
                    ch.is_call.tolist(),
                    strict=True,
                )
            ]
        )
        drift = rng.normal(0.0, 0.12, n)
        # Yesterday's 08:00 settlement mark and 24 h statistics (coin prices, coin volumes).
        self.settlement_price = np.round(np.maximum(start_mark * np.exp(drift), 1e-8), 8).tolist()
        open_price = np.where(traded, np.maximum(start_mark * np.exp(drift * 0.8), 1e-4), 0.0)
        self.open_price = open_price.tolist()
        volume = np.round(np.where(traded, np.round(rng.lognormal(1.5, 1.2, n), 1) + 0.1, 0.0), 1)
        self.volume = volume.tolist()
        self.volume_usd = np.round(volume * start_mark * self.spot0, 1).tolist()
        last = np.maximum(start_mark * np.exp(rng.normal(0.0, 0.05, n)), 1e-4)
        self.last_price: list[float | None] = [
            (_on_tick(p, False) or 0.0001) if t else None
            for p, t in zip(last.tolist(), traded.tolist(), strict=True)
        ]
        self.high: list[float | None] = [
            max(p, _on_tick(o * 1.1, True)) if p is not None else None
            for p, o in zip(self.last_price, self.open_price, strict=True)
        ]
        self.low: list[float | None] = [
            min(p, _on_tick(o * 0.9, False)) if p is not None else None
            for p, o in zip(self.last_price, self.open_price, strict=True)
        ]
        self.last_up = [True] * n  # direction of the last price change (tick_direction)
        self.trade_seq = rng.integers(1, 5_000, n).tolist()
        self.trade_id = int(rng.integers(280_000_000, 290_000_000))
        self.instrument_id0 = int(rng.integers(300_000, 350_000))
        self.oi = ch.oi.tolist()  # open interest now, coins
        self.alive = np.ones(n, dtype=bool)
        self._trade_cdf()
        # perpetual
        self.perp_oi = float(round(self.spec.perp_oi_usd * (1 + 0.05 * rng.normal()) / 10) * 10)
        self.perp_volume = float(rng.uniform(8_000, 15_000))
        self.perp_premium = 0.0004
        if self.config.funding_path:
            self.perp_premium = 3.0 * path_at(self.config.funding_path, 0.0)
        self.perp_last = round(self.spot0 * 1.0004 * 2) / 2
        self.perp_open = round(self.spot0 * (1 + rng.normal(0, 0.015)) * 2) / 2
        high = max(self.spot0, self.perp_open) * (1 + abs(rng.normal(0, 0.01)))
        low = min(self.spot0, self.perp_open) * (1 - abs(rng.normal(0, 0.01)))
        self.perp_high, self.perp_low = round(high * 2) / 2, round(low * 2) / 2
        self.perp_settlement = round(self.spot0 * (1 + rng.normal(0, 0.004)), 2)

    def _trade_cdf(self) -> None:
        weights = np.where(self.alive, self.activity, 0.0)
        total = weights.sum()
        self.trade_cdf = np.cumsum(weights) / total if total > 0 else None

    def _iv(self, i: int) -> float:
        """Published mark_iv of option i now, PERCENT (2 decimals)."""
        return _dec(self.base_iv[i] * self.vol_factor * 100.0, 100.0)

    def _forward(self, index: float, tau: float) -> float:
        return _dec(index * math.exp(self.spec.basis_rate * tau), 100.0)

    # ----------------------------------------------------------------- output

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

    def _notification(self, channel: str, data: Any) -> bytes:
        return orjson.dumps(
            {
                "jsonrpc": "2.0",
                "method": "subscription",
                "params": {"channel": channel, "data": data},
            }
        )

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
        index = _dec(self.spot, 100.0)
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

    def _price_change(self, i: int) -> float | None:
        last, open_ = self.last_price[i], self.open_price[i]
        if last is None or open_ <= 0:
            return None
        return round((last / open_ - 1.0) * 100.0, 4)

    def _bid_ask(self, mark: float) -> tuple[float, float]:
        """Best bid / ask (coin) around a mark: 0.0 bid when it would be below one tick."""
        half = max(0.0002, 0.04 * mark)
        bid = _on_tick(mark - half, False) if mark - half >= 0.0001 else 0.0
        ask = _on_tick(mark + half, True)
        return bid, max(ask, 0.0001)

    # ----------------------------------------------------------------- feedback book

    def _contracts(self, indices: np.ndarray, ts_ms: int) -> list[OptionContract]:
        ch = self.chain
        index = _dec(self.spot, 100.0)
        ts_ns = ts_ms * NS_PER_MS
        out = []
        for i in indices.tolist():
            tau = (self.expiry_ms[i] - ts_ms) / MS_PER_YEAR
            out.append(
                OptionContract(
                    venue=VENUE,
                    underlying=self.cur,
                    instrument=ch.names[i],
                    root=self.cur,
                    expiry_ns=self.expiry_ms[i] * NS_PER_MS,
                    strike=ch.decimal_strike[i],
                    right=OptionRight.CALL if self.is_call[i] else OptionRight.PUT,
                    multiplier=1.0,
                    open_interest=self.oi[i],
                    iv=self._iv(i) / 100.0,
                    underlying_price=self._forward(index, tau) if tau > 0 else index,
                    index_price=index,
                    ts_event_ns=ts_ns,
                    ts_recv_ns=ts_ns,
                    premium_currency=self.cur,
                )
            )
        return out

    def _init_book(self, ts_ms: int) -> None:
        self.book = GammaBook(
            self.cur,
            VENUE,
            LevelsConfig(model="long_calls_short_puts"),
            self.spot,
            ts_ms * NS_PER_MS,
            capacity=self.chain.n,
        )
        self.book.upsert(self._contracts(np.flatnonzero(self.alive), ts_ms))
        self.book_vol_factor = self.vol_factor
        self.dirty: set[int] = set()
        self.levels = self._read_levels()
        self.initial_levels = self.levels
        # GEX scale of the feedback: the largest |profile| within ±5 % of the initial spot.
        near = np.abs(self.book.grid_spots / self.spot - 1.0) <= 0.05
        self.gex_scale = float(np.abs(self.book.profile[0][near]).max()) or 1.0
        self.gex_norm = self.levels.net_gex / self.gex_scale

    def _read_levels(self) -> _Levels:
        levels = compute_levels(self.book).buckets["all"]
        return _Levels(levels.zero_gamma, levels.call_wall, levels.put_wall, levels.net_gex)

    def _refresh(self, ts_ms: int) -> None:
        """Bring the simulator's book to now: time decay, marks, OI; then read the levels."""
        book = self.book
        book.advance_time(ts_ms * NS_PER_MS)
        if abs(self.vol_factor / self.book_vol_factor - 1.0) > 0.01:
            update = np.flatnonzero(self.alive)
            self.book_vol_factor = self.vol_factor
        else:
            update = np.array(sorted(i for i in self.dirty if self.alive[i]), dtype=np.int64)
        self.dirty.clear()
        if update.size:
            book.upsert(self._contracts(update, ts_ms))
        book.set_spot(self.spot, ts_ms * NS_PER_MS)
        self.levels = self._read_levels()
        self.gex_norm = float(np.clip(self.levels.net_gex / self.gex_scale, -1.0, 1.0))

    # ----------------------------------------------------------------- index path

    def _scenario_target(self, frac: float) -> tuple[float, float] | None:
        """(log target, seconds to reach it) of the scripted drift, or None."""
        if self.config.scenario == "none" or frac < 0.15:
            return None
        duration = self.config.duration_s
        lv = self.levels
        if frac < 0.45:
            if not self.flip_done:
                zero = lv.zero_gamma if lv.zero_gamma is not None else self.spot0 * 0.99
                self.flip_target = min(zero, self.spot0) * (1.0 - 0.005)
            end = 0.45
            target = self.flip_target
        else:
            if self.wall_target is None:
                self.scenario_wall = self._put_wall_below(self.spot * 0.99)
                self.wall_target = self.scenario_wall * (1.0 - 0.006)
            target = self.wall_target
            if frac >= 0.8:  # aftermath: hold below the broken wall
                return math.log(target), 0.1 * duration
            end = 0.8
        remaining = max((end - frac) * duration, 0.03 * duration)
        return math.log(target), remaining

    def _put_wall_below(self, limit: float) -> float:
        """The strike below ``limit`` with the largest dealer put GEX at spot (USD)."""
        _, _, _, put = strike_gex(self.book, "all")
        strikes = self.book.strike_values[: put.shape[0]]
        below = np.flatnonzero((strikes < limit) & (put != 0.0))
        if below.size == 0:
            return limit * 0.97
        return float(strikes[below[np.argmax(np.abs(put[below]))]])

    def _step_path(self, step: int) -> None:
        cfg = self.config
        dt = STEP_MS / 1000.0
        frac = step * dt / cfg.duration_s
        g = self.gex_norm if cfg.feedback else 0.0
        # Dealers long gamma sell rallies and buy dips: less volatility and some mean
        # reversion; short gamma, they chase: more volatility and some momentum.
        vol_mult = min(max(math.exp(-1.2 * g), 0.5), 2.2)
        phi = min(max(-0.4 * g, -0.3), 0.25)
        sigma = 1.5 * self.spec.atm_vol / math.sqrt(365 * 86_400.0)  # per √s, intraday
        shock = sigma * vol_mult * math.sqrt(dt) * float(self.rng_path.standard_normal())
        self.noise_ret = shock + phi * self.noise_ret
        drift = 0.0
        target = self._scenario_target(frac)
        if target is not None:
            log_target, remaining = target
            drift = (log_target - math.log(self.spot)) / remaining * dt
        self.spot *= math.exp(drift + self.noise_ret)
        self.spot_min = min(self.spot_min, self.spot)
        self.spot_max = max(self.spot_max, self.spot)
        # IVs: spot down → vol up, plus a slow common wiggle.
        self.vol_noise += -0.02 * self.vol_noise * dt + 0.0015 * math.sqrt(dt) * float(
            self.rng_vol.standard_normal()
        )
        self.vol_factor = math.exp(-1.5 * math.log(self.spot / self.spot0) + self.vol_noise)
        if cfg.dvol_path:
            self.vol_factor *= path_at(cfg.dvol_path, step * dt) / self.dvol_base

    def _check_crossings(self, ts_ms: int) -> None:
        """Record the index crossing a level: beyond it by CROSSING_BAND, as the book sees it.

        A wall that moves to another strike, or a zero gamma that jumps to another root,
        starts afresh instead of counting as a crossing.
        """
        for name in ("zero_gamma", "call_wall", "put_wall"):
            level = getattr(self.levels, name)
            side, seen = self.sides.get(name, (0, None))
            if level is None:
                self.sides[name] = (0, None)
                continue
            if seen is None or abs(level / seen - 1.0) > (0.005 if name == "zero_gamma" else 0):
                side = 0  # a new level: no crossing until the spot has been on one side
            if self.spot > level * (1.0 + CROSSING_BAND):
                now = 1
            elif self.spot < level * (1.0 - CROSSING_BAND):
                now = -1
            else:
                now = side
            self.sides[name] = (now, level)
            if side in (0, now):
                continue
            direction = "up" if now > 0 else "down"
            self.crossings.append(
                LevelCrossing(ts_ms * NS_PER_MS, name, direction, level, self.spot)
            )
            if name == "zero_gamma" and direction == "down":
                self.flip_done = True

    # ----------------------------------------------------------------- notifications

    def _option_ticker(self, i: int, ts_ms: int) -> bytes:
        ch = self.chain
        index = _dec(self.spot, 100.0)
        expiry = self.expiry_of[i]
        tau = (expiry.expiry_ms - ts_ms) / MS_PER_YEAR
        forward = self._forward(index, tau)
        iv = self._iv(i)
        q = black76_quote(forward, self.strike[i], tau, iv / 100.0, self.is_call[i])
        mark = max(_dec(q.price / index, 10_000.0), 0.0001)
        bid, ask = self._bid_ask(mark)
        vega_coin = max(q.vega / index, 1e-12)  # coin per vol point
        bid_iv = _dec(max(iv - (mark - bid) / vega_coin, 1.0), 100.0) if bid else 0.0
        ask_iv = _dec(min(iv + (ask - mark) / vega_coin, 500.0), 100.0)
        step = self.spec.oi_step
        bid_amount = _dec(self.book_amount() * step, 10.0)
        ask_amount = _dec(self.book_amount() * step, 10.0)
        band = 0.03 + 0.05 * mark
        last = self.last_price[i]
        traded = last is not None
        data = {
            "estimated_delivery_price": index,
            "best_bid_amount": bid_amount if bid else 0.0,
            "best_ask_amount": ask_amount,
            "bid_iv": bid_iv,
            "ask_iv": ask_iv,
            "underlying_index": expiry.underlying_index,
            "underlying_price": forward,
            "mark_iv": iv,
            "best_bid_price": bid,
            "best_ask_price": ask,
            "interest_rate": 0.0,
            "mark_price": mark,
            "open_interest": self.oi[i],
            "max_price": _dec(mark + band, 10_000.0),
            "min_price": _dec(max(mark - band, 0.0001), 10_000.0),
            "settlement_price": self.settlement_price[i],
            "last_price": last,
            "instrument_name": ch.names[i],
            "index_price": index,
            "greeks": {
                "rho": _dec(q.rho, 1e5),
                "theta": _dec(q.theta, 1e5),
                "vega": _dec(q.vega, 1e5),
                "gamma": round(q.gamma, 5),  # exact decimal rounding: consumers re-price it
                "delta": round(q.delta, 5),
            },
            "stats": {
                "volume_usd": float(self.volume_usd[i]),
                "volume": self.volume[i],
                "price_change": self._price_change(i),
                "low": self.low[i] if traded else None,
                "high": self.high[i] if traded else None,
            },
            "state": "open",
            "timestamp": ts_ms,
        }
        return self._notification(f"ticker.{ch.names[i]}.100ms", data)

    def _trades(self, step_ms: int, frac: float) -> tuple[bytes, int] | None:
        cfg, ch, rng = self.config, self.chain, self.rng_trade
        if self.trade_cdf is None or cfg.trades_rate_per_s <= 0:
            return None
        count = int(rng.poisson(cfg.trades_rate_per_s * STEP_MS / 1000.0))
        if count == 0:
            return None
        picks = np.searchsorted(self.trade_cdf, rng.random(count), side="right")
        picks = np.minimum(picks, ch.n - 1)
        offsets = np.sort(rng.integers(0, STEP_MS, count))
        selloff = self.config.scenario != "none" and 0.15 <= frac < 0.8
        index = _dec(self.spot, 100.0)
        trades = []
        for i, offset in zip(picks.tolist(), offsets.tolist(), strict=True):
            ts_ms = step_ms + offset
            if not self.alive[i] or self.expiry_ms[i] <= ts_ms:
                continue
            is_call = self.is_call[i]
            tau = (self.expiry_ms[i] - ts_ms) / MS_PER_YEAR
            forward = self._forward(index, tau)
            iv = self._iv(i)
            q = black76_quote(forward, self.strike[i], tau, iv / 100.0, is_call)
            mark = q.price / index
            p_buy = 0.52 + (0.13 if selloff and not is_call else 0.0)
            buy = bool(rng.random() < p_buy)
            edge = abs(rng.normal(0.0, 0.015)) * mark + 0.0001
            price = (
                _on_tick(mark + edge, True) if buy else _on_tick(max(mark - edge, 0.0001), False)
            )
            price = max(price, 0.0001)
            vega_coin = max(q.vega / index, 1e-12)
            trade_iv = round(float(np.clip(iv + (price - mark) / vega_coin, 1.0, 500.0)), 2)
            step = self.spec.oi_step
            amount = max(round(float(rng.lognormal(0.0, 1.1)) / step) * step, step)
            amount = round(amount, 1)
            # Taker buys open positions (OI up), taker sells close them (OI down).
            if buy:
                self.oi[i] = round(self.oi[i] + amount, 1)
            else:
                self.oi[i] = round(max(self.oi[i] - amount, 0.0), 1)
            self.dirty.add(i)
            last = self.last_price[i]
            if last is None or price > last:
                tick_direction, self.last_up[i] = 0, True
            elif price < last:
                tick_direction, self.last_up[i] = 2, False
            else:
                tick_direction = 1 if self.last_up[i] else 3
            self.last_price[i] = price
            self.high[i] = price if self.high[i] is None else max(self.high[i], price)
            self.low[i] = price if self.low[i] is None else min(self.low[i], price)
            if self.open_price[i] <= 0:
                self.open_price[i] = price
            self.volume[i] = round(self.volume[i] + amount, 1)
            self.volume_usd[i] = round(self.volume_usd[i] + amount * price * index, 1)
            self.trade_seq[i] += 1
            self.trade_id += 1
            trades.append(
                {
                    "trade_seq": int(self.trade_seq[i]),
                    "trade_id": str(self.trade_id),
                    "timestamp": ts_ms,
                    "tick_direction": tick_direction,
                    "price": price,
                    "mark_price": round(mark, 8),
                    "iv": trade_iv,
                    "instrument_name": ch.names[i],
                    "index_price": index,
                    "direction": "buy" if buy else "sell",
                    "amount": amount,
                    "contracts": amount,
                }
            )
        if not trades:
            return None
        raw = self._notification(f"trades.option.{self.cur}.100ms", trades)
        return raw, len(trades)

    def _perpetual_ticker(self, ts_ms: int) -> bytes:
        rng = self.rng_perp
        index = _dec(self.spot, 100.0)
        target = 0.0004  # the premium's resting level: funding_8h ≈ 0.0133 %
        if self.config.funding_path:
            t_s = (ts_ms - self.start_ms) / 1000.0
            target = 3.0 * path_at(self.config.funding_path, t_s)
        self.perp_premium += -0.05 * (self.perp_premium - target) + 0.00005 * rng.normal()
        mark = round(index * (1.0 + self.perp_premium), 2)
        spread = 0.5 * int(rng.integers(1, 4))
        bid = math.floor((mark - spread / 2) * 2) / 2
        ask = bid + spread
        if rng.random() < 0.5:
            self.perp_last = ask if rng.random() < 0.5 else bid
            size = float(rng.lognormal(8.0, 1.5))
            self.perp_volume += size / mark
            self.perp_oi = max(self.perp_oi + round(size * rng.normal() / 10) * 10, 1e8)
        self.perp_high = max(self.perp_high, self.perp_last)
        self.perp_low = min(self.perp_low, self.perp_last)
        funding_8h = round(self.perp_premium / 3.0, 8)
        volume_usd = round(self.perp_volume * index, -1)
        data = {
            "timestamp": ts_ms,
            "state": "open",
            "stats": {
                "high": self.perp_high,
                "low": self.perp_low,
                "price_change": round((self.perp_last / self.perp_open - 1.0) * 100.0, 4),
                "volume": round(self.perp_volume, 8),
                "volume_usd": volume_usd,
                "volume_notional": volume_usd,
            },
            "index_price": index,
            "instrument_name": f"{self.cur}-PERPETUAL",
            "last_price": self.perp_last,
            "settlement_price": self.perp_settlement,
            "min_price": round(mark * 0.985, 2),
            "max_price": round(mark * 1.015, 2),
            "open_interest": float(self.perp_oi),
            "mark_price": mark,
            "interest_value": self.perp_premium * 3.0,
            "best_ask_price": ask,
            "best_bid_price": bid,
            "estimated_delivery_price": index,
            "best_ask_amount": float(int(rng.integers(1, 20_000)) * 10),
            "best_bid_amount": float(int(rng.integers(1, 20_000)) * 10),
            "current_funding": 0.0,
            "funding_8h": funding_8h,
        }
        return self._notification(f"ticker.{self.cur}-PERPETUAL.100ms", data)

    def _dvol(self, ts_ms: int) -> bytes:
        atm = atm_vol(self.spec, 30 / 365) * self.vol_factor * 100.0
        data = {"volatility": round(atm, 2), "timestamp": ts_ms, "index_name": self.index_name}
        return self._notification(f"deribit_volatility_index.{self.index_name}", data)

    def _price_index(self, ts_ms: int) -> bytes:
        price = _dec(self.spot, 100.0)  # USD, as every other message quotes the index
        data = {"timestamp": ts_ms, "price": price, "index_name": self.index_name}
        return self._notification(f"deribit_price_index.{self.index_name}", data)

    def _draw_tickers(self, lo_ms: int, hi_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Ticker (times, instruments) in [lo, hi): Poisson arrivals per instrument."""
        rng, n = self.rng_tick, self.chain.n
        mean = (hi_ms - lo_ms) / 1000.0 / self.config.ticker_interval_s
        counts = rng.poisson(mean, n)
        inst = np.repeat(np.arange(n), counts)
        times = rng.integers(lo_ms, hi_ms, inst.shape[0])
        order = np.lexsort((inst, times))
        return times[order], inst[order]

    # ----------------------------------------------------------------- main loop

    def messages(self) -> Iterator[CapturedMessage]:
        cfg, ch = self.config, self.chain
        yield from self._preamble()
        self.flip_done = False
        self.sides: dict[str, tuple[int, float | None]] = {}
        self.flip_target = self.spot0
        self.wall_target: float | None = None
        self.scenario_wall: float | None = None
        self.noise_ret = 0.0
        self._init_book(self.summary_ms)
        refresh_steps = max(1, round(cfg.feedback_interval_s * 1000 / STEP_MS))
        n_steps = math.ceil((self.end_ms - self.start_ms) / STEP_MS)
        first_ms = self.stream_start_ms
        phase = int(self.rng_misc.integers(0, 1000))
        periodic = {
            "price_index": [first_ms + phase % 97, round(cfg.index_interval_s * 1000)],
            "volatility_index": [first_ms + phase % 211, round(cfg.dvol_interval_s * 1000)],
            "ticker_perpetual": [first_ms + phase % 53, round(cfg.perpetual_interval_s * 1000)],
            "heartbeat": [first_ms + HEARTBEAT_INTERVAL_S * 1000, HEARTBEAT_INTERVAL_S * 1000],
        }
        states = self._state_events()
        state_ptr = 0
        seq = 0
        for w0 in range(0, n_steps, WINDOW_STEPS):
            w1 = min(n_steps, w0 + WINDOW_STEPS)
            lo_ms = self.start_ms + w0 * STEP_MS
            hi_ms = min(self.start_ms + w1 * STEP_MS, self.end_ms)
            times, insts = self._draw_tickers(lo_ms, hi_ms)
            keep = (times >= first_ms) & (times < ch.expiry_ms[insts])
            times, insts = times[keep], insts[keep]
            bounds = np.searchsorted(times, lo_ms + STEP_MS * np.arange(w1 - w0 + 1))
            for j in range(w0, w1):
                step_ms = self.start_ms + j * STEP_MS
                step_end = min(step_ms + STEP_MS, self.end_ms)
                if j > 0:
                    self._step_path(j)
                    if j % refresh_steps == 0:
                        self._refresh(step_ms)
                self._check_crossings(step_ms)
                events: list[_Event] = []
                while state_ptr < len(states) and states[state_ptr][0] < step_end:
                    ts, state, i = states[state_ptr]
                    state_ptr += 1
                    if ts < first_ms:
                        continue
                    raw = self._notification(
                        f"instrument.state.option.{self.cur}",
                        {"timestamp": ts, "state": state, "instrument_name": ch.names[i]},
                    )
                    events.append(
                        _Event(ts, _ORDER["instrument_state"], i, "instrument_state", raw)
                    )
                    if state == "terminated":
                        self._expire(i)
                for kind, slot in periodic.items():
                    while slot[0] < step_end:
                        ts = slot[0]
                        slot[0] += slot[1]
                        if ts < step_ms:
                            continue
                        events.extend(self._periodic(kind, ts))
                a, b = bounds[j - w0], bounds[j - w0 + 1]
                for ts, i in zip(times[a:b].tolist(), insts[a:b].tolist(), strict=True):
                    if self.alive[i]:
                        raw = self._option_ticker(i, ts)
                        events.append(_Event(ts, _ORDER["ticker_option"], i, "ticker_option", raw))
                if step_ms >= first_ms:
                    trades = self._trades(step_ms, j * STEP_MS / 1000.0 / cfg.duration_s)
                    if trades is not None:
                        raw, count = trades
                        self.totals.option_trades += count
                        events.append(_Event(step_end - 1, _ORDER["trades"], 0, "trades", raw))
                events.sort(key=lambda e: (e.send_ms, e.order, e.seq))
                for event in events:
                    seq += 1
                    send_ns = event.send_ms * NS_PER_MS
                    if event.kind == "test":
                        rpc_times = self._rpc_times(send_ns, 40)
                        result = {"version": "1.2.26"}
                        yield self._rpc("test", "public/test", {}, result, rpc_times)
                    else:
                        yield self._emit(event.kind, event.raw, send_ns)
        self.final_levels = self.levels

    def _periodic(self, kind: str, ts: int) -> list[_Event]:
        order = _ORDER[kind]
        if kind == "price_index":
            return [_Event(ts, order, 0, kind, self._price_index(ts))]
        if kind == "volatility_index":
            return [_Event(ts, order, 0, kind, self._dvol(ts))]
        if kind == "ticker_perpetual":
            return [_Event(ts, order, 0, kind, self._perpetual_ticker(ts))]
        raw = orjson.dumps(
            {"jsonrpc": "2.0", "method": "heartbeat", "params": {"type": "test_request"}}
        )
        events = [_Event(ts, order, 0, kind, raw)]
        if ts + 3 < self.end_ms:  # the client answers with public/test; the reply follows
            events.append(_Event(ts + 3, _ORDER["test"], 0, "test", b""))
        return events

    def _state_events(self) -> list[tuple[int, str, int]]:
        """(ms, state, instrument) for the expiries that settle during the session."""
        ch = self.chain
        out = []
        for e, expiry in enumerate(ch.expiries):
            if not self.start_ms < expiry.expiry_ms < self.end_ms:
                continue
            members = np.flatnonzero(ch.expiry_idx == e).tolist()
            for k, i in enumerate(members):
                out.append((expiry.expiry_ms + 5 + k // 50, "terminated", i))
            for k, i in enumerate(members):
                out.append((expiry.expiry_ms + 2_500 + k // 50, "settled", i))
        out.sort()
        return out

    def _expire(self, i: int) -> None:
        if self.alive[i]:
            self.alive[i] = False
            self.settled.append(self.chain.names[i])
            self._trade_cdf()

    # ----------------------------------------------------------------- summary

    def summary(self) -> SessionSummary:
        """The summary; valid once :meth:`messages` has been exhausted."""
        totals = self.totals
        return SessionSummary(
            currency=self.cur,
            n_instruments=self.chain.n,
            expiries=tuple(e.code for e in self.chain.expiries),
            messages=totals.messages,
            counts=dict(totals.counts),
            option_trades=totals.option_trades,
            first_recv_ns=totals.first_recv_ns,
            last_recv_ns=totals.last_recv_ns,
            spot_start=self.spot0,
            spot_min=self.spot_min,
            spot_max=self.spot_max,
            spot_final=self.spot,
            initial_levels=self.initial_levels.as_dict(),
            final_levels=self.final_levels.as_dict(),
            crossings=tuple(self.crossings),
            settled=tuple(self.settled),
        )

"""Deribit quotes for the simulated session: the chain's marks, tickers, trades, perpetual.

:class:`MarketQuotes` is mixed into the session (``deribit_session._Session``): it owns the
per-instrument market state (last prices, 24 h statistics, open interest, trade activity)
and the perpetual's, and builds the ``ticker.*``, ``trades.*``, ``deribit_price_index.*`` and
``deribit_volatility_index.*`` notifications from the index path's ``spot`` and
``vol_factor``.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import orjson

from connectors.simulator.deribit_chain import Chain, Expiry, atm_vol
from connectors.simulator.deribit_config import CurrencySpec, SessionConfig, path_at
from connectors.simulator.deribit_types import STEP_MS
from engine.core.pricing import black76_quote
from schemas.time import MS_PER_YEAR


def dec(value: float, scale: float) -> float:
    """``value`` to the nearest 1/scale (scale 100 → 2 decimals), fast; prints short."""
    return round(value * scale) / scale


def on_tick(price: float, up: bool) -> float:
    """A coin price on Deribit's option tick: 0.0001 below 0.005, 0.0005 above."""
    tick = 1 if price < 0.005 else 5  # in units of 0.0001
    x = price * 10_000.0 / tick
    units = math.ceil(x - 1e-9) if up else math.floor(x + 1e-9)
    return units * tick / 10_000.0


class Draws:
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


def notification(channel: str, data: Any) -> bytes:
    """A ``subscription`` notification on ``channel``, as Deribit sends it."""
    return orjson.dumps(
        {
            "jsonrpc": "2.0",
            "method": "subscription",
            "params": {"channel": channel, "data": data},
        }
    )


class MarketQuotes:
    """The chain's market state and its notifications (mixed into the session)."""

    config: SessionConfig
    spec: CurrencySpec
    chain: Chain
    cur: str
    index_name: str
    spot: float
    spot0: float
    start_ms: int
    end_ms: int
    vol_factor: float
    dirty: set[int]
    strike: list[float]
    is_call: list[bool]
    expiry_ms: list[int]
    expiry_of: list[Expiry]
    base_iv: list[float]
    book_amount: Draws
    rng_tick: np.random.Generator
    rng_trade: np.random.Generator
    rng_perp: np.random.Generator
    rng_misc: np.random.Generator

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
            (on_tick(p, False) or 0.0001) if t else None
            for p, t in zip(last.tolist(), traded.tolist(), strict=True)
        ]
        self.high: list[float | None] = [
            max(p, on_tick(o * 1.1, True)) if p is not None else None
            for p, o in zip(self.last_price, self.open_price, strict=True)
        ]
        self.low: list[float | None] = [
            min(p, on_tick(o * 0.9, False)) if p is not None else None
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
        return dec(self.base_iv[i] * self.vol_factor * 100.0, 100.0)

    def _forward(self, index: float, tau: float) -> float:
        return dec(index * math.exp(self.spec.basis_rate * tau), 100.0)

    def _price_change(self, i: int) -> float | None:
        last, open_ = self.last_price[i], self.open_price[i]
        if last is None or open_ <= 0:
            return None
        return round((last / open_ - 1.0) * 100.0, 4)

    def _bid_ask(self, mark: float) -> tuple[float, float]:
        """Best bid / ask (coin) around a mark: 0.0 bid when it would be below one tick."""
        half = max(0.0002, 0.04 * mark)
        bid = on_tick(mark - half, False) if mark - half >= 0.0001 else 0.0
        ask = on_tick(mark + half, True)
        return bid, max(ask, 0.0001)

    # ----------------------------------------------------------------- notifications

    def _option_ticker(self, i: int, ts_ms: int) -> bytes:
        ch = self.chain
        index = dec(self.spot, 100.0)
        expiry = self.expiry_of[i]
        tau = (expiry.expiry_ms - ts_ms) / MS_PER_YEAR
        forward = self._forward(index, tau)
        iv = self._iv(i)
        q = black76_quote(forward, self.strike[i], tau, iv / 100.0, self.is_call[i])
        mark = max(dec(q.price / index, 10_000.0), 0.0001)
        bid, ask = self._bid_ask(mark)
        vega_coin = max(q.vega / index, 1e-12)  # coin per vol point
        bid_iv = dec(max(iv - (mark - bid) / vega_coin, 1.0), 100.0) if bid else 0.0
        ask_iv = dec(min(iv + (ask - mark) / vega_coin, 500.0), 100.0)
        step = self.spec.oi_step
        bid_amount = dec(self.book_amount() * step, 10.0)
        ask_amount = dec(self.book_amount() * step, 10.0)
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
            "max_price": dec(mark + band, 10_000.0),
            "min_price": dec(max(mark - band, 0.0001), 10_000.0),
            "settlement_price": self.settlement_price[i],
            "last_price": last,
            "instrument_name": ch.names[i],
            "index_price": index,
            "greeks": {
                "rho": dec(q.rho, 1e5),
                "theta": dec(q.theta, 1e5),
                "vega": dec(q.vega, 1e5),
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
        return notification(f"ticker.{ch.names[i]}.100ms", data)

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
        index = dec(self.spot, 100.0)
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
            price = on_tick(mark + edge, True) if buy else on_tick(max(mark - edge, 0.0001), False)
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
        raw = notification(f"trades.option.{self.cur}.100ms", trades)
        return raw, len(trades)

    def _perpetual_ticker(self, ts_ms: int) -> bytes:
        rng = self.rng_perp
        index = dec(self.spot, 100.0)
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
        return notification(f"ticker.{self.cur}-PERPETUAL.100ms", data)

    def _dvol(self, ts_ms: int) -> bytes:
        atm = atm_vol(self.spec, 30 / 365) * self.vol_factor * 100.0
        data = {"volatility": round(atm, 2), "timestamp": ts_ms, "index_name": self.index_name}
        return notification(f"deribit_volatility_index.{self.index_name}", data)

    def _price_index(self, ts_ms: int) -> bytes:
        price = dec(self.spot, 100.0)  # USD, as every other message quotes the index
        data = {"timestamp": ts_ms, "price": price, "index_name": self.index_name}
        return notification(f"deribit_price_index.{self.index_name}", data)

    def _draw_tickers(self, lo_ms: int, hi_ms: int) -> tuple[np.ndarray, np.ndarray]:
        """Ticker (times, instruments) in [lo, hi): Poisson arrivals per instrument."""
        rng, n = self.rng_tick, self.chain.n
        mean = (hi_ms - lo_ms) / 1000.0 / self.config.ticker_interval_s
        counts = rng.poisson(mean, n)
        inst = np.repeat(np.arange(n), counts)
        times = rng.integers(lo_ms, hi_ms, inst.shape[0])
        order = np.lexsort((inst, times))
        return times[order], inst[order]

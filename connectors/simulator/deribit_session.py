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

Layout: this module is the driver (the 100 ms step loop and the summary); the session class
combines ``deribit_quotes`` (market state, tickers, trades, perpetual), ``deribit_index``
(the feedback book, the index path, level crossings) and ``deribit_wire`` (receive times,
RPC responses, the preamble); ``deribit_types`` holds the summary types.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from connectors.common.capture import CapturedMessage, CaptureWriter
from connectors.simulator.deribit_chain import Chain, atm_vol
from connectors.simulator.deribit_config import CURRENCIES, SessionConfig, path_at
from connectors.simulator.deribit_index import IndexPath
from connectors.simulator.deribit_quotes import Draws, notification
from connectors.simulator.deribit_types import (
    HEARTBEAT_INTERVAL_S,
    KINDS,
    STEP_MS,
    LevelCrossing,
    SessionSummary,
    Totals,
)
from connectors.simulator.deribit_wire import SessionWire
from schemas.time import NS_PER_MS

__all__ = [
    "KINDS",
    "LevelCrossing",
    "SessionConfig",
    "SessionSummary",
    "generate_session",
    "write_session",
]

WINDOW_STEPS = 100  # ticker arrival times are drawn 10 s of simulated time at a time


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


class _Session(IndexPath, SessionWire):
    """One session: its market (quotes), index path (feedback) and wire output."""

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
        self.latency = Draws(self.rng_lat, "exponential", 1_200_000.0)
        self.book_amount = Draws(self.rng_tick, "integers", 1, 400)
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
        self.totals = Totals()
        self.crossings: list[LevelCrossing] = []
        self.settled: list[str] = []
        self.spot_min = self.spot_max = self.spot0
        self._init_market_state()

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
                    raw = notification(
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

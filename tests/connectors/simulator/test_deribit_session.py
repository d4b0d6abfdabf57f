"""The seeded Deribit session generator: wire shapes, determinism, pricing, scenario."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import replace
from decimal import Decimal

import orjson
import pytest

from connectors.common.capture import decode_capture_line, encode_capture_line
from connectors.deribit.parse import parse_book_summary
from connectors.simulator import SessionConfig, generate_session, write_session
from connectors.simulator.deribit_config import DEFAULT_START_NS
from connectors.simulator.deribit_session import KINDS
from engine.app.cli import levels_of
from engine.core.config import LevelsConfig
from schemas.chain import ChainSnapshot
from schemas.contracts import OptionContract, OptionRight
from schemas.time import MS_PER_YEAR
from tests.paths import PROTOCOL_SAMPLES, shared_fixture
from tests.reference import black76_gamma

SAMPLES = PROTOCOL_SAMPLES
DEFAULT = SessionConfig()  # BTC, 1,000 options, 300 s, the "flip_and_wall" scenario


@pytest.fixture(scope="module")
def default_session(tmp_path_factory):
    """The default session, written once: (summary, raw lines, decoded messages, JSON)."""
    path = tmp_path_factory.mktemp("deribit") / "default.jsonl"
    summary = write_session(DEFAULT, path)
    lines = path.read_bytes().splitlines(keepends=True)
    messages = [decode_capture_line(line) for line in lines]
    docs = [m.json() for m in messages]
    return summary, lines, messages, docs


def kind_of(request, doc) -> str:
    """Classify a message the way a consumer would, from the wire alone."""
    if "id" in doc:
        return {
            "public/get_instruments": "get_instruments",
            "public/get_book_summary_by_currency": "get_book_summary_by_currency",
            "public/set_heartbeat": "set_heartbeat",
            "public/subscribe": "subscribe",
            "public/test": "test",
        }[request["method"]]
    if doc["method"] == "heartbeat":
        return "heartbeat"
    channel = doc["params"]["channel"]
    prefix = channel.split(".")[0]
    if prefix == "ticker":
        return "ticker_perpetual" if channel.endswith("-PERPETUAL.100ms") else "ticker_option"
    return {
        "deribit_price_index": "price_index",
        "deribit_volatility_index": "volatility_index",
        "trades": "trades",
        "instrument": "instrument_state",
    }[prefix]


def norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


# --------------------------------------------------------------------------- determinism


def test_same_seed_gives_the_same_bytes_and_another_seed_does_not(tmp_path):
    config = SessionConfig(n_instruments=300, duration_s=20.0, seed=11)
    first, second, other = tmp_path / "a.jsonl", tmp_path / "b.jsonl", tmp_path / "c.jsonl"
    summary = write_session(config, first)
    write_session(config, second)
    write_session(replace(config, seed=12), other)
    assert first.read_bytes() == second.read_bytes()
    assert first.read_bytes() != other.read_bytes()
    # The iterator yields exactly what write_session wrote (and rewriting replaces the file).
    assert b"".join(encode_capture_line(m) for m in generate_session(config)) == (
        first.read_bytes()
    )
    assert write_session(config, first) == summary
    assert first.read_bytes() == second.read_bytes()


# --------------------------------------------------------------------------- wire format


def test_every_line_decodes_in_receive_order_with_compact_venue_json(default_session):
    _, lines, messages, docs = default_session
    assert len(lines) > 50_000
    previous = 0
    for line, message, doc in zip(lines, messages, docs, strict=True):
        assert message.venue == "deribit"
        assert message.recv_ns > previous
        previous = message.recv_ns
        assert message.raw == orjson.dumps(doc)  # compact, exactly as a venue sends it
        assert line.endswith(b',"msg":' + message.raw + b"}\n")
        assert doc["jsonrpc"] == "2.0"
        if "id" in doc:
            assert message.request is not None
            assert doc["usDiff"] == doc["usOut"] - doc["usIn"] >= 0
            assert doc["testnet"] is False
            assert message.recv_ns > doc["usOut"] * 1000
        else:
            assert message.request is None
            if doc["method"] == "subscription":
                data = doc["params"]["data"]
                stamps = [t["timestamp"] for t in data] if isinstance(data, list) else []
                stamps += [data["timestamp"]] if isinstance(data, dict) else []
                # recv = venue time + a small latency (ms)
                assert all(0 < message.recv_ns - ts * 1_000_000 < 150_000_000 for ts in stamps)


def test_the_session_opens_with_the_rpc_responses_and_their_requests(default_session):
    _, _, messages, docs = default_session
    n = DEFAULT.n_instruments
    assert [m.request for m in messages[:3]] == [
        {
            "method": "public/get_instruments",
            "params": {"currency": "BTC", "kind": "option", "expired": False},
        },
        {
            "method": "public/get_book_summary_by_currency",
            "params": {"currency": "BTC", "kind": "option"},
        },
        {"method": "public/set_heartbeat", "params": {"interval": 30}},
    ]
    assert [d["id"] for d in docs[:4]] == [1, 2, 3, 4]
    assert list(docs[0]) == ["jsonrpc", "id", "result", "usIn", "usOut", "usDiff", "testnet"]
    instruments, summary = docs[0]["result"], docs[1]["result"]
    assert len(instruments) == len(summary) == n
    names = [i["instrument_name"] for i in instruments]
    assert len(set(names)) == n and [r["instrument_name"] for r in summary] == names
    for entry in instruments:
        _, _, strike, right = entry["instrument_name"].split("-")
        assert entry["kind"] == "option" and entry["contract_size"] == 1
        assert entry["strike"] == float(strike)
        assert entry["option_type"] == {"C": "call", "P": "put"}[right]
        assert entry["expiration_timestamp"] % 86_400_000 == 8 * 3_600_000  # 08:00 UTC
        assert entry["creation_timestamp"] < DEFAULT.start_ns // 1_000_000
        assert entry["price_index"] == "btc_usd" and entry["base_currency"] == "BTC"
    periods = Counter(e["settlement_period"] for e in instruments)
    assert set(periods) == {"day", "week", "month"}
    for row in summary:
        assert row["estimated_delivery_price"] == DEFAULT.initial_spot
        assert row["underlying_price"] > row["estimated_delivery_price"]  # contango
        assert row["underlying_index"].endswith(row["instrument_name"].split("-")[1])
        assert 20 < row["mark_iv"] < 300  # percent
        assert row["open_interest"] >= 0 and row["interest_rate"] == 0.0
    assert docs[2]["result"] == "ok"
    channels = messages[3].request["params"]["channels"]
    assert messages[3].request["method"] == "public/subscribe"
    assert docs[3]["result"] == channels
    assert channels == [f"ticker.{name}.100ms" for name in names] + [
        "deribit_price_index.btc_usd",
        "deribit_volatility_index.btc_usd",
        "ticker.BTC-PERPETUAL.100ms",
        "trades.option.BTC.100ms",
        "instrument.state.option.BTC",
    ]
    assert all("id" not in d for d in docs[4:] if d.get("method")) and docs[4]["method"]


def _sample(name: str):
    path = shared_fixture(SAMPLES / name)
    doc = orjson.loads(path.read_bytes())
    if isinstance(doc, dict) and "data" in doc.get("params", {}):
        return doc["params"]["data"]
    return doc


def test_message_shapes_match_the_verbatim_deribit_samples(default_session):
    _, _, _, docs = default_session
    first: dict[str, dict] = {}
    for doc in docs[4:]:
        if doc.get("method") == "subscription":
            channel = doc["params"]["channel"]
            key = "perp" if "PERPETUAL" in channel else channel.split(".")[0]
            first.setdefault(key, doc["params"]["data"])
    option = _sample("deribit_ticker_option_notification_btc_23feb24_45000_c_capture.json")
    assert list(first["ticker"]) == list(option)  # same keys, same order as a 2024 capture
    assert set(first["ticker"]["greeks"]) == set(option["greeks"])
    assert set(first["ticker"]["stats"]) == set(option["stats"])
    perp = _sample("deribit_ticker_perpetual_notification_nautilus.json")
    assert list(first["perp"]) == list(perp)
    assert list(first["perp"]["stats"]) == list(perp["stats"])
    trade = _sample("deribit_trades_option_any_raw_notification_capture.json")[0]
    assert list(first["trades"][0]) == [*trade, "contracts"]
    index = _sample("deribit_price_index_notification_docs.json")
    assert list(first["deribit_price_index"]) == list(index)
    dvol = _sample("deribit_volatility_index_data_only_docs.json")
    assert list(first["deribit_volatility_index"]) == list(dvol)
    row = _sample("deribit_get_book_summary_by_currency_option_btc_response_capture.json")
    assert set(row["result"][0]) | {"mark_iv", "volume_usd"} == set(docs[1]["result"][0])
    instrument = _sample("deribit_get_instrument_option_response_docs.json")["result"]
    assert list(docs[0]["result"][0]) == list(instrument)
    heartbeat = _sample("deribit_heartbeat_test_request_nautilus.json")
    assert heartbeat in docs


def test_counts_per_kind_match_the_summary(default_session):
    summary, _, messages, docs = default_session
    counts = Counter(kind_of(m.request, d) for m, d in zip(messages, docs, strict=True))
    assert set(counts) <= set(KINDS)
    assert {k: counts.get(k, 0) for k in KINDS} == summary.counts
    assert summary.messages == len(messages)
    trades = sum(
        len(d["params"]["data"])
        for d in docs
        if d.get("params", {}).get("channel") == "trades.option.BTC.100ms"
    )
    assert trades == summary.option_trades > 0
    assert summary.counts["heartbeat"] == summary.counts["test"] == 9  # every 30 s
    assert summary.counts["price_index"] == summary.counts["volatility_index"] == 300  # 1 s
    assert summary.first_recv_ns == messages[0].recv_ns
    assert summary.last_recv_ns == messages[-1].recv_ns


# --------------------------------------------------------------------------- pricing


def test_option_tickers_carry_black76_greeks_of_their_own_inputs(default_session):
    _, _, _, docs = default_session
    expiry_ms = {i["instrument_name"]: i["expiration_timestamp"] for i in docs[0]["result"]}
    checked = 0
    for doc in docs[4:]:
        channel = doc.get("params", {}).get("channel", "")
        if not channel.startswith("ticker.BTC-") or "PERPETUAL" in channel:
            continue
        t = doc["params"]["data"]
        name = t["instrument_name"]
        assert channel == f"ticker.{name}.100ms" and t["state"] == "open"
        strike, is_call = float(name.split("-")[2]), name.endswith("-C")
        forward, index, iv = t["underlying_price"], t["index_price"], t["mark_iv"] / 100
        tau = (expiry_ms[name] - t["timestamp"]) / MS_PER_YEAR
        assert tau > 0
        assert t["estimated_delivery_price"] == index and t["interest_rate"] == 0.0
        # the slow reference of tests/reference.py, not the bsm_gamma the simulator prices with
        assert t["greeks"]["gamma"] == round(black76_gamma(forward, strike, tau, iv), 5)
        sd = iv * math.sqrt(tau)
        d1 = (math.log(forward / strike) + 0.5 * sd * sd) / sd
        d2 = d1 - sd
        delta = norm_cdf(d1) - (0.0 if is_call else 1.0)
        assert abs(t["greeks"]["delta"] - delta) <= 0.5e-5 + 1e-12
        usd = forward * norm_cdf(d1) - strike * norm_cdf(d2)
        usd = usd if is_call else usd - forward + strike  # put-call parity on the forward
        assert t["mark_price"] == pytest.approx(max(usd / index, 0.0001), abs=0.5e-4 + 1e-12)
        vega = forward * math.exp(-0.5 * d1 * d1) / math.sqrt(2 * math.pi) * math.sqrt(tau) / 100
        assert t["greeks"]["vega"] == pytest.approx(vega, abs=1e-5)
        assert t["best_bid_price"] <= t["mark_price"] <= t["best_ask_price"]
        assert t["open_interest"] >= 0
        checked += 1
    assert checked == 60_028  # every option ticker of the seeded session


def test_open_interest_moves_with_taker_trades(default_session):
    _, _, _, docs = default_session
    oi = {r["instrument_name"]: r["open_interest"] for r in docs[1]["result"]}
    moved = 0
    for doc in docs[4:]:
        channel = doc.get("params", {}).get("channel", "")
        if channel == "trades.option.BTC.100ms":
            for trade in doc["params"]["data"]:
                name = trade["instrument_name"]
                sign = 1 if trade["direction"] == "buy" else -1  # a taker buy opens
                oi[name] = round(max(oi[name] + sign * trade["amount"], 0.0), 1)
                assert trade["contracts"] == trade["amount"] > 0
                moved += 1
        elif channel.startswith("ticker.BTC-") and "PERPETUAL" not in channel:
            data = doc["params"]["data"]
            assert data["open_interest"] == oi[data["instrument_name"]]
    assert moved > 100


# --------------------------------------------------------------------------- scenario


def _final_snapshot(docs) -> ChainSnapshot:
    """The book as the last ticker of every option shows it, normalised independently."""
    expiry_ms = {i["instrument_name"]: i["expiration_timestamp"] for i in docs[0]["result"]}
    last = {}
    for doc in docs[4:]:
        channel = doc.get("params", {}).get("channel", "")
        if channel.startswith("ticker.BTC-") and "PERPETUAL" not in channel:
            last[doc["params"]["data"]["instrument_name"]] = doc["params"]["data"]
    asof_ms = max(t["timestamp"] for t in last.values())
    index = max(last.values(), key=lambda t: t["timestamp"])["index_price"]
    contracts = []
    for name, t in last.items():
        _, _, strike, right = name.split("-")
        contracts.append(
            OptionContract(
                venue="deribit",
                underlying="BTC",
                instrument=name,
                root="BTC",
                expiry_ns=expiry_ms[name] * 1_000_000,
                strike=Decimal(strike),
                right=OptionRight(right),
                multiplier=1.0,
                open_interest=t["open_interest"],
                iv=t["mark_iv"] / 100,
                underlying_price=t["underlying_price"],
                index_price=t["index_price"],
                ts_event_ns=t["timestamp"] * 1_000_000,
                ts_recv_ns=t["timestamp"] * 1_000_000,
            )
        )
    return ChainSnapshot("deribit", "BTC", index, asof_ms * 1_000_000, tuple(contracts))


def test_default_scenario_crosses_zero_gamma_down_then_breaks_the_put_wall(default_session):
    summary, _, messages, docs = default_session
    # Levels computed with the engine from the session's own book summary.
    snapshot = parse_book_summary(docs[1], docs[0], messages[1].recv_ns)
    start = levels_of(snapshot, LevelsConfig()).buckets["all"]
    zero, put_wall, call_wall = start.zero_gamma, start.put_wall, start.call_wall
    spot0 = DEFAULT.initial_spot
    assert put_wall < zero < spot0 < call_wall
    assert 0.002 < 1 - zero / spot0 < 0.02  # zero gamma a little below spot
    assert start.regime == "positive"
    assert summary.initial_levels["zero_gamma"] == pytest.approx(zero, rel=1e-9)
    assert (summary.initial_levels["put_wall"], summary.initial_levels["call_wall"]) == (
        put_wall,
        call_wall,
    )
    ticks = [
        (m.recv_ns, d["params"]["data"]["price"])
        for m, d in zip(messages, docs, strict=True)
        if d.get("params", {}).get("channel") == "deribit_price_index.btc_usd"
    ]
    assert ticks[0][1] > zero
    below_zero = next(t for t, price in ticks if price < zero)
    below_wall = next(t for t, price in ticks if price < put_wall)
    assert below_zero < below_wall
    assert ticks[-1][1] < put_wall  # the break holds to the end
    # The summary follows the path between the 1 s ticks too.
    assert summary.spot_min <= min(p for _, p in ticks) + 0.005
    assert min(p for _, p in ticks) == pytest.approx(summary.spot_min, rel=3e-3)
    assert ticks[-1][1] == pytest.approx(summary.spot_final, rel=3e-3)
    # The simulator's own record agrees: zero gamma first (down), then the put wall.
    crossings = [(c.level, c.direction) for c in summary.crossings]
    assert crossings[0] == ("zero_gamma", "down")
    flip = summary.crossings[0]
    assert abs(flip.ts_ns - below_zero) < 5_000_000_000
    breaks = [c for c in summary.crossings[1:] if c.level == "put_wall" and c.direction == "down"]
    assert breaks and breaks[-1].price == put_wall
    assert abs(breaks[-1].ts_ns - below_wall) < 5_000_000_000
    assert ("zero_gamma", "up") not in crossings
    # By the end dealers are short gamma: re-priced from the last tickers, net GEX < 0.
    end = levels_of(_final_snapshot(docs), LevelsConfig()).buckets["all"]
    assert end.net_gex < 0 and end.regime == "negative"
    assert summary.final_levels["net_gex"] < 0


def test_an_expiry_settles_inside_a_session_that_spans_0800(tmp_path):
    start = DEFAULT_START_NS + 29 * 60 * 10**9 + 40 * 10**9  # 07:59:40 UTC
    config = SessionConfig(n_instruments=300, duration_s=40.0, start_ns=start, scenario="none")
    summary = write_session(config, tmp_path / "settle.jsonl")
    docs = [
        m.json() for m in (decode_capture_line(x) for x in (tmp_path / "settle.jsonl").open("rb"))
    ]
    expiring = {
        i["instrument_name"]: i["expiration_timestamp"]
        for i in docs[0]["result"]
        if i["expiration_timestamp"] * 1_000_000 < start + 40 * 10**9
    }
    assert expiring and set(summary.settled) == set(expiring)
    states = [d["params"]["data"] for d in docs if "instrument.state" in str(d.get("params"))]
    assert Counter(s["state"] for s in states) == {
        "terminated": len(expiring),
        "settled": len(expiring),
    }
    assert all(s["timestamp"] >= expiring[s["instrument_name"]] for s in states)
    for doc in docs:
        data = doc.get("params", {}).get("data")
        if isinstance(data, dict) and data.get("instrument_name") in expiring and "greeks" in data:
            assert data["timestamp"] < expiring[data["instrument_name"]]
    assert summary.counts["instrument_state"] == 2 * len(expiring)


# --------------------------------------------------------------------------- sizes, config


@pytest.mark.parametrize("n", [300, 10_000])
def test_the_requested_number_of_instruments(n):
    config = SessionConfig(n_instruments=n, duration_s=0.5, seed=3)
    messages = generate_session(config)
    instruments, summary, _, subscribe = (next(messages).json() for _ in range(4))
    assert len(instruments["result"]) == len(summary["result"]) == n
    names = {i["instrument_name"] for i in instruments["result"]}
    assert len(names) == n
    assert len(subscribe["result"]) == n + 5
    assert {i["option_type"] for i in instruments["result"]} == {"call", "put"}
    expiries = {i["expiration_timestamp"] for i in instruments["result"]}
    assert len(expiries) >= 12
    assert sum(1 for _ in messages) > 0


@pytest.mark.parametrize(
    "changes",
    [
        {"currency": "SOL"},
        {"n_instruments": 298},
        {"n_instruments": 10_002},
        {"n_instruments": 301},
        {"n_instruments": 300.0},
        {"duration_s": 0.0},
        {"duration_s": math.inf},
        {"seed": -1},
        {"seed": 1.5},
        {"start_ns": 1.7e18},
        {"start_ns": 0},
        {"spot0": -1.0},
        {"spot0": math.nan},
        {"ticker_interval_s": 0.0},
        {"index_interval_s": -1.0},
        {"dvol_interval_s": "1"},
        {"perpetual_interval_s": math.nan},
        {"trades_rate_per_s": -0.1},
        {"feedback": 1},
        {"scenario": "moon"},
        {"feedback_interval_s": 0.0},
    ],
)
def test_invalid_config_is_rejected(changes):
    with pytest.raises(ValueError, match=next(iter(changes))):
        SessionConfig(**changes)


def test_eth_sessions_use_eth_names_and_index():
    messages = generate_session(SessionConfig(currency="ETH", n_instruments=300, duration_s=2.0))
    instruments = next(messages).json()["result"]
    assert all(i["instrument_name"].startswith("ETH-") for i in instruments)
    assert {i["price_index"] for i in instruments} == {"eth_usd"}
    channels = {m.json().get("params", {}).get("channel") for m in messages}
    assert "deribit_price_index.eth_usd" in channels
    assert "ticker.ETH-PERPETUAL.100ms" in channels

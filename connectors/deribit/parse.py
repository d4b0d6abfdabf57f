"""Pure parsers for Deribit option instrument names and book-summary responses."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from connectors.common.errors import ParseError
from connectors.common.fields import event_time, validated
from connectors.common.funding import funding_rate
from connectors.deribit.wire import (
    DeribitBookSummary,
    DeribitGreeks,
    DeribitInstrument,
    DeribitInstrumentState,
    DeribitOptionTicker,
    DeribitPerpetualTicker,
    DeribitPriceIndex,
    DeribitTrade,
    DeribitVolatilityIndex,
)
from engine.core.settlement import deribit_expiry_ns, ms_to_ns
from schemas.chain import ChainSnapshot
from schemas.contracts import OptionContract, OptionRight
from schemas.records import FundingRate, InstrumentState, OptionTrade, UnderlyingTick, VolIndexTick

VENUE = "deribit"

_MONTHS = {
    name: number
    for number, name in enumerate(
        ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"),
        start=1,
    )
}
# "BTC-27DEC24-60000-C", "BTC-2APR20-7125-P", "XRP_USDC-30MAY25-0d625-C" ("d" = decimal point)
_OPTION_NAME_RE = re.compile(
    r"([A-Z0-9]+(?:_[A-Z0-9]+)?)-(\d{1,2})([A-Z]{3})(\d{2})-(\d+(?:d\d+)?)-([CP])", re.ASCII
)
# name suffix and get_instruments option_type
_RIGHTS = {
    "C": OptionRight.CALL,
    "P": OptionRight.PUT,
    "call": OptionRight.CALL,
    "put": OptionRight.PUT,
}


@dataclass(frozen=True, slots=True)
class DeribitOptionName:
    currency: str  # name prefix: "BTC", or "XRP_USDC" for linear options
    expiry: date  # expiry date (settles 08:00 UTC that day)
    strike: Decimal  # exact, in USD
    right: OptionRight

    @property
    def base(self) -> str:
        """The underlying coin: "BTC" for "BTC", "XRP" for "XRP_USDC"."""
        return self.currency.split("_", 1)[0]


def parse_instrument_name(name: str) -> DeribitOptionName:
    """Parse a Deribit option name: ``BTC-27DEC24-60000-C``, ``XRP_USDC-30MAY25-0d625-C``."""
    if not isinstance(name, str):
        raise ParseError(f"bad Deribit option name {name!r}: not a string", "bad_instrument")
    match = _OPTION_NAME_RE.fullmatch(name)
    if match is None:
        raise ParseError(
            f"bad Deribit option name {name!r}: expected CURRENCY-DMMMYY-STRIKE-C|P",
            "bad_instrument",
        )
    currency, day, month, year, strike_text, right = match.groups()
    try:
        expiry = date(2000 + int(year), _MONTHS[month], int(day))
    except (KeyError, ValueError):
        raise ParseError(
            f"bad Deribit option name {name!r}: {day}{month}{year} is not a date", "bad_instrument"
        ) from None
    strike = Decimal(strike_text.replace("d", "."))
    if not strike:
        raise ParseError(f"bad Deribit option name {name!r}: zero strike", "bad_instrument")
    return DeribitOptionName(currency=currency, expiry=expiry, strike=strike, right=_RIGHTS[right])


def is_option_name(name: object) -> bool:
    """True for names shaped like an option (``X-DMMMYY-K-C|P``); futures, perps, combos: False."""
    if not isinstance(name, str):
        return False
    parts = name.split("-")
    return len(parts) == 4 and parts[3] in {"C", "P"}


# ---------------------------------------------------------------------------- book summary


def _rpc_result(response: Any, what: str) -> list[Any]:
    """The ``result`` list of a JSON-RPC response, or the list itself."""
    if isinstance(response, list):
        return response
    if isinstance(response, dict):
        if "error" in response:
            error = response["error"] or {}
            detail = error.get("message") if isinstance(error, dict) else error
            code = error.get("code") if isinstance(error, dict) else None
            raise ParseError(f"{what}: Deribit returned error {code}: {detail}", "rpc_error")
        result = response.get("result")
        if isinstance(result, list):
            return result
        if isinstance(result, dict):  # public/get_instrument: one entry
            return [result]
    raise ParseError(f"{what}: expected a JSON-RPC response with a 'result' list, or a list")


def _canonical(value: Decimal) -> Decimal:
    """60000.0 → 60000, 0.6250 → 0.625 (no exponent notation)."""
    if value == value.to_integral_value():
        return value.quantize(Decimal(1))
    return value.normalize()


@dataclass(frozen=True, slots=True)
class OptionTerms:
    """Static terms of one option contract, from its name and (if known) its instrument entry."""

    strike: Decimal  # exact, USD
    right: OptionRight
    expiry_ns: int  # settlement instant, ns since the epoch
    multiplier: float  # contract size, coins
    underlying: str = ""  # the coin: "BTC"
    premium_currency: str = ""  # "BTC"; "USDC" for linear options


def parse_instruments(response: Any) -> list[DeribitInstrument]:
    """A ``public/get_instruments`` / ``get_instrument`` response (or its result list),
    each entry validated."""
    rows = _rpc_result(response, "Deribit instruments")
    return [validated(entry, DeribitInstrument, "Deribit", "instrument_name") for entry in rows]


def option_terms(name: str, instrument: DeribitInstrument | None = None) -> OptionTerms:
    """Terms of option ``name``; from its ``get_instruments`` entry when given (checked)."""
    return _terms(name, parse_instrument_name(name), instrument)


def _terms(
    name: str, parsed: DeribitOptionName, instrument: DeribitInstrument | None
) -> OptionTerms:
    """Contract terms: from the instrument entry when given (checked against the name)."""
    premium = parsed.currency.split("_", 1)[1] if "_" in parsed.currency else parsed.currency
    if instrument is None:
        return OptionTerms(
            parsed.strike, parsed.right, deribit_expiry_ns(parsed.expiry), 1.0, parsed.base, premium
        )
    where = f"Deribit {name} (get_instruments)"
    if instrument.strike is None or instrument.expiration_timestamp is None:
        missing = "strike" if instrument.strike is None else "expiration_timestamp"
        raise ParseError(f"{where}: {missing} missing", "missing_field")
    strike = _canonical(Decimal(repr(instrument.strike)))
    expiration_ms = instrument.expiration_timestamp
    right = _RIGHTS.get(instrument.option_type)  # type: ignore[arg-type]
    expiry_day = datetime.fromtimestamp(expiration_ms / 1000, tz=UTC).date()
    if strike != parsed.strike or right is not parsed.right or expiry_day != parsed.expiry:
        raise ParseError(
            f"Deribit {name}: instrument says strike {strike}, {instrument.option_type}, "
            f"expiring {expiry_day}; the name says otherwise",
            "bad_instrument",
        )
    quote = instrument.quote_currency
    return OptionTerms(
        strike,
        right,
        ms_to_ns(expiration_ms),
        instrument.contract_size or 1.0,
        parsed.base,
        quote if quote else premium,
    )


def _delivery_price(value: float | str | None) -> float | None:
    """``estimated_delivery_price`` (USD); None once it reads "expired" after settlement."""
    return None if value == "expired" else value  # type: ignore[return-value]


def _option_contract(
    row: DeribitBookSummary,
    terms: OptionTerms,
    parsed: DeribitOptionName,
    recv_ns: int,
    live: bool,
) -> OptionContract:
    name = row.instrument_name
    where = f"Deribit {name}"
    if row.underlying_price is None:
        raise ParseError(f"{where}: underlying_price missing", "missing_field")
    if row.open_interest is None:
        raise ParseError(f"{where}: open_interest missing", "missing_field")
    mark_iv = row.mark_iv  # percent; absent in older captures
    return OptionContract(
        venue=VENUE,
        underlying=parsed.base,
        instrument=name,
        root=parsed.base,
        expiry_ns=terms.expiry_ns,
        strike=terms.strike,
        right=terms.right,
        multiplier=terms.multiplier,
        open_interest=row.open_interest,
        iv=mark_iv / 100 if mark_iv else None,
        underlying_price=row.underlying_price,
        index_price=_delivery_price(row.estimated_delivery_price),
        ts_event_ns=event_time(
            ms_to_ns(row.creation_timestamp), recv_ns if live else 0, where, "creation_timestamp"
        ),
        ts_recv_ns=recv_ns,
        bid=row.bid_price,
        ask=row.ask_price,
        mark=row.mark_price,
        premium_currency=row.quote_currency or parsed.currency,
    )


def parse_book_summary(
    response: Any,
    instruments: Any = None,
    recv_ns: int = 0,
    live: bool = False,
    rejected: list[str] | None = None,
) -> ChainSnapshot:
    """Normalise a ``public/get_book_summary_by_currency`` response into a chain snapshot.

    ``response`` is the JSON-RPC response dict or its ``result`` list. ``instruments`` (a
    ``public/get_instruments`` response or its result list, decoded or already validated)
    supplies exact strike, expiry and contract size; without it they come from the name
    (08:00 UTC, size 1). Futures and perpetual rows are skipped, so a response without
    options yields an empty snapshot. Spot = median numeric ``estimated_delivery_price``,
    else the nearest expiry's forward; asof = the latest ``creation_timestamp``. Every row
    is validated (``schemas.domain``); one bad row rejects the snapshot with its reason.
    ``live``: ``recv_ns`` is a receive clock, so row times are checked against it (a file
    read later is not checked). With ``rejected`` (a list), a bad row is left out and its
    reason appended there instead (a bad row is not a bad document).
    """
    rows = _rpc_result(response, "Deribit book summary")
    by_name = _instrument_table(instruments) if instruments is not None else {}
    contracts: list[OptionContract] = []
    index_prices: list[float] = []
    created: list[int] = []
    for raw_row in rows:
        try:
            row = validated(raw_row, DeribitBookSummary, "Deribit book summary", "instrument_name")
            name = row.instrument_name
            contract = None
            if is_option_name(name):  # futures, perpetual, combos: their index price only
                parsed = parse_instrument_name(name)
                terms = _terms(name, parsed, by_name.get(name))
                contract = _option_contract(row, terms, parsed, recv_ns, live)
        except ParseError as exc:
            if rejected is None:
                raise
            rejected.append(exc.reason)
            continue
        if not created:
            first_row = raw_row
        created.append(row.creation_timestamp)
        index_price = _delivery_price(row.estimated_delivery_price)
        if index_price is not None:
            index_prices.append(index_price)
        if contract is not None:
            contracts.append(contract)
    if not created:
        first = f": {rejected[0]}" if rejected else ""
        raise ParseError(f"Deribit book summary: no rows{first}")
    currencies = sorted({c.underlying for c in contracts})
    if len(currencies) > 1:
        raise ParseError(f"Deribit book summary mixes currencies {', '.join(currencies)}")
    if index_prices:
        spot = statistics.median(index_prices)
    elif contracts:
        spot = min(contracts, key=lambda c: c.expiry_ns).underlying_price
    else:
        raise ParseError("Deribit book summary: no option rows and no numeric index price")
    return ChainSnapshot(
        venue=VENUE,
        underlying=currencies[0] if currencies else _row_currency(first_row),
        spot=float(spot),
        asof_ns=ms_to_ns(max(created)),
        contracts=tuple(contracts),
    )


def _instrument_table(instruments: Any) -> dict[str, DeribitInstrument]:
    if isinstance(instruments, list) and all(isinstance(e, DeribitInstrument) for e in instruments):
        entries = instruments
    else:
        entries = parse_instruments(instruments)
    return {entry.instrument_name: entry for entry in entries}


def _row_currency(row: dict[str, Any]) -> str:
    base = row.get("base_currency")
    if isinstance(base, str) and base:
        return base
    return str(row["instrument_name"]).split("-", 1)[0].split("_", 1)[0]


# ---------------------------------------------------------------------------- subscriptions


def _coin(index_name: str) -> str:
    """ "btc_usd" → "BTC"."""
    return index_name.split("_", 1)[0].upper()


_NO_GREEKS = DeribitGreeks()


def parse_option_ticker(data: Any, terms: OptionTerms, recv_ns: int) -> OptionContract:
    """An option ``ticker.{instrument}.{interval}`` payload → OptionContract.

    ``terms`` are the contract's static terms (:func:`option_terms`, cached by the caller).
    """
    if not isinstance(data, dict):
        raise ParseError(f"Deribit option ticker: data is not an object: {data!r:.80}")
    ticker = validated(data, DeribitOptionTicker, "Deribit ticker", "instrument_name")
    name = ticker.instrument_name
    where = f"Deribit ticker {name}"
    mark_iv = ticker.mark_iv  # percent; 0 = none
    greeks = ticker.greeks or _NO_GREEKS
    index_price = ticker.index_price
    if index_price is None:
        index_price = _delivery_price(ticker.estimated_delivery_price)
    return OptionContract(
        venue=VENUE,
        underlying=terms.underlying,
        instrument=name,
        root=terms.underlying,
        expiry_ns=terms.expiry_ns,
        strike=terms.strike,
        right=terms.right,
        multiplier=terms.multiplier,
        open_interest=ticker.open_interest,
        iv=mark_iv / 100 if mark_iv else None,
        underlying_price=ticker.underlying_price,
        index_price=index_price,
        ts_event_ns=event_time(ms_to_ns(ticker.timestamp), recv_ns, where),
        ts_recv_ns=recv_ns,
        bid=ticker.best_bid_price or None,
        ask=ticker.best_ask_price or None,
        mark=ticker.mark_price,
        premium_currency=terms.premium_currency,
        gamma=greeks.gamma,
        delta=greeks.delta,
        vega=greeks.vega,
        theta=greeks.theta,
    )


def parse_price_index(data: Any, recv_ns: int) -> UnderlyingTick:
    """``deribit_price_index.{index}`` payload → UnderlyingTick (kind "index")."""
    index = validated(data, DeribitPriceIndex, "Deribit price index", "index_name")
    where = f"Deribit price index {index.index_name}"
    ts = event_time(ms_to_ns(index.timestamp), recv_ns, where)
    return UnderlyingTick(
        VENUE, _coin(index.index_name), index.index_name, "index", index.price, ts, recv_ns
    )


def parse_volatility_index(data: Any, recv_ns: int) -> VolIndexTick:
    """``deribit_volatility_index.{index}`` payload (DVOL) → VolIndexTick."""
    index = validated(data, DeribitVolatilityIndex, "Deribit volatility index", "index_name")
    where = f"Deribit volatility index {index.index_name}"
    ts = event_time(ms_to_ns(index.timestamp), recv_ns, where)
    return VolIndexTick(
        VENUE, _coin(index.index_name), index.index_name, index.volatility, ts, recv_ns
    )


def parse_perpetual_ticker(data: Any, recv_ns: int) -> FundingRate:
    """``ticker.{CCY}-PERPETUAL.{interval}`` payload → FundingRate.

    Deribit funding accrues continuously; ``funding_8h`` is the rate stated per 8 hours.
    The inverse perpetuals (``BTC-PERPETUAL``, ``ETH-PERPETUAL``) state ``open_interest`` in
    USD; linear ones (``BTC_USDC-PERPETUAL``) in coins, so it is valued at the mark.
    """
    ticker = validated(data, DeribitPerpetualTicker, "Deribit ticker", "instrument_name")
    name = ticker.instrument_name
    where = f"Deribit ticker {name}"
    open_interest, mark = ticker.open_interest, ticker.mark_price
    if open_interest is not None and "_" in name.split("-", 1)[0]:
        open_interest = open_interest * mark if mark is not None else None
    return funding_rate(
        venue=VENUE,
        instrument=name,
        rate=ticker.funding_8h,
        interval_hours=8.0,
        mark_price=mark,
        open_interest_usd=open_interest,
        index_price=ticker.index_price,
        next_funding_ns=None,
        ts_event_ns=event_time(ms_to_ns(ticker.timestamp), recv_ns, where),
        ts_recv_ns=recv_ns,
    )


def parse_trades(data: Any, recv_ns: int, premium_currency: dict[str, str]) -> list[OptionTrade]:
    """``trades.option.{CCY}.{interval}`` payload (a list) → OptionTrades (taker side).

    ``premium_currency`` maps an instrument to its premium currency (default: its coin).
    """
    if not isinstance(data, list):
        raise ParseError(f"Deribit trades: data is not a list: {data!r:.80}")
    out = []
    for index, entry in enumerate(data):
        trade = validated(entry, DeribitTrade, f"Deribit trade [{index}]", "instrument_name")
        name = trade.instrument_name
        where = f"Deribit trade on {name}"
        iv = trade.iv  # percent
        coin = parse_instrument_name(name).base
        out.append(
            OptionTrade(
                venue=VENUE,
                underlying=coin,
                instrument=name,
                trade_id=str(trade.trade_id),
                direction=trade.direction,
                amount=trade.amount,
                price=trade.price,
                premium_currency=premium_currency.get(name, coin),
                iv=iv / 100 if iv is not None else None,
                index_price=trade.index_price,
                ts_event_ns=event_time(ms_to_ns(trade.timestamp), recv_ns, where),
                ts_recv_ns=recv_ns,
            )
        )
    return out


def parse_instrument_state(data: Any, recv_ns: int) -> InstrumentState:
    """``instrument.state.{kind}.{currency}`` payload → InstrumentState."""
    state = validated(data, DeribitInstrumentState, "Deribit instrument state", "instrument_name")
    name = state.instrument_name
    where = f"Deribit instrument state of {name}"
    coin = name.split("-", 1)[0].split("_", 1)[0]
    ts = event_time(ms_to_ns(state.timestamp), recv_ns, where)
    return InstrumentState(VENUE, coin, name, state.state, ts, recv_ns)

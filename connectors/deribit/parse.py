"""Pure parsers for Deribit option instrument names and book-summary responses."""

from __future__ import annotations

import re
import statistics
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

from connectors.common.errors import ParseError
from connectors.common.fields import optional_number, required_number
from connectors.common.funding import funding_rate
from connectors.deribit.wire import (
    DeribitBookSummary,
    DeribitBookSummaryResponse,
    DeribitInstrument,
    DeribitInstrumentsResponse,
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
        raise ParseError(f"bad Deribit option name {name!r}: not a string")
    match = _OPTION_NAME_RE.fullmatch(name)
    if match is None:
        raise ParseError(f"bad Deribit option name {name!r}: expected CURRENCY-DMMMYY-STRIKE-C|P")
    currency, day, month, year, strike_text, right = match.groups()
    try:
        expiry = date(2000 + int(year), _MONTHS[month], int(day))
    except (KeyError, ValueError):
        raise ParseError(
            f"bad Deribit option name {name!r}: {day}{month}{year} is not a date"
        ) from None
    strike = Decimal(strike_text.replace("d", "."))
    if not strike:
        raise ParseError(f"bad Deribit option name {name!r}: zero strike")
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
            raise ParseError(f"{what}: Deribit returned error {code}: {detail}")
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


def _index_instruments(instruments: Any) -> dict[str, dict[str, Any]]:
    rows = _rpc_result(instruments, "Deribit instruments")
    out: dict[str, dict[str, Any]] = {}
    for entry in rows:
        if not isinstance(entry, dict) or not isinstance(entry.get("instrument_name"), str):
            raise ParseError(f"Deribit instruments: entry without instrument_name: {entry!r:.80}")
        out[entry["instrument_name"]] = entry
    return out


def option_terms(name: str, instrument: dict[str, Any] | None = None) -> OptionTerms:
    """Terms of option ``name``; from its ``get_instruments`` entry when given (checked)."""
    return _terms(name, parse_instrument_name(name), instrument)


def _terms(name: str, parsed: DeribitOptionName, instrument: dict[str, Any] | None) -> OptionTerms:
    """Contract terms: from the instrument entry when given (checked against the name)."""
    premium = parsed.currency.split("_", 1)[1] if "_" in parsed.currency else parsed.currency
    if instrument is None:
        return OptionTerms(
            parsed.strike, parsed.right, deribit_expiry_ns(parsed.expiry), 1.0, parsed.base, premium
        )
    where = f"Deribit {name} (get_instruments)"
    strike = _canonical(Decimal(repr(required_number(instrument, "strike", where))))
    expiration_ms = required_number(instrument, "expiration_timestamp", where)
    contract_size = optional_number(instrument, "contract_size", where)
    right = _RIGHTS.get(instrument.get("option_type"))  # type: ignore[arg-type]
    expiry_day = datetime.fromtimestamp(expiration_ms / 1000, tz=UTC).date()
    if strike != parsed.strike or right is not parsed.right or expiry_day != parsed.expiry:
        raise ParseError(
            f"Deribit {name}: instrument says strike {strike}, {instrument.get('option_type')}, "
            f"expiring {expiry_day}; the name says otherwise"
        )
    if contract_size is not None and contract_size <= 0:
        raise ParseError(f"{where}: contract_size must be positive, got {contract_size}")
    quote = instrument.get("quote_currency")
    return OptionTerms(
        strike,
        right,
        ms_to_ns(expiration_ms),
        contract_size or 1.0,
        parsed.base,
        quote if isinstance(quote, str) and quote else premium,
    )


def _index_price(row: dict[str, Any], where: str) -> float | None:
    """``estimated_delivery_price`` (USD); None once it reads "expired" after settlement."""
    if row.get("estimated_delivery_price") == "expired":
        return None
    return optional_number(row, "estimated_delivery_price", where)


def _option_contract(
    row: dict[str, Any], name: str, terms: OptionTerms, parsed: DeribitOptionName, recv_ns: int
) -> OptionContract:
    where = f"Deribit {name}"
    mark_iv = optional_number(row, "mark_iv", where)  # percent; absent in older captures
    premium_currency = row.get("quote_currency")
    return OptionContract(
        venue=VENUE,
        underlying=parsed.base,
        instrument=name,
        root=parsed.base,
        expiry_ns=terms.expiry_ns,
        strike=terms.strike,
        right=terms.right,
        multiplier=terms.multiplier,
        open_interest=required_number(row, "open_interest", where),
        iv=mark_iv / 100 if mark_iv is not None else None,
        underlying_price=required_number(row, "underlying_price", where),
        index_price=_index_price(row, where),
        ts_event_ns=ms_to_ns(required_number(row, "creation_timestamp", where)),
        ts_recv_ns=recv_ns,
        bid=optional_number(row, "bid_price", where),
        ask=optional_number(row, "ask_price", where),
        mark=optional_number(row, "mark_price", where),
        premium_currency=premium_currency if isinstance(premium_currency, str) else parsed.currency,
    )


def parse_book_summary(
    response: DeribitBookSummaryResponse | list[DeribitBookSummary],
    instruments: DeribitInstrumentsResponse | list[DeribitInstrument] | None = None,
    recv_ns: int = 0,
) -> ChainSnapshot:
    """Normalise a ``public/get_book_summary_by_currency`` response into a chain snapshot.

    ``response`` is the JSON-RPC response dict or its ``result`` list. ``instruments`` (a
    ``public/get_instruments`` response or its result list) supplies exact strike, expiry
    and contract size; without it they come from the name (08:00 UTC, size 1). Futures and
    perpetual rows are skipped, so a response without options yields an empty snapshot.
    Spot = median numeric ``estimated_delivery_price``, else the nearest expiry's forward;
    asof = the latest ``creation_timestamp``.
    """
    rows = _rpc_result(response, "Deribit book summary")
    by_name = _index_instruments(instruments) if instruments is not None else {}
    contracts: list[OptionContract] = []
    index_prices: list[float] = []
    created: list[float] = []
    for row in rows:
        if not isinstance(row, dict):
            raise ParseError(f"Deribit book summary: row is not an object: {row!r:.80}")
        name = row.get("instrument_name")
        if not isinstance(name, str):
            raise ParseError(f"Deribit book summary: row without instrument_name: {row!r:.80}")
        created.append(required_number(row, "creation_timestamp", f"Deribit {name}"))
        index_price = _index_price(row, f"Deribit {name}")
        if index_price is not None:
            index_prices.append(index_price)
        if not is_option_name(name):
            continue  # futures, perpetual, combos
        parsed = parse_instrument_name(name)
        terms = _terms(name, parsed, by_name.get(name))
        contracts.append(_option_contract(row, name, terms, parsed, recv_ns))
    if not rows:
        raise ParseError("Deribit book summary: no rows")
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
        underlying=currencies[0] if currencies else _row_currency(rows[0]),
        spot=float(spot),
        asof_ns=ms_to_ns(max(created)),
        contracts=tuple(contracts),
    )


def _row_currency(row: dict[str, Any]) -> str:
    base = row.get("base_currency")
    if isinstance(base, str) and base:
        return base
    return str(row["instrument_name"]).split("-", 1)[0].split("_", 1)[0]


# ---------------------------------------------------------------------------- subscriptions


def _positive_or_none(obj: dict[str, Any], key: str, where: str) -> float | None:
    value = optional_number(obj, key, where)
    return value if value is not None and value > 0 else None


def _required_str(obj: Any, key: str, where: str) -> str:
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value:
        raise ParseError(f"{where}: missing {key}")
    return value


def _ms(obj: dict[str, Any], where: str) -> int:
    return ms_to_ns(required_number(obj, "timestamp", where))


def _coin(index_name: str) -> str:
    """ "btc_usd" → "BTC"."""
    return index_name.split("_", 1)[0].upper()


def parse_option_ticker(data: Any, terms: OptionTerms, recv_ns: int) -> OptionContract:
    """An option ``ticker.{instrument}.{interval}`` payload → OptionContract.

    ``terms`` are the contract's static terms (:func:`option_terms`, cached by the caller).
    """
    if not isinstance(data, dict):
        raise ParseError(f"Deribit option ticker: data is not an object: {data!r:.80}")
    name = _required_str(data, "instrument_name", "Deribit option ticker")
    where = f"Deribit ticker {name}"
    mark_iv = optional_number(data, "mark_iv", where)  # percent
    greeks = data.get("greeks")
    if greeks is not None and not isinstance(greeks, dict):
        raise ParseError(f"{where}: greeks is not an object")
    greeks = greeks or {}
    index_price = optional_number(data, "index_price", where)
    if index_price is None:
        index_price = _index_price(data, where)
    return OptionContract(
        venue=VENUE,
        underlying=terms.underlying,
        instrument=name,
        root=terms.underlying,
        expiry_ns=terms.expiry_ns,
        strike=terms.strike,
        right=terms.right,
        multiplier=terms.multiplier,
        open_interest=required_number(data, "open_interest", where),
        iv=mark_iv / 100 if mark_iv is not None and mark_iv > 0 else None,
        underlying_price=required_number(data, "underlying_price", where),
        index_price=index_price,
        ts_event_ns=_ms(data, where),
        ts_recv_ns=recv_ns,
        bid=_positive_or_none(data, "best_bid_price", where),
        ask=_positive_or_none(data, "best_ask_price", where),
        mark=optional_number(data, "mark_price", where),
        premium_currency=terms.premium_currency,
        gamma=optional_number(greeks, "gamma", where),
        delta=optional_number(greeks, "delta", where),
        vega=optional_number(greeks, "vega", where),
        theta=optional_number(greeks, "theta", where),
    )


def parse_price_index(data: Any, recv_ns: int) -> UnderlyingTick:
    """``deribit_price_index.{index}`` payload → UnderlyingTick (kind "index")."""
    index_name = _required_str(data, "index_name", "Deribit price index")
    where = f"Deribit price index {index_name}"
    price = required_number(data, "price", where)
    if price <= 0:
        raise ParseError(f"{where}: price must be positive, got {price}")
    return UnderlyingTick(
        VENUE, _coin(index_name), index_name, "index", price, _ms(data, where), recv_ns
    )


def parse_volatility_index(data: Any, recv_ns: int) -> VolIndexTick:
    """``deribit_volatility_index.{index}`` payload (DVOL) → VolIndexTick."""
    index_name = _required_str(data, "index_name", "Deribit volatility index")
    where = f"Deribit volatility index {index_name}"
    value = required_number(data, "volatility", where)
    return VolIndexTick(VENUE, _coin(index_name), index_name, value, _ms(data, where), recv_ns)


def parse_perpetual_ticker(data: Any, recv_ns: int) -> FundingRate:
    """``ticker.{CCY}-PERPETUAL.{interval}`` payload → FundingRate.

    Deribit funding accrues continuously; ``funding_8h`` is the rate stated per 8 hours.
    The inverse perpetuals (``BTC-PERPETUAL``, ``ETH-PERPETUAL``) state ``open_interest`` in
    USD; linear ones (``BTC_USDC-PERPETUAL``) in coins, so it is valued at the mark.
    """
    name = _required_str(data, "instrument_name", "Deribit perpetual ticker")
    where = f"Deribit ticker {name}"
    open_interest = optional_number(data, "open_interest", where)
    mark = optional_number(data, "mark_price", where)
    if open_interest is not None and "_" in name.split("-", 1)[0]:
        open_interest = open_interest * mark if mark is not None else None
    return funding_rate(
        venue=VENUE,
        instrument=name,
        rate=required_number(data, "funding_8h", where),
        interval_hours=8.0,
        mark_price=mark,
        open_interest_usd=open_interest,
        index_price=optional_number(data, "index_price", where),
        next_funding_ns=None,
        ts_event_ns=_ms(data, where),
        ts_recv_ns=recv_ns,
    )


def parse_trades(data: Any, recv_ns: int, premium_currency: dict[str, str]) -> list[OptionTrade]:
    """``trades.option.{CCY}.{interval}`` payload (a list) → OptionTrades (taker side).

    ``premium_currency`` maps an instrument to its premium currency (default: its coin).
    """
    if not isinstance(data, list):
        raise ParseError(f"Deribit trades: data is not a list: {data!r:.80}")
    out = []
    for trade in data:
        name = _required_str(trade, "instrument_name", "Deribit trade")
        where = f"Deribit trade on {name}"
        direction = trade.get("direction")
        if direction not in ("buy", "sell"):
            raise ParseError(f"{where}: direction must be buy or sell, got {direction!r}")
        trade_id = trade.get("trade_id")
        if not isinstance(trade_id, str | int) or isinstance(trade_id, bool):
            raise ParseError(f"{where}: missing trade_id")
        amount = required_number(trade, "amount", where)
        if amount <= 0:
            raise ParseError(f"{where}: amount must be positive, got {amount}")
        iv = optional_number(trade, "iv", where)  # percent
        coin = parse_instrument_name(name).base
        out.append(
            OptionTrade(
                venue=VENUE,
                underlying=coin,
                instrument=name,
                trade_id=str(trade_id),
                direction=direction,
                amount=amount,
                price=required_number(trade, "price", where),
                premium_currency=premium_currency.get(name, coin),
                iv=iv / 100 if iv is not None else None,
                index_price=optional_number(trade, "index_price", where),
                ts_event_ns=_ms(trade, where),
                ts_recv_ns=recv_ns,
            )
        )
    return out


def parse_instrument_state(data: Any, recv_ns: int) -> InstrumentState:
    """``instrument.state.{kind}.{currency}`` payload → InstrumentState."""
    name = _required_str(data, "instrument_name", "Deribit instrument state")
    where = f"Deribit instrument state of {name}"
    state = _required_str(data, "state", where)
    coin = name.split("-", 1)[0].split("_", 1)[0]
    return InstrumentState(VENUE, coin, name, state, _ms(data, where), recv_ns)

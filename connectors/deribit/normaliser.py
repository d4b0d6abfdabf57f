"""Decoded Deribit messages → normalised records, with the instrument table; no I/O.

The same object serves a live session and a replayed capture, so both take one path.
"""

from __future__ import annotations

from typing import Any

from connectors.common.errors import ParseError
from connectors.common.ingest import (
    FUNDING,
    OPTIONS,
    TRADES,
    UNDERLYING,
    VOLINDEX,
    RejectedRows,
    Routed,
)
from connectors.common.series_order import SeriesOrder
from connectors.deribit.parse import (
    OptionTerms,
    is_option_name,
    option_terms,
    parse_book_summary,
    parse_instrument_state,
    parse_instruments,
    parse_option_ticker,
    parse_perpetual_ticker,
    parse_price_index,
    parse_trades,
    parse_volatility_index,
)
from connectors.deribit.wire import DeribitInstrument
from schemas.records import UnderlyingTick


class RpcErrorResponse(ParseError):
    """A JSON-RPC error response (``{"error": {code, message}}``)."""

    def __init__(self, code: int | None, message: str, method: str | None) -> None:
        self.code = code
        self.method = method
        super().__init__(
            f"Deribit error {code} {message} (answering {method or 'unknown'})", "rpc_error"
        )


def rpc_error(doc: dict[str, Any], method: str | None) -> RpcErrorResponse:
    error = doc.get("error")
    error = error if isinstance(error, dict) else {"message": str(error)}
    code = error.get("code")
    return RpcErrorResponse(
        code if isinstance(code, int) else None, str(error.get("message")), method
    )


class DeribitNormaliser:
    """Turns decoded Deribit JSON-RPC messages into normalised records.

    Keeps the ``public/get_instruments`` table (contract sizes, exact strikes, expiries) and
    each option's terms, so a ticker costs one dict lookup for its static fields. Once the
    table is loaded, a ticker of an option it does not list is refused (a name that parses
    but no instrument agrees with). Per series (an instrument's ticker, an index), an update
    older than the last one accepted is refused as out of order and counted in
    ``out_of_order``; equal timestamps are fine.
    """

    def __init__(self) -> None:
        self.instruments: dict[str, DeribitInstrument] = {}
        self._terms: dict[str, OptionTerms] = {}
        self._premium: dict[str, str] = {}
        self.order = SeriesOrder("Deribit")

    def terms(self, name: str) -> OptionTerms:
        terms = self._terms.get(name)
        if terms is None:
            instrument = self.instruments.get(name)
            if instrument is None and self.instruments:
                raise ParseError(
                    f"Deribit {name}: not in the instrument table (get_instruments)",
                    "bad_instrument",
                )
            terms = option_terms(name, instrument)
            self._terms[name] = terms
            self._premium[name] = terms.premium_currency
        return terms

    def set_instruments(self, entries: Any) -> None:
        """Add ``get_instruments`` / ``get_instrument`` entries to the table: a response,
        or its result (a list, or one entry); decoded JSON, validated here."""
        for entry in parse_instruments(entries):
            name = entry.instrument_name
            self.instruments[name] = entry
            self._terms.pop(name, None)

    @property
    def out_of_order(self) -> int:
        """Updates refused as older than their series' last accepted."""
        return self.order.out_of_order

    def _in_order(self, series: str, ts_event_ns: int) -> None:
        self.order.check(series, ts_event_ns)
        self.order.accept(series, ts_event_ns)

    def normalise(
        self, doc: Any, recv_ns: int, request: dict[str, Any] | None = None
    ) -> list[Routed]:
        """Records carried by one decoded message; ParseError (with the reason) when bad."""
        if not isinstance(doc, dict):
            raise ParseError(f"Deribit message is not a JSON object: {doc!r:.80}")
        method = doc.get("method")
        if method == "subscription":
            return self._notification(doc.get("params"), recv_ns)
        if method == "heartbeat":
            return []
        if "result" in doc or "error" in doc:
            return self._response(doc, recv_ns, request)
        raise ParseError(f"unrecognised Deribit message: {str(doc)[:80]}")

    def _response(
        self, doc: dict[str, Any], recv_ns: int, request: dict[str, Any] | None
    ) -> list[Routed]:
        method = request.get("method") if isinstance(request, dict) else None
        if "error" in doc:
            raise rpc_error(doc, method)
        if method in ("public/get_instruments", "public/get_instrument"):
            self.set_instruments(doc)
            return []
        if method == "public/get_book_summary_by_currency":
            table = list(self.instruments.values()) or None
            rejected: list[str] = []
            snapshot = parse_book_summary(doc, table, recv_ns, live=True, rejected=rejected)
            out: list[Routed | RejectedRows] = [Routed(OPTIONS, c) for c in snapshot.contracts]
            if rejected:
                out.append(RejectedRows(tuple(rejected), len(snapshot.contracts)))
            if snapshot.contracts:
                out.append(
                    Routed(
                        UNDERLYING,
                        UnderlyingTick(
                            "deribit",
                            snapshot.underlying,
                            "book_summary",
                            "index",
                            snapshot.spot,
                            snapshot.asof_ns,
                            recv_ns,
                        ),
                    )
                )
            return out
        return []  # subscribe, set_heartbeat, test: acknowledgements carry no market data

    def _notification(self, params: Any, recv_ns: int) -> list[Routed]:
        if not isinstance(params, dict) or not isinstance(params.get("channel"), str):
            raise ParseError("Deribit subscription without params.channel")
        channel: str = params["channel"]
        data = params.get("data")
        kind, _, rest = channel.partition(".")
        if kind == "ticker":
            name = rest.rsplit(".", 1)[0] if "." in rest else rest
            if isinstance(data, dict) and data.get("instrument_name") not in (None, name):
                raise ParseError(
                    f"Deribit {channel}: data is for {data.get('instrument_name')!r}",
                    "bad_instrument",
                )
            if name.endswith("-PERPETUAL"):
                funding = parse_perpetual_ticker(data, recv_ns)
                self._in_order(channel, funding.ts_event_ns)
                return [Routed(FUNDING, funding)]
            if is_option_name(name):
                contract = parse_option_ticker(data, self.terms(name), recv_ns)
                self._in_order(name, contract.ts_event_ns)
                return [Routed(OPTIONS, contract, packable=True)]
        elif kind == "deribit_price_index":
            tick = parse_price_index(data, recv_ns)
            self._in_order(channel, tick.ts_event_ns)
            return [Routed(UNDERLYING, tick)]
        elif kind == "deribit_volatility_index":
            vol = parse_volatility_index(data, recv_ns)
            self._in_order(channel, vol.ts_event_ns)
            return [Routed(VOLINDEX, vol)]
        elif kind == "trades" and rest.startswith("option."):
            for trade in data if isinstance(data, list) else ():
                if isinstance(trade, dict) and isinstance(trade.get("instrument_name"), str):
                    self.terms(trade["instrument_name"])
            return [Routed(TRADES, t) for t in parse_trades(data, recv_ns, self._premium)]
        elif kind == "instrument" and rest.startswith("state."):
            state = parse_instrument_state(data, recv_ns)
            return [Routed(OPTIONS, state)] if is_option_name(state.instrument) else []
        raise ParseError(f"unsupported Deribit channel {channel}", "unsupported")

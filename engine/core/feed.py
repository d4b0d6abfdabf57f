"""Apply normalised market-data records to per-underlying gamma books (the engine's apply step).

Option updates of a batch reach each book in one kernel call (packed ticker updates, one
call per pack; their instruments' terms came earlier as full contracts); polled chain snapshots
arrive as columnar deltas (a full one also drops what it no longer lists); index ticks move spot;
taker trades move the flow model's dealer inventory; instruments that settle or are
delisted leave the book. Applying the same record twice changes nothing (an option
update overwrites the contract's state; a trade is recognised by its id).
"""

from __future__ import annotations

from collections import OrderedDict, defaultdict
from collections.abc import Iterable

from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.levels import compute_levels
from schemas.chain import ChainDelta
from schemas.contracts import OptionContract
from schemas.levels import Levels
from schemas.records import InstrumentState, OptionTrade, Record, UnderlyingTick
from schemas.ticks import OptionTicks

_SEEN_TRADES_LIMIT = 100_000  # recent trade ids remembered for duplicate detection


class BookFeeder:
    """Keeps one :class:`GammaBook` per underlying current with a stream of records."""

    def __init__(self, config: LevelsConfig, capacity: int = 1024) -> None:
        self.config = config
        self.capacity = capacity
        self.books: dict[str, GammaBook] = {}
        self.last_event_ns: dict[str, int] = {}  # per underlying
        self._seen_trades: OrderedDict[tuple[str, str], None] = OrderedDict()
        # (venue, underlying) → (snapshot_ns, instruments listed so far) of a full snapshot
        self._listed: dict[tuple[str, str], tuple[int, set[str]]] = {}
        self.applied = 0
        self.ignored = 0
        self.ticks_without_book = 0  # packed ticks of an underlying with no book yet

    def book_for(self, underlying: str, venue: str, spot: float, ts_ns: int) -> GammaBook:
        book = self.books.get(underlying)
        if book is None:
            book = GammaBook(underlying, venue, self.config, spot, ts_ns, self.capacity)
            self.books[underlying] = book
        return book

    def apply(self, records: Iterable[Record]) -> None:
        """Apply a batch of records in order (option updates grouped per book, order kept)."""
        pending: dict[str, list[OptionContract]] = defaultdict(list)

        def flush(underlying: str) -> None:
            updates = pending.pop(underlying, None)
            if updates:
                self.books[underlying].upsert(updates)

        for record in records:
            underlying = record.underlying
            self.last_event_ns[underlying] = max(
                self.last_event_ns.get(underlying, 0), record.ts_event_ns
            )
            if type(record) is OptionTicks:
                book = self.books.get(underlying)
                if book is None:  # no contract of it seen yet: no slot for any tick
                    self.ticks_without_book += len(record)
                    self.ignored += 1
                    continue
                flush(underlying)
                book.apply_ticks(record)
            elif isinstance(record, OptionContract):
                self.book_for(underlying, record.venue, record.spot, record.ts_event_ns)
                pending[underlying].append(record)
            elif isinstance(record, UnderlyingTick) and record.kind == "index":
                book = self.books.get(underlying)
                if book is None:
                    self.ignored += 1
                    continue
                flush(underlying)
                book.set_spot(record.price, record.ts_event_ns)
            elif isinstance(record, OptionTrade):
                flush(underlying)
                self._apply_trade(record)
            elif isinstance(record, ChainDelta):
                flush(underlying)
                self._apply_delta(record)
            elif isinstance(record, InstrumentState) and record.ended:
                flush(underlying)
                book = self.books.get(underlying)
                if book is not None:
                    book.remove(record.instrument)
            else:
                self.ignored += 1
                continue
            self.applied += 1
        for underlying in list(pending):
            flush(underlying)

    def _apply_delta(self, delta: ChainDelta) -> None:
        book = self.book_for(delta.underlying, delta.venue, delta.spot, delta.ts_event_ns)
        book.set_spot(delta.spot, delta.ts_event_ns)
        key = (delta.venue, delta.underlying)
        if delta.full:
            if delta.part == 0:
                self._listed[key] = (delta.snapshot_ns, set())
            snapshot = self._listed.get(key)
            if snapshot is not None and snapshot[0] == delta.snapshot_ns:
                snapshot[1].update(delta.columns.get("instrument", ()))
        book.apply_delta(delta)
        if delta.full and delta.last:
            snapshot = self._listed.pop(key, None)
            if snapshot is not None and snapshot[0] == delta.snapshot_ns:
                listed = snapshot[1]
                book.remove_many([name for name in book.instrument_slot if name not in listed])

    def _apply_trade(self, trade: OptionTrade) -> None:
        book = self.books.get(trade.underlying)
        key = (trade.instrument, trade.trade_id)
        if book is None or book.flow is None or key in self._seen_trades:
            return
        self._seen_trades[key] = None
        if len(self._seen_trades) > _SEEN_TRADES_LIMIT:
            self._seen_trades.popitem(last=False)
        if book.flow.apply_trade(trade.instrument, trade.direction, trade.amount) is None:
            return
        book.requote(trade.instrument)  # same quote, new dealer position

    def levels(self, underlying: str, asof_ns: int | None = None) -> Levels:
        """Levels of one underlying as of ``asof_ns`` (default: its last record's venue time).

        Time to expiry is taken at that instant; contracts settled by then leave the book.
        """
        return compute_levels(self.book_at(underlying, asof_ns))

    def book_at(self, underlying: str, asof_ns: int | None = None) -> GammaBook:
        """One underlying's book moved to ``asof_ns`` (default: its last record's venue time):
        time to expiry taken at that instant, contracts settled by then removed."""
        book = self.books[underlying]
        when = asof_ns if asof_ns is not None else self.last_event_ns[underlying]
        book.advance_time(when)
        book.ts_event_ns = when
        return book

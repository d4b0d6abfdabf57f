"""Wire types of CME Group's settlement JSON (the documents behind the settlements pages).

CME publishes no free real-time options API, and its website refuses scrapers; users who
are entitled to the data save the JSON that the public settlements pages load:

* futures: ``GET https://www.cmegroup.com/CmeWS/mvc/Settlements/Futures/Settlements/
  {productId}/FUT?strategy=DEFAULT&tradeDate=MM/DD/YYYY`` (ES 133, NQ 146, ZN 316, CL 425,
  GC 437);
* options, one document per expiry: ``…/CmeWS/mvc/Settlements/Options/Settlements/
  {optionProductId}/OOF?strategy=DEFAULT&optionProductId={id}&monthYear={contractId}
  &optionExpiration={id}-{code}&tradeDate=MM/DD/YYYY``; the expiries, their last trading
  days and the trade dates on offer come from ``…/Settlements/Options/
  TradeDateAndExpirations/{id}``.

How the shape was confirmed (public client code read through the search tool, nothing
copied): three independent clients of these endpoints — a TypeScript settlements loader
that declares the row interface (``month, open, high, low, last, change, settle, volume,
openInterest`` as strings; document ``{empty: boolean, settlements: [...]}``; option rows
add ``strike`` and ``type``), a Python harvester dated 2026-09 ("numeric fields are STRINGS,
openInterest carries commas ("1,205"), "" or "-" means missing"; "the single type='' row per
response is the contract TOTAL (strike "Total", settle "-")"; ``tradeDate`` echoed as
``MM/DD/YYYY`` or ``YYYY-MM-DD``; futures rows end with a ``month: "Total"`` row), and a
term-structure scraper (month labels such as ``"DEC 26"`` and ``"JLY 26"`` for July;
Treasury prices with ``'``). CME's "About settlements" page defines the suffixes: a High
followed by "B" is a bid above the highest trade, a Low followed by "A" an ask below the
lowest trade, a Last followed by "B"/"A" a bid/ask; Change is ``UNCH`` when the settle
equals the previous one. The volume column is CME's estimated volume; the open interest is
the **previous** trade date's (cleared overnight; NYMEX/COMEX post a third "Final
Post-Clearing" run with updated figures). Option contract specs define ``CAB`` (cabinet: a
settlement below one tick) and Treasury quoting in 32nds (futures) and 64ths (options).

Every value in a row is a string; ``"-"`` (or ``""``) means none. Fields that the parser
does not read are listed for completeness and never required.
"""

from __future__ import annotations

from typing import NotRequired, TypedDict


class CmeFuturesSettlementRow(TypedDict):
    """One element of ``settlements[]`` in the futures document: one contract month."""

    month: str  # contract month "DEC 25", "JLY 26" (July); "Total" on the closing totals row
    open: str  # first trade of the session, price; "-" none
    high: str  # session high, price; suffix "B": a bid above the highest trade
    low: str  # session low, price; suffix "A": an ask below the lowest trade
    last: str  # last trade, price; suffix "A"/"B": the last was an ask / a bid
    change: str  # settle − previous settle, price; "+12.50", "-.25", "UNCH"; "-" none
    settle: str  # settlement price of the trade date; "-" none
    volume: str  # estimated volume, contracts: "1,234,567"
    openInterest: str  # open interest of the PREVIOUS trade date, contracts: "2,345,678"


class CmeOptionSettlementRow(TypedDict):
    """One element of ``settlements[]`` in an options document: one strike and right."""

    strike: str  # strike in the futures' price units: "5,000", "72.5"; "Total" on the totals row
    type: str  # "Call" | "Put"; "" on the totals row
    open: str  # premium per unit of underlying, option quoting (64ths for Treasuries)
    high: str  # suffix "B" as for futures
    low: str  # suffix "A" as for futures
    last: str  # suffix "A"/"B" as for futures
    change: str  # "UNCH" when unchanged
    settle: str  # settlement premium; "CAB" = cabinet (below one tick); "-" none
    volume: str  # estimated volume, contracts
    openInterest: str  # PREVIOUS trade date's open interest, contracts
    month: NotRequired[str]  # the option's contract month when CME includes it


class CmeSettlementsDocument(TypedDict):
    """A whole response of the futures (``…/FUT``) or options (``…/OOF``) settlements."""

    settlements: list[CmeFuturesSettlementRow] | list[CmeOptionSettlementRow]
    empty: bool  # true (with no rows) when CME has nothing for that trade date
    tradeDate: str  # the trade date the figures are for: "MM/DD/YYYY" (or "YYYY-MM-DD")
    updateTime: NotRequired[str]  # when CME last updated the page; wording not relied upon

"""CME product table: futures, their option families, multipliers, quoting and clocks.

Keyed by the futures product code, which is also the Redis ``{underlying}`` (DESIGN §2.4).
Multipliers, quoting, cabinet prices, option codes and their last trading times were
checked against CME's contract specifications (the ``…_contractSpecs_options.html`` /
``…_contractSpecs_futures.html`` pages) and the "Daily Settlement Times Details" page as
stored by the search corpus; the quoted wording stands next to each entry. Two option
expiry times are inferred, not quoted, and say so: ZN monthly options (14:00 CT) and CL
LO (14:30 ET). Product ids come from public clients of the CmeWS endpoints; ids that no
source confirmed are ``None``.

Times of day:

* ``settlement_time`` — the end of the futures' daily settlement window: the settlement
  prices of a trade date are the market as of that instant, so it is the snapshot's event
  time (Daily Settlement Times Details: Equities 14:59:30–15:00:00 CT since 26 Oct 2020
  ("Daily Settlement Price Determination Time Change" FAQ), Treasuries
  13:59:30–14:00:00 CT, Gold 13:29–13:30 ET, Energy 14:28–14:30 ET).
* ``CmeOptionFamily.expiry_time`` — when the family's options stop trading on their last
  trading day (the settlement instant used for time to expiry).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, time, timedelta
from enum import StrEnum
from types import MappingProxyType
from zoneinfo import ZoneInfo

from connectors.common.errors import ParseError
from engine.core.settlement import NEW_YORK, instant_ns

CHICAGO = ZoneInfo("America/Chicago")


class Quoting(StrEnum):
    """How a price string is written on CME's settlement pages."""

    DECIMAL = "decimal"  # "5,012.25", "71.38"
    THIRTY_SECONDS = "32nds"  # Treasury futures: "110'165" = 110 + 16.5/32
    SIXTY_FOURTHS = "64ths"  # Treasury options: "1'05" = 1 + 5/64

    @property
    def denominator(self) -> int:
        return {Quoting.DECIMAL: 1, Quoting.THIRTY_SECONDS: 32, Quoting.SIXTY_FOURTHS: 64}[self]


class UnderlyingRule(StrEnum):
    """Which futures month an option series exercises into, from its last trading day."""

    # The nearest quarterly (Mar/Jun/Sep/Dec) future not yet finally settled when the option
    # expires (E-mini quarterly PM options FAQ: "the deliverable contract is the nearest
    # unexpired future at the time of option expiration", e.g. a September PM option
    # delivers December because the September future expired at 9:30 a.m. ET that day).
    EQUITY_QUARTERLY = "equity_quarterly"
    # The first quarterly month after the expiry month: Treasury options expire in the month
    # before the option month; "serials will exercise into the first nearby quarterly
    # futures contract. Quarterlies will exercise into futures contracts of the same
    # delivery period" (10-Year T-Note options contract specs).
    NEXT_QUARTERLY = "next_quarterly"
    # The calendar month after the expiry month: the option month's own future, which the
    # option precedes by a few business days ("Trading ends three business days before the
    # termination of trading in the underlying futures contract", Crude Oil options specs;
    # Gold options expire "four business days prior to the end of the month preceding the
    # option contract month"). For Gold this assumes the option month's own future is the
    # underlying; pass ``underlying_month`` explicitly where CME's calendar says otherwise.
    NEXT_MONTH = "next_month"


@dataclass(frozen=True, slots=True)
class CmeOptionFamily:
    """One options product on a future (a CME Globex option code and its clock)."""

    code: str  # CME Globex option product code: "ES", "EW3", "LO", "OG", "OZN"
    description: str
    expiry_time: time  # last trading time on the last trading day, in ``tz``
    tz: ZoneInfo
    european: bool  # False: American (early exercise; Black-76 is then an approximation)
    option_product_id: int | None = None  # the CmeWS optionProductId, where confirmed

    def expiry_ns(self, last_trading_day: date) -> int:
        """Settlement instant of this family's series whose last trading day is given."""
        return _wall_clock_ns(last_trading_day, self.expiry_time, self.tz)


@dataclass(frozen=True, slots=True)
class CmeProduct:
    code: str  # futures product code = Redis {underlying}: "ES", "NQ", "ZN", "CL", "GC"
    name: str
    futures_product_id: int  # CmeWS productId: …/Settlements/Futures/Settlements/{id}/FUT
    multiplier: float  # US dollars per 1.0 of the quoted futures price (units of underlying)
    futures_quoting: Quoting
    option_quoting: Quoting
    settlement_time: time  # end of the daily settlement window, in ``tz``
    tz: ZoneInfo
    underlying_rule: UnderlyingRule
    families: MappingProxyType[str, CmeOptionFamily] = field(repr=False)
    # Price of an option settled at "CAB" (cabinet), per unit of underlying, when CME fixes
    # it; None where the cabinet is a range or unconfirmed.
    cabinet: float | None = None

    def settlement_ns(self, trade_date: date) -> int:
        """The settlement instant of ``trade_date`` (the event time of its settlements)."""
        return _wall_clock_ns(trade_date, self.settlement_time, self.tz)

    def family(self, code: str) -> CmeOptionFamily:
        """The option family with Globex code ``code``; ParseError when not in the table."""
        try:
            return self.families[code]
        except KeyError:
            known = ", ".join(sorted(self.families))
            raise ParseError(
                f"unknown CME option code {code!r} for {self.code} (known: {known})"
            ) from None

    def underlying_month(self, family: CmeOptionFamily, last_trading_day: date) -> date:
        """First day of the futures month a series of ``family`` exercises into."""
        year, month = last_trading_day.year, last_trading_day.month
        if self.underlying_rule is UnderlyingRule.NEXT_MONTH:
            return _add_months(date(year, month, 1), 1)
        if self.underlying_rule is UnderlyingRule.NEXT_QUARTERLY:
            return _add_months(date(year, month, 1), 3 - month % 3)
        # EQUITY_QUARTERLY: quarterly futures finally settle at the 09:30 ET open (08:30 CT)
        # on the third Friday of the quarter month (SOQ).
        expiry_ns = family.expiry_ns(last_trading_day)
        candidate = date(year, month + (-month) % 3, 1)
        while True:
            final_ns = _wall_clock_ns(_third_friday(candidate), time(8, 30), CHICAGO)
            if final_ns >= expiry_ns:
                return candidate
            candidate = _add_months(candidate, 3)


def _wall_clock_ns(d: date, at: time, tz: ZoneInfo) -> int:
    return instant_ns(datetime.combine(d, at, tzinfo=tz))


def _add_months(first_of_month: date, months: int) -> date:
    index = first_of_month.year * 12 + first_of_month.month - 1 + months
    return date(index // 12, index % 12 + 1, 1)


def _third_friday(first_of_month: date) -> date:
    first_friday = first_of_month + timedelta(days=(4 - first_of_month.weekday()) % 7)
    return first_friday + timedelta(days=14)


def _families(*families: CmeOptionFamily) -> MappingProxyType[str, CmeOptionFamily]:
    return MappingProxyType({f.code: f for f in families})


def _weekly(codes: str, description: str, at: time, tz: ZoneInfo, product_id: int | None = None):
    return tuple(
        CmeOptionFamily(code, description, at, tz, european=True, option_product_id=product_id)
        for code in codes.split()
    )


_PM_CT = time(15, 0)  # 3:00 p.m. CT fixing: E-mini weekly / EOM options
_AM_CT = time(8, 30)  # 9:30 a.m. ET = 8:30 a.m. CT: E-mini quarterly options (SOQ)

PRODUCTS: MappingProxyType[str, CmeProduct] = MappingProxyType(
    {
        p.code: p
        for p in (
            CmeProduct(
                code="ES",
                name="E-mini S&P 500",
                futures_product_id=133,
                # $50 x index: "0.25 index points = $12.50" (E-mini S&P 500 specs).
                multiplier=50.0,
                futures_quoting=Quoting.DECIMAL,
                option_quoting=Quoting.DECIMAL,
                settlement_time=time(15, 0),
                tz=CHICAGO,
                underlying_rule=UnderlyingRule.EQUITY_QUARTERLY,
                # "CAB: 0.05 index points ($2.50)" (E-mini S&P 500 options specs).
                cabinet=0.05,
                families=_families(
                    # Quarterly: "Trading terminates at 9:30 a.m. ET on the 3rd Friday of the
                    # contract quarter", American style.
                    CmeOptionFamily(
                        "ES", "quarterly (AM)", _AM_CT, CHICAGO, False, option_product_id=138
                    ),
                    # End-of-month: last business day of the month, 3:00 p.m. CT, European.
                    CmeOptionFamily("EW", "end-of-month", _PM_CT, CHICAGO, True),
                    # Friday weeklies "4:00 p.m. ET on Friday of the named week" (= 3:00 CT).
                    *_weekly("EW1 EW2 EW3 EW4", "Friday weekly", _PM_CT, CHICAGO, 5222),
                    # Monday–Thursday weeklies (CME weekly options product-code table),
                    # European, 3:00 p.m. CT fixing.
                    *_weekly("E1A E2A E3A E4A E5A", "Monday weekly", _PM_CT, CHICAGO),
                    *_weekly("E1B E2B E3B E4B E5B", "Tuesday weekly", _PM_CT, CHICAGO),
                    *_weekly("E1C E2C E3C E4C E5C", "Wednesday weekly", _PM_CT, CHICAGO),
                    *_weekly("E1D E2D E3D E4D E5D", "Thursday weekly", _PM_CT, CHICAGO),
                ),
            ),
            CmeProduct(
                code="NQ",
                name="E-mini Nasdaq-100",
                futures_product_id=146,
                # "$20 x the Nasdaq-100 index" (E-mini Nasdaq-100 specs).
                multiplier=20.0,
                futures_quoting=Quoting.DECIMAL,
                option_quoting=Quoting.DECIMAL,
                settlement_time=time(15, 0),
                tz=CHICAGO,
                underlying_rule=UnderlyingRule.EQUITY_QUARTERLY,
                cabinet=0.05,  # "CAB: 0.05 index points ($1.00)"
                families=_families(
                    # "9:30 a.m. ET on the 3rd Friday of the contract month", American.
                    CmeOptionFamily(
                        "NQ", "quarterly (AM)", _AM_CT, CHICAGO, False, option_product_id=148
                    ),
                    # "4:00 p.m. ET on Last Business Day of month", European.
                    CmeOptionFamily(
                        "QNE", "end-of-month", _PM_CT, CHICAGO, True, option_product_id=6745
                    ),
                    *_weekly("QN1 QN2 QN3 QN4", "Friday weekly", _PM_CT, CHICAGO, 5397),
                    # "Trading terminates at 3:00 p.m. CT on Monday of the contract week".
                    *_weekly("Q1A Q2A Q3A Q4A Q5A", "Monday weekly", _PM_CT, CHICAGO, 9008),
                ),
            ),
            CmeProduct(
                code="ZN",
                name="10-Year T-Note",
                futures_product_id=316,
                # $100,000 face, quoted in points of par: "Points ($1,000)".
                multiplier=1000.0,
                futures_quoting=Quoting.THIRTY_SECONDS,  # "126-165 represents 126 16.5/32"
                option_quoting=Quoting.SIXTY_FOURTHS,  # "1/64 of a point ($15.625/contract)"
                settlement_time=time(14, 0),
                tz=CHICAGO,
                underlying_rule=UnderlyingRule.NEXT_QUARTERLY,
                cabinet=None,  # "CAB $1.00 increments from $1.00 - $15.00": a range
                families=_families(
                    # Serial and quarterly options, American. Expiring options stop with the
                    # 2:00 p.m. CT close of the day session (the Treasury settlement time; the
                    # weekly specs say "trading in such option shall terminate at 2:00 p.m.
                    # CT"). The monthly option product id is not confirmed.
                    CmeOptionFamily("OZN", "serial / quarterly", time(14, 0), CHICAGO, False),
                    # Friday weeklies (CME Globex ZN1…ZN5), American.
                    *(
                        CmeOptionFamily(code, "Friday weekly", time(14, 0), CHICAGO, False)
                        for code in ("ZN1", "ZN2", "ZN3", "ZN4", "ZN5")
                    ),
                ),
            ),
            CmeProduct(
                code="CL",
                name="Light Sweet Crude Oil (WTI)",
                futures_product_id=425,
                # Options settle against "1,000 barrels" of the underlying future.
                multiplier=1000.0,
                futures_quoting=Quoting.DECIMAL,
                option_quoting=Quoting.DECIMAL,
                settlement_time=time(14, 30),
                tz=NEW_YORK,
                underlying_rule=UnderlyingRule.NEXT_MONTH,
                families=_families(
                    # LO, American. Inferred: expiring options end with the 2:30 p.m. ET
                    # settlement of the underlying future (Energy 14:28–14:30 ET; "crude
                    # options settle based off the … close … at 2:30" in a traders' forum).
                    # Product id unconfirmed.
                    CmeOptionFamily("LO", "monthly", time(14, 30), NEW_YORK, False),
                ),
            ),
            CmeProduct(
                code="GC",
                name="COMEX Gold",
                futures_product_id=437,
                # "Contract unit 100 troy ounces" (Gold futures specs).
                multiplier=100.0,
                futures_quoting=Quoting.DECIMAL,
                option_quoting=Quoting.DECIMAL,
                settlement_time=time(13, 30),
                tz=NEW_YORK,
                underlying_rule=UnderlyingRule.NEXT_MONTH,
                families=_families(
                    # OG, American; "Open Outcry: 8:20 a.m. – 1:30 p.m." ET and the Gold
                    # settlement at 13:30 ET (= 12:30 CT, when GC futures stop on their
                    # last day) end the expiring options.
                    CmeOptionFamily(
                        "OG", "monthly", time(13, 30), NEW_YORK, False, option_product_id=192
                    ),
                ),
            ),
        )
    }
)


def product(code: str) -> CmeProduct:
    """The product with futures code ``code``; ParseError when not in the table."""
    try:
        return PRODUCTS[code]
    except KeyError:
        known = ", ".join(sorted(PRODUCTS))
        raise ParseError(f"unknown CME product {code!r} (known: {known})") from None


__all__ = [
    "CHICAGO",
    "PRODUCTS",
    "CmeOptionFamily",
    "CmeProduct",
    "Quoting",
    "UnderlyingRule",
    "product",
]

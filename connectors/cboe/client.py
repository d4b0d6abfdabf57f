"""CBOE delayed-quotes client: polls one JSON document per underlying into the ingest stage.

``GET https://cdn.cboe.com/api/global/delayed_quotes/options/_SPX.json`` returns the whole
SPX/SPXW chain (~14 MB), delayed ~15 minutes and regenerated about every 15 s. Index
underlyings carry a leading underscore in the URL (``_SPX``, ``_NDX``, ``_VIX``,
``_XSP``); ETFs do not (``SPY``, ``QQQ``). The transport is the shared
:class:`~connectors.common.http_poller.HttpPoller` (conditional requests, backoff, dead letters);
the stage's normaliser (``CboeNormaliser``) parses each body and frames the changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import ClassVar

from connectors.cboe.products import PRODUCTS
from connectors.common.http_poller import HttpPoller, HttpPollerConfig
from connectors.common.polled import PolledClient, Timing
from schemas.config import Config, ConfigError

CBOE_DELAYED_QUOTES_URL = "https://cdn.cboe.com/api/global/delayed_quotes/options"

# Every underlying the product table knows ("SPX" covers SPX and SPXW).
CBOE_SYMBOLS: frozenset[str] = frozenset(p.underlying for p in PRODUCTS.values())
# The index underlyings: the ones whose CBOE URL carries a leading underscore. In the
# product table they are exactly the cash-settled ones (ETF options settle physically).
CBOE_INDEX_SYMBOLS: frozenset[str] = frozenset(
    p.underlying for p in PRODUCTS.values() if not p.physical
)


def delayed_quotes_url(symbol: str, base_url: str = CBOE_DELAYED_QUOTES_URL) -> str:
    """The delayed-quotes document URL of one underlying (``_SPX.json``, ``SPY.json``)."""
    name = f"_{symbol}" if symbol in CBOE_INDEX_SYMBOLS else symbol
    return f"{base_url.rstrip('/')}/{name}.json"


@dataclass(frozen=True, slots=True)
class CboeConfig(Config):
    """Configuration of the CBOE poller (frozen; unknown keys rejected).

    ``poller`` holds the polling policy (interval, timeouts, backoff, body limit, user
    agent); its ``urls`` are left empty and filled in from ``symbols``.
    """

    SECTION: ClassVar[str] = "CBOE"

    symbols: tuple[str, ...] = ("SPX",)  # underlyings: "SPX", "NDX", "SPY", "QQQ", …
    base_url: str = CBOE_DELAYED_QUOTES_URL  # tests point this at a local server
    poller: HttpPollerConfig = field(default_factory=HttpPollerConfig)

    def __post_init__(self) -> None:
        if not self.symbols:
            raise ConfigError("CBOE config needs at least one symbol")
        unknown = [s for s in self.symbols if s not in CBOE_SYMBOLS]
        if unknown:
            known = ", ".join(sorted(CBOE_SYMBOLS))
            raise ConfigError(f"unknown CBOE symbols {', '.join(unknown)} (known: {known})")
        if len(set(self.symbols)) != len(self.symbols):
            raise ConfigError("CBOE symbols must be distinct")
        if self.poller.urls:
            raise ConfigError("CBOE poller URLs come from symbols; leave poller.urls empty")

    def urls(self) -> tuple[str, ...]:
        return tuple(delayed_quotes_url(symbol, self.base_url) for symbol in self.symbols)

    def poller_config(self) -> HttpPollerConfig:
        return replace(self.poller, urls=self.urls())


class CboeClient(PolledClient[CboeConfig]):
    """Polls CBOE's delayed quotes for each configured underlying until :meth:`stop`.

    ``sleep``, ``clock`` and ``rng`` go to the poller (tests run its schedule without
    waiting).
    """

    source: HttpPoller

    def _source(self, timing: Timing) -> HttpPoller:
        config, (sleep, clock, rng) = self.config.poller_config(), timing
        return HttpPoller(config, self.stage, sleep=sleep, clock=clock, rng=rng)

    def stale_symbols(self) -> list[str]:
        """Underlyings whose document has not changed for the poller's stale limit."""
        stale = set(self.source.stale_urls())
        return [
            s
            for s, url in zip(self.config.symbols, self.config.urls(), strict=True)
            if url in stale
        ]

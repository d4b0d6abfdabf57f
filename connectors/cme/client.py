"""CME settlements client: polls (or watches saved copies of) one product's settlement JSON.

CME publishes no free real-time options API; its settlement pages load one futures
document and one options document per expiry (:mod:`connectors.cme.wire` gives the URLs).
Settlements change once a trade date (plus corrections), so the default poll interval is
ten minutes. Two modes, one of them per config:

* ``series``: the futures URL and one URL per option series, polled by the shared
  :class:`~connectors.common.http_poller.HttpPoller`;
* ``directory``: saved documents, watched by :class:`~connectors.common.file_watch.FileWatch`,
  named ``futures.json`` and ``options_{CODE}_{YYYYMMDD}.json`` (option code, last trading
  day), e.g. ``options_EW3_20250321.json``.

Each body reaches the stage with the ``request`` that says which document it is
(:mod:`connectors.cme.normaliser`), so captures replay through the same assembly.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from typing import Any, ClassVar
from urllib.parse import unquote, urlsplit

from connectors.cme.normaliser import futures_request, series_key, series_request
from connectors.cme.parse import CmeChainConfig
from connectors.cme.products import PRODUCTS
from connectors.common.file_watch import FileWatch, FileWatchConfig
from connectors.common.http_poller import HttpPoller, HttpPollerConfig
from connectors.common.polled import PolledClient, Timing
from engine.core.pricing import warm_up
from schemas.config import Config, ConfigError

CME_SETTLEMENTS_URL = "https://www.cmegroup.com/CmeWS/mvc/Settlements"
DEFAULT_INTERVAL_S = 600.0  # settlements change once a trade date
FUTURES_FILE = "futures.json"
OPTIONS_FILE_RE = re.compile(r"options_([A-Z0-9]+)_(\d{8})\.json")


def futures_settlements_url(product_code: str, base_url: str = CME_SETTLEMENTS_URL) -> str:
    """The futures settlements URL of a product (latest trade date: no ``tradeDate``)."""
    product_id = PRODUCTS[product_code].futures_product_id
    return f"{base_url.rstrip('/')}/Futures/Settlements/{product_id}/FUT?strategy=DEFAULT"


@dataclass(frozen=True, slots=True)
class CmeSeriesConfig(Config):
    """One option series to poll: what its options document does not say, and its URL."""

    SECTION: ClassVar[str] = "CME series"

    option_code: str  # Globex code of the family: "ES", "EW3", "E1C"
    last_trading_day: date  # TradeDateAndExpirations' lastTradeDate
    url: str  # its …/OOF settlements URL
    underlying_month: str | None = None  # "JUN 25"; None: the product's rule


@dataclass(frozen=True, slots=True)
class CmeConfig(Config):
    """Configuration of the CME client (frozen; unknown keys rejected).

    Either ``series`` (HTTP polling; ``futures_url`` defaults to CME's futures settlements
    of ``product``) or ``directory`` (saved files). ``poller.urls`` stays empty: the URLs
    come from ``futures_url`` and ``series``.
    """

    SECTION: ClassVar[str] = "CME"

    product: str = "ES"  # futures product code: "ES", "NQ", "ZN", "CL", "GC"
    futures_url: str | None = None
    series: tuple[CmeSeriesConfig, ...] = ()
    directory: str | None = None
    chain: CmeChainConfig = field(default_factory=CmeChainConfig)
    poller: HttpPollerConfig = field(
        default_factory=lambda: HttpPollerConfig(interval_s=DEFAULT_INTERVAL_S)
    )
    file_poll_interval_s: float = 5.0
    warm_up: bool = True  # compile the Black-76 solver before the first document

    @classmethod
    def prepare(cls, values: dict[str, Any]) -> dict[str, Any]:
        """The poller's interval defaults to CME's; ``chain`` is the parser's own config."""
        if isinstance(values.get("poller"), Mapping):
            values["poller"] = {"interval_s": DEFAULT_INTERVAL_S, **values["poller"]}
        if isinstance(values.get("chain"), Mapping):
            values["chain"] = CmeChainConfig.from_mapping(values["chain"])
        return values

    def __post_init__(self) -> None:
        if self.product not in PRODUCTS:
            known = ", ".join(sorted(PRODUCTS))
            raise ConfigError(f"unknown CME product {self.product!r} (known: {known})")
        if bool(self.series) == bool(self.directory):
            raise ConfigError(
                f"CME {self.product} needs either option series (with URLs) or a directory "
                "of saved settlement files, not both"
            )
        families = PRODUCTS[self.product].families
        keys = [series_key(s.option_code, s.last_trading_day) for s in self.series]
        for s in self.series:
            if s.option_code not in families:
                known = ", ".join(sorted(families))
                raise ConfigError(
                    f"unknown CME option code {s.option_code!r} for {self.product} (known: {known})"
                )
        if len(set(keys)) != len(keys):
            raise ConfigError("CME option series must be distinct")
        if self.poller.urls:
            raise ConfigError("CME poller URLs come from futures_url and series; leave them empty")
        self.poller_config()  # URLs well-formed and distinct

    def expected(self) -> list[str]:
        return [series_key(s.option_code, s.last_trading_day) for s in self.series]

    def requests(self) -> dict[str, dict[str, Any]]:
        """URL → the request that tells the normaliser what that URL's body is."""
        expected = self.expected()
        out = {
            self.futures_url or futures_settlements_url(self.product): futures_request(
                self.product, expected, self.chain
            )
        }
        for s in self.series:
            out[s.url] = series_request(
                self.product,
                s.option_code,
                s.last_trading_day,
                expected,
                self.chain,
                s.underlying_month,
            )
        return out

    def poller_config(self) -> HttpPollerConfig:
        futures = self.futures_url or futures_settlements_url(self.product)
        return replace(self.poller, urls=(futures, *(s.url for s in self.series)))


def file_request(path: Path, product_code: str, chain: CmeChainConfig) -> dict[str, Any] | None:
    """The request of a saved file, from its name and the options files beside it (None:
    the name does not follow the convention; the normaliser dead-letters it)."""
    expected = []
    for sibling in path.parent.glob("options_*.json"):
        match = OPTIONS_FILE_RE.fullmatch(sibling.name)
        if match is not None:
            expected.append(_file_series_key(match))
    if path.name == FUTURES_FILE:
        return futures_request(product_code, expected, chain)
    match = OPTIONS_FILE_RE.fullmatch(path.name)
    if match is None:
        return None
    code, day = match.group(1), _yyyymmdd(match.group(2))
    return series_request(product_code, code, day, expected, chain)


def _yyyymmdd(text: str) -> date:
    return date(int(text[:4]), int(text[4:6]), int(text[6:]))


def _file_series_key(match: re.Match[str]) -> str:
    try:
        return series_key(match.group(1), _yyyymmdd(match.group(2)))
    except ValueError:
        return f"{match.group(1)}:{match.group(2)}"  # not a date: the normaliser says so


class CmeClient(PolledClient[CmeConfig]):
    """Polls (or watches) one product's settlement documents until :meth:`stop`.

    ``sleep``, ``clock`` and ``rng`` go to the poller / file watch (tests run the schedule
    without waiting).
    """

    def _source(self, timing: Timing) -> HttpPoller | FileWatch:
        config = self.config
        if config.directory:
            watch = FileWatchConfig(
                path=config.directory,
                patterns=(FUTURES_FILE, "options_*.json"),
                poll_interval_s=config.file_poll_interval_s,
            )
            return FileWatch(watch, self.stage, sleep=timing.sleep, describe=self._describe_file)
        return HttpPoller(
            config.poller_config(),
            self.stage,
            sleep=timing.sleep,
            clock=timing.clock,
            rng=timing.rng,
            describe=config.requests().get,
        )

    def _describe_file(self, url: str) -> dict[str, Any] | None:
        path = Path(unquote(urlsplit(url).path))
        return file_request(path, self.config.product, self.config.chain)

    async def run(self) -> None:
        """Warm the pricing kernels up (when configured), then poll until :meth:`stop`."""
        if self.config.warm_up:
            await asyncio.to_thread(warm_up)  # numba compiles once, off the event loop
        await super().run()

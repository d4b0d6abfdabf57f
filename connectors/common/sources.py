"""A parsed ``--source SPEC`` (DESIGN §2.2) and its error: what every venue's spec reads."""

from __future__ import annotations

from dataclasses import dataclass


class SourceError(ValueError):
    """A source SPEC that is malformed or not supported; the message is one line."""


@dataclass(frozen=True, slots=True)
class Source:
    kind: str  # "deribit" | "funding" | "replay" | …
    target: str  # "BTC" for deribit:BTC; "binance:BTCUSDT" for funding:…; the path for replay

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.target}"

    @property
    def funding_target(self) -> tuple[str, str]:
        """(venue, symbol) of a ``funding:VENUE:SYMBOL`` source."""
        venue, _, symbol = self.target.partition(":")
        return venue, symbol

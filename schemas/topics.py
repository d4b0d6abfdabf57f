"""Kafka topic names (DESIGN §2.3); the prefix is configurable, the names are the contract."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Topics:
    prefix: str = ""

    @property
    def options(self) -> str:
        return f"{self.prefix}md.options.v1"

    @property
    def underlying(self) -> str:
        return f"{self.prefix}md.underlying.v1"

    @property
    def trades(self) -> str:
        return f"{self.prefix}md.trades.v1"

    @property
    def funding(self) -> str:
        return f"{self.prefix}md.funding.v1"

    @property
    def volindex(self) -> str:
        return f"{self.prefix}md.volindex.v1"

    @property
    def deadletter(self) -> str:
        return f"{self.prefix}md.deadletter.v1"

    @property
    def events(self) -> str:
        return f"{self.prefix}regime.events.v1"

    @property
    def state(self) -> str:
        return f"{self.prefix}engine.state.v1"

    def market_data(self) -> tuple[str, ...]:
        return (self.options, self.underlying, self.trades, self.funding, self.volindex)

    def all(self) -> tuple[str, ...]:
        return (*self.market_data(), self.deadletter, self.events, self.state)

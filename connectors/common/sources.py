"""A parsed ``--source SPEC`` (DESIGN §2.2) and its error: what every venue's spec reads."""

from __future__ import annotations

from dataclasses import dataclass


class SourceError(ValueError):
    """A source SPEC that is malformed or not supported; the message is one line."""


@dataclass(frozen=True, slots=True)
class Source:
    """``kind`` is the SPEC's first field, ``target`` the rest (``funding:binance:BTCUSDT``
    is kind ``funding``, target ``binance:BTCUSDT``; ``replay:PATH`` targets the path)."""

    kind: str
    target: str

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.target}"

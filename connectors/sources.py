"""``--source SPEC`` (DESIGN §2.2): what to connect to, parsed and checked up front."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

KNOWN_KINDS = ("deribit", "cboe", "cme", "funding", "replay")
IMPLEMENTED_KINDS = ("deribit", "replay")
DERIBIT_CURRENCIES = ("BTC", "ETH")


class SourceError(ValueError):
    """A source SPEC that is malformed or not supported; the message is one line."""


@dataclass(frozen=True, slots=True)
class Source:
    kind: str  # "deribit" | "replay" | …
    target: str  # "BTC" for deribit:BTC; the path for replay:PATH

    @property
    def spec(self) -> str:
        return f"{self.kind}:{self.target}"


def parse_source(spec: str) -> Source:
    """Parse ``deribit:BTC``, ``replay:PATH`` …; SourceError with one line when not usable."""
    kind, sep, target = spec.partition(":")
    if not sep or not target:
        raise SourceError(f"bad source {spec!r}: expected KIND:TARGET, e.g. deribit:BTC")
    if kind not in KNOWN_KINDS:
        raise SourceError(
            f"unknown source kind {kind!r} in {spec!r}; known: {', '.join(KNOWN_KINDS)}"
        )
    if kind not in IMPLEMENTED_KINDS:
        raise SourceError(f"source {spec!r} is not supported yet (supported: deribit, replay)")
    if kind == "deribit":
        target = target.upper()
        if target not in DERIBIT_CURRENCIES:
            choices = ", ".join(DERIBIT_CURRENCIES)
            raise SourceError(f"bad source {spec!r}: Deribit currency must be one of {choices}")
    if kind == "replay" and not Path(target).is_file():
        raise SourceError(f"bad source {spec!r}: no such capture file {target}")
    return Source(kind, target)

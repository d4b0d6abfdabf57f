"""``--source SPEC`` (DESIGN §2.2): what to connect to, parsed and checked up front.

A source is ``replay:PATH`` or the prefix of a venue in :mod:`connectors.registry` and its
target (``deribit:BTC``, ``funding:binance:BTCUSDT``); each venue's spec checks its target.
"""

from __future__ import annotations

from pathlib import Path

from connectors.common.sources import Source, SourceError
from connectors.common.venue import VenueSpec
from connectors.registry import SPECS

__all__ = ["KINDS", "REPLAY", "Source", "SourceError", "parse_source"]

REPLAY = "replay"
KINDS = (*dict.fromkeys(spec.prefix.partition(":")[0] for spec in SPECS), REPLAY)


def parse_source(text: str) -> Source:
    """Parse ``deribit:BTC``, ``funding:binance:BTCUSDT``, ``replay:PATH`` …; SourceError with
    one line when not usable."""
    kind, sep, rest = text.partition(":")
    if not sep or not rest:
        raise SourceError(f"bad source {text!r}: expected KIND:TARGET, e.g. deribit:BTC")
    if kind not in KINDS:
        raise SourceError(f"unknown source kind {kind!r} in {text!r}; known: {', '.join(KINDS)}")
    if kind == REPLAY:
        if not Path(rest).is_file():
            raise SourceError(f"bad source {text!r}: no such capture file {rest}")
        return Source(kind, rest)
    spec, target = _venue(text, kind, rest)
    try:
        target = spec.target(target)
    except SourceError as exc:
        raise SourceError(f"bad source {text!r}: {exc}") from None
    return Source(kind, f"{spec.prefix}:{target}".partition(":")[2])


def _venue(text: str, kind: str, rest: str) -> tuple[VenueSpec, str]:
    """The spec of a venue source and its raw target (``funding:VENUE:…`` picks the venue)."""
    family = [spec for spec in SPECS if spec.prefix.partition(":")[0] == kind]
    if len(family) == 1 and family[0].prefix == kind:
        return family[0], rest
    venue, _, target = rest.partition(":")
    for spec in family:
        if spec.prefix == f"{kind}:{venue.lower()}":
            return spec, target
    venues = ", ".join(spec.prefix.partition(":")[2] for spec in family)
    raise SourceError(f"bad source {text!r}: {kind} venue must be one of {venues}")

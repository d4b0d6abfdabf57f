"""One venue's wiring as one object: what the registry, settings, ingest, record and the CLI read.

Each venue folder exports ``SPEC = VenueSpec(...)`` (``connectors/<venue>/spec.py``) and
``connectors.registry`` lists them; nothing else names a venue. A source ``PREFIX:TARGET``
(``deribit:BTC``, ``funding:binance:BTCUSDT``) belongs to the spec whose ``prefix`` it
starts with; its config-file table is ``table`` (``[deribit]``, ``[funding.binance]``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from connectors.common.ingest import IngestStage, Normaliser
from connectors.common.sources import Source, SourceError
from schemas.config import Config


class LiveSource(Protocol):
    """A venue client: streams into its ingest stage from ``run()`` until ``stop()``."""

    async def run(self) -> None: ...

    async def stop(self) -> None: ...


@dataclass(frozen=True, slots=True)
class VenueSpec:
    """Everything the application needs to know about one venue."""

    venue: str  # capture venue name, and the ingest stage's: "deribit", "binance"
    config: type[Config]  # the class of the venue's config-file table
    normaliser: Callable[[Any], Normaliser]  # the venue's config (None: defaults) → fresh one
    client: Callable[[Any, tuple[str, ...], IngestStage], LiveSource]  # config|None, targets
    target: Callable[[str], str]  # a source's target, canonical; SourceError (why) if not
    example: str  # a source for help texts: "deribit:BTC"
    prefix: str = ""  # source prefix: "deribit" (deribit:BTC), "funding:binance"; "": venue
    table: str = ""  # config-file table: "deribit", "funding.binance"; "": venue
    needs_table: str | None = None  # what a source's required table must say; None: optional
    url_flag: bool = False  # the CLI's --url replaces this venue's ``url``

    def __post_init__(self) -> None:
        object.__setattr__(self, "prefix", self.prefix or self.venue)
        object.__setattr__(self, "table", self.table or self.venue)

    @property
    def name(self) -> str:
        """The name of the venue's live task (``funding-binance``)."""
        return self.prefix.replace(":", "-")

    def target_of(self, source: Source) -> str | None:
        """The target of ``source`` when it is one of this venue's, else None."""
        head = self.prefix + ":"
        return source.spec[len(head) :] if source.spec.startswith(head) else None


def choice_target(what: str, choices: Sequence[str]) -> Callable[[str], str]:
    """A target check: upper-cased, one of ``choices`` (``"Deribit currency"``)."""

    def check(target: str) -> str:
        target = target.upper()
        if target not in choices:
            raise SourceError(f"{what} must be one of {', '.join(choices)}")
        return target

    return check

"""Which normaliser reads which venue's messages: one table for replay, levels and ingest."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from connectors.cboe.normaliser import CboeNormaliser
from connectors.cme.normaliser import CmeNormaliser
from connectors.common.capture import CaptureWriter
from connectors.common.ingest import IngestStage, Normaliser, RecordSink
from connectors.deribit.normaliser import DeribitNormaliser
from connectors.funding.venues import VENUES as FUNDING_VENUES
from connectors.funding.venues import funding_normaliser
from schemas.topics import Topics

NORMALISERS: dict[str, Callable[[], Normaliser]] = {
    "deribit": DeribitNormaliser,
    "cboe": CboeNormaliser,
    "cme": CmeNormaliser,
    **{venue: partial(funding_normaliser, venue) for venue in FUNDING_VENUES},
}


def normaliser_for(venue: str) -> Normaliser:
    """A fresh normaliser for a venue's messages; ValueError (one line) for unknown venues."""
    factory = NORMALISERS.get(venue)
    if factory is None:
        known = ", ".join(sorted(NORMALISERS))
        raise ValueError(f"messages of venue {venue!r} cannot be read (known: {known})")
    return factory()


class StagePerVenue:
    """Ingest stages created on first use, one per venue, sharing a sink (replays of captures
    that mix venues)."""

    def __init__(
        self,
        sink: RecordSink,
        topics: Topics,
        source: str = "replay",
        capture: CaptureWriter | None = None,
    ) -> None:
        self.sink = sink
        self.topics = topics
        self.source = source
        self.capture = capture
        self.stages: dict[str, IngestStage] = {}

    def __call__(self, venue: str) -> IngestStage:
        stage = self.stages.get(venue)
        if stage is None:
            stage = IngestStage(
                venue, normaliser_for(venue), self.sink, self.topics, self.capture, self.source
            )
            self.stages[venue] = stage
        return stage

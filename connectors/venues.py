"""The registry's venues at work: live clients for sources, normalisers for captured messages."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import NamedTuple

from connectors.common.capture import CaptureWriter
from connectors.common.ingest import IngestStage, Normaliser, RecordSink
from connectors.common.sources import Source
from connectors.common.venue import LiveSource, VenueSpec
from connectors.registry import SPECS
from schemas.config import Config
from schemas.topics import Topics

BY_VENUE: dict[str, VenueSpec] = {spec.venue: spec for spec in SPECS}
NORMALISERS = {venue: spec.normaliser for venue, spec in BY_VENUE.items()}


class LiveClient(NamedTuple):
    name: str
    stage: IngestStage
    client: LiveSource


def locate(source: Source) -> tuple[VenueSpec, str] | None:
    """The venue spec of a live source and its target there (None: not a venue's)."""
    for spec in SPECS:
        target = spec.target_of(source)
        if target is not None:
            return spec, target
    return None


def targets_by_venue(sources: Iterable[Source]) -> dict[str, tuple[str, ...]]:
    """Live sources' targets grouped by venue, in order, once each."""
    out: dict[str, dict[str, None]] = {}
    for source in sources:
        found = locate(source)
        if found is not None:
            out.setdefault(found[0].venue, {})[found[1]] = None
    return {venue: tuple(targets) for venue, targets in out.items()}


def live_clients(
    sources: Sequence[Source],
    sink: RecordSink,
    topics: Topics,
    venues: Mapping[str, Config] | None = None,
    capture: CaptureWriter | None = None,
    clock_ns: Callable[[], int] = time.time_ns,
) -> list[LiveClient]:
    """The client (and ingest stage) of every live source: one per venue (ingest, record).

    ``venues`` holds a venue's config (its table) by venue name; the targets come from the
    sources. ``capture`` records every message (``regime-engine record``). ``clock_ns`` is
    the receive clock the clients stamp messages with.
    """
    out: list[LiveClient] = []
    for venue, targets in targets_by_venue(sources).items():
        spec, config = BY_VENUE[venue], (venues or {}).get(venue)
        normaliser = spec.normaliser(config)
        stage = IngestStage(venue, normaliser, sink, topics, capture, clock_ns=clock_ns)
        out.append(LiveClient(spec.name, stage, spec.client(config, targets, stage)))
    return out


def normaliser_for(venue: str) -> Normaliser:
    """A fresh normaliser for a venue's messages; ValueError (one line) for unknown venues."""
    spec = BY_VENUE.get(venue)
    if spec is None:
        known = ", ".join(sorted(BY_VENUE))
        raise ValueError(f"messages of venue {venue!r} cannot be read (known: {known})")
    return spec.normaliser(None)


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

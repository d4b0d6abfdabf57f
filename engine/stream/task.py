"""One engine task: the state of the underlyings of one partition number, fed in input order.

Every market-data topic is keyed by underlying and has the same partition count, so partition
``p`` of every topic carries the same underlyings. A task owns those underlyings' gamma books
(through a :class:`engine.core.feed.BookFeeder`) and detectors, takes the records its
:class:`engine.stream.merge.EventTimeMerge` releases, applies them, and evaluates the levels at the
evaluation points of the input:

- every index tick of an underlying (spot moved), and the last part of every polled chain
  snapshot (the snapshot is complete);
- any record of an underlying whose last evaluation is ``max_eval_gap_s`` old in event time
  (feeds without an index stream, e.g. chain snapshots).

Before an evaluation the book's reference time is advanced (a full rebuild for time decay
and expiry roll) when it is ``rebuild_interval_s`` old, ``rebuild_interval_0dte_s`` while an
expiry settles in the current session, or when an expiry or the session end has passed.

Funding and volatility-index records go to the underlying's :class:`CryptoRegime` as they
come; an event it confirms is triggered by that record (its id and time), carries the levels
of the underlying's last evaluation, and every event of a crypto underlying carries the
joined read in ``detail.composite``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any, ClassVar

from aiokafka.structs import TopicPartition

from engine.core.book import GammaBook
from engine.core.config import LevelsConfig
from engine.core.feed import BookFeeder
from engine.core.levels import compute_levels
from engine.core.profile import compute_profile
from engine.signals.crypto_regime import CRYPTO_VENUES, CryptoRegime, Signal
from engine.signals.detector import DetectorConfig, RegimeDetector, Trigger
from engine.stream.merge import EventTimeMerge, InputItem
from schemas.chain import ChainDelta
from schemas.config import Config, ConfigError
from schemas.contracts import OptionContract
from schemas.events import RegimeEvent
from schemas.levels import Levels
from schemas.profile import Profile
from schemas.records import FundingRate, InstrumentState, Record, UnderlyingTick, VolIndexTick
from schemas.ticks import OptionTicks
from schemas.time import NS_PER_S


@dataclass(frozen=True, slots=True)
class TaskConfig(Config):
    """Evaluation cadence of a task (event-time seconds)."""

    SECTION: ClassVar[str] = "task"

    max_eval_gap_s: float = 5.0
    rebuild_interval_s: float = 60.0
    rebuild_interval_0dte_s: float = 10.0

    def __post_init__(self) -> None:
        for name in ("max_eval_gap_s", "rebuild_interval_s", "rebuild_interval_0dte_s"):
            value = getattr(self, name)
            if not (isinstance(value, int | float) and math.isfinite(value) and value > 0):
                raise ConfigError(f"{name} must be a positive number, got {value!r}")


@dataclass(slots=True)
class TaskOutput:
    """What one batch of a task produced."""

    events: list[tuple[Trigger, RegimeEvent]] = field(default_factory=list)
    levels: dict[str, tuple[Trigger, Levels]] = field(default_factory=dict)  # latest, changed
    profiles: dict[str, Profile] = field(default_factory=dict)  # of those levels' instant
    rejected: list[tuple[InputItem, str]] = field(default_factory=list)  # could not be applied


def feed_of(record: Record) -> str | None:
    """The input feed a record keeps fresh: ``"options"`` or ``"index"`` (None: neither)."""
    if isinstance(record, OptionContract | OptionTicks | InstrumentState | ChainDelta):
        return "options"  # a pack's time is its last tick's
    if isinstance(record, UnderlyingTick) and record.kind == "index":
        return "index"
    return None


class PartitionTask:
    """Books and detectors of the underlyings of one partition number."""

    def __init__(
        self,
        partition: int,
        merge: EventTimeMerge,
        levels_config: LevelsConfig,
        detector_config: DetectorConfig,
        config: TaskConfig,
        clock_ns: Callable[[], int],
    ) -> None:
        self.partition = partition
        self.merge = merge  # the task's input partitions, released in event-time order
        self.config = config
        self.detector_config = detector_config
        self.feeder = BookFeeder(levels_config)
        self.detectors: dict[str, RegimeDetector] = {}
        self.feeds: dict[str, dict[str, int]] = {}  # underlying → feed → last event time
        self.last_eval_ns: dict[str, int] = {}
        self.next_offsets: dict[TopicPartition, int] = {}  # processed: next offset to commit
        self.last_ts: dict[TopicPartition, int] = {}  # event time of the last one processed
        self._published: dict[str, Levels] = {}  # last levels handed out, asof zeroed
        self.crypto: dict[str, CryptoRegime] = {}  # funding, DVOL, joined read per underlying
        self._levels: dict[str, Levels] = {}  # of the last evaluation, per underlying
        self._clock_ns = clock_ns
        self._gap_ns = int(config.max_eval_gap_s * NS_PER_S)
        self.evaluations = 0

    def state(self) -> dict[str, Any]:
        """What a checkpoint holds: everything later events depend on (not the merge's
        buffered input: a restore reads it again from ``next_offsets``)."""
        return {
            "feeder": self.feeder,
            "detectors": self.detectors,
            "feeds": self.feeds,
            "last_eval_ns": self.last_eval_ns,
            "next_offsets": self.next_offsets,
            "last_ts": self.last_ts,
            "published": self._published,
            "crypto": self.crypto,
            "levels": self._levels,
            "evaluations": self.evaluations,
            "order": self.merge.order_state(),
        }

    def restore(self, state: dict[str, Any]) -> None:
        """Take the state of a checkpoint (see :meth:`state`); KeyError, changing nothing,
        if it lacks a part."""
        missing = sorted(set(self.state()) - set(state))
        if missing:
            raise KeyError(f"checkpoint state lacks {', '.join(missing)}")
        self.feeder = state["feeder"]
        self.detectors = state["detectors"]
        self.feeds = state["feeds"]
        self.last_eval_ns = state["last_eval_ns"]
        self.next_offsets = state["next_offsets"]
        self.last_ts = state["last_ts"]
        self._published = state["published"]
        self.crypto = state["crypto"]
        self._levels = state["levels"]
        self.evaluations = state["evaluations"]
        self.merge.restore_order(state["order"])
        for detector in self.detectors.values():
            detector.use_clock(self._clock_ns)

    def process(self, items: Iterable[InputItem]) -> TaskOutput:
        """Apply released records in order, evaluating at each evaluation point."""
        out = TaskOutput()
        chunk: list[InputItem] = []
        gap = self._gap_ns
        for item in items:
            self.next_offsets[item.tp] = item.offset + 1
            self.last_ts[item.tp] = item.ts
            record = item.record
            if record is None:
                continue
            chunk.append(item)
            underlying = record.underlying
            ts = record.ts_event_ns
            if isinstance(record, FundingRate | VolIndexTick):
                self._observe_crypto(record, item, out)
            feed = feed_of(record)
            if feed is not None:
                feeds = self.feeds.setdefault(underlying, {})
                if ts > feeds.get(feed, 0):
                    feeds[feed] = ts
            last = self.last_eval_ns.get(underlying)
            snapshot_done = type(record) is ChainDelta and record.last
            if last is None and not snapshot_done:
                self.last_eval_ns[underlying] = ts  # first sight: wait for a fuller book
                continue
            if feed == "index" or snapshot_done or ts - last >= gap:
                self._apply(chunk, out)
                chunk = []
                trigger = Trigger(item.tp.topic, item.tp.partition, item.offset, ts)
                self._evaluate(underlying, trigger, out)
        self._apply(chunk, out)
        return out

    def _apply(self, chunk: list[InputItem], out: TaskOutput) -> None:
        if not chunk:
            return
        try:
            self.feeder.apply([item.record for item in chunk])
        except Exception:  # a decodable record with values the book cannot take
            # Re-apply one by one (applying a record twice changes nothing) to find the bad.
            for item in chunk:
                try:
                    self.feeder.apply([item.record])
                except Exception as exc:
                    out.rejected.append((item, f"cannot apply: {type(exc).__name__}: {exc}"))

    def _evaluate(self, underlying: str, trigger: Trigger, out: TaskOutput) -> None:
        book = self.feeder.books.get(underlying)
        if book is None:
            return
        ts = trigger.ts_event_ns
        self.last_eval_ns[underlying] = ts
        self._advance_if_due(book, ts)
        book.ts_event_ns = max(book.ts_event_ns, ts)
        levels = compute_levels(book)
        detector = self.detectors.get(underlying)
        if detector is None:
            detector = RegimeDetector(
                underlying,
                self.detector_config,
                self._clock_ns,
                transition_band_bps=self.feeder.config.transition_band_bps,
            )
            self.detectors[underlying] = detector
        ages = {
            feed: (ts - last) / NS_PER_S for feed, last in self.feeds.get(underlying, {}).items()
        }
        events = detector.evaluate(levels, trigger, ages)
        self._levels[underlying] = levels
        regime = self.crypto.get(underlying)
        if regime is None and book.venue in CRYPTO_VENUES:
            regime = self._crypto_regime(underlying)
        if regime is not None:
            signals = regime.observe_book(book, detector.gamma_regime("all"), ts)
            events = self._with_composite(regime, events, signals, levels, detector, trigger)
        for event in events:
            out.events.append((trigger, event))
        self.evaluations += 1
        comparable = replace(levels, asof_ns=0)
        if self._published.get(underlying) != comparable:
            self._published[underlying] = comparable
            out.levels[underlying] = (trigger, levels)
            out.profiles[underlying] = compute_profile(book)

    def _crypto_regime(self, underlying: str) -> CryptoRegime:
        cfg = self.detector_config
        regime = self.crypto[underlying] = CryptoRegime(cfg.funding, cfg.vol)
        return regime

    def _observe_crypto(
        self, record: FundingRate | VolIndexTick, item: InputItem, out: TaskOutput
    ) -> None:
        """Feed a funding or DVOL record; its events go out at once, triggered by it."""
        underlying = record.underlying
        regime = self.crypto.get(underlying) or self._crypto_regime(underlying)
        signals = regime.observe(record)
        levels = self._levels.get(underlying)
        detector = self.detectors.get(underlying)
        if not signals or levels is None or detector is None:
            return  # nothing confirmed, or no levels yet to carry (the state is kept)
        trigger = Trigger(item.tp.topic, item.tp.partition, item.offset, record.ts_event_ns)
        for event in self._with_composite(regime, [], signals, levels, detector, trigger):
            out.events.append((trigger, event))

    @staticmethod
    def _with_composite(
        regime: CryptoRegime,
        events: list[RegimeEvent],
        signals: list[Signal],
        levels: Levels,
        detector: RegimeDetector,
        trigger: Trigger,
    ) -> list[RegimeEvent]:
        """``events`` plus the signals' events, each with the joined read in its detail."""
        for signal in signals:
            event = detector.event(
                levels,
                trigger,
                signal.event_type,
                signal.direction,
                signal.level,
                signal.detail,
                signal.suffix,
            )
            if event is not None:
                events.append(event)
        composite = regime.composite()
        return [replace(e, detail={**e.detail, "composite": dict(composite)}) for e in events]

    def _advance_if_due(self, book: GammaBook, ts: int) -> None:
        cfg = self.config
        front = book.front_expiry_ns
        zero_dte_live = front is not None and front <= book.session_end_ns
        interval = cfg.rebuild_interval_0dte_s if zero_dte_live else cfg.rebuild_interval_s
        if (
            ts - book.t_ref_ns >= interval * NS_PER_S
            or (front is not None and ts >= front)
            or ts >= book.session_end_ns
        ):
            book.advance_time(ts)

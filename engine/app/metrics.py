"""Prometheus metrics and health endpoints for `engine`, `ingest` and `run` (``--metrics-port``).

:class:`EngineMetrics` is the engine's :class:`engine.stream.instrumentation.Instrumentation`:
its ``count`` and ``stage`` only add to plain dicts (the hot path stays a dict update), and
``on_batch`` bins the batch's receive-to-publish times with numpy. Everything else is read
when Prometheus scrapes: the consumer lag and the feed ages from the runtime, the ingest
counters from the venue stages and clients. :class:`MetricsServer` serves, on aiohttp in the
process's own event loop (so a scrape never races the loop's state):

* ``/metrics`` — Prometheus text format (``prometheus-client``'s exposition);
* ``/healthz`` — 200 while the process runs;
* ``/readyz`` — 200 when ready, else 503 with the reasons, one a line. The engine is ready
  when it has partitions assigned and every input partition is within
  ``ready_max_lag_records`` of the log's end (fetched and buffered records both count);
  the ingest when every live venue has delivered a message within ``ready_max_stale_s``.

Names follow the Prometheus conventions (base units, ``_total`` counters); the README lists
them.
"""

from __future__ import annotations

import bisect
import contextlib
import time
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from connectors.common.logs import get_logger
from engine.stream.instrumentation import COUNTERS
from schemas.config import Config, ConfigError

if TYPE_CHECKING:
    from engine.app.run_ingest import IngestView
    from engine.stream.merge import InputItem
    from engine.stream.runtime import EngineRuntime

__all__ = [
    "BATCH_BUCKETS_S",
    "TICK_BUCKETS_S",
    "EngineMetrics",
    "MetricsCollector",
    "MetricsConfig",
    "MetricsServer",
    "serve_metrics",
]

log = get_logger("metrics")

ENGINE = "regime_engine"
INGEST = "regime_ingest"
BATCH_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)  # fmt: skip
TICK_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                  30.0, 60.0)  # fmt: skip
_HELP = {
    "records_consumed": "Market-data records consumed from Kafka.",
    "updates_applied": "Book updates applied (an option ticks pack counts each tick).",
    "dead_letters": "Inputs dead-lettered, by venue ('engine': undecodable or not applied) "
    "and reason class.",
    "events_published": "New regime events published, by type and bucket.",
    "events_replayed": "Events of inputs already published, not published again.",
    "levels_written": "Levels objects written to Redis.",
    "batches": "Consume-apply-publish batches.",
    "merge_held_back": "Merge steps that left records buffered.",
    "commits": "Offset commits.",
    "checkpoints": "State checkpoints, by result.",
    "restores": "Partition states restored, by kind (checkpoint, replay, rebuild).",
    "assignments": "Partition assignments handled.",
}


# The labels of the engine's labelled counters (engine/stream/instrumentation.py), in order.
_LABELS = {
    "records_consumed": ("topic",),
    "dead_letters": ("venue", "reason"),
    "events_published": ("type", "bucket"),
    "checkpoints": ("result",),
    "restores": ("kind",),
}


@dataclass(frozen=True, slots=True)
class MetricsConfig(Config):
    """The ``[metrics]`` table (``--metrics-port`` sets ``port``)."""

    SECTION: ClassVar[str] = "metrics"

    port: int | None = None  # None: no metrics server; 0: a free port
    host: str = "0.0.0.0"
    ready_max_lag_records: int = 1_000
    ready_max_stale_s: float = 30.0

    def __post_init__(self) -> None:
        port = self.port
        if port is not None and (
            not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65_535
        ):
            raise ConfigError(f"metrics port must be 0..65535, got {port!r}")
        if not isinstance(self.host, str) or not self.host:
            raise ConfigError(f"metrics host must be a host name or address, got {self.host!r}")
        lag = self.ready_max_lag_records
        if not isinstance(lag, int) or isinstance(lag, bool) or lag < 0:
            raise ConfigError(f"metrics ready_max_lag_records must be >= 0, got {lag!r}")
        stale = self.ready_max_stale_s
        if not isinstance(stale, int | float) or isinstance(stale, bool) or not stale > 0:
            raise ConfigError(f"metrics ready_max_stale_s must be positive, got {stale!r}")


class _Histogram:
    """Bucket counts (not cumulative), a sum and a count; one or many observations."""

    __slots__ = ("bounds", "count", "counts", "sum")

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = tuple(bounds)
        self.counts = [0] * (len(self.bounds) + 1)  # the last: above every bound
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value
        self.count += 1

    def observe_many(self, values: np.ndarray) -> None:
        if not len(values):
            return
        slots = np.searchsorted(self.bounds, values, side="left")
        for slot, n in enumerate(np.bincount(slots, minlength=len(self.counts)).tolist()):
            self.counts[slot] += n
        self.sum += float(values.sum())
        self.count += len(values)

    def buckets(self) -> list[tuple[str, float]]:
        out, total = [], 0
        for bound, n in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            total += n
            out.append((bound, float(total)))
        return out


class EngineMetrics:
    """The engine's instrumentation for Prometheus (see the module docstring)."""

    def __init__(self, clock_ns: Callable[[], int] = time.time_ns) -> None:
        self._clock_ns = clock_ns
        self.counts: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
        self.stages: dict[str, _Histogram] = {}
        self.tick_to_publish = _Histogram(TICK_BUCKETS_S)

    def stage(self, name: str, seconds: float) -> None:
        histogram = self.stages.get(name)
        if histogram is None:
            histogram = self.stages[name] = _Histogram(BATCH_BUCKETS_S)
        histogram.observe(seconds)

    def count(self, name: str, n: int = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())) if labels else ())
        self.counts[key] = self.counts.get(key, 0) + n

    def on_batch(self, items: list[InputItem]) -> None:
        """The runtime's ``on_batch``: the batch is in Redis now; each record's receive time
        to now goes into ``tick_to_publish_seconds`` (a pack of option ticks counts once,
        at its last tick's receive time)."""
        recv = np.fromiter(
            (item.record.ts_recv_ns for item in items if item.record is not None), np.int64
        )
        self.tick_to_publish.observe_many((self._clock_ns() - recv) / 1e9)


def _counter(name: str, doc: str, labels: Sequence[str]) -> CounterMetricFamily:
    return CounterMetricFamily(name, doc, labels=list(labels))


class MetricsCollector:
    """A prometheus-client collector over what a process runs (any of the three parts)."""

    def __init__(
        self,
        engine: EngineMetrics | None = None,
        runtime: EngineRuntime | None = None,
        ingest: IngestView | None = None,
        config: MetricsConfig | None = None,
        clock_ns: Callable[[], int] = time.time_ns,
    ) -> None:
        self.engine = engine
        self.runtime = runtime
        self.ingest = ingest
        self.config = config or MetricsConfig()
        self._clock_ns = clock_ns

    # -- what Prometheus reads -----------------------------------------------------------

    def collect(self) -> Iterator[Metric]:
        dead = self._dead_letters()
        if self.engine is not None:
            yield from self._engine_counters(dead)
            yield from self._engine_histograms()
        elif dead is not None:
            yield dead
        if self.runtime is not None:
            yield from self._runtime_gauges(self.runtime)
        if self.ingest is not None:
            yield from self._ingest_metrics(self.ingest)
        ready = GaugeMetricFamily(f"{ENGINE}_ready", "1 when /readyz answers 200, else 0.")
        ready.add_metric([], 0.0 if self.not_ready() else 1.0)
        yield ready

    def _dead_letters(self) -> CounterMetricFamily | None:
        if self.engine is None and self.ingest is None:
            return None
        totals: dict[tuple[str, str], int] = defaultdict(int)
        for (name, labels), n in self.engine.counts.items() if self.engine else ():
            if name == "dead_letters":
                values = dict(labels)
                totals[values.get("venue", "engine"), values.get("reason", "malformed")] += n
        for stage in self.ingest.stages() if self.ingest else ():
            for reason, n in stage.dead_letter_kinds.items():
                totals[stage.venue, reason] += n
        family = _counter(f"{ENGINE}_dead_letters", _HELP["dead_letters"], ("venue", "reason"))
        for (venue, reason), n in sorted(totals.items()):
            family.add_metric([venue, reason], n)
        return family

    def _engine_counters(self, dead: CounterMetricFamily | None) -> Iterator[Metric]:
        assert self.engine is not None
        by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], int]]] = defaultdict(list)
        for (name, labels), n in self.engine.counts.items():
            by_name[name].append((labels, n))
        for name in COUNTERS:
            if name == "dead_letters":
                if dead is not None:
                    yield dead
                continue
            label_names = _LABELS.get(name, ())
            family = _counter(f"{ENGINE}_{name}", _HELP[name], label_names)
            for labels, n in sorted(by_name.get(name, ())):
                values = dict(labels)
                family.add_metric([values.get(k, "") for k in label_names], n)
            if not label_names and name not in by_name:
                family.add_metric([], 0)  # an unlabelled counter exists from the start
            yield family

    def _engine_histograms(self) -> Iterator[Metric]:
        assert self.engine is not None
        tick = self.engine.tick_to_publish
        family = HistogramMetricFamily(
            f"{ENGINE}_tick_to_publish_seconds",
            "Receive time (ingest) of each record to its batch's Redis write.",
        )
        family.add_metric([], tick.buckets(), tick.sum)
        yield family
        stages = HistogramMetricFamily(
            f"{ENGINE}_batch_seconds", "Wall time of each stage of a batch.", labels=["stage"]
        )
        for name, histogram in sorted(self.engine.stages.items()):
            stages.add_metric([name], histogram.buckets(), histogram.sum)
        yield stages

    def _runtime_gauges(self, runtime: EngineRuntime) -> Iterator[Metric]:
        lag = GaugeMetricFamily(
            f"{ENGINE}_consumer_lag_records",
            "Input partition's high watermark minus the engine's fetch position.",
            labels=["topic", "partition"],
        )
        for status in sorted(runtime.input_status(), key=lambda s: (s.tp.topic, s.tp.partition)):
            if status.highwater is not None and status.fetched_next is not None:
                lag.add_metric(
                    [status.tp.topic, str(status.tp.partition)],
                    max(0, status.highwater - status.fetched_next),
                )
        yield lag
        age = GaugeMetricFamily(
            f"{ENGINE}_feed_age_seconds",
            "Wall clock minus the event time of an underlying's latest input of a feed.",
            labels=["underlying", "feed"],
        )
        now = self._clock_ns()
        ages = {
            (underlying, feed): (now - ts) / 1e9
            for task in list(runtime.tasks.values())
            for underlying, feeds in task.feeds.items()
            for feed, ts in feeds.items()
        }
        for (underlying, feed), seconds in sorted(ages.items()):
            age.add_metric([underlying, feed], seconds)
        yield age

    def _ingest_metrics(self, view: IngestView) -> Iterator[Metric]:
        stages = view.stages()
        messages = _counter(
            f"{INGEST}_messages", "Venue messages received (each frame or body).", ["venue"]
        )
        per_venue: dict[str, int] = defaultdict(int)
        for stage in stages:
            per_venue[stage.venue] += stage.counts["messages"]
        for venue, n in sorted(per_venue.items()):
            messages.add_metric([venue], n)
        yield messages
        reconnects = _counter(
            f"{INGEST}_reconnects", "Venue reconnects, by cause class.", ["venue", "cause"]
        )
        for live in view.live:
            for cause, n in sorted(getattr(live.client, "reconnects", {}).items()):
                reconnects.add_metric([live.stage.venue, cause], n)
        yield reconnects
        stale = GaugeMetricFamily(
            f"{INGEST}_stale_seconds",
            "Seconds since a venue's last message (venues that have sent one).",
            labels=["venue"],
        )
        now = time.monotonic()
        for venue, at in sorted(_last_messages(stages).items()):
            stale.add_metric([venue], now - at)
        yield stale

    # -- readiness -----------------------------------------------------------------------

    def not_ready(self) -> list[str]:
        """Why the process is not ready (empty: ready)."""
        reasons: list[str] = []
        cfg = self.config
        if self.runtime is not None:
            statuses = self.runtime.input_status()
            if not statuses:
                reasons.append("engine: no partitions assigned")
            for s in statuses:
                name = f"{s.tp.topic}/{s.tp.partition}"
                if s.highwater is None or s.fetched_next is None:
                    reasons.append(f"engine: {name} not fetched yet")
                elif (behind := s.highwater - s.fetched_next + s.buffered) > (
                    cfg.ready_max_lag_records
                ):
                    reasons.append(f"engine: {name} {behind} records behind")
        if self.ingest is not None:
            live = [live.stage for live in self.ingest.live]
            if not live and not self.ingest.replays:
                reasons.append("ingest: no sources")
            last = _last_messages(live)
            now = time.monotonic()
            for stage in live:
                at = last.get(stage.venue)
                if at is None:
                    reasons.append(f"ingest: {stage.venue} has sent nothing yet")
                elif now - at > cfg.ready_max_stale_s:
                    reasons.append(f"ingest: {stage.venue} silent for {now - at:.0f} s")
        return reasons


def _last_messages(stages: Iterable[object]) -> dict[str, float]:
    out: dict[str, float] = {}
    for stage in stages:
        at = getattr(stage, "last_message_at", None)
        venue = getattr(stage, "venue", "")
        if at is not None and at > out.get(venue, -1.0):
            out[venue] = at
    return out


class MetricsServer:
    """``/metrics``, ``/healthz`` and ``/readyz`` on aiohttp, in the caller's event loop."""

    def __init__(self, collector: MetricsCollector, config: MetricsConfig) -> None:
        self.collector = collector
        self.config = config
        self.registry = CollectorRegistry(auto_describe=False)
        self.registry.register(collector)
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        assert self._runner is not None, "not started"
        return int(self._runner.addresses[0][1])

    async def start(self) -> MetricsServer:
        app = web.Application()
        app.router.add_get("/metrics", self._metrics)
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/readyz", self._readyz)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.config.host, self.config.port or 0)
        await site.start()
        log.info("metrics serving", host=self.config.host, port=self.port)
        return self

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    async def _metrics(self, request: web.Request) -> web.Response:
        body = generate_latest(self.registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok\n")

    async def _readyz(self, request: web.Request) -> web.Response:
        reasons = self.collector.not_ready()
        if reasons:
            return web.Response(status=503, text="".join(f"{r}\n" for r in reasons))
        return web.Response(text="ready\n")


@contextlib.asynccontextmanager
async def serve_metrics(
    config: MetricsConfig, collector: MetricsCollector
) -> AsyncIterator[MetricsServer | None]:
    """A running :class:`MetricsServer` for the block (None when ``config.port`` is None)."""
    if config.port is None:
        yield None
        return
    server = MetricsServer(collector, config)
    await server.start()
    try:
        yield server
    finally:
        await server.stop()

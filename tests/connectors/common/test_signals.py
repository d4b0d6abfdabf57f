"""run_until_signal / until_stopped / sleep_unless_stopped, with real signals to this process."""

from __future__ import annotations

import asyncio
import os
import signal

import pytest

from connectors.common.signals import (
    Stopped,
    run_until_signal,
    sleep_unless_stopped,
    until_stopped,
)


def _signal(sig: signal.Signals = signal.SIGINT) -> None:
    os.kill(os.getpid(), sig)


@pytest.mark.asyncio
async def test_the_result_without_a_signal() -> None:
    async def main(stop: asyncio.Event) -> int:
        return 7

    assert await run_until_signal(main, grace_s=1.0) == 7


@pytest.mark.asyncio
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_a_signal_sets_stop_and_the_command_finishes(sig: signal.Signals) -> None:
    async def main(stop: asyncio.Event) -> str:
        _signal(sig)
        await stop.wait()
        return "drained"

    assert await run_until_signal(main, grace_s=30.0) == "drained"


@pytest.mark.asyncio
async def test_a_command_that_ignores_stop_is_cancelled_after_the_grace() -> None:
    swallowed = []

    async def main(stop: asyncio.Event) -> str:
        _signal()
        while True:
            try:
                await asyncio.Event().wait()
            except asyncio.CancelledError:  # a client swallowing one cancellation
                if swallowed:
                    raise
                swallowed.append(1)
                asyncio.current_task().uncancel()

    assert await run_until_signal(main, grace_s=0.05) is None
    assert swallowed == [1]


@pytest.mark.asyncio
async def test_a_second_signal_cancels_at_once() -> None:
    async def main(stop: asyncio.Event) -> str:
        _signal()
        await stop.wait()
        _signal()
        await asyncio.Event().wait()
        return "never"

    assert await run_until_signal(main, grace_s=3600.0) is None


@pytest.mark.asyncio
async def test_a_cancellation_escaping_the_command_is_an_error() -> None:
    async def main(stop: asyncio.Event) -> None:
        raise asyncio.CancelledError

    with pytest.raises(RuntimeError, match="cancelled from within"):
        await run_until_signal(main, grace_s=1.0)


@pytest.mark.asyncio
async def test_until_stopped() -> None:
    stop = asyncio.Event()
    assert await until_stopped(stop, asyncio.sleep(0, result=3)) == 3
    assert await until_stopped(None, asyncio.sleep(0, result=4)) == 4
    started, cancelled = asyncio.Event(), asyncio.Event()

    async def connect() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    waiting = asyncio.create_task(until_stopped(stop, connect()))
    await started.wait()
    stop.set()
    with pytest.raises(Stopped):
        await waiting
    assert cancelled.is_set()
    never_started = connect()
    with pytest.raises(Stopped):
        await until_stopped(stop, never_started)  # closed, not left un-awaited


@pytest.mark.asyncio
async def test_sleep_unless_stopped() -> None:
    stop = asyncio.Event()
    await sleep_unless_stopped(stop, 0.0)
    await sleep_unless_stopped(None, 0.0)
    sleeper = asyncio.create_task(sleep_unless_stopped(stop, 3600.0))
    stop.set()
    with pytest.raises(Stopped):
        await sleeper
    with pytest.raises(Stopped):
        await sleep_unless_stopped(stop, 3600.0)

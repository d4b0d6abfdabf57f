"""SIGINT / SIGTERM for a long-running command: a stop event first, cancellation after a grace.

:func:`run_until_signal` runs ``main(stop)`` as a task. The first signal sets ``stop`` (the
command finishes its batch, commits and returns); if it has not ended ``grace_s`` later —
or on a second signal — the task is cancelled, and cancelled again every
``_RECANCEL_S`` until it ends, because a client library may swallow one cancellation that
lands inside a command. :func:`until_stopped` lets a command abandon an await (a connect, a
retry sleep) as soon as ``stop`` is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Awaitable, Callable
from typing import TypeVar

__all__ = ["Stopped", "run_until_signal", "sleep_unless_stopped", "until_stopped"]

T = TypeVar("T")
_RECANCEL_S = 0.1
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Stopped(Exception):
    """``stop`` was set while the command waited (it ends without finishing that step)."""


async def run_until_signal(
    main: Callable[[asyncio.Event], Awaitable[T]], grace_s: float
) -> T | None:
    """``main(stop)``'s result, or None when a signal had it cancelled (see the module)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()

    async def body() -> T:
        return await main(stop)

    task = asyncio.create_task(body(), name="command")
    forced = asyncio.Event()

    def on_signal() -> None:
        if stop.is_set():
            forced.set()
            return
        stop.set()
        if grace_s <= 0:
            forced.set()
        else:
            loop.call_later(grace_s, forced.set)

    async def enforce() -> None:
        await forced.wait()
        while not task.done():
            task.cancel()
            await asyncio.wait({task}, timeout=_RECANCEL_S)

    enforcer = asyncio.create_task(enforce(), name="command-stop")
    for sig in SIGNALS:
        loop.add_signal_handler(sig, on_signal)
    try:
        try:
            return await asyncio.shield(task)
        except asyncio.CancelledError:
            if forced.is_set() and task.cancelled():
                return None
            current = asyncio.current_task()
            if task.cancelled() and not (current is not None and current.cancelling()):
                # a library let a cancellation of its own escape: an error, not a traceback
                raise RuntimeError("the command was cancelled from within") from None
            raise
    finally:
        for sig in SIGNALS:
            loop.remove_signal_handler(sig)
        enforcer.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await enforcer
        if not task.done():  # we were cancelled from outside
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


async def until_stopped(stop: asyncio.Event | None, awaitable: Awaitable[T]) -> T:
    """``awaitable``'s result; :class:`Stopped` (the awaitable cancelled) if ``stop`` is
    set first. ``stop`` None: just the awaitable."""
    if stop is None:
        return await awaitable
    if stop.is_set():
        if isinstance(awaitable, asyncio.Future):
            awaitable.cancel()
        elif hasattr(awaitable, "close"):
            awaitable.close()  # a coroutine never started
        raise Stopped
    work = asyncio.ensure_future(awaitable)
    waiter = asyncio.create_task(stop.wait())
    stopped = True
    try:
        await asyncio.wait({work, waiter}, return_when=asyncio.FIRST_COMPLETED)
        stopped = not work.done()
    finally:
        waiter.cancel()
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
        with contextlib.suppress(asyncio.CancelledError):
            await waiter
    if stopped:
        raise Stopped
    return work.result()


async def sleep_unless_stopped(stop: asyncio.Event | None, seconds: float) -> None:
    """Sleep ``seconds``; :class:`Stopped` at once when ``stop`` is (or gets) set."""
    if stop is None:
        await asyncio.sleep(seconds)
        return
    if stop.is_set():
        raise Stopped
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            await stop.wait()
    if stop.is_set():
        raise Stopped

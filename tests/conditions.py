"""Waiting on a condition in tests: polled, with a generous cap that fails the test."""

from __future__ import annotations

import asyncio
import inspect
import io
import time
from collections.abc import Awaitable, Callable


async def eventually(
    predicate: Callable[[], Awaitable[bool] | bool],
    timeout: float = 10.0,
    what: str | Callable[[], str] = "condition not met in time",
) -> None:
    """Return once ``predicate()`` (plain or awaitable) is true; fail with ``what`` (or what
    it returns: a diagnosis of the state) after ``timeout`` seconds. The cap is only a
    guard: a loaded machine is slow, never wrong."""
    deadline = time.monotonic() + timeout
    while True:
        result = predicate()
        if inspect.isawaitable(result):
            result = await result
        if result:
            return
        if time.monotonic() > deadline:
            raise AssertionError(what if isinstance(what, str) else what())
        await asyncio.sleep(0.01)


def task_stacks() -> str:
    """Every task of the running loop with its whole await chain (each coroutine's file and
    line, innermost last): a hung wait's diagnosis."""
    out = io.StringIO()
    for task in asyncio.all_tasks():
        out.write(f"--- {task.get_name()} ({'cancelling' if task.cancelling() else 'pending'})\n")
        awaited: object = task.get_coro()
        while awaited is not None:
            frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
            if frame is not None:
                code = frame.f_code
                out.write(f"    {code.co_filename}:{frame.f_lineno} {code.co_name}\n")
            else:
                out.write(f"    {awaited!r}\n")
            awaited = getattr(awaited, "cr_await", None) or getattr(awaited, "gi_yieldfrom", None)
    return out.getvalue()

"""A local HTTP server that plays scripted responses per path and records every request.

Stands in for a polled chain venue (CBOE's delayed-quotes CDN, CME's settlements pages),
and for a webhook receiver (POSTs are answered from the same scripts, bodies recorded):
each path answers from its own script of :class:`Reply` entries, in order, and the
requests (with their headers) are recorded so a test can check conditional requests.
Switches change behaviour for the whole server (outage, validator handling, what to do
when a script runs out).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from aiohttp import web


@dataclass(frozen=True, slots=True)
class Reply:
    """One scripted response."""

    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)  # e.g. ETag, Last-Modified
    delay_s: float = 0.0  # wait this long before answering (a client timeout test)
    chunked: bool = False  # send without Content-Length, in chunks
    cut_after: int | None = None  # declare the full length, send this many bytes, drop


@dataclass(frozen=True, slots=True)
class RecordedRequest:
    path: str
    headers: dict[str, str]  # as received (header names as sent by the client)
    at: float  # time.monotonic() on arrival
    method: str = "GET"
    body: bytes = b""  # a POST's body

    def header(self, name: str) -> str | None:
        lowered = name.lower()
        return next((v for k, v in self.headers.items() if k.lower() == lowered), None)


class FakeHttpChain:
    """Serves scripted replies per path on 127.0.0.1 and a free port."""

    def __init__(self) -> None:
        self.scripts: dict[str, deque[Reply]] = {}
        self.requests: list[RecordedRequest] = []
        self.answered: list[tuple[str, int]] = []  # (path, status) of replies sent, in order
        # Switches
        self.outage_status: int | None = None  # answer every request with this status
        self.honour_validators = False  # 304 when If-None-Match equals the reply's ETag
        self.repeat_last = False  # when a path's script runs out, repeat its last reply
        self._last: dict[str, Reply] = {}
        self._closing = asyncio.Event()
        self._runner: web.AppRunner | None = None
        self._site: web.TCPSite | None = None

    def script(self, path: str, *replies: Reply) -> None:
        """Append replies to a path's script."""
        self.scripts.setdefault(path, deque()).extend(replies)

    def requests_to(self, path: str) -> list[RecordedRequest]:
        return [r for r in self.requests if r.path == path]

    def url(self, path: str = "") -> str:
        assert self._site is not None and self._runner is not None
        host, port = self._runner.addresses[0][:2]
        return f"http://{host}:{port}{path}"

    async def start(self) -> FakeHttpChain:
        app = web.Application()
        app.router.add_route("GET", "/{tail:.*}", self._handle)
        app.router.add_route("POST", "/{tail:.*}", self._handle)  # a webhook receiver
        self._runner = web.AppRunner(app, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        self._site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await self._site.start()
        return self

    async def stop(self) -> None:
        self._closing.set()  # ends any delayed reply at once
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _next_reply(self, path: str) -> Reply:
        queue = self.scripts.get(path)
        if queue:
            reply = queue.popleft()
            self._last[path] = reply
            return reply
        if self.repeat_last and path in self._last:
            return self._last[path]
        return Reply(404, b"no scripted reply\n")

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        body = await request.read() if request.method == "POST" else b""
        self.requests.append(
            RecordedRequest(path, dict(request.headers), time.monotonic(), request.method, body)
        )
        if self.outage_status is not None:
            self.answered.append((path, self.outage_status))
            return web.Response(status=self.outage_status, text="outage\n")
        reply = self._next_reply(path)
        if reply.delay_s > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._closing.wait(), reply.delay_s)
        etag = reply.headers.get("ETag")
        if (
            self.honour_validators
            and etag is not None
            and request.headers.get("If-None-Match") == etag
        ):
            self.answered.append((path, 304))
            return web.Response(status=304, headers={"ETag": etag})
        self.answered.append((path, reply.status))
        if reply.cut_after is not None or reply.chunked:
            return await self._stream(request, reply)
        return web.Response(status=reply.status, body=reply.body, headers=reply.headers)

    @staticmethod
    async def _stream(request: web.Request, reply: Reply) -> web.StreamResponse:
        response = web.StreamResponse(status=reply.status, headers=reply.headers)
        if reply.cut_after is not None:
            response.content_length = len(reply.body)
            await response.prepare(request)
            await response.write(reply.body[: reply.cut_after])
            assert request.transport is not None
            request.transport.close()  # the connection drops mid-body
            return response
        response.enable_chunked_encoding()
        await response.prepare(request)
        for start in range(0, len(reply.body), 4096):
            await response.write(reply.body[start : start + 4096])
        await response.write_eof()
        return response


class FakeTime:
    """A monotonic clock that moves only when the poller sleeps; sleeps return at once.

    After ``budget`` sleeps the next one blocks (until the poller is stopped), so a test
    knows the poller has handled exactly the replies before it. ``on_sleep`` runs at each
    sleep.
    """

    def __init__(self, budget: int, on_sleep: Callable[[], None] | None = None) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []
        self.budget = budget
        self.exhausted = asyncio.Event()
        self.on_sleep = on_sleep

    def clock(self) -> float:
        return self.now

    async def sleep(self, delay: float) -> None:
        self.sleeps.append(delay)
        if self.on_sleep is not None:
            self.on_sleep()
        if len(self.sleeps) > self.budget:
            self.exhausted.set()
            await asyncio.Event().wait()
        self.now += delay
        await asyncio.sleep(0)


class HalfRandom(random.Random):
    """Backoff jitter that always draws the middle: delays are exactly half the ceiling."""

    def random(self) -> float:
        return 0.5

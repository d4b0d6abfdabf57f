"""The dashboard's cost in the pipeline benchmark: a page connected while the engine runs.

``PageConnected(redis_url)`` starts `regime-engine dashboard` as its own process and a
reader process that holds one page's event stream open (what a browser tab does, without
rendering), so their CPU competes with the engine's as a real page's would. On exit it
stops both and reports how many messages of each kind the page received.

Run as a script it is that reader: ``python benchmarks/pipeline_dashboard.py URL U``
prints ``ready`` after its first status message, then, at SIGINT/SIGTERM, the counts as JSON.
"""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.pipeline_support import cpu_seconds  # noqa: E402


class PageConnected:
    """The dashboard process and one connected page, for the duration of a ``with``."""

    def __init__(self, redis_url: str, underlying: str = "BTC") -> None:
        self.redis_url = redis_url
        self.underlying = underlying
        self.counts: dict[str, int] = {}
        self.cpu_s: dict[str, float | None] = {}  # each process's CPU while connected
        self.wall_s = 0.0
        self._cpu0: dict[str, float | None] = {}
        self._t0 = 0.0
        self._dashboard: asyncio.subprocess.Process | None = None
        self._reader: asyncio.subprocess.Process | None = None

    async def __aenter__(self) -> PageConnected:
        self._dashboard = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "engine.app.cli", "dashboard", "--redis", self.redis_url,
            "--port", "0", cwd=REPO, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        line = (await asyncio.wait_for(self._dashboard.stderr.readline(), 60)).decode()
        if not line.startswith("dashboard: http://"):
            raise RuntimeError(f"the dashboard did not start: {line!r}")
        url = line.split()[1]
        self._reader = await asyncio.create_subprocess_exec(
            sys.executable, str(Path(__file__)), url, self.underlying,
            cwd=REPO, stdout=asyncio.subprocess.PIPE,
        )  # fmt: skip
        ready = (await asyncio.wait_for(self._reader.stdout.readline(), 60)).decode()
        if ready.strip() != "ready":
            raise RuntimeError(f"the page reader did not connect: {ready!r}")
        self._cpu0 = self._cpu()
        self._t0 = time.perf_counter()
        return self

    def _cpu(self) -> dict[str, float | None]:
        return {
            "dashboard": cpu_seconds(self._dashboard.pid if self._dashboard else None),
            "page_reader": cpu_seconds(self._reader.pid if self._reader else None),
        }

    async def __aexit__(self, *exc: object) -> None:
        self.wall_s = time.perf_counter() - self._t0
        cpu1 = self._cpu()
        self.cpu_s = {
            k: None if v is None or self._cpu0.get(k) is None else v - self._cpu0[k]
            for k, v in cpu1.items()
        }
        if self._reader is not None:
            self._reader.send_signal(signal.SIGINT)
            out, _ = await asyncio.wait_for(self._reader.communicate(), 60)
            self.counts = json.loads(out.decode() or "{}")
        if self._dashboard is not None:
            self._dashboard.send_signal(signal.SIGINT)
            await asyncio.wait_for(self._dashboard.wait(), 60)


async def _read(url: str, underlying: str) -> dict[str, Any]:
    import aiohttp  # noqa: PLC0415 - the reader process only

    counts: Counter[str] = Counter()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)

    async def follow() -> None:
        query = f"events?underlying={underlying}&bucket=all"
        async with aiohttp.ClientSession() as session, session.get(url + query) as response:
            async for line in response.content:
                if line.startswith(b"event: "):
                    name = line[7:].strip().decode()
                    counts[name] += 1
                    if name == "status" and counts[name] == 1:  # after the tape: connected
                        print("ready", flush=True)

    task = asyncio.create_task(follow())
    stopper = asyncio.create_task(stop.wait())
    await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    for t in (task, stopper):
        t.cancel()
    await asyncio.gather(task, stopper, return_exceptions=True)
    return dict(counts)


if __name__ == "__main__":
    print(json.dumps(asyncio.run(_read(sys.argv[1], sys.argv[2]))), flush=True)

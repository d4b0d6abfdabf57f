"""Polite HTTP polling of whole documents (chain snapshots) into an ingest stage.

Venue-agnostic: CBOE's delayed-quotes CDN and CME's settlement pages both publish one
document per underlying that changes every few seconds to minutes. Each URL is polled on
its own owned task, at most once per ``interval_s`` (end of one request to the start of
the next), with conditional requests (``If-None-Match`` / ``If-Modified-Since`` from the
last 200's ``ETag`` / ``Last-Modified``). This class only moves bytes:

* a new body goes to the stage as received (the normaliser parses it, so a truncated body
  becomes a ParseError there and is dead-lettered);
* a 304, or a 200 whose bytes hash equals the previous body's (servers without
  validators), delivers nothing;
* an empty 200 or a body over ``max_body_bytes`` is dead-lettered through the stage;
* timeouts, connection errors, 403/429/5xx back off (capped, jittered, per URL); 403/429
  penalise the backoff further, and ``Retry-After`` is honoured, for every URL of the
  same host (the venue rate-limits the client, not the document);
* a URL that has not delivered a new body for ``stale_after_intervals`` intervals is
  logged and counted once, until it delivers again.

Counters (``counts``): requests, delivered, not_modified, unchanged, empty_body, oversize,
timeout, connection_error, rate_limited (403/429), server_error (5xx), http_error (other
statuses), ``http_<status>`` for each failing status, stale, host_holds.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime
from typing import ClassVar
from urllib.parse import urlsplit

import aiohttp

from connectors.common.ingest import Describe, IngestStage, no_request
from connectors.common.lifecycle import Backoff, Watchdog, cancel_and_wait
from connectors.common.logs import get_logger
from schemas.config import Config, ConfigError

MIN_INTERVAL_S = 2.0  # no URL is requested more often than this, whatever the config says
DEFAULT_USER_AGENT = "regime-engine/0.1 (chain snapshot poller; one request per URL per 15 s)"
DEAD_LETTER_SAMPLE_BYTES = 4096  # an oversize body is dead-lettered as its first bytes only
_READ_CHUNK_BYTES = 256 * 1024

log = get_logger("http_poller")


@dataclass(frozen=True, slots=True)
class HttpPollerConfig(Config):
    """Configuration of one poller (frozen; unknown keys rejected).

    ``urls`` may be empty in a template that a venue client fills in (``CboeConfig.poller``).
    """

    SECTION: ClassVar[str] = "HTTP poller"

    urls: tuple[str, ...] = ()
    interval_s: float = 15.0  # per URL; CBOE's delayed quotes change about every 15 s
    request_timeout_s: float = 60.0  # whole request, body included (SPX is ~14 MB)
    connect_timeout_s: float = 10.0
    max_body_bytes: int = 64 * 1024 * 1024  # decoded body
    user_agent: str = DEFAULT_USER_AGENT
    backoff_initial_s: float = 5.0
    backoff_cap_s: float = 300.0
    rate_limit_penalty: int = 2  # extra backoff steps after a 403 / 429
    max_retry_after_s: float = 900.0  # a longer Retry-After is cut to this
    stale_after_intervals: int = 8  # no new body for this many intervals → stale
    max_connections_per_host: int = 2
    stop_grace_s: float = 5.0  # stop() lets an in-flight request finish this long

    def __post_init__(self) -> None:
        for url in self.urls:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).netloc:
                raise ConfigError(f"poll URL must be http(s)://host/…, got {url!r}")
        if len(set(self.urls)) != len(self.urls):
            raise ConfigError("poll URLs must be distinct")
        if self.interval_s < MIN_INTERVAL_S:
            raise ConfigError(f"interval_s must be >= {MIN_INTERVAL_S} s (politeness floor)")
        if min(self.request_timeout_s, self.connect_timeout_s, self.stop_grace_s) <= 0:
            raise ConfigError("request_timeout_s, connect_timeout_s, stop_grace_s must be > 0")
        if self.max_body_bytes <= 0 or self.max_connections_per_host < 1:
            raise ConfigError("max_body_bytes and max_connections_per_host must be positive")
        if not 0 < self.backoff_initial_s <= self.backoff_cap_s:
            raise ConfigError("backoff needs 0 < backoff_initial_s <= backoff_cap_s")
        if self.rate_limit_penalty < 0 or self.stale_after_intervals < 1:
            raise ConfigError("rate_limit_penalty must be >= 0, stale_after_intervals >= 1")
        if self.max_retry_after_s <= 0 or not self.user_agent:
            raise ConfigError("max_retry_after_s must be > 0 and user_agent non-empty")


def body_digest(body: bytes) -> bytes:
    """The hash that decides whether a body is new (16 bytes, collision-safe for this)."""
    return hashlib.blake2b(body, digest_size=16).digest()


def retry_after_s(value: str | None, now_s: float) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        moment = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        return None
    return max(0.0, moment.timestamp() - now_s)


async def pause_unless_stopped(
    sleep: Callable[[float], Awaitable[object]], stopping: asyncio.Event, delay: float
) -> None:
    """Sleep ``delay`` seconds with ``sleep``, returning early once ``stopping`` is set."""
    if delay <= 0 or stopping.is_set():
        return
    sleeper = asyncio.ensure_future(sleep(delay))
    stopper = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((sleeper, stopper), return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(sleeper)
        await cancel_and_wait(stopper)


def _head(chunks: list[bytes], size: int) -> bytes:
    head = bytearray()
    for chunk in chunks:
        head += chunk[: size - len(head)]
        if len(head) >= size:
            break
    return bytes(head)


@dataclass(slots=True)
class _Oversize:
    sample: bytes  # the first bytes, for the dead letter
    at_least: int  # bytes seen (or declared) when the limit was passed


@dataclass(slots=True)
class UrlState:
    """What the poller remembers about one URL (a few hundred bytes, whatever the body)."""

    url: str
    host: str
    backoff: Backoff
    etag: str | None = None
    last_modified: str | None = None
    digest: bytes | None = None  # of the last body handed to the stage
    last_outcome: str = ""
    deliveries: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


class HttpPoller:
    """Polls every configured URL into one ingest stage until :meth:`stop`.

    ``sleep`` and ``clock`` (monotonic seconds) are injectable so tests can run the
    schedule without waiting; ``rng`` feeds the backoff jitter.
    """

    def __init__(
        self,
        config: HttpPollerConfig,
        stage: IngestStage,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        describe: Describe = no_request,
    ) -> None:
        if not config.urls:
            raise ValueError("HttpPoller needs at least one URL")
        self.config = config
        self.stage = stage
        self._describe = describe
        self.counts: Counter[str] = Counter()
        self._sleep = sleep
        self._clock = clock
        self.states = {
            url: UrlState(
                url,
                urlsplit(url).netloc,
                Backoff(
                    config.backoff_initial_s,
                    config.backoff_cap_s,
                    minimum_s=MIN_INTERVAL_S,
                    rng=rng,
                ),
            )
            for url in config.urls
        }
        self.watchdog = Watchdog(config.stale_after_intervals * config.interval_s, clock)
        self._stale: set[str] = set()
        self._host_hold_until: dict[str, float] = {}  # host → clock() before which none asks
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._started = False
        self._tasks: list[asyncio.Task[None]] = []
        self._session: aiohttp.ClientSession | None = None

    # ------------------------------------------------------------ lifecycle

    async def run(self) -> None:
        """Poll until :meth:`stop` (URLs start staggered across one interval)."""
        if self._started:
            raise RuntimeError("HttpPoller.run() can only be called once")
        self._started = True
        cfg = self.config
        try:
            connector = aiohttp.TCPConnector(limit_per_host=cfg.max_connections_per_host)
            timeout = aiohttp.ClientTimeout(
                total=cfg.request_timeout_s, sock_connect=cfg.connect_timeout_s
            )
            async with aiohttp.ClientSession(
                connector=connector, timeout=timeout, headers={"User-Agent": cfg.user_agent}
            ) as session:
                self._session = session
                for url in self.states:
                    self.watchdog.touch(url)  # staleness counts from the start
                offset = cfg.interval_s / len(self.states)
                self._tasks = [
                    asyncio.create_task(self._poll(state, i * offset), name=f"poll {state.url}")
                    for i, state in enumerate(self.states.values())
                ]
                try:
                    done, _ = await asyncio.wait(self._tasks, return_when=asyncio.FIRST_EXCEPTION)
                    for task in done:  # a bug, not a venue failure: fail loudly
                        if not task.cancelled() and task.exception() is not None:
                            raise task.exception()  # type: ignore[misc]
                finally:
                    for task in self._tasks:
                        await cancel_and_wait(task)
        finally:
            self._session = None
            self._finished.set()

    async def stop(self) -> None:
        """Stop polling: in-flight requests get ``stop_grace_s`` to finish, then are cancelled."""
        self._stopping.set()
        if self._tasks:
            _, pending = await asyncio.wait(self._tasks, timeout=self.config.stop_grace_s)
            for task in pending:
                await cancel_and_wait(task)
        if self._started:
            await self._finished.wait()

    def stale_urls(self) -> list[str]:
        """URLs currently without a new body for ``stale_after_intervals`` intervals."""
        return sorted(self._stale)

    # ------------------------------------------------------------ one URL

    async def _poll(self, state: UrlState, start_after_s: float) -> None:
        await self._pause(start_after_s)
        while not self._stopping.is_set():
            hold = self._host_hold_until.get(state.host, 0.0) - self._clock()
            if hold > 0:
                self.counts["host_holds"] += 1
                await self._pause(hold)
                continue
            delay = await self._attempt(state)
            self._check_stale(state)
            await self._pause(delay)

    async def _pause(self, delay: float) -> None:
        await pause_unless_stopped(self._sleep, self._stopping, delay)

    def _conditional_headers(self, state: UrlState) -> dict[str, str]:
        headers = {}
        if state.etag is not None:
            headers["If-None-Match"] = state.etag
        if state.last_modified is not None:
            headers["If-Modified-Since"] = state.last_modified
        return headers

    async def _attempt(self, state: UrlState) -> float:
        """One request; returns how long to wait before the next one."""
        assert self._session is not None
        self.counts["requests"] += 1
        try:
            async with self._session.get(
                state.url, headers=self._conditional_headers(state)
            ) as response:
                status = response.status
                if status == 304:
                    return self._succeeded(state, "not_modified")
                if not 200 <= status < 300:
                    return self._http_failure(state, status, response.headers.get("Retry-After"))
                validators = (response.headers.get("ETag"), response.headers.get("Last-Modified"))
                body = await self._read_body(response)
                recv_ns = time.time_ns()
        except TimeoutError:
            timeout = self.config.request_timeout_s
            return self._failed(state, "timeout", f"no complete response within {timeout} s")
        except aiohttp.ClientError as exc:
            return self._failed(state, "connection_error", f"{type(exc).__name__}: {exc}")
        return await self._hand_over(state, body, validators, recv_ns)

    async def _read_body(self, response: aiohttp.ClientResponse) -> bytes | _Oversize:
        limit = self.config.max_body_bytes
        declared = response.content_length  # on the wire; a decoded text body is not smaller
        if declared is not None and declared > limit:
            return _Oversize(b"", declared)
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(_READ_CHUNK_BYTES):
            size += len(chunk)
            chunks.append(chunk)
            if size > limit:
                return _Oversize(_head(chunks, min(limit, DEAD_LETTER_SAMPLE_BYTES)), size)
        return b"".join(chunks)

    async def _hand_over(
        self,
        state: UrlState,
        body: bytes | _Oversize,
        validators: tuple[str | None, str | None],
        recv_ns: int,
    ) -> float:
        if isinstance(body, _Oversize):
            reason = (
                f"body over limit: at least {body.at_least} bytes > {self.config.max_body_bytes}"
            )
            request = self._describe(state.url)
            await self.stage.on_message(body.sample, None, recv_ns, request, state.url, reason)
            return self._failed(state, "oversize", reason)
        if not body:
            request = self._describe(state.url)
            await self.stage.on_message(b"", None, recv_ns, request, state.url, "empty body")
            return self._failed(state, "empty_body", "200 with an empty body")
        state.etag, state.last_modified = validators
        digest = body_digest(body)
        if digest == state.digest:
            return self._succeeded(state, "unchanged")
        state.digest = digest
        state.deliveries += 1
        self._fresh(state)
        await self.stage.on_message(body, body, recv_ns, self._describe(state.url), state.url)
        return self._succeeded(state, "delivered")

    # ------------------------------------------------------------ outcomes

    def _record(self, state: UrlState, outcome: str) -> None:
        self.counts[outcome] += 1
        state.outcomes[outcome] += 1
        state.last_outcome = outcome

    def _succeeded(self, state: UrlState, outcome: str) -> float:
        self._record(state, outcome)
        state.backoff.reset()
        return self.config.interval_s

    def _failed(
        self,
        state: UrlState,
        outcome: str,
        detail: str,
        retry_after: float | None = None,
        penalty: int = 0,
    ) -> float:
        self._record(state, outcome)
        state.backoff.penalise(penalty)
        delay = state.backoff.next_delay()
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.config.max_retry_after_s))
        if penalty or retry_after is not None:  # the venue is pushing back: hold the host
            until = self._clock() + delay
            self._host_hold_until[state.host] = max(
                until, self._host_hold_until.get(state.host, 0.0)
            )
        log.warning("poll failed", url=state.url, outcome=outcome, detail=detail, retry_in_s=delay)
        return delay

    def _http_failure(self, state: UrlState, status: int, retry_after: str | None) -> float:
        self.counts[f"http_{status}"] += 1
        wait = retry_after_s(retry_after, time.time())
        if status in (403, 429):
            outcome, penalty = "rate_limited", self.config.rate_limit_penalty
        elif status >= 500:
            outcome, penalty = "server_error", 0
        else:
            outcome, penalty = "http_error", 0
        return self._failed(state, outcome, f"HTTP {status}", wait, penalty)

    def _fresh(self, state: UrlState) -> None:
        self.watchdog.touch(state.url)
        if state.url in self._stale:
            self._stale.discard(state.url)
            log.info("poll recovered", url=state.url)

    def _check_stale(self, state: UrlState) -> None:
        if state.url in self._stale:
            return
        if state.url in self.watchdog.stale_keys(self.watchdog.stale_after_s):
            self._stale.add(state.url)
            self.counts["stale"] += 1
            log.warning(
                "poll stale: no new body",
                url=state.url,
                intervals=self.config.stale_after_intervals,
                last_outcome=state.last_outcome,
            )

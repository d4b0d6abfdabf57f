"""Subscriber client for bots (DESIGN §2.4): regime events from Redis as an async iterator.

On connect it reads the latest levels (``GET regime:levels:{U}``), then each underlying's
stream (``regime:stream:{U}``) from its start id, then live; both catch-up and live are one
``XREAD BLOCK`` over all the streams from each one's last delivered id. On a connection
error it reconnects with capped, jittered backoff, re-reads the levels and resumes from the
last delivered ids: no gap and no duplicate (as long as the server kept the stream; a
server restarted without persistence starts the streams anew, and entries that it numbers
below a stream's last delivered id would not be delivered). Each underlying's events come
in stream order; the entries of one XREAD reply are merged by id (the millisecond of XADD;
ties keep the reply's stream order), so across underlyings the order is only approximate. ::

    cfg = SubscriberConfig("redis://127.0.0.1:6379/0", underlyings=("BTC",), start_id="0")
    async with RegimeSubscriber(cfg) as sub:
        print(sub.levels.get("BTC"))
        async for delivery in sub:
            handle(delivery.event)
            save(sub.last_ids)  # pass back as ``start_ids`` to resume after a restart

Only one task may iterate a subscriber; another task may :meth:`RegimeSubscriber.close` it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import re
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, Self

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from connectors.common.logs import get_logger
from connectors.common.redis_conn import (
    NO_SECURITY,
    RedisSecurity,
    failure_line,
    permanent_cause,
    redis_client,
)
from connectors.common.secrets import redact_text, redacted_repr
from schemas.channels import (
    EVENTS_STREAM_PATTERN,
    STREAM_FIELD,
    as_text,
    events_stream,
    levels_key,
    underlying_of,
)
from schemas.config import Config, ConfigError
from schemas.events import RegimeEvent, decode_event
from schemas.levels import BUCKETS, Levels, decode_levels

__all__ = [
    "Delivery",
    "RedisSecurity",
    "RegimeSubscriber",
    "SubscriberConfig",
    "SubscriberError",
    "latest_levels",
]

log = get_logger("engine.subscriber")

#: Errors after which the subscriber reconnects (redis-py wraps most socket errors).
CONNECTION_ERRORS: tuple[type[BaseException], ...] = (
    RedisConnectionError,
    RedisTimeoutError,
    OSError,  # includes the builtin TimeoutError
)

_ID_RE = re.compile(r"^(\d+)(?:-(\d+))?$")
_BAD_NAME_CHARS = frozenset(":*?[]\\ \t\r\n")
_FIELD = STREAM_FIELD.encode()


class SubscriberError(RuntimeError):
    """The subscriber gave up: a permanent failure (authentication, ACL ``NOPERM``, TLS
    verification, unknown database) or ``max_reconnect_attempts`` exhausted. The message is
    one line naming the service and the cause, without the password."""


def _parse_id(stream_id: str) -> tuple[int, int]:
    """``"ms-seq"`` (or ``"ms"``) as a sortable pair; ValueError when it is not a stream id."""
    match = _ID_RE.match(stream_id)
    if match is None:
        raise ValueError(f"not a stream id: {stream_id!r}")
    return int(match.group(1)), int(match.group(2) or 0)


def _normalise_start(value: object, what: str) -> str:
    """``"$"`` stays; ``"0"`` and ``"ms"`` become ``"ms-seq"``; anything else is rejected."""
    if value == "$":
        return "$"
    if not isinstance(value, str):
        raise ConfigError(f"{what} must be a string stream id, '0' or '$'; got {value!r}")
    try:
        ms, seq = _parse_id(value)
    except ValueError:
        raise ConfigError(
            f"{what} must be a stream id ('ms-seq'), '0' or '$'; got {value!r}"
        ) from None
    return f"{ms}-{seq}"


def _check_underlying(name: object, what: str) -> str:
    if not isinstance(name, str) or not name or _BAD_NAME_CHARS.intersection(name):
        raise ConfigError(f"{what}: bad underlying name {name!r}")
    return name


@dataclass(frozen=True, slots=True)
class SubscriberConfig(Config):
    """What to read and how to reconnect.

    ``underlyings=None`` follows every underlying: streams (``regime:stream:*``) and levels
    keys are discovered with SCAN on connect and every ``discover_interval_s``.
    ``start_id`` applies to every underlying without an entry in ``start_ids``: ``"0"``
    reads the retained stream from its beginning, ``"$"`` only what is added after the
    first connect, a stream id (``"ms-seq"``) what comes after it. A stream discovered
    after the first connect is read from its beginning (``"$"`` becomes ``"0"``).
    """

    SECTION: ClassVar[str] = "subscriber"

    redis_url: str = "redis://127.0.0.1:6379/0"
    underlyings: tuple[str, ...] | None = None
    start_id: str = "$"
    start_ids: Mapping[str, str] = field(default_factory=dict)
    block_ms: int = 1000  # longest XREAD BLOCK; also how late a close or discovery may be
    count: int = 100  # entries per stream per XREAD (bounds the read-ahead buffer)
    discover_interval_s: float = 5.0
    reconnect_min_s: float = 0.05
    reconnect_max_s: float = 5.0
    max_reconnect_attempts: int | None = None  # consecutive failures; None = retry forever
    connect_timeout_s: float = 5.0
    command_timeout_s: float = 5.0  # socket timeout of commands, beyond block_ms for XREAD
    client_name: str | None = "regime-subscriber"
    # Deliver only events standing for one of these buckets (an event published once for
    # buckets with the same expiries matches each of them, ``RegimeEvent.in_buckets``);
    # None delivers every event. Skipped events still advance ``last_ids``.
    buckets: tuple[str, ...] | None = None
    security: RedisSecurity = NO_SECURITY  # TLS files, ACL user and password (see there)

    def __post_init__(self) -> None:
        if not isinstance(self.redis_url, str) or not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError(
                f"redis_url must be a redis:// URL, got {redact_text(repr(self.redis_url))}"
            )
        if not isinstance(self.security, RedisSecurity):
            raise ConfigError("security must be a RedisSecurity")
        self.security.check_url(self.redis_url)
        if self.underlyings is not None:
            if isinstance(self.underlyings, str) or not isinstance(self.underlyings, Sequence):
                raise ConfigError("underlyings must be a tuple of names or None")
            names = tuple(_check_underlying(u, "underlyings") for u in self.underlyings)
            if not names:
                raise ConfigError("underlyings is empty (use None for every underlying)")
            if len(set(names)) != len(names):
                raise ConfigError(f"underlyings has duplicates: {names}")
            object.__setattr__(self, "underlyings", names)
        object.__setattr__(self, "start_id", _normalise_start(self.start_id, "start_id"))
        if not isinstance(self.start_ids, Mapping):
            raise ConfigError("start_ids must be a mapping of underlying to stream id")
        start_ids = {
            _check_underlying(u, "start_ids"): _normalise_start(v, f"start_ids[{u!r}]")
            for u, v in self.start_ids.items()
        }
        if self.underlyings is not None:
            unknown = sorted(set(start_ids) - set(self.underlyings))
            if unknown:
                raise ConfigError(f"start_ids names underlyings not subscribed: {unknown}")
        object.__setattr__(self, "start_ids", MappingProxyType(start_ids))
        for name in ("block_ms", "count"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        for name in (
            "discover_interval_s",
            "reconnect_min_s",
            "reconnect_max_s",
            "connect_timeout_s",
            "command_timeout_s",
        ):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ConfigError("reconnect_max_s must be >= reconnect_min_s")
        if self.buckets is not None:
            if isinstance(self.buckets, str) or not isinstance(self.buckets, Sequence):
                raise ConfigError("buckets must be a tuple of bucket names or None")
            unknown = sorted(set(self.buckets) - set(BUCKETS))
            if unknown or not self.buckets:
                raise ConfigError(f"buckets must be among {', '.join(BUCKETS)}; got {unknown}")
            object.__setattr__(self, "buckets", tuple(self.buckets))
        attempts = self.max_reconnect_attempts
        if attempts is not None and (
            not isinstance(attempts, int) or isinstance(attempts, bool) or attempts < 0
        ):
            raise ConfigError(f"max_reconnect_attempts must be None or >= 0, got {attempts!r}")

    def __repr__(self) -> str:
        return redacted_repr(self)

    def start_for(self, underlying: str, *, initial: bool) -> str:
        """Start id of ``underlying``: from ``start_ids``, else ``start_id`` (see class doc)."""
        start = self.start_ids.get(underlying, self.start_id)
        if start == "$" and not initial and underlying not in self.start_ids:
            return "0-0"
        return start


@dataclass(frozen=True, slots=True)
class Delivery:
    """One event as read from ``regime:stream:{underlying}`` at ``stream_id``."""

    stream_id: str
    underlying: str
    event: RegimeEvent


class RegimeSubscriber:
    """Async iterator of :class:`Delivery`; see the module docstring.

    ``levels`` holds the levels that ``GET regime:levels:{U}`` returned at the last
    (re)connect or discovery (an underlying whose key is missing or unreadable has no
    entry); events carry their bucket's levels for what changed since.
    """

    def __init__(self, config: SubscriberConfig) -> None:
        self.config = config
        self._client: aioredis.Redis | None = None
        self._connected = False
        self._state = "idle"
        self._closed = False
        self._closing = asyncio.Event()
        self._iterating = False
        self._initial_done = False  # start ids resolved at the first connect
        self._last_ids: dict[str, str] = {}  # underlying -> last delivered id ("$" unresolved)
        self._stream_keys: dict[str, bytes] = {}
        self._levels: dict[str, Levels] = {}
        # At most one XREAD reply: count entries for each stream (bounded read-ahead).
        self._pending: deque[tuple[str, str, Any]] = deque()
        self._next_discovery = 0.0
        self._failures = 0
        self._malformed = 0
        self._delivered = 0
        self._reconnects = 0
        self._connects = 0
        self._sockets = 0  # sockets the current client opened (see _on_socket)
        self._sockets_known = 0  # of those, the ones a (re)connect here accounted for
        for name in config.underlyings or ():
            self._watch(name, config.start_for(name, initial=True))
        for name, start in config.start_ids.items():
            self._watch(name, start)

    # -- public state -------------------------------------------------------------------

    @property
    def levels(self) -> dict[str, Levels]:
        """Latest levels per underlying as read at the last (re)connect (a copy)."""
        return dict(self._levels)

    @property
    def last_ids(self) -> dict[str, str]:
        """Per underlying, the id of the last delivered (or skipped) entry (a copy).

        Before anything is delivered it is the start id (``"$"`` is resolved to the stream's
        last id at the first connect), so it can always be passed back as ``start_ids``.
        """
        return dict(self._last_ids)

    @property
    def underlyings(self) -> tuple[str, ...]:
        """Underlyings currently read (configured or discovered), sorted."""
        return tuple(sorted(self._last_ids))

    @property
    def malformed(self) -> int:
        """Stream entries skipped because they were not a decodable event."""
        return self._malformed

    @property
    def delivered(self) -> int:
        return self._delivered

    @property
    def reconnects(self) -> int:
        """Successful connects after a connection error."""
        return self._reconnects

    @property
    def connected(self) -> bool:
        return self._connected

    @property
    def state(self) -> str:
        """``idle`` (not started), ``connecting``, ``connected``, ``backoff`` (waiting to
        reconnect after a transient failure), ``failed`` (a permanent failure, or out of
        attempts; kept after close) or ``closed``."""
        return self._state

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> Self:
        """Connect (retrying as configured) and read the levels."""
        if self._closed:
            raise SubscriberError("subscriber is closed")
        await self._ensure_connected()
        return self

    async def close(self) -> None:
        """Stop: an iteration in progress (any task) ends with StopAsyncIteration."""
        if self._closed:
            return
        self._closed = True
        if self._state != "failed":  # the reason it ended stays visible
            self._state = "closed"
        self._closing.set()
        self._pending.clear()
        await self._disconnect()

    async def refresh_levels(self) -> dict[str, Levels]:
        """Re-read the levels of every underlying now; returns ``levels``.

        Raises redis-py's ConnectionError if the connection is lost meanwhile (the iterator
        reconnects on its own; this call does not retry).
        """
        if self._client is None:
            raise SubscriberError("subscriber is not connected")
        await self._read_levels(self._client, tuple(self._last_ids))
        return self.levels

    async def __aenter__(self) -> Self:
        try:
            return await self.start()
        except BaseException:
            await self.close()
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Delivery:
        if self._iterating:
            raise RuntimeError("RegimeSubscriber is already being iterated by another task")
        self._iterating = True
        try:
            return await self._next()
        finally:
            self._iterating = False

    # -- the loop -----------------------------------------------------------------------

    async def _next(self) -> Delivery:
        while True:
            _raise_if_cancelling()
            while self._pending:
                if self._closed:
                    raise StopAsyncIteration
                underlying, stream_id, fields = self._pending.popleft()
                self._last_ids[underlying] = stream_id
                event = self._decode(underlying, stream_id, fields)
                wanted = self.config.buckets
                if event is not None and (wanted is None or event.in_buckets(wanted)):
                    self._delivered += 1
                    return Delivery(stream_id=stream_id, underlying=underlying, event=event)
            if self._closed:
                raise StopAsyncIteration
            try:
                await self._ensure_connected()
                client = self._client
                assert client is not None
                loop_time = asyncio.get_running_loop().time()
                if self.config.underlyings is None and loop_time >= self._next_discovery:
                    new = await self._discover(client)
                    await self._read_levels(client, new)
                if not self._last_ids:
                    await self._sleep(
                        min(self.config.block_ms / 1000.0, self.config.discover_interval_s)
                    )
                    continue
                streams = {self._stream_keys[u]: self._last_ids[u] for u in self._last_ids}
                reply = await client.xread(
                    streams, count=self.config.count, block=self.config.block_ms
                )
            except CONNECTION_ERRORS as exc:
                if self._closed:
                    raise StopAsyncIteration from None
                await self._connection_lost(exc)
                continue
            except Exception as exc:
                if self._closed:  # a close() from another task tore the connection down
                    raise StopAsyncIteration from None
                if isinstance(exc, RedisError):
                    await self._fail_if_permanent(exc)
                raise
            if self._closed:  # closed meanwhile; redis-py may have reopened the connection
                with contextlib.suppress(*CONNECTION_ERRORS, RuntimeError):
                    await client.aclose()
                raise StopAsyncIteration
            self._failures = 0
            if self._sockets > self._sockets_known:  # redis-py reconnected on its own
                await self._reconnected_quietly(client)
            self._buffer(reply)

    async def _on_socket(self, connection: Any) -> None:
        """redis-py's connect hook, for every socket the client opens. redis-py opens a new
        one by itself when it finds the pooled one closed at checkout (the server restarted
        while the subscriber was between reads): counting them is how that is seen."""
        await connection.on_connect_check_health(check_health=True)
        self._sockets += 1

    async def _reconnected_quietly(self, client: aioredis.Redis) -> None:
        """A server restart redis-py hid: counted as a reconnect, and the levels read again
        (written while the subscriber was not connected). The stream resumes from the last
        ids as after any reconnect, so nothing is missed or repeated."""
        self._sockets_known = self._sockets
        self._reconnects += 1
        with contextlib.suppress(*CONNECTION_ERRORS):
            await self._read_levels(client, tuple(self._last_ids))
        log.info("subscriber_reconnected", reconnects=self._reconnects, quietly=True)

    def _buffer(self, reply: Any) -> None:
        """Queue an XREAD reply's entries, merged by id across the streams (stable)."""
        if not reply:
            return
        items = reply.items() if isinstance(reply, dict) else reply
        batch: list[tuple[tuple[int, int], str, str, Any]] = []
        for key, entries in items:
            underlying = underlying_of(as_text(key))
            for entry_id, fields in entries:
                stream_id = as_text(entry_id)
                batch.append((_parse_id(stream_id), underlying, stream_id, fields))
        batch.sort(key=lambda item: item[0])  # stable: each stream's order is kept
        self._pending.extend((u, sid, fields) for _, u, sid, fields in batch)

    def _decode(self, underlying: str, stream_id: str, fields: Any) -> RegimeEvent | None:
        raw = fields.get(_FIELD) if isinstance(fields, dict) else None
        try:
            if raw is None:
                raise ValueError(f"no {STREAM_FIELD!r} field")
            return decode_event(raw)
        except (ValueError, TypeError) as exc:
            self._malformed += 1
            log.warning(
                "malformed_stream_entry",
                underlying=underlying,
                stream_id=stream_id,
                error=" ".join(str(exc).split())[:300],
                skipped=self._malformed,
            )
            return None

    # -- connection ---------------------------------------------------------------------

    async def _ensure_connected(self) -> None:
        while not self._connected:
            if self._closed:
                raise SubscriberError("subscriber is closed")
            self._state = "connecting"
            try:
                await self._connect()
            except CONNECTION_ERRORS as exc:
                await self._connection_lost(exc)
            except RedisError as exc:  # a reply refusing the connection (unknown database)
                await self._fail_if_permanent(exc)
                raise

    async def _connect(self) -> None:
        cfg = self.config
        client = redis_client(
            cfg.redis_url,
            cfg.security,
            decode_responses=False,
            # The subscriber owns reconnects (backoff, levels, resume): no hidden retries.
            retry=Retry(NoBackoff(), 0),
            redis_connect_func=self._on_socket,
            socket_connect_timeout=cfg.connect_timeout_s,
            socket_timeout=cfg.block_ms / 1000.0 + cfg.command_timeout_s,
            client_name=cfg.client_name,
        )
        self._client = client
        self._sockets = self._sockets_known = 0
        try:
            await client.ping()
            if not self._initial_done:
                if cfg.underlyings is None:
                    await self._discover(client, initial=True)
                await self._resolve_starts(client)
            elif cfg.underlyings is None:
                await self._discover(client)
            await self._read_levels(client, tuple(self._last_ids))
        except BaseException:
            await self._disconnect()
            raise
        self._initial_done = True
        self._sockets_known = self._sockets
        self._connected = True
        self._state = "connected"
        self._connects += 1
        if self._connects > 1:
            self._reconnects += 1
        log.info(
            "subscriber_connected",
            underlyings=len(self._last_ids),
            levels=len(self._levels),
            reconnects=self._reconnects,
        )

    async def _resolve_starts(self, client: aioredis.Redis) -> None:
        """Replace ``"$"`` by the stream's last id now (``0-0`` when it has none)."""
        for underlying, start in list(self._last_ids.items()):
            if start != "$":
                continue
            last = await client.xrevrange(self._stream_keys[underlying], count=1)
            if last:
                self._last_ids[underlying] = as_text(last[0][0])
            else:
                self._last_ids[underlying] = "0-0"

    async def _discover(self, client: aioredis.Redis, *, initial: bool = False) -> tuple[str, ...]:
        """SCAN for streams and levels keys of underlyings not read yet; returns the new ones."""
        found: set[str] = set()
        for pattern, key_of, type_ in (
            (EVENTS_STREAM_PATTERN, events_stream, "stream"),
            (levels_key("*"), levels_key, "string"),
        ):
            async for raw_key in client.scan_iter(match=pattern, count=1000, _type=type_):
                key = raw_key.decode("utf-8", "replace")
                name = underlying_of(key)
                # "regime:stream:a:b" is nobody's stream (its underlying_of names another key).
                if key_of(name) == key and not _BAD_NAME_CHARS.intersection(name):
                    found.add(name)
        new = tuple(sorted(found - self._last_ids.keys()))
        for name in new:
            self._watch(name, self.config.start_for(name, initial=initial))
        if new:
            log.info("subscriber_discovered", underlyings=list(new), initial=initial)
        self._next_discovery = asyncio.get_running_loop().time() + self.config.discover_interval_s
        return new

    async def _read_levels(self, client: aioredis.Redis, names: tuple[str, ...]) -> None:
        if not names:
            return
        raws = await client.mget([levels_key(name) for name in names])
        for name, raw in zip(names, raws, strict=True):
            if raw is None:
                self._levels.pop(name, None)
                continue
            try:
                self._levels[name] = decode_levels(raw)
            except (ValueError, TypeError, KeyError) as exc:
                self._levels.pop(name, None)
                log.warning(
                    "malformed_levels",
                    underlying=name,
                    error=" ".join(f"{type(exc).__name__}: {exc}".split())[:300],
                )

    def _watch(self, underlying: str, start: str) -> None:
        self._last_ids.setdefault(underlying, start)
        self._stream_keys.setdefault(underlying, events_stream(underlying).encode())

    async def _connection_lost(self, exc: BaseException) -> None:
        """Drop the connection, then wait the backoff (or raise when out of attempts or
        when the failure is permanent)."""
        await self._disconnect()
        await self._fail_if_permanent(exc)
        self._failures += 1
        error = redact_text(" ".join(f"{type(exc).__name__}: {exc}".split())[:300])
        limit = self.config.max_reconnect_attempts
        if limit is not None and self._failures > limit:
            self._state = "failed"
            raise SubscriberError(
                failure_line(
                    self.config.redis_url, f"unreachable after {self._failures} attempts: {error}"
                )
            ) from None
        delay = self._backoff(self._failures)
        self._state = "backoff"
        log.warning(
            "subscriber_connection_lost",
            redis=redact_text(self.config.redis_url),
            state="reconnecting",
            error=error,
            attempt=self._failures,
            retry_in_s=round(delay, 3),
        )
        await self._sleep(delay)

    async def _fail_if_permanent(self, exc: BaseException) -> None:
        """SubscriberError (one line) when retrying cannot help (see redis_conn)."""
        cause = permanent_cause(exc)
        if cause is None:
            return
        await self._disconnect()
        self._state = "failed"
        raise SubscriberError(failure_line(self.config.redis_url, cause)) from None

    def _backoff(self, failures: int) -> float:
        """Capped exponential backoff with jitter: in [cap/2, cap] of min·2^(n−1)."""
        cfg = self.config
        cap = min(cfg.reconnect_max_s, cfg.reconnect_min_s * 2.0 ** min(failures - 1, 30))
        return random.uniform(cap / 2.0, cap)

    async def _sleep(self, seconds: float) -> None:
        """Sleep, waking at once on close()."""
        try:
            async with asyncio.timeout(seconds):
                await self._closing.wait()
        except TimeoutError:
            pass

    async def _disconnect(self) -> None:
        client, self._client = self._client, None
        self._connected = False
        if client is not None:
            try:
                await client.aclose()
            except (*CONNECTION_ERRORS, RuntimeError) as exc:  # already torn down
                log.debug("subscriber_close_error", error=str(exc))


def _raise_if_cancelling() -> None:
    """End the read loop of a task that was cancelled.

    redis-py 8 can absorb a cancel that lands during a command (the task's cancel request
    stays pending, ``cancelling()`` > 0, but no CancelledError reaches us); without this
    check the loop would go on reading and the cancelled task would never end.
    """
    task = asyncio.current_task()
    if task is not None and task.cancelling():
        raise asyncio.CancelledError


async def latest_levels(
    redis_url: str,
    underlying: str,
    *,
    timeout_s: float = 5.0,
    security: RedisSecurity | None = None,
) -> Levels | None:
    """The levels at ``regime:levels:{underlying}``; None when the key is missing.

    ValueError when the value is not a levels object.
    """
    _check_underlying(underlying, "latest_levels")
    client = redis_client(
        redis_url,
        security,
        decode_responses=False,
        socket_connect_timeout=timeout_s,
        socket_timeout=timeout_s,
    )
    try:
        raw = await client.get(levels_key(underlying))
    finally:
        await client.aclose()
    if raw is None:
        return None
    try:
        return decode_levels(raw)
    except (ValueError, TypeError, KeyError) as exc:
        raise ValueError(
            f"{levels_key(underlying)} is not a levels object: {type(exc).__name__}: {exc}"
        ) from None

"""`regime-engine alert`: regime events from Redis to a webhook (Discord, Slack, any URL).

Reads ``regime:stream:{U}`` through the subscriber SDK (:mod:`engine.client.subscriber`)
and POSTs each event that passes the filters (underlying, type, bucket), formatted for a
person (``discord``, ``slack``) or as the event JSON (``json``), with the event id as the
``Idempotency-Key`` header.

Delivery is at-least-once. The resume point is the Redis hash ``regime:alert:{group}``
(field = underlying, value = the stream id of the last event handled); it moves past an
event only once the event is done with: a 2xx reply, a 4xx other than 429 (logged,
counted, not retried: the receiver rejected it), or an event the filters leave out. A
429, a 5xx, a timeout or a connection error is retried with capped, jittered exponential
backoff, waiting at least what ``Retry-After`` asks (up to ``max_retry_after_s``); such
an event is retried until it is delivered or the alerter stops, and a restart begins with
it. So a restart sends nothing again that was acknowledged and recorded, and skips
nothing; the one event whose 2xx arrived just before a crash (before its resume point was
written) is sent again, under the same ``Idempotency-Key``.
"""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, tzinfo
from typing import Any, ClassVar
from zoneinfo import ZoneInfo

import aiohttp
import orjson
import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import ExponentialWithJitterBackoff

from connectors.cboe.products import PRODUCTS as CBOE_PRODUCTS
from connectors.cme.products import PRODUCTS as CME_PRODUCTS
from connectors.common.http_poller import retry_after_s
from connectors.common.lifecycle import Backoff, cancel_and_wait
from connectors.common.logs import get_logger
from connectors.common.redis_conn import NO_SECURITY, RedisSecurity, redis_client
from connectors.common.secrets import redact_text, redacted_repr
from engine.client.subscriber import Delivery, RegimeSubscriber, SubscriberConfig
from schemas.channels import as_text
from schemas.config import Config, ConfigError
from schemas.events import EVENT_TYPES, RegimeEvent, encode_event
from schemas.levels import BUCKETS

__all__ = [
    "ALERT_KEY",
    "FORMATS",
    "AlertConfig",
    "AlertReport",
    "alert_key",
    "format_payload",
    "matches",
    "run_alerts",
    "venue_zone",
]

log = get_logger("engine.alert")

ALERT_KEY = "regime:alert:{group}"  # HASH underlying -> last handled stream id
FORMATS = ("json", "discord", "slack")
_BAD_NAME_CHARS = frozenset(":*?[]\\ \t\r\n")
NEW_YORK = ZoneInfo("America/New_York")
CHICAGO = ZoneInfo("America/Chicago")
# Where a product's session clock runs: CBOE roots in New York, CME products in Chicago,
# everything else (Deribit coins, perpetual funding) in UTC.
_ZONES: Mapping[str, tzinfo] = {
    **{p.underlying: NEW_YORK for p in CBOE_PRODUCTS.values()},
    **{code: CHICAGO for code in CME_PRODUCTS},
}


def alert_key(group: str) -> str:
    return ALERT_KEY.format(group=group)


def venue_zone(underlying: str) -> tzinfo:
    """The time zone an underlying's venue keeps its session in (UTC when not known)."""
    return _ZONES.get(underlying, UTC)


def _names(value: object, what: str, allowed: tuple[str, ...] | None) -> tuple[str, ...] | None:
    if value is None:
        return None
    if isinstance(value, str) or not isinstance(value, tuple | list):
        raise ConfigError(f"{what} must be a list of names or None")
    names = tuple(value)
    if not names:
        raise ConfigError(f"{what} is empty (use None for all)")
    for name in names:
        if not isinstance(name, str) or not name or _BAD_NAME_CHARS.intersection(name):
            raise ConfigError(f"{what}: bad name {name!r}")
        if allowed is not None and name not in allowed:
            raise ConfigError(f"{what}: unknown {name!r} (known: {', '.join(allowed)})")
    return tuple(dict.fromkeys(names))


@dataclass(frozen=True, slots=True)
class AlertConfig(Config):
    """What to deliver where, and how to retry; the filters are None for "all"."""

    SECTION: ClassVar[str] = "alert"

    redis_url: str
    webhook_url: str
    format: str = "json"  # one of FORMATS
    underlyings: tuple[str, ...] | None = None  # None: every underlying (discovered)
    types: tuple[str, ...] | None = None  # of schemas.events.EVENT_TYPES
    buckets: tuple[str, ...] | None = None  # of schemas.levels.BUCKETS
    group: str = "default"  # names the resume point regime:alert:{group}
    start: str = "$"  # a group without a resume point: "0" retained stream, "$" new only
    timeout_s: float = 10.0  # one POST, connect to reply
    retry_min_s: float = 0.5
    retry_max_s: float = 60.0
    max_retry_after_s: float = 300.0  # a longer Retry-After is capped to this
    block_ms: int = 1000  # the subscriber's XREAD block
    security: RedisSecurity = NO_SECURITY  # TLS files, ACL user and password

    def __repr__(self) -> str:
        return redacted_repr(self)

    def __post_init__(self) -> None:
        if not isinstance(self.redis_url, str) or not self.redis_url.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError(
                f"redis_url must be a redis:// URL, got {redact_text(repr(self.redis_url))}"
            )
        self.security.check_url(self.redis_url)
        if not isinstance(self.webhook_url, str) or not self.webhook_url.startswith(
            ("http://", "https://")
        ):
            raise ConfigError(f"webhook must be an http(s):// URL, got {self.webhook_url!r}")
        if self.format not in FORMATS:
            raise ConfigError(f"format must be one of {', '.join(FORMATS)}, got {self.format!r}")
        object.__setattr__(self, "underlyings", _names(self.underlyings, "underlyings", None))
        object.__setattr__(self, "types", _names(self.types, "types", EVENT_TYPES))
        object.__setattr__(self, "buckets", _names(self.buckets, "buckets", BUCKETS))
        if (
            not isinstance(self.group, str)
            or not self.group
            or _BAD_NAME_CHARS.intersection(self.group)
        ):
            raise ConfigError(f"group: bad name {self.group!r}")
        if self.start not in ("0", "$"):
            raise ConfigError(f"start must be '0' or '$', got {self.start!r}")
        for name in ("timeout_s", "retry_min_s", "retry_max_s", "max_retry_after_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive number, got {value!r}")
        if self.retry_max_s < self.retry_min_s:
            raise ConfigError("retry_max_s must be >= retry_min_s")
        if (
            not isinstance(self.block_ms, int)
            or isinstance(self.block_ms, bool)
            or self.block_ms <= 0
        ):
            raise ConfigError(f"block_ms must be a positive integer, got {self.block_ms!r}")


@dataclass(slots=True)
class AlertReport:
    """What the alerter did. ``counts``: delivered (2xx), rejected (4xx other than 429,
    skipped), filtered (left out by the filters), retries, and per failed attempt
    ``http_<status>``, ``timeout`` or ``connection_error``."""

    counts: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, int]:
        return dict(sorted(self.counts.items()))


# -- pure parts ---------------------------------------------------------------------------


def matches(event: RegimeEvent, config: AlertConfig) -> bool:
    """Whether the filters let ``event`` through; a bucket filter also matches the buckets
    an event stands for (``detail.buckets``, DESIGN §2.6)."""
    if config.underlyings is not None and event.underlying not in config.underlyings:
        return False
    if config.types is not None and event.type not in config.types:
        return False
    if config.buckets is not None:
        stands_for = event.detail.get("buckets")
        names = {event.bucket, *(stands_for if isinstance(stands_for, list) else ())}
        if not names.intersection(config.buckets):
            return False
    return True


def _price(value: object) -> str:
    return f"{value:,.2f}" if isinstance(value, int | float) else "-"


def venue_time(event: RegimeEvent) -> str:
    """The event's venue time in its venue's zone: ``2024-03-09 11:00:00 EST``."""
    moment = datetime.fromtimestamp(event.ts_event / 1e9, UTC).astimezone(
        venue_zone(event.underlying)
    )
    return moment.strftime("%Y-%m-%d %H:%M:%S %Z")


def headline(event: RegimeEvent) -> str:
    """One line: ``BTC flip_cross up [0dte]: level 43,200.00, spot 43,512.50 at …``."""
    direction = f" {event.direction}" if event.direction else ""
    level = f"level {_price(event.level)}, " if event.level is not None else ""
    return (
        f"{event.underlying} {event.type}{direction} [{event.bucket}]: "
        f"{level}spot {_price(event.spot)} at {venue_time(event)}"
    )


def _fields(event: RegimeEvent) -> list[tuple[str, str]]:
    levels = event.levels
    return [
        ("Level", _price(event.level)),
        ("Spot", _price(event.spot)),
        ("Direction", event.direction or "-"),
        ("Bucket", event.bucket),
        ("Regime", event.regime or "-"),
        ("Zero gamma", _price(levels.get("zero_gamma"))),
        ("Call wall", _price(levels.get("call_wall"))),
        ("Put wall", _price(levels.get("put_wall"))),
        ("Time", venue_time(event)),
    ]


_COLOURS = {"up": 0x2ECC71, "down": 0xE74C3C, None: 0x95A5A6}


def format_payload(event: RegimeEvent, fmt: str) -> bytes:
    """The POST body of ``event`` in format ``fmt`` (one of FORMATS)."""
    if fmt == "json":
        return encode_event(event)
    title = f"{event.underlying} {event.type.replace('_', ' ')}"
    if event.direction:
        title += f" {event.direction}"
    iso = datetime.fromtimestamp(event.ts_event / 1e9, UTC).isoformat().replace("+00:00", "Z")
    payload: dict[str, Any]
    if fmt == "discord":
        payload = {
            "username": "regime-engine",
            "content": headline(event),
            "embeds": [
                {
                    "title": title,
                    "description": f"id `{event.id}` · model {event.model}",
                    "color": _COLOURS.get(event.direction, _COLOURS[None]),
                    "timestamp": iso,
                    "fields": [
                        {"name": name, "value": value, "inline": True}
                        for name, value in _fields(event)
                    ],
                }
            ],
        }
    elif fmt == "slack":
        payload = {
            "text": headline(event),
            "blocks": [
                {"type": "header", "text": {"type": "plain_text", "text": title}},
                {
                    "type": "section",
                    "fields": [
                        {"type": "mrkdwn", "text": f"*{name}*\n{value}"}
                        for name, value in _fields(event)
                    ],
                },
                {
                    "type": "context",
                    "elements": [
                        {"type": "mrkdwn", "text": f"id `{event.id}` · model {event.model}"}
                    ],
                },
            ],
        }
    else:
        raise ValueError(f"unknown alert format {fmt!r}")
    return orjson.dumps(payload)


def outcome_of(status: int) -> str:
    """``delivered`` (2xx), ``retry`` (429, 5xx) or ``rejected`` (anything else)."""
    if 200 <= status < 300:
        return "delivered"
    if status == 429 or status >= 500:
        return "retry"
    return "rejected"


# -- delivery -----------------------------------------------------------------------------


class _Poster:
    """POSTs one event until it is delivered or rejected (retrying what may pass later)."""

    def __init__(
        self,
        config: AlertConfig,
        session: aiohttp.ClientSession,
        report: AlertReport,
        sleep: Callable[[float], Awaitable[object]],
        rng: random.Random | None,
    ) -> None:
        self.config = config
        self.session = session
        self.report = report
        self.sleep = sleep
        self.backoff = Backoff(
            initial_s=config.retry_min_s, cap_s=config.retry_max_s, minimum_s=0.0, rng=rng
        )

    async def deliver(self, event: RegimeEvent) -> str:
        body = format_payload(event, self.config.format)
        headers = {"Content-Type": "application/json", "Idempotency-Key": event.id}
        self.backoff.reset()
        while True:
            wait_at_least: float | None = None
            try:
                async with self.session.post(
                    self.config.webhook_url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
                    text = (await response.content.read(300)).decode("utf-8", "replace")
                    retry_after = response.headers.get("Retry-After")
            except TimeoutError:
                failure = "timeout"
            except aiohttp.ClientError as exc:
                failure = "connection_error"
                text = " ".join(f"{type(exc).__name__}: {exc}".split())[:300]
            else:
                outcome = outcome_of(status)
                if outcome != "retry":
                    self.report.counts[outcome] += 1
                    if outcome == "rejected":
                        log.warning(
                            "alert_rejected",
                            event_id=event.id,
                            status=status,
                            body=" ".join(text.split()),
                        )
                    return outcome
                failure = f"http_{status}"
                asked = retry_after_s(retry_after, datetime.now(UTC).timestamp())
                if asked is not None:
                    wait_at_least = min(asked, self.config.max_retry_after_s)
            self.report.counts[failure] += 1
            self.report.counts["retries"] += 1
            delay = self.backoff.next_delay()
            if wait_at_least is not None:
                delay = max(delay, wait_at_least)
            log.warning("alert_retry", event_id=event.id, failure=failure, retry_in_s=delay)
            await self.sleep(delay)


async def _read_resume(client: aioredis.Redis, config: AlertConfig) -> dict[str, str]:
    stored = {
        as_text(k): as_text(v) for k, v in (await client.hgetall(alert_key(config.group))).items()
    }
    if config.underlyings is not None:
        stored = {u: sid for u, sid in stored.items() if u in config.underlyings}
    return stored


async def _deliver_all(
    config: AlertConfig,
    report: AlertReport,
    sleep: Callable[[float], Awaitable[object]],
    rng: random.Random | None,
    on_handled: Callable[[Delivery, str], None] | None,
) -> None:
    key = alert_key(config.group)
    # The resume point's writes ride out a short Redis outage (the subscriber reconnects
    # on its own); a longer one ends the alerter with a one-line error.
    state = redis_client(
        config.redis_url,
        config.security,
        socket_timeout=10.0,
        retry=Retry(ExponentialWithJitterBackoff(cap=2.0, base=0.1), 10),
    )
    try:
        stored = await _read_resume(state, config)
        subscriber_config = SubscriberConfig(
            redis_url=config.redis_url,
            underlyings=config.underlyings,
            start_id=config.start,
            start_ids=stored,
            block_ms=config.block_ms,
            client_name=f"regime-alert-{config.group}",
            security=config.security,
        )
        timeout = aiohttp.ClientTimeout(total=config.timeout_s)
        async with (
            RegimeSubscriber(subscriber_config) as subscriber,
            aiohttp.ClientSession(timeout=timeout) as session,
        ):
            # Pin where a new group starts ("$" resolved now), so a restart before the
            # first event skips nothing that arrived meanwhile.
            pinned = {u: sid for u, sid in subscriber.last_ids.items() if u not in stored}
            if pinned:
                await state.hset(key, mapping=pinned)
            log.info("alert_started", group=config.group, resume=stored, pinned=pinned)
            poster = _Poster(config, session, report, sleep, rng)
            async for delivery in subscriber:
                if matches(delivery.event, config):
                    outcome = await poster.deliver(delivery.event)
                else:
                    outcome = "filtered"
                    report.counts[outcome] += 1
                await state.hset(key, delivery.underlying, delivery.stream_id)
                if on_handled is not None:
                    on_handled(delivery, outcome)
    finally:
        await state.aclose()


async def run_alerts(
    config: AlertConfig,
    stop: asyncio.Event,
    *,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    rng: random.Random | None = None,
    on_handled: Callable[[Delivery, str], None] | None = None,
) -> AlertReport:
    """Deliver until ``stop`` is set; an event in flight then is not recorded as handled
    (the next run sends it again). ``on_handled(delivery, outcome)`` runs after each
    event's resume point is written (outcome: delivered, rejected, filtered)."""
    report = AlertReport()
    worker = asyncio.create_task(_deliver_all(config, report, sleep, rng, on_handled))
    stopper = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({worker, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        await cancel_and_wait(worker)
        await cancel_and_wait(stopper)
    if worker.done() and not worker.cancelled():
        worker.result()  # raise what ended it early
    return report

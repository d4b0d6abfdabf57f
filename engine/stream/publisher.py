"""Writes a batch's events and levels to Redis (DESIGN §2.4), exactly once into the stream.

One Lua script per batch does everything atomically: for each event, ``XADD`` to
``regime:stream:{U}`` (``MAXLEN ~``) and ``PUBLISH`` on ``regime:events:{U}``; ``SET
regime:levels:{U}`` and, with it, ``SET regime:profile:{U}`` (so the two always agree);
and it advances, per input partition, the offset up to which the input's events are
written (a hash per consumer group). An event whose triggering input is
at or below that watermark was written before (the engine restarted and replayed): it is
skipped, so a crash between writing and committing never duplicates a stream entry.
Levels are only written for inputs beyond the watermark, so a replay never sets old levels.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis

from schemas.channels import as_text, events_channel, events_stream, levels_key, profile_key

WATERMARK_KEY = "regime:engine:{group}:written"

# KEYS: [watermarks, stream_1..stream_n, levels_1, profile_1, .., levels_m, profile_m]
# ARGV: maxlen, n, then per event (field, offset, channel, json), m, then per levels entry
#       (field, offset, json, profile json or ""), then k, then per mark (field, offset).
_SCRIPT = """
local wm = KEYS[1]
local marks = {}
local function mark(field)
  local v = marks[field]
  if v == nil then
    v = tonumber(redis.call('HGET', wm, field) or '-1')
    marks[field] = v
  end
  return v
end
local maxlen = ARGV[1]
local n = tonumber(ARGV[2])
local a = 3
local written = 0
for i = 1, n do
  local field, offset = ARGV[a], tonumber(ARGV[a + 1])
  if offset > mark(field) then
    redis.call('XADD', KEYS[1 + i], 'MAXLEN', '~', maxlen, '*', 'event', ARGV[a + 3])
    redis.call('PUBLISH', ARGV[a + 2], ARGV[a + 3])
    written = written + 1
  end
  a = a + 4
end
local m = tonumber(ARGV[a])
a = a + 1
for j = 1, m do
  local field, offset = ARGV[a], tonumber(ARGV[a + 1])
  if offset > mark(field) then
    redis.call('SET', KEYS[n + 2 * j], ARGV[a + 2])
    if ARGV[a + 3] ~= '' then
      redis.call('SET', KEYS[1 + n + 2 * j], ARGV[a + 3])
    end
  end
  a = a + 4
end
local k = tonumber(ARGV[a])
a = a + 1
for j = 1, k do
  local field, offset = ARGV[a], tonumber(ARGV[a + 1])
  if offset > mark(field) then
    redis.call('HSET', wm, field, ARGV[a + 1])
  end
  a = a + 2
end
return written
"""


@dataclass(frozen=True, slots=True)
class PendingWrite:
    """An encoded event or levels object with the input position it came from.

    ``source`` is ``topic/partition`` and ``offset`` the offset of the input record that
    produced it: the write is skipped when that input's events were written before.
    ``profile``: the encoded profile written with a levels object (None: none).
    """

    source: str
    offset: int
    underlying: str
    payload: bytes
    profile: bytes | None = None


def position_field(topic: str, partition: int) -> str:
    return f"{topic}/{partition}"


class RedisPublisher:
    """Publishes batches for one consumer group (its watermarks are the group's own)."""

    def __init__(self, redis: Redis, group: str, stream_maxlen: int = 100_000) -> None:
        if stream_maxlen <= 0:
            raise ValueError("stream_maxlen must be positive")
        self.redis = redis
        self.watermark_key = WATERMARK_KEY.format(group=group)
        self.stream_maxlen = stream_maxlen
        self._script = redis.register_script(_SCRIPT)
        self.events_written = 0
        self.events_skipped = 0
        self.levels_written = 0

    async def watermarks(self) -> dict[str, int]:
        """``topic/partition`` → the offset up to which events are written."""
        raw: Mapping[Any, Any] = await self.redis.hgetall(self.watermark_key)
        return {as_text(k): int(v) for k, v in raw.items()}

    async def write(
        self,
        events: Sequence[PendingWrite],
        levels: Sequence[PendingWrite],
        marks: Mapping[str, int],
    ) -> int:
        """Write one batch atomically; returns how many events were new (not replays)."""
        if not events and not levels and not marks:
            return 0
        keys = [self.watermark_key]
        args: list[Any] = [self.stream_maxlen, len(events)]
        for event in events:
            keys.append(events_stream(event.underlying))
            args += [event.source, event.offset, events_channel(event.underlying), event.payload]
        args.append(len(levels))
        for entry in levels:
            keys += [levels_key(entry.underlying), profile_key(entry.underlying)]
            args += [entry.source, entry.offset, entry.payload, entry.profile or b""]
        args.append(len(marks))
        for source, offset in marks.items():
            args += [source, offset]
        written = int(await self._script(keys=keys, args=args))
        self.events_written += written
        self.events_skipped += len(events) - written
        self.levels_written += len(levels)
        return written

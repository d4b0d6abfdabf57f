"""Watch a directory (or one file) for saved chain files and hand each new version to a stage.

For chains saved by hand or by another program: CBOE "download CSV" tables (``*.csv``)
and delayed-quotes documents (``*.json``). Polling, no inotify: every ``poll_interval_s``
the directory is listed and each matching file's (inode, size, mtime) compared with
what was seen before.

* A file is read only once its signature has been the same on ``stable_polls``
  consecutive scans, so a half-written file is not read while it grows.
* A file whose signature has not changed since it was read is never read again; a file
  rewritten with the same bytes is read, recognised by its hash and not handed over.
* Each new version goes to the stage with ``url="file:///…"`` (the normaliser parses it;
  a broken file is dead-lettered there). An empty file is skipped (it is most often one
  being created); a file over ``max_file_bytes`` is dead-lettered without being read
  whole.
* Memory is bounded: a few hundred bytes per tracked file, at most ``max_tracked_files``
  files (the most recently modified win), one file's bytes at a time.

Counters (``counts``): scans, delivered, unchanged, waiting (a version not yet stable),
empty, oversize, read_error, untracked (files beyond ``max_tracked_files``).
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import stat as stat_mode
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

from connectors.common.http_poller import (
    DEAD_LETTER_SAMPLE_BYTES,
    body_digest,
    pause_unless_stopped,
)
from connectors.common.ingest import Describe, IngestStage, no_request
from connectors.common.logs import get_logger
from schemas.config import Config, ConfigError

log = get_logger("file_watch")

Signature = tuple[int, int, int]  # (inode, size, mtime_ns)


@dataclass(frozen=True, slots=True)
class FileWatchConfig(Config):
    """Configuration of one file watch (frozen; unknown keys rejected)."""

    SECTION: ClassVar[str] = "file watch"

    path: str  # a directory to watch, or one file
    patterns: tuple[str, ...] = ("*.csv", "*.json")  # file names to take (directory mode)
    recursive: bool = False
    poll_interval_s: float = 2.0
    stable_polls: int = 2  # scans that must see the same signature before a read
    read_existing: bool = True  # False: files present at start are only read once changed
    max_file_bytes: int = 64 * 1024 * 1024
    max_tracked_files: int = 10_000

    def __post_init__(self) -> None:
        if not self.path:
            raise ConfigError("file watch needs a path")
        if not self.patterns:
            raise ConfigError("file watch needs at least one file name pattern")
        if self.poll_interval_s <= 0 or self.stable_polls < 1:
            raise ConfigError("poll_interval_s must be > 0 and stable_polls >= 1")
        if self.max_file_bytes <= 0 or self.max_tracked_files < 1:
            raise ConfigError("max_file_bytes and max_tracked_files must be positive")


@dataclass(slots=True)
class _Tracked:
    done: Signature | None = None  # the version last read (or skipped for good)
    digest: bytes | None = None  # hash of the bytes last handed over
    pending: Signature | None = None  # the version being watched for stability
    seen: int = 0  # consecutive scans that saw ``pending``
    unreadable: Signature | None = None  # the version a read failed on (logged once)


def _signature(stat: os.stat_result) -> Signature:
    return (stat.st_ino, stat.st_size, stat.st_mtime_ns)


class FileWatch:
    """Polls a directory or file into one ingest stage until :meth:`stop`."""

    def __init__(
        self,
        config: FileWatchConfig,
        stage: IngestStage,
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        describe: Describe = no_request,
    ) -> None:
        root = Path(config.path)
        if not root.exists():
            raise ValueError(f"file watch path does not exist: {config.path}")
        self.config = config
        self.stage = stage
        self._describe = describe
        self.root = root.resolve()
        self.counts: Counter[str] = Counter()
        self._sleep = sleep
        self._tracked: dict[Path, _Tracked] = {}
        self._first_scan = True
        self._stopping = asyncio.Event()
        self._finished = asyncio.Event()
        self._started = False

    async def run(self) -> None:
        """Scan every ``poll_interval_s`` until :meth:`stop`."""
        self._started = True
        try:
            while not self._stopping.is_set():
                await self.poll_once()
                await pause_unless_stopped(self._sleep, self._stopping, self.config.poll_interval_s)
        finally:
            self._finished.set()

    async def stop(self) -> None:
        """Stop after the file being handled (if any)."""
        self._stopping.set()
        if self._started:
            await self._finished.wait()

    @property
    def tracked(self) -> int:
        return len(self._tracked)

    async def poll_once(self) -> list[Path]:
        """One scan; returns the files whose content went to the stage, in order."""
        self.counts["scans"] += 1
        listing = await asyncio.to_thread(self._list)
        present = {path for path, _ in listing}
        for gone in [path for path in self._tracked if path not in present]:
            del self._tracked[gone]
        baseline = self._first_scan and not self.config.read_existing
        self._first_scan = False
        delivered: list[Path] = []
        for path, signature in listing:
            if self._stopping.is_set():
                break
            tracked = self._tracked.setdefault(path, _Tracked())
            if baseline:
                tracked.done = signature
            elif await self._consider(path, signature, tracked):
                delivered.append(path)
        return delivered

    def _list(self) -> list[tuple[Path, Signature]]:
        """Matching regular files, oldest modification first, at most max_tracked_files."""
        found: list[tuple[Path, os.stat_result]] = []
        if self.root.is_dir():
            for directory, subdirs, names in os.walk(self.root):
                if not self.config.recursive:
                    subdirs.clear()
                subdirs[:] = [d for d in subdirs if not d.startswith(".")]
                for name in names:
                    if name.startswith(".") or not self._matches(name):
                        continue
                    self._stat_into(found, Path(directory, name))
        else:
            self._stat_into(found, self.root)
        found.sort(key=lambda item: (item[1].st_mtime_ns, str(item[0])))
        excess = len(found) - self.config.max_tracked_files
        if excess > 0:
            self.counts["untracked"] += excess
            log.warning("file watch: too many files, the oldest are ignored", ignored=excess)
            found = found[excess:]
        return [(path, _signature(stat)) for path, stat in found]

    def _matches(self, name: str) -> bool:
        return any(fnmatch.fnmatch(name, pattern) for pattern in self.config.patterns)

    @staticmethod
    def _stat_into(found: list[tuple[Path, os.stat_result]], path: Path) -> None:
        try:
            stat = path.stat()
        except OSError:  # vanished between listing and stat
            return
        if stat_mode.S_ISREG(stat.st_mode):
            found.append((path, stat))

    async def _consider(self, path: Path, signature: Signature, tracked: _Tracked) -> bool:
        if signature == tracked.done:
            return False  # unchanged since read: never read again
        if signature != tracked.pending:
            tracked.pending, tracked.seen = signature, 1
        else:
            tracked.seen += 1
        if tracked.seen < self.config.stable_polls:
            self.counts["waiting"] += 1
            return False
        size = signature[1]
        if size == 0:
            tracked.done = signature
            self.counts["empty"] += 1
            log.info("file watch: empty file skipped", path=str(path))
            return False
        uri = path.as_uri()
        if size > self.config.max_file_bytes:
            tracked.done = signature
            self.counts["oversize"] += 1
            reason = f"file over limit: {size} bytes > {self.config.max_file_bytes}"
            sample = await self._read(
                path, min(DEAD_LETTER_SAMPLE_BYTES, self.config.max_file_bytes)
            )
            request, recv_ns = self._describe(uri), time.time_ns()
            await self.stage.on_message(sample or b"", None, recv_ns, request, uri, reason)
            return False
        raw = await self._read(path, None, quiet=tracked.unreadable == signature)
        recv_ns = time.time_ns()
        if raw is None:
            tracked.unreadable = signature  # retried on the next scans, logged once
            return False
        try:
            after = _signature(path.stat())
        except OSError:
            after = None
        if after != signature or len(raw) != size:  # written to while being read
            tracked.pending, tracked.seen = after, 1
            self.counts["waiting"] += 1
            return False
        tracked.done = signature
        digest = body_digest(raw)
        if digest == tracked.digest:
            self.counts["unchanged"] += 1
            return False
        tracked.digest = digest
        self.counts["delivered"] += 1
        await self.stage.on_message(raw, raw, recv_ns, self._describe(uri), uri)
        return True

    async def _read(self, path: Path, limit: int | None, quiet: bool = False) -> bytes | None:
        def read() -> bytes:
            with path.open("rb") as handle:
                return handle.read() if limit is None else handle.read(limit)

        try:
            return await asyncio.to_thread(read)
        except OSError as exc:
            self.counts["read_error"] += 1
            if not quiet:
                log.warning("file watch: cannot read", path=str(path), error=str(exc))
            return None

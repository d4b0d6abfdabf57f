"""The chain-file watch: new, modified, half-written, unchanged, empty and oversize files."""

from __future__ import annotations

import asyncio
import os
import time
from pathlib import Path
from typing import Any

import orjson
import pytest

from connectors.common.errors import ParseError
from connectors.common.file_watch import FileWatch, FileWatchConfig
from connectors.common.ingest import IngestStage, MemorySink
from schemas.config import ConfigError
from schemas.topics import Topics
from tests.conditions import eventually

DOC_1 = orjson.dumps({"timestamp": "2025-03-14 14:45:03", "data": {"options": [1, 2, 3]}})
DOC_2 = orjson.dumps({"timestamp": "2025-03-14 14:45:18", "data": {"options": [1, 2, 3, 4]}})
CSV_1 = b'\nS&P 500 INDEX,Last: 5589.41,Change: 68.89\n"Date: March 14, 2025 at 10:30 AM EDT"\n'


class RecordingNormaliser:
    """Records every document; a document that is neither JSON nor CSV-like raises."""

    def __init__(self) -> None:
        self.bodies: list[bytes] = []

    def normalise(self, doc: Any, recv_ns: int, request: dict[str, Any] | None = None) -> list:
        self.bodies.append(doc)
        if doc.lstrip().startswith(b"{"):
            try:
                orjson.loads(doc)
            except orjson.JSONDecodeError as exc:
                raise ParseError(f"not valid JSON: {exc}") from None
        return []


class UrlRecordingStage(IngestStage):
    """An IngestStage that also remembers the url each message came with."""

    def __init__(self) -> None:
        self.normaliser_: RecordingNormaliser = RecordingNormaliser()
        self.memory = MemorySink()
        super().__init__("cboe", self.normaliser_, self.memory, Topics())
        self.urls: list[str | None] = []

    async def on_message(self, raw, doc, recv_ns, request=None, url=None, decode_error=None):
        self.urls.append(url)
        return await super().on_message(raw, doc, recv_ns, request, url, decode_error)


def make_watch(path: Path, **options: Any) -> tuple[FileWatch, UrlRecordingStage, list[Path]]:
    stage = UrlRecordingStage()
    watch = FileWatch(FileWatchConfig(path=str(path), **options), stage)
    reads: list[Path] = []
    original = watch._read

    async def counting_read(target: Path, limit: int | None, quiet: bool = False):
        reads.append(target)
        return await original(target, limit, quiet)

    watch._read = counting_read  # type: ignore[method-assign]
    return watch, stage, reads


def set_mtime(path: Path, seconds: float) -> None:
    os.utime(path, ns=(int(seconds * 1e9), int(seconds * 1e9)))


@pytest.mark.asyncio
async def test_new_modified_unchanged_and_touched(tmp_path):
    watch, stage, reads = make_watch(tmp_path)
    chain = tmp_path / "spx_quotedata.json"
    chain.write_bytes(DOC_1)

    assert await watch.poll_once() == []  # first sight: wait one scan for a stable size
    assert await watch.poll_once() == [chain]
    assert stage.normaliser_.bodies == [DOC_1]
    assert stage.urls == [chain.resolve().as_uri()] and stage.urls[0].startswith("file:///")

    # Unchanged: never read again.
    for _ in range(3):
        assert await watch.poll_once() == []
    assert reads == [chain]

    # Modified (new bytes): read once stable, handed over.
    chain.write_bytes(DOC_2)
    assert await watch.poll_once() == []
    assert await watch.poll_once() == [chain]
    assert stage.normaliser_.bodies == [DOC_1, DOC_2]

    # Touched (same bytes, new mtime): read, recognised by its hash, not handed over.
    set_mtime(chain, time.time() + 5)
    await watch.poll_once()
    assert await watch.poll_once() == []
    assert stage.normaliser_.bodies == [DOC_1, DOC_2] and len(reads) == 3
    assert watch.counts["unchanged"] == 1 and watch.counts["delivered"] == 2
    assert stage.memory.dead_letters == []


@pytest.mark.asyncio
async def test_half_written_file_is_read_once_complete(tmp_path):
    watch, stage, reads = make_watch(tmp_path)
    chain = tmp_path / "spx_quotedata.csv"
    with chain.open("wb") as handle:
        for piece in (CSV_1[:20], CSV_1[20:50], CSV_1[50:]):
            handle.write(piece)
            handle.flush()
            assert await watch.poll_once() == []  # the size changed since the last scan
    assert reads == []
    assert await watch.poll_once() == [chain]
    assert stage.normaliser_.bodies == [CSV_1]
    assert watch.counts["waiting"] == 3 and stage.memory.dead_letters == []


@pytest.mark.asyncio
async def test_file_written_while_being_read_is_read_again(tmp_path):
    watch, stage, _ = make_watch(tmp_path, stable_polls=1)
    chain = tmp_path / "chain.json"
    chain.write_bytes(DOC_1[:10])
    original = watch._read

    async def read_then_append(target: Path, limit: int | None, quiet: bool = False):
        data = await original(target, limit, quiet)
        if len(data) == 10:  # the writer was not done
            with target.open("ab") as handle:
                handle.write(DOC_1[10:])
        return data

    watch._read = read_then_append  # type: ignore[method-assign]
    assert await watch.poll_once() == []  # read the 10 bytes, but the file changed meanwhile
    assert await watch.poll_once() == [chain]
    assert stage.normaliser_.bodies == [DOC_1]
    assert stage.memory.dead_letters == []


@pytest.mark.asyncio
async def test_truncated_json_file_goes_to_dead_letter_and_its_fix_is_read(tmp_path):
    watch, stage, _ = make_watch(tmp_path, stable_polls=1)
    chain = tmp_path / "chain.json"
    chain.write_bytes(DOC_1[:-5])
    await watch.poll_once()
    ((raw, reason, venue, *_),) = stage.memory.dead_letters
    assert raw == DOC_1[:-5] and reason.startswith("not valid JSON") and venue == "cboe"
    chain.write_bytes(DOC_1)
    assert await watch.poll_once() == [chain]
    assert stage.normaliser_.bodies == [DOC_1[:-5], DOC_1]


@pytest.mark.asyncio
async def test_empty_and_oversize_files(tmp_path):
    watch, stage, reads = make_watch(tmp_path, stable_polls=1, max_file_bytes=64)
    empty = tmp_path / "being_created.json"
    empty.touch()
    big = tmp_path / "big.csv"
    big.write_bytes(b"x" * 100)
    set_mtime(big, time.time() + 1)  # deterministic order: empty first
    assert await watch.poll_once() == []
    assert await watch.poll_once() == []  # neither is looked at again
    ((raw, reason, *_),) = stage.memory.dead_letters
    assert reason == "file over limit: 100 bytes > 64" and raw == b"x" * 64
    assert watch.counts["empty"] == 1 and watch.counts["oversize"] == 1
    assert stage.normaliser_.bodies == [] and reads == [big]  # the sample only

    empty.write_bytes(DOC_1[:60])  # the empty file gets its content
    assert await watch.poll_once() == [empty]
    assert stage.normaliser_.bodies == [DOC_1[:60]]


@pytest.mark.asyncio
async def test_patterns_dotfiles_subdirectories_and_order(tmp_path):
    (tmp_path / "notes.txt").write_bytes(b"hello")
    (tmp_path / ".partial.json").write_bytes(DOC_1)
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "nested.json").write_bytes(DOC_2)
    newer = tmp_path / "b.json"
    older = tmp_path / "a.csv"
    newer.write_bytes(DOC_1)
    older.write_bytes(CSV_1)
    set_mtime(newer, 1_700_000_100)
    set_mtime(older, 1_700_000_000)
    watch, _, _ = make_watch(tmp_path, stable_polls=1)
    assert await watch.poll_once() == [older, newer]  # oldest modification first
    assert watch.tracked == 2

    recursive, _, _ = make_watch(tmp_path, stable_polls=1, recursive=True)
    assert set(await recursive.poll_once()) == {older, newer, tmp_path / "sub" / "nested.json"}


@pytest.mark.asyncio
async def test_existing_files_skipped_when_asked_and_deleted_files_forgotten(tmp_path):
    old = tmp_path / "old.json"
    old.write_bytes(DOC_1)
    watch, _, reads = make_watch(tmp_path, stable_polls=1, read_existing=False)
    assert await watch.poll_once() == []
    new = tmp_path / "new.json"
    new.write_bytes(DOC_2)
    assert await watch.poll_once() == [new]
    assert reads == [new]
    old.write_bytes(DOC_2 + b" ")
    assert await watch.poll_once() == [old]  # changed after the start: read
    old.unlink()
    new.unlink()
    await watch.poll_once()
    assert watch.tracked == 0


@pytest.mark.asyncio
async def test_single_file_mode_and_tracked_limit(tmp_path):
    target = tmp_path / "one.data"  # a single file is taken whatever its name
    target.write_bytes(DOC_1)
    (tmp_path / "other.json").write_bytes(DOC_2)
    watch, _, _ = make_watch(target, stable_polls=1)
    assert await watch.poll_once() == [target]

    for i in range(5):
        path = tmp_path / f"f{i}.json"
        path.write_bytes(DOC_1 + b" " * i)
        set_mtime(path, 1_700_000_000 + i)
    set_mtime(tmp_path / "other.json", 1_700_000_010)
    limited, _, _ = make_watch(tmp_path, stable_polls=1, max_tracked_files=3)
    delivered = await limited.poll_once()
    assert [p.name for p in delivered] == ["f3.json", "f4.json", "other.json"]
    assert limited.tracked == 3 and limited.counts["untracked"] == 3


@pytest.mark.asyncio
async def test_run_and_stop(tmp_path):
    watch, stage, _ = make_watch(tmp_path, poll_interval_s=0.01)
    task = asyncio.create_task(watch.run())
    (tmp_path / "chain.json").write_bytes(DOC_1)
    await eventually(lambda: stage.normaliser_.bodies, 60.0, "the file was not read")
    await watch.stop()
    await asyncio.wait_for(task, 60)  # a cap for a loaded machine
    assert stage.normaliser_.bodies == [DOC_1]


def test_config_validation(tmp_path):
    config = FileWatchConfig.from_mapping({"path": str(tmp_path), "patterns": ["*.csv"]})
    assert config.patterns == ("*.csv",)
    with pytest.raises(ConfigError, match="unknown file watch config keys: pattern"):
        FileWatchConfig.from_mapping({"path": str(tmp_path), "pattern": "*.csv"})
    with pytest.raises(ConfigError, match="stable_polls"):
        FileWatchConfig(path=str(tmp_path), stable_polls=0)
    with pytest.raises(ValueError, match="does not exist"):
        FileWatch(FileWatchConfig(path=str(tmp_path / "missing")), UrlRecordingStage())

"""Engine checkpoints on ``engine.state.v1``: a task's state with the input offsets it covers.

A checkpoint is one task's state (books, detectors, crypto reads; see
:meth:`engine.task.PartitionTask.state`) pickled, zlib-compressed and cut into chunks that
fit a Kafka record, written to the state topic's partition of the same number as the task.
Each chunk's key is ``{group}/p{partition}/c{chunk}`` (checkpoints are the consumer group's:
another group has its own offsets and state), so a compacted topic keeps the latest value
of every chunk; a reader takes the latest checkpoint whose chunks are all present.

Unpickling only resolves the classes the state is made of (an allow-list: numpy arrays, a few
builtins and collections, the engine's and schemas' state classes), never a function, so a
record on the state topic cannot run code. A checkpoint written under other levels, detector
or task settings, or by another state version, is not used: the engine replays the log
from its start instead, as it does without any checkpoint.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import pickle
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson

STATE_VERSION = "engine.state/1"
_MAGIC = b"RESTATE1"
_HEADER_LENGTH = struct.Struct(">I")
DEFAULT_CHUNK_BYTES = 512 * 1024  # well under Kafka's 1 MB default message size

# Modules whose classes (never functions) a checkpoint may name.
_STATE_MODULES = (
    "engine.book",
    "engine.config",
    "engine.crypto_regime",
    "engine.detector",
    "engine.feed",
    "engine.flow",
    "schemas.chain",
    "schemas.contracts",
    "schemas.events",
    "schemas.levels",
    "schemas.records",
    "schemas.ticks",
)
_ALLOWED_GLOBALS = {
    ("builtins", name)
    for name in ("set", "frozenset", "dict", "list", "tuple", "int", "float", "str", "bytes")
} | {
    ("collections", "OrderedDict"),
    ("collections", "deque"),
    ("copyreg", "_reconstructor"),
    ("decimal", "Decimal"),
    ("aiokafka.structs", "TopicPartition"),
    ("numpy", "ndarray"),
    ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.multiarray", "scalar"),
    ("numpy._core.multiarray", "scalar"),
    ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"),
}


class CheckpointError(ValueError):
    """A checkpoint record or state that cannot be used (the engine replays instead)."""


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module in _STATE_MODULES or module.startswith("numpy.dtypes"):
            found = super().find_class(module, name)
            # a class defined there (not one it imports, e.g. pathlib.Path into engine.feed)
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise CheckpointError(f"checkpoint names {module}.{name}, which no state is made of")


def dumps_state(state: Any) -> bytes:
    """A task's state as compressed pickle bytes."""
    return zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL), level=1)


def loads_state(data: bytes) -> Any:
    """:func:`dumps_state` undone, resolving only allowed classes."""
    try:
        return _StateUnpickler(io.BytesIO(zlib.decompress(data))).load()
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt, truncated or from incompatible code
        raise CheckpointError(
            f"checkpoint state does not load: {type(exc).__name__}: {exc}"
        ) from None


def fingerprint(*configs: object) -> str:
    """A digest of the settings a state depends on (their reprs) and the state version."""
    text = repr((STATE_VERSION, *configs))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """One task's checkpoint, assembled."""

    group: str  # the engines' consumer group
    partition: int
    checkpoint_id: int  # increases with every checkpoint of a partition (ns at writing)
    fingerprint: str
    offsets: dict[str, int]  # "topic/partition" → next offset to process
    state: bytes  # dumps_state(...)


def encode_checkpoint(
    checkpoint: Checkpoint, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> list[tuple[bytes, bytes]]:
    """(key, value) records of a checkpoint, in the order they must be written."""
    data = checkpoint.state
    chunks = max(1, -(-len(data) // max_chunk_bytes))
    records = []
    for chunk in range(chunks):
        header = orjson.dumps(
            {
                "schema": STATE_VERSION,
                "group": checkpoint.group,
                "partition": checkpoint.partition,
                "id": checkpoint.checkpoint_id,
                "chunk": chunk,
                "chunks": chunks,
                "fingerprint": checkpoint.fingerprint,
                "offsets": checkpoint.offsets if chunk == 0 else {},
            }
        )
        body = data[chunk * max_chunk_bytes : (chunk + 1) * max_chunk_bytes]
        value = _MAGIC + _HEADER_LENGTH.pack(len(header)) + header + body
        key = f"{checkpoint.group}/p{checkpoint.partition}/c{chunk}"
        records.append((key.encode(), value))
    return records


def _decode_chunk(value: bytes) -> tuple[dict[str, Any], bytes]:
    if not value.startswith(_MAGIC) or len(value) < len(_MAGIC) + _HEADER_LENGTH.size:
        raise CheckpointError("not a checkpoint record")
    start = len(_MAGIC) + _HEADER_LENGTH.size
    (length,) = _HEADER_LENGTH.unpack_from(value, len(_MAGIC))
    try:
        header = orjson.loads(value[start : start + length])
    except orjson.JSONDecodeError as exc:
        raise CheckpointError(f"bad checkpoint header: {exc}") from None
    if not isinstance(header, dict) or header.get("schema") != STATE_VERSION:
        raise CheckpointError("checkpoint of another state version")
    return header, value[start + length :]


class CheckpointReader:
    """Finds the latest complete checkpoint of one group's partition in a state partition's
    values, fed in log order (other groups' and partitions' records, other versions and torn
    ones are skipped); holds one checkpoint's chunks at a time, however long the log."""

    def __init__(self, group: str, partition: int) -> None:
        self.group = group
        self.partition = partition
        self.latest: Checkpoint | None = None
        self._header: dict[str, Any] | None = None
        self._chunks: list[bytes] = []

    def feed(self, value: bytes) -> None:
        try:
            header, body = _decode_chunk(value)
            if header["partition"] != self.partition or header["group"] != self.group:
                return
            chunk, chunks, checkpoint_id = int(header["chunk"]), int(header["chunks"]), header["id"]
        except (CheckpointError, KeyError, TypeError, ValueError):
            return
        if chunk == 0:
            self._header, self._chunks = header, [body]
        elif (
            self._header is not None
            and self._header["id"] == checkpoint_id
            and chunk == len(self._chunks)
        ):
            self._chunks.append(body)
        else:
            self._header, self._chunks = None, []  # out of order: a torn checkpoint
            return
        first = self._header
        if len(self._chunks) == chunks and first is not None:
            with contextlib.suppress(KeyError, TypeError, ValueError, AttributeError):
                self.latest = Checkpoint(
                    group=self.group,
                    partition=self.partition,
                    checkpoint_id=int(first["id"]),
                    fingerprint=str(first["fingerprint"]),
                    offsets={str(k): int(v) for k, v in first["offsets"].items()},
                    state=b"".join(self._chunks),
                )
            self._header, self._chunks = None, []


def latest_checkpoint(values: Iterable[bytes], group: str, partition: int) -> Checkpoint | None:
    """The latest complete checkpoint of a group's partition among values in log order."""
    reader = CheckpointReader(group, partition)
    for value in values:
        reader.feed(value)
    return reader.latest

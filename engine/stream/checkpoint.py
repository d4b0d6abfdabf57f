"""Engine checkpoints on ``engine.state.v1``: a task's state with the input offsets it covers.

A checkpoint is one task's state (books, detectors, crypto reads; see
:meth:`engine.stream.task.PartitionTask.state`) serialised, zlib-compressed and cut into chunks
that fit a Kafka record, on the state topic's partition of the task's number:

- chunk records, keyed ``{group}/p{partition}/{id}/c{chunk}``, then
- a manifest keyed ``{group}/p{partition}`` naming the id, the chunk count and the input
  offsets, written once every chunk is acknowledged, then
- tombstones for the chunks of the checkpoint it replaces.

A compacted topic so keeps the latest manifest, its chunks and nothing older; a checkpoint
torn by a crash never has a manifest, so the previous one stays whole. Checkpoints are a
consumer group's own (another group has its own offsets and state).

The state is a pickle, read by a restricted unpickler: it resolves only the classes state
is made of (an allow-list, classes defined in the engine's and schemas' state modules and
a few builtins; never a function, never numpy's reconstructors), numpy arrays and scalars
travel as (plain numeric dtype, shape, bytes) and are rebuilt by ``frombuffer``, and no
opcode may change a class object. Decompression is bounded. This is defence in depth: the
state topic, like the events topic, must be writable only by the engines (Kafka ACLs). A
checkpoint written under other settings or other code of the state modules, or one that
does not load, is not used: the engine replays the log from its start instead.
"""

from __future__ import annotations

import enum
import hashlib
import importlib.util
import io
import pickle
import struct
import zlib
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any, ClassVar

import numba
import numpy as np
import orjson

STATE_VERSION = "engine.state/2"
_MAGIC = b"RESTATE2"
_HEADER_LENGTH = struct.Struct(">I")
DEFAULT_CHUNK_BYTES = 512 * 1024  # well under Kafka's 1 MB default message size
MAX_STATE_BYTES = 1 << 29  # decompressed (a 24,000-contract book is ~9 MB); larger: refused

# Modules whose classes (defined there; never functions) a state may name. The source of
# every engine and schemas module is part of the fingerprint: changed code (a new slot
# layout, a new field) does not read an older checkpoint.
STATE_MODULES = (
    "engine.core.book",
    "engine.core.config",
    "engine.signals.crypto_regime",
    "engine.signals.detector",
    "engine.signals.dwell",
    "engine.signals.funding",
    "engine.signals.vol",
    "engine.core.feed",
    "engine.core.flow",
    "engine.stream.task",
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
}
_PLAIN_DTYPES = frozenset(
    np.dtype(t).str for t in ("f8", "f4", "i8", "i4", "i2", "i1", "u8", "u4", "u2", "u1", "?")
)


class CheckpointError(ValueError):
    """A checkpoint record or state that cannot be used (the engine replays instead)."""


class _StatePickler(pickle.Pickler):
    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, np.ndarray):
            if obj.dtype.str not in _PLAIN_DTYPES:
                raise CheckpointError(f"a state array of dtype {obj.dtype} cannot be saved")
            return ("ndarray", obj.dtype.str, obj.shape, np.ascontiguousarray(obj).tobytes())
        if isinstance(obj, np.generic):
            if obj.dtype.str not in _PLAIN_DTYPES:
                raise CheckpointError(f"a state scalar of dtype {obj.dtype} cannot be saved")
            return ("scalar", obj.dtype.str, obj.tobytes())
        return None


def _guarded(opcode: bytes, target: Any) -> Any:
    """A dispatch entry that refuses to modify an object shared by the whole process: a
    class, or an enum member (calling an enum class returns its member)."""

    def load(self: _StateUnpickler) -> None:
        if isinstance(target(self), type | enum.Enum):
            raise CheckpointError(f"checkpoint modifies a shared object (opcode {opcode!r})")
        _UNGUARDED[opcode[0]](self)

    return load


_UNGUARDED = pickle._Unpickler.dispatch  # type: ignore[attr-defined]


class _StateUnpickler(pickle._Unpickler):  # type: ignore[name-defined,misc]
    """The pure-Python unpickler (its opcodes can be guarded) with the allow-list."""

    dispatch: ClassVar[dict[int, Any]] = dict(_UNGUARDED)
    # the object each of these would modify, read before it runs
    dispatch[pickle.BUILD[0]] = _guarded(pickle.BUILD, lambda u: u.stack[-2])
    dispatch[pickle.APPEND[0]] = _guarded(pickle.APPEND, lambda u: u.stack[-2])
    dispatch[pickle.SETITEM[0]] = _guarded(pickle.SETITEM, lambda u: u.stack[-3])
    for _op in (pickle.APPENDS, pickle.SETITEMS, pickle.ADDITEMS):
        dispatch[_op[0]] = _guarded(_op, lambda u: u.metastack[-1][-1])
    del _op

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        if module in STATE_MODULES:
            found = super().find_class(module, name)
            # a class defined there (not one it imports, e.g. pathlib.Path into engine.core.feed)
            if isinstance(found, type) and found.__module__ == module:
                return found
        raise CheckpointError(f"checkpoint names {module}.{name}, which no state is made of")

    def persistent_load(self, pid: Any) -> Any:
        if not (isinstance(pid, tuple) and pid and pid[0] in ("ndarray", "scalar")):
            raise CheckpointError("checkpoint holds an unknown persistent object")
        if pid[0] == "ndarray" and len(pid) == 4:
            _, dtype, shape, data = pid
            if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
                raise CheckpointError("checkpoint array with a bad shape")
        elif pid[0] == "scalar" and len(pid) == 3:
            _, dtype, data = pid
            shape = None
        else:
            raise CheckpointError("checkpoint array record of the wrong length")
        if dtype not in _PLAIN_DTYPES or not isinstance(data, bytes):
            raise CheckpointError(f"checkpoint array of dtype {dtype!r}")
        width = np.dtype(dtype).itemsize
        count = int(np.prod(shape)) if shape is not None else 1
        if count * width != len(data):
            raise CheckpointError("checkpoint array size does not match its bytes")
        values = np.frombuffer(data, dtype=dtype)
        return values[0] if shape is None else values.reshape(shape).copy()


def dumps_state(state: Any) -> bytes:
    """A task's state as compressed bytes."""
    buffer = io.BytesIO()
    _StatePickler(buffer, protocol=pickle.HIGHEST_PROTOCOL).dump(state)
    return zlib.compress(buffer.getvalue(), level=1)


def loads_state(data: bytes) -> Any:
    """:func:`dumps_state` undone, resolving only allowed classes."""
    try:
        inflate = zlib.decompressobj()
        raw = inflate.decompress(data, MAX_STATE_BYTES)
        if inflate.unconsumed_tail:
            raise CheckpointError(f"checkpoint state over {MAX_STATE_BYTES} bytes")
        return _StateUnpickler(io.BytesIO(raw)).load()
    except CheckpointError:
        raise
    except Exception as exc:  # corrupt, truncated or from incompatible code
        raise CheckpointError(
            f"checkpoint state does not load: {type(exc).__name__}: {exc}"
        ) from None


@cache
def _code_digest() -> str:
    """The source of every module of the engine and schemas packages, numpy's and numba's
    versions."""
    digest = hashlib.sha256(f"{np.__version__} {numba.__version__}".encode())
    for package in ("engine", "schemas"):
        spec = importlib.util.find_spec(package)
        if spec is None or not spec.submodule_search_locations:
            raise CheckpointError(f"package {package} not found")
        for path in sorted(Path(next(iter(spec.submodule_search_locations))).glob("*.py")):
            digest.update(path.name.encode() + path.read_bytes())
    return digest.hexdigest()


def fingerprint(*configs: object) -> str:
    """A digest of what a state depends on: the settings (their reprs), the state version
    and the code (see :func:`_code_digest`)."""
    text = repr((STATE_VERSION, _code_digest(), *configs))
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
    chunks: int = 0  # records it was cut into (known once read back)


def _prefix(group: str, partition: int) -> str:
    return f"{group}/p{partition}"


def chunk_key(group: str, partition: int, checkpoint_id: int, chunk: int) -> bytes:
    return f"{_prefix(group, partition)}/{checkpoint_id}/c{chunk}".encode()


def _record(header: dict[str, Any], body: bytes = b"") -> bytes:
    encoded = orjson.dumps({"schema": STATE_VERSION, **header})
    return _MAGIC + _HEADER_LENGTH.pack(len(encoded)) + encoded + body


def encode_checkpoint(
    checkpoint: Checkpoint, max_chunk_bytes: int = DEFAULT_CHUNK_BYTES
) -> tuple[list[tuple[bytes, bytes]], tuple[bytes, bytes]]:
    """(chunk records, manifest record) of a checkpoint: the chunks go first, the manifest
    only once they are acknowledged."""
    data = checkpoint.state
    chunks = max(1, -(-len(data) // max_chunk_bytes))
    group, partition, cid = checkpoint.group, checkpoint.partition, checkpoint.checkpoint_id
    records = []
    for chunk in range(chunks):
        body = data[chunk * max_chunk_bytes : (chunk + 1) * max_chunk_bytes]
        header = {"kind": "chunk", "group": group, "partition": partition, "id": cid}
        records.append(
            (chunk_key(group, partition, cid, chunk), _record({**header, "chunk": chunk}, body))
        )
    manifest = _record(
        {
            "kind": "manifest",
            "group": group,
            "partition": partition,
            "id": cid,
            "chunks": chunks,
            "fingerprint": checkpoint.fingerprint,
            "offsets": checkpoint.offsets,
        }
    )
    return records, (_prefix(group, partition).encode(), manifest)


def _decode(value: bytes) -> tuple[dict[str, Any], bytes]:
    start = len(_MAGIC) + _HEADER_LENGTH.size
    if not value.startswith(_MAGIC) or len(value) < start:
        raise CheckpointError("not a checkpoint record")
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
    records, fed in log order: a manifest whose chunks all came before it. Other groups' and
    partitions' records, other versions, tombstones and garbage are skipped; chunks older
    than the latest manifest are let go, so memory stays bounded however long the log."""

    def __init__(self, group: str, partition: int) -> None:
        self.group = group
        self.partition = partition
        self.latest: Checkpoint | None = None
        self._chunks: dict[int, dict[int, bytes]] = {}  # id → chunk → body
        self._keys: dict[bytes, int] = {}  # live chunk key → its checkpoint id

    def feed(self, value: bytes | None, key: bytes | None = None) -> None:
        if value is None:
            if key is not None:
                self._keys.pop(key, None)  # a tombstone
            return
        try:
            header, body = _decode(value)
            if header["group"] != self.group or header["partition"] != self.partition:
                return
            cid = int(header["id"])
            if header["kind"] == "chunk":
                self._chunks.setdefault(cid, {})[int(header["chunk"])] = body
                if key is not None:
                    self._keys[key] = cid
            elif header["kind"] == "manifest":
                self._manifest(header, cid)
        except (CheckpointError, KeyError, TypeError, ValueError, AttributeError):
            return

    def stray_keys(self) -> list[bytes]:
        """Keys of chunks of checkpoints older than the latest complete one (torn, refused or
        superseded, not tombstoned): the next write tombstones them. Newer ones are left
        alone: another writer may still be finishing them."""
        if self.latest is None:
            return []
        keep = self.latest.checkpoint_id
        return [key for key, cid in self._keys.items() if cid < keep]

    def _manifest(self, header: dict[str, Any], cid: int) -> None:
        chunks = self._chunks.get(cid, {})
        count = int(header["chunks"])
        if sorted(chunks) == list(range(count)):
            self.latest = Checkpoint(
                group=self.group,
                partition=self.partition,
                checkpoint_id=cid,
                fingerprint=str(header["fingerprint"]),
                offsets={str(k): int(v) for k, v in header["offsets"].items()},
                state=b"".join(chunks[i] for i in range(count)),
                chunks=count,
            )
        for old in [i for i in self._chunks if i <= cid]:
            del self._chunks[old]


def latest_checkpoint(
    values: Iterable[bytes | None], group: str, partition: int
) -> Checkpoint | None:
    """The latest complete checkpoint of a group's partition among values in log order."""
    reader = CheckpointReader(group, partition)
    for value in values:
        reader.feed(value)
    return reader.latest

"""Shared JSON shape of the slotted, schema-tagged record types."""

from __future__ import annotations

import base64
from collections.abc import Callable, Mapping
from dataclasses import MISSING, fields
from decimal import Decimal
from enum import Enum
from typing import Any, TypeVar

import numpy as np
import orjson

T = TypeVar("T")


def record_to_dict(record: Any) -> dict[str, Any]:
    """A slotted record as a JSON-ready dict with its ``schema`` tag (Decimal → str)."""
    out: dict[str, Any] = {}
    for name in record.__slots__:
        value = getattr(record, name)
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, Enum):
            value = value.value
        out[name] = value
    return out


def _encode_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, np.ndarray):
        return pack_array(value)
    raise TypeError(f"cannot encode {type(value).__name__}")


# Numeric arrays travel packed: {"f8": base64 of little-endian float64} (or "i8" for int64).
# Decoding 24,000 numbers from JSON text costs milliseconds; unpacking them costs microseconds.
_PACKED_DTYPES = {"f8": np.dtype("<f8"), "i8": np.dtype("<i8")}


def pack_array(array: np.ndarray) -> dict[str, str]:
    """A 1-d numeric array as ``{"f8": base64}`` / ``{"i8": base64}`` (NaN stays NaN)."""
    code = "i8" if array.dtype.kind in "iu" else "f8"
    data = np.ascontiguousarray(array, dtype=_PACKED_DTYPES[code]).tobytes()
    return {code: base64.b64encode(data).decode("ascii")}


def unpack_array(value: Any, name: str) -> Any:
    """The inverse of :func:`pack_array` (read-only array); other values are returned as is."""
    if not isinstance(value, dict):
        return value
    if len(value) != 1 or next(iter(value)) not in _PACKED_DTYPES:
        raise ValueError(f"column {name}: expected a list or {{'f8'|'i8': base64}}")
    ((code, text),) = value.items()
    try:
        data = base64.b64decode(text, validate=True)
    except (ValueError, TypeError):
        raise ValueError(f"column {name}: bad base64") from None
    if len(data) % 8:
        raise ValueError(f"column {name}: {len(data)} bytes is not a whole number of values")
    return np.frombuffer(data, dtype=_PACKED_DTYPES[code])


def encode_slotted(record: Any) -> bytes:
    """JSON bytes of a slotted record dataclass (orjson serialises it natively, in C).

    numpy arrays (the numeric columns of a chain delta) are packed, see :func:`pack_array`.
    """
    return orjson.dumps(record, default=_encode_default)


_REQUIRED = object()


def _slot_fields(cls: type) -> list[tuple[str, Callable[[Any, Any], None], Any]]:
    """(name, slot setter, default or _REQUIRED) of each field of a plain frozen slotted class.

    TypeError for a class these fast paths cannot build: one that validates in
    ``__post_init__`` or has a field with a default factory.
    """
    if "__post_init__" in vars(cls):
        raise TypeError(f"{cls.__name__} validates in __post_init__: use its own __init__")
    out = []
    for f in fields(cls):
        if f.default_factory is not MISSING:
            raise TypeError(f"{cls.__name__}.{f.name} has a default factory")
        default = f.default if f.default is not MISSING else _REQUIRED
        out.append((f.name, getattr(cls, f.name).__set__, default))
    return out


def slotted_decoder(
    cls: type[T], converters: Mapping[str, Callable[[Any], Any]] | None = None
) -> Callable[[Mapping[str, Any]], T]:
    """A fast constructor of a frozen, slotted dataclass from a decoded JSON object.

    It is what ``cls(**data)`` does for classes without ``__post_init__`` (the frozen
    ``__init__`` costs ~6 µs per record on CPython 3.11, this ~2.5 µs): unknown and missing
    keys raise ValueError, absent keys with a default take it, ``converters`` turn JSON values
    into field types (``str`` → ``Decimal`` …). Used on the engine's decode path.
    """
    converters = dict(converters or {})
    specs = [
        (name, set_value, converters.pop(name, None), default)
        for name, set_value, default in _slot_fields(cls)
    ]
    if converters:
        raise TypeError(f"converters for unknown fields: {sorted(converters)}")
    known = frozenset(name for name, *_ in specs)
    required = frozenset(name for name, _, _, default in specs if default is _REQUIRED)
    setters = tuple(specs)
    new = object.__new__
    name_of = cls.__name__

    def decode(data: Mapping[str, Any]) -> T:
        keys = data.keys()
        if not keys <= known:
            raise ValueError(f"unknown {name_of} fields: {sorted(set(keys) - known)}")
        if not required <= keys:
            raise ValueError(f"missing {name_of} fields: {sorted(required - set(keys))}")
        obj = new(cls)
        get = data.get
        for name, set_value, convert, default in setters:
            value = get(name, default)
            if convert is not None:
                value = convert(value)
            set_value(obj, value)
        return obj

    return decode


def fast_frozen_init(cls: type[T]) -> type[T]:
    """Replace a frozen, slotted dataclass's ``__init__`` by one that sets the slots directly.

    Same signature and defaults; the instance stays frozen (``__setattr__`` still raises).
    The generated ``__init__`` of a frozen dataclass calls ``object.__setattr__`` once per
    field, which makes building a 24-field record cost ~1 µs more than this; records are
    built once per venue message on the ingest path. Apply after ``@dataclass``.
    """
    namespace: dict[str, Any] = {}
    params, body = [], []
    for name, set_value, default in _slot_fields(cls):
        namespace[f"_set_{name}"] = set_value
        if default is _REQUIRED:
            params.append(name)
        else:
            namespace[f"_default_{name}"] = default
            params.append(f"{name}=_default_{name}")
        body.append(f"    _set_{name}(self, {name})")
    source = f"def __init__(self, {', '.join(params)}):\n" + "\n".join(body) + "\n"
    exec(source, namespace)  # the technique dataclasses itself uses to build __init__
    init = namespace["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__doc__ = cls.__init__.__doc__
    cls.__init__ = init  # type: ignore[misc]
    return cls

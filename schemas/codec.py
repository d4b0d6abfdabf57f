"""Shared JSON shape of the slotted, schema-tagged record types."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import Any

import orjson


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
    raise TypeError(f"cannot encode {type(value).__name__}")


def encode_slotted(record: Any) -> bytes:
    """JSON bytes of a slotted record dataclass (orjson serialises it natively, in C)."""
    return orjson.dumps(record, default=_encode_default)

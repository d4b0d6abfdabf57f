"""Shared JSON shape of the slotted, schema-tagged record types."""

from __future__ import annotations

from decimal import Decimal
from enum import Enum
from typing import Any


def record_to_dict(record: Any) -> dict[str, Any]:
    """A slotted record as a JSON-ready dict with its ``schema`` tag (Decimal → str)."""
    out: dict[str, Any] = {"schema": record.SCHEMA}
    for name in record.__slots__:
        value = getattr(record, name)
        if isinstance(value, Decimal):
            value = str(value)
        elif isinstance(value, Enum):
            value = value.value
        out[name] = value
    return out

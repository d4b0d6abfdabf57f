"""Typed reads of numeric fields from decoded venue JSON, shared by the parsers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from connectors.common.errors import ParseError


def optional_number(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    """``obj[key]`` as a float; None when absent or null; ParseError unless a finite number."""
    value = obj.get(key)
    kind = type(value)
    if kind is float:  # the common case, checked first: this runs for every field of every tick
        if value - value == 0.0:  # finite (inf - inf and nan - nan are nan)
            return value
    elif value is None:
        return None
    elif kind is int:
        return float(value)
    raise ParseError(f"{where}: {key} is not a finite number: {value!r}")


def required_number(obj: Mapping[str, Any], key: str, where: str) -> float:
    """``obj[key]`` as a float; ParseError when absent, null or not a finite number."""
    value = optional_number(obj, key, where)
    if value is None:
        raise ParseError(f"{where}: missing {key}")
    return value

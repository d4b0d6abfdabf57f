"""Typed reads of numeric fields from decoded venue JSON, shared by the parsers."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from connectors.errors import ParseError


def optional_number(obj: Mapping[str, Any], key: str, where: str) -> float | None:
    """``obj[key]`` as a float; None when absent or null; ParseError unless a finite number."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ParseError(f"{where}: {key} is not a finite number: {value!r}")
    return float(value)


def required_number(obj: Mapping[str, Any], key: str, where: str) -> float:
    """``obj[key]`` as a float; ParseError when absent, null or not a finite number."""
    value = optional_number(obj, key, where)
    if value is None:
        raise ParseError(f"{where}: missing {key}")
    return value

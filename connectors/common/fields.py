"""Typed reads of numeric fields from decoded venue JSON, shared by the parsers."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypeVar

from connectors.common.errors import ParseError
from schemas.domain import DomainError, check_event_time, convert

WireT = TypeVar("WireT")


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


def validated(obj: Any, kind: type[WireT], where: str, name_key: str = "") -> WireT:
    """``obj`` (decoded JSON) as the venue wire type ``kind`` with its domain checked;
    ParseError ``where [name]: field=value (expected …)`` of the violation's class
    otherwise (``name`` = ``obj[name_key]`` when it is a string: the instrument)."""
    try:
        return convert(obj, kind)
    except DomainError as exc:
        name = obj.get(name_key) if name_key and isinstance(obj, dict) else None
        if isinstance(name, str):
            where = f"{where} {name}"
        raise ParseError(f"{where}: {exc.reason}", exc.kind) from None


def event_time(ts_event_ns: int, recv_ns: int, where: str, field: str = "timestamp") -> int:
    """``ts_event_ns`` once checked against the receive clock (schemas.domain window)."""
    try:
        check_event_time(ts_event_ns, recv_ns, field)
    except DomainError as exc:
        raise ParseError(f"{where}: {exc.reason}", exc.kind) from None
    return ts_event_ns

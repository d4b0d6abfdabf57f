"""One rule for every component's frozen config: typed fields, unknown keys rejected by name.

Every component's config is a frozen dataclass that also derives from :class:`Config`; its
``from_mapping`` (a TOML table, flags) rejects unknown keys, builds nested configs from
sub-tables (lists of them too), turns lists into tuples and ISO dates into dates where the
field says so, and raises :class:`ConfigError` (one line) for anything it cannot accept.
"""

from __future__ import annotations

import datetime as dt
import types
import typing
from collections.abc import Iterable, Mapping
from dataclasses import fields
from typing import Any, ClassVar, Self


class ConfigError(ValueError):
    """A configuration value or key that is not accepted; the message is one line."""


def check_known_keys(known: type | Iterable[str], values: Mapping[str, Any], what: str) -> None:
    """ConfigError naming the keys of ``values`` that are not fields of dataclass ``known``
    (or not among the names ``known``)."""
    names = {f.name for f in fields(known)} if isinstance(known, type) else set(known)
    unknown = sorted(set(values) - names)
    if unknown:
        raise ConfigError(f"unknown {what} config keys: {', '.join(unknown)}")


class Config:
    """Base of the frozen dataclass configs: ``from_mapping`` with one set of rules.

    Subclasses set ``SECTION`` (the name used in messages, e.g. ``"levels"``) and may
    override ``prepare`` to adapt a mapping before it is checked (renamed keys, say).
    """

    SECTION: ClassVar[str] = "config"

    @classmethod
    def prepare(cls, values: dict[str, Any]) -> dict[str, Any]:
        """Hook: adapt the raw mapping before keys are checked (default: unchanged)."""
        return values

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Self:
        """Build from a mapping of field names; ConfigError for unknown keys or bad values."""
        if not isinstance(values, Mapping):
            raise ConfigError(f"[{cls.SECTION}] must be a table, got {type(values).__name__}")
        data = cls.prepare(dict(values))
        check_known_keys(cls, data, cls.SECTION)
        hints = typing.get_type_hints(cls)
        converted = {name: _convert(hints.get(name), value) for name, value in data.items()}
        try:
            return cls(**converted)
        except TypeError as exc:
            raise ConfigError(f"[{cls.SECTION}] {exc}") from None


def _convert(hint: Any, value: Any) -> Any:
    """A TOML value as the field's type wants it (nested config, tuple, date)."""
    for candidate in _alternatives(hint):
        if isinstance(candidate, type) and issubclass(candidate, Config):
            if isinstance(value, Mapping):
                return candidate.from_mapping(value)
        elif typing.get_origin(candidate) is tuple and isinstance(value, list):
            (item, *_) = typing.get_args(candidate) or (None,)
            return tuple(_convert(item, v) for v in value)
        elif candidate is dt.date and isinstance(value, str):
            try:
                return dt.date.fromisoformat(value)
            except ValueError:
                raise ConfigError(f"not an ISO date: {value!r}") from None
    return value


def _alternatives(hint: Any) -> tuple[Any, ...]:
    """The members of a union hint (``X | None``), or the hint itself."""
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        return typing.get_args(hint)
    return (hint,)

"""One rule for every component's frozen config: unknown keys are rejected, by name."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import fields
from typing import Any


def check_known_keys(cls: type, values: Mapping[str, Any], what: str) -> None:
    """ValueError naming the keys of ``values`` that are not fields of dataclass ``cls``."""
    unknown = sorted(set(values) - {f.name for f in fields(cls)})
    if unknown:
        raise ValueError(f"unknown {what} config keys: {', '.join(unknown)}")

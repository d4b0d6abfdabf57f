"""What every crypto-regime signal shares: the signal itself and number checks."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from schemas.config import ConfigError


@dataclass(slots=True)
class Signal:
    """An event to publish, before the engine gives it levels, ids and the joined read."""

    event_type: str  # "funding_extreme" | "vol_regime" | "regime_change"
    direction: str | None
    level: float | None
    detail: dict[str, Any]
    suffix: str  # the event id's name part: unique among one input's events


def check_number(what: str, name: str, value: object, positive: bool = False) -> None:
    """ConfigError (one line) unless ``value`` is a finite number >= 0 (> 0 if ``positive``)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ConfigError(f"{what} {name} must be a number, got {value!r}")
    if not math.isfinite(value) or value < 0 or (positive and value == 0):
        bound = "> 0" if positive else ">= 0"
        raise ConfigError(f"{what} {name} must be finite and {bound}, got {value!r}")

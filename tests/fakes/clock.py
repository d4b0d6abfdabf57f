"""The fake venues' time: T0 and a receive clock starting there, for clients under test."""

from __future__ import annotations

import time
from collections.abc import Callable

T0_MS = 1_710_000_000_000  # 2024-03-09T16:00:00Z


def venue_clock() -> Callable[[], int]:
    """A receive clock starting now at T0 (the fake venues' time), for a client under test."""
    started = time.monotonic_ns()
    return lambda: T0_MS * 1_000_000 + time.monotonic_ns() - started

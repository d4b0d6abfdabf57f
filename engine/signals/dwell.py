"""The confirmation machine the signals share: a new state must hold for a dwell of event time.

Each caller classifies its input into an observed state with its own hysteresis (a band
around a level, thresholds that move away from the current band) and feeds it here; ``None``
observed is neutral (inside a band: no side).
"""

from __future__ import annotations

from typing import Any


class Dwell:
    """Confirmed state: the first state seen is taken as given, a new one once it has held
    ``dwell_ns`` of event time; a neutral (None) or the confirmed observation cancels it."""

    __slots__ = ("pending", "pending_since", "value")

    def __init__(self) -> None:
        self.value: Any = None
        self.pending: Any = None
        self.pending_since = 0

    def update(self, observed: Any, ts_ns: int, dwell_ns: int) -> bool:
        """Feed one observation at ``ts_ns``; True when it is confirmed as the new value."""
        if observed is None or observed == self.value:
            self.pending = None
            return False
        if self.value is None:
            self.value = observed
            return False
        if self.pending != observed:
            self.pending, self.pending_since = observed, ts_ns
        if ts_ns - self.pending_since >= dwell_ns:
            self.value, self.pending = observed, None
            return True
        return False

    def take(self, value: Any) -> None:
        """Take ``value`` as confirmed without a change (a new reference)."""
        self.value, self.pending = value, None

    def reset_pending(self) -> None:
        """Forget the state waiting for its dwell."""
        self.pending = None

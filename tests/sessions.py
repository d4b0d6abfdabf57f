"""The seeded simulator session that the demo and `run` tests replay, and what it yields."""

from __future__ import annotations

from connectors.simulator.deribit_session import SessionConfig

SESSION = SessionConfig(n_instruments=600, duration_s=300.0, seed=7)  # the demo's default
SESSION_MESSAGES = 37_392
SESSION_RECORDS = 37_982  # normalised records (= engine updates)
# Its events, pinned (event time only: the same on every run and box).
EVENTS_BY_TYPE = {
    "level_shift": 22,
    "flip_cross": 3,
    "wall_reject": 2,
    "regime_change": 1,
    "call_wall_break": 8,
    "put_wall_break": 7,
}

"""The seeded simulator session that the demo and `run` tests replay, and what it yields."""

from __future__ import annotations

from connectors.simulator.deribit_session import SessionConfig

SESSION = SessionConfig(n_instruments=600, duration_s=300.0, seed=7)  # the demo's default
SESSION_MESSAGES = 37_392
SESSION_RECORDS = 37_982  # normalised records (= engine updates)
# Its events, pinned (event time only: the same on every run and box). Side-rule walls, one
# event per crossing for 0dte = front (DESIGN 2.6) and a 200 bp level-shift threshold for
# 0dte/front: 13 events, where there were 43.
EVENTS_BY_TYPE = {"level_shift": 3, "flip_cross": 2, "regime_change": 1, "put_wall_break": 7}

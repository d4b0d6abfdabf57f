"""Seeded simulators: synthetic option chains and Deribit sessions in wire format."""

from connectors.simulator.deribit_session import (
    LevelCrossing,
    SessionConfig,
    SessionSummary,
    generate_session,
    write_session,
)

__all__ = ["LevelCrossing", "SessionConfig", "SessionSummary", "generate_session", "write_session"]

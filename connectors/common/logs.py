"""structlog setup: human-readable on a terminal, JSON lines otherwise; always on stderr.

Every value of every log call is redacted first (``secrets.redact_log_event``): URL
passwords and the secrets read from the environment or files show as ``***``."""

from __future__ import annotations

import logging
import sys

import structlog

from connectors.common.secrets import redact_log_event


def configure_logging(level: int = logging.WARNING) -> None:
    """Configure structlog once, in the entry point."""
    renderer = (
        structlog.dev.ConsoleRenderer()
        if sys.stderr.isatty()
        else structlog.processors.JSONRenderer()
    )
    structlog.configure(
        processors=[
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            redact_log_event,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(level),
        # sys.stderr is looked up when a logger is made, not when logging is configured,
        # so a replaced stderr (a test harness, a daemon) is always the one written to.
        logger_factory=lambda *_: structlog.PrintLogger(file=sys.stderr),
        cache_logger_on_first_use=False,
    )


def get_logger(name: str) -> structlog.stdlib.BoundLogger:
    """A logger; a program that never configured logging still logs to stderr, not stdout."""
    if not structlog.is_configured():
        configure_logging(logging.INFO)
    return structlog.get_logger(name)

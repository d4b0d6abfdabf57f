"""Errors raised by the venue parsers."""

from __future__ import annotations


class ParseError(ValueError):
    """A venue message or file that cannot be normalised.

    The message is one human-readable line (it becomes the ``reason`` of a dead-letter
    record), so line breaks in it are folded into spaces.
    """

    def __init__(self, message: str) -> None:
        self.reason = " ".join(str(message).splitlines())
        super().__init__(self.reason)

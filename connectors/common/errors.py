"""Errors raised by the venue parsers."""

from __future__ import annotations


class ParseError(ValueError):
    """A venue message or file that cannot be normalised.

    The message is one human-readable line (it becomes the ``reason`` of a dead-letter
    record), so line breaks in it are folded into spaces.
    """

    def __init__(self, message: str, kind: str = "malformed") -> None:
        self.reason = " ".join(str(message).splitlines())
        # the reason class dead letters are counted by (a small fixed set: malformed,
        # out_of_domain, wrong_type, missing_field, bad_timestamp, bad_instrument,
        # out_of_order, rpc_error, unsupported)
        self.kind = kind
        super().__init__(self.reason)

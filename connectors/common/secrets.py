"""Secrets stay out of logs and messages: URL redaction, a log processor, secret files.

Every log line and every error line that may show a URL goes through :func:`redact_text`
(the structlog processor :func:`redact_log_event` applies it to each value of each log call;
the CLI applies it to its one-line errors). A password in a URL
(``redis://user:PASSWORD@host``, ``rediss://:PASSWORD@host``) becomes ``***``; so do the
values registered with :func:`register_secret` (passwords read from the environment or
from ``*_file`` settings), wherever they appear.
"""

from __future__ import annotations

import re
from collections.abc import MutableMapping
from dataclasses import fields
from pathlib import Path
from typing import Any

from schemas.config import ConfigError

__all__ = [
    "REDACTED",
    "SecretError",
    "check_connection_settings",
    "read_secret_file",
    "redact_log_event",
    "redact_text",
    "redact_url",
    "redacted_repr",
    "register_secret",
]

REDACTED = "***"
# scheme://[user][:password]@ — the password is what goes.
_URL_PASSWORD = re.compile(r"(?P<head>\b[a-zA-Z][a-zA-Z0-9+.-]*://[^:/@\s]*:)(?P<pw>[^@\s]+)@")
_known: set[str] = set()  # secret values this process has read (passwords, keys)
_MIN_SECRET_LEN = 3  # shorter values would redact ordinary text


class SecretError(ConfigError):
    """A secret file could not be read (one line, never the secret)."""


def register_secret(value: str | None) -> None:
    """Redact ``value`` wherever it shows up in a log line or an error line from now on."""
    if value and len(value) >= _MIN_SECRET_LEN:
        _known.add(value)


def redact_url(url: str) -> str:
    """``url`` with its password (if any) replaced by ``***``."""
    return _URL_PASSWORD.sub(lambda m: f"{m['head']}{REDACTED}@", url)


def redact_text(text: str) -> str:
    """``text`` with URL passwords and every registered secret replaced by ``***``."""
    text = redact_url(text)
    for secret in sorted(_known, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, REDACTED)
    return text


def _redact_value(value: Any) -> Any:
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, BaseException):
        return redact_text(f"{type(value).__name__}: {value}")
    if isinstance(value, list | tuple):
        return type(value)(_redact_value(v) for v in value)
    if isinstance(value, dict):
        return {k: _redact_value(v) for k, v in value.items()}
    return value


def redact_log_event(_logger: object, _method: str, event: MutableMapping[str, Any]) -> Any:
    """structlog processor: every value of the event dict redacted (see the module doc)."""
    for key, value in event.items():
        event[key] = _redact_value(value)
    return event


def read_secret_file(path: str, what: str) -> str:
    """The secret in file ``path`` (one trailing newline stripped), registered for redaction.

    ``what`` names the setting in the error (``"redis password_file"``)."""
    try:
        value = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SecretError(f"{what} {path}: {exc.strerror or exc}") from None
    except UnicodeDecodeError:
        raise SecretError(f"{what} {path}: not UTF-8 text") from None
    value = value.removesuffix("\n").removesuffix("\r")
    if not value:
        raise SecretError(f"{what} {path}: the file is empty")
    register_secret(value)
    return value


def redacted_repr(obj: Any, hidden: tuple[str, ...] = ()) -> str:
    """A dataclass's repr with URL passwords and registered secrets redacted, and the fields
    named in ``hidden`` shown as ``***`` when set (for a config's ``__repr__``)."""
    parts = []
    for f in fields(obj):
        value = getattr(obj, f.name)
        shown = REDACTED if f.name in hidden and value is not None else repr(value)
        parts.append(f"{f.name}={shown}")
    return redact_text(f"{type(obj).__name__}({', '.join(parts)})")


def check_connection_settings(
    service: str,
    config: Any,
    strings: tuple[str, ...],
    secrets: tuple[str, ...],
    exclusive: tuple[tuple[str, str], ...],
) -> None:
    """The checks every connection-security config shares (one-line ConfigError): the
    ``strings`` fields None or non-empty strings, ``check_hostname`` a bool, at most one of
    each ``exclusive`` pair (a secret and its file); then the ``secrets`` fields are
    registered for redaction."""
    for name in strings:
        value = getattr(config, name)
        if value is not None and (not isinstance(value, str) or not value):
            raise ConfigError(f"{service} {name} must be a non-empty string")
    if not isinstance(config.check_hostname, bool):
        raise ConfigError(f"{service} check_hostname must be true or false")
    for first, second in exclusive:
        if getattr(config, first) is not None and getattr(config, second) is not None:
            raise ConfigError(f"{service}: give {first} or {second}, not both")
    for name in secrets:
        register_secret(getattr(config, name))

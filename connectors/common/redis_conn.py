"""Redis connections, made one way for every client (engine, subscriber SDK, ``subscribe``,
dashboard, alert), and their failures told apart.

:func:`redis_client` builds the ``redis.asyncio.Redis`` of a URL and a
:class:`RedisSecurity`: ``rediss://`` with a CA file (and a client certificate and key when
given), the ACL user and password from the URL or from the settings (which win), the
password from a file (``password_file``). :func:`permanent_cause` says whether a failure is
permanent (authentication, ACL ``NOPERM``, TLS verification or handshake, unknown database:
retrying cannot help, the command ends with :func:`failure_line`) or transient (refused,
reset, timeout: retried with backoff).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any, ClassVar

import redis.asyncio as aioredis
from redis.exceptions import (
    AuthenticationError,
    AuthenticationWrongNumberOfArgsError,
    NoPermissionError,
    ResponseError,
)

from connectors.common.secrets import (
    check_connection_settings,
    read_secret_file,
    redact_text,
    redacted_repr,
)
from schemas.config import Config, ConfigError

__all__ = [
    "NO_SECURITY",
    "RedisSecurity",
    "failure_line",
    "permanent_cause",
    "redis_client",
]

_UNKNOWN_DB = ("DB index is out of range", "invalid DB index")


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return redact_text(text or type(exc).__name__)


def _ssl_error(exc: BaseException) -> ssl.SSLError | None:
    """The TLS error behind ``exc`` (redis-py wraps socket errors in its ConnectionError)."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        if isinstance(current, ssl.SSLError):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return None


def permanent_cause(exc: BaseException) -> str | None:
    """Why ``exc`` is permanent (one line, no secret), or None when it is transient."""
    if isinstance(exc, AuthenticationError | AuthenticationWrongNumberOfArgsError):
        return f"authentication failed ({_one_line(exc)})"
    if isinstance(exc, NoPermissionError):
        return f"ACL denies it: NOPERM ({_one_line(exc)})"
    if isinstance(exc, ResponseError) and any(m in str(exc) for m in _UNKNOWN_DB):
        return f"unknown database ({_one_line(exc)})"
    if isinstance(exc, ResponseError) and str(exc).startswith(("NOAUTH", "WRONGPASS")):
        return f"authentication failed ({_one_line(exc)})"
    tls = _ssl_error(exc)
    if isinstance(tls, ssl.SSLCertVerificationError):
        return f"TLS verification failed ({tls.verify_message or _one_line(tls)})"
    if tls is not None:
        return f"TLS handshake failed ({_one_line(tls)})"
    return None


def failure_line(url: str, cause: str) -> str:
    """``redis URL: cause``, the URL without its password."""
    return f"redis {redact_text(url)}: {cause}"


@dataclass(frozen=True, slots=True)
class RedisSecurity(Config):
    """TLS and ACL settings of the Redis connection (``[redis_security]`` in the TOML file).

    ``username`` / ``password`` override those of the URL; ``password_file`` holds the
    password (one line) instead of ``password``. ``ca_file`` (PEM) is the CA the server's
    certificate must chain to (default: the system's); ``cert_file`` / ``key_file`` a
    client certificate. The TLS settings need a ``rediss://`` URL.
    """

    SECTION: ClassVar[str] = "redis_security"

    username: str | None = None
    password: str | None = None
    password_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    check_hostname: bool = True

    def __post_init__(self) -> None:
        check_connection_settings(
            "redis",
            self,
            ("username", "password", "password_file", "ca_file", "cert_file", "key_file"),
            secrets=("password",),
            exclusive=(("password", "password_file"),),
        )
        if self.key_file is not None and self.cert_file is None:
            raise ConfigError("redis key_file needs cert_file")

    def __repr__(self) -> str:
        return redacted_repr(self, hidden=("password",))

    @property
    def tls_given(self) -> bool:
        return self.ca_file is not None or self.cert_file is not None or not self.check_hostname

    def check_url(self, url: str) -> None:
        """ConfigError when TLS settings are given for a URL that is not ``rediss://``."""
        if self.tls_given and not url.startswith("rediss://"):
            raise ConfigError(
                "redis ca_file / cert_file / check_hostname need a rediss:// URL, "
                f"got {redact_text(url)}"
            )

    def client_kwargs(self, url: str) -> dict[str, Any]:
        """The ``Redis.from_url`` keyword arguments of these settings (the password file is
        read now)."""
        self.check_url(url)
        kwargs: dict[str, Any] = {}
        if self.username is not None:
            kwargs["username"] = self.username
        password = self.password
        if self.password_file is not None:
            password = read_secret_file(self.password_file, "redis password_file")
        if password is not None:
            kwargs["password"] = password
        if url.startswith("rediss://"):
            kwargs["ssl_cert_reqs"] = "required"
            kwargs["ssl_check_hostname"] = self.check_hostname
            if self.ca_file is not None:
                kwargs["ssl_ca_certs"] = self.ca_file
            if self.cert_file is not None:
                kwargs["ssl_certfile"] = self.cert_file
                kwargs["ssl_keyfile"] = self.key_file or self.cert_file
        return kwargs


NO_SECURITY = RedisSecurity()


def redis_client(url: str, security: RedisSecurity | None = None, **kwargs: Any) -> aioredis.Redis:
    """The client of ``url`` with ``security`` applied; ``kwargs`` go to ``Redis.from_url``
    (timeouts, retry, decode_responses …)."""
    return aioredis.Redis.from_url(url, **(security or NO_SECURITY).client_kwargs(url), **kwargs)

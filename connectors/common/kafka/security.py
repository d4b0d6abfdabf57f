"""Kafka connection security: one config, one function that turns it into aiokafka arguments.

:class:`KafkaSecurity` (``[kafka_security]`` in the TOML settings, ``REGIME_ENGINE_KAFKA_*``
in the environment) holds the protocol (``PLAINTEXT`` | ``SSL`` | ``SASL_PLAINTEXT`` |
``SASL_SSL``), the SASL mechanism (``PLAIN``, ``SCRAM-SHA-256``, ``SCRAM-SHA-512``) and
credentials, the CA file, the client certificate and key, and hostname checking.
:func:`kafka_security_kwargs` is the only place that builds the keyword arguments every
aiokafka client the project makes is given (the ingest producer, the engine's consumer and
producers, the state store's producer and restore consumer, the admin client that creates
topics): ``security_protocol``, ``ssl_context``, ``sasl_mechanism``,
``sasl_plain_username``, ``sasl_plain_password``.
"""

from __future__ import annotations

import asyncio
import os
import re
import ssl
from dataclasses import dataclass
from typing import Any, ClassVar

from aiokafka.conn import create_conn
from aiokafka.errors import KafkaError, SaslAuthenticationFailed, UnsupportedSaslMechanismError

from connectors.common.secrets import check_connection_settings, read_secret_file, redacted_repr
from schemas.config import Config, ConfigError

__all__ = [
    "MECHANISMS",
    "NO_KAFKA_SECURITY",
    "PROTOCOLS",
    "KafkaSecurity",
    "connection_failure",
    "kafka_security_kwargs",
]

PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")
_SASL = ("sasl_mechanism", "sasl_username", "sasl_password", "sasl_password_file")
_TLS = ("ca_file", "cert_file", "key_file", "key_password", "key_password_file")
_SECRETS = ("sasl_password", "key_password")
_ERROR_PREFIX = re.compile(r"^(\[Error -?\d+\] )?\w+: ")


@dataclass(frozen=True, slots=True)
class KafkaSecurity(Config):
    """How every Kafka client connects (see the module docstring).

    SASL protocols need ``sasl_mechanism``, ``sasl_username`` and one of ``sasl_password``
    / ``sasl_password_file``. ``ca_file`` (PEM) is the CA the brokers' certificates must
    chain to (default: the system's); ``cert_file`` / ``key_file`` (PEM) a client
    certificate, the key encrypted with ``key_password`` (or ``key_password_file``) if it
    is; ``check_hostname`` False accepts a broker certificate issued for another name
    (the chain is still verified). TLS settings need ``SSL`` or ``SASL_SSL``.
    """

    SECTION: ClassVar[str] = "kafka_security"

    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = None
    sasl_password_file: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    key_password: str | None = None
    key_password_file: str | None = None
    check_hostname: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.security_protocol, str):
            raise ConfigError(f"kafka security_protocol must be one of {', '.join(PROTOCOLS)}")
        protocol = self.security_protocol.upper()
        if protocol not in PROTOCOLS:
            raise ConfigError(
                f"kafka security_protocol must be one of {', '.join(PROTOCOLS)}, "
                f"got {self.security_protocol!r}"
            )
        object.__setattr__(self, "security_protocol", protocol)
        check_connection_settings(
            "kafka",
            self,
            (*_SASL, *_TLS),
            secrets=_SECRETS,
            exclusive=(("key_password", "key_password_file"),),
        )
        if self.sasl:
            self._check_sasl()
        elif given := [n for n in _SASL if getattr(self, n) is not None]:
            raise ConfigError(
                f"kafka {', '.join(given)} need security_protocol SASL_PLAINTEXT or SASL_SSL "
                f"(it is {protocol})"
            )
        if not self.tls:
            given = [n for n in _TLS if getattr(self, n) is not None]
            if not self.check_hostname:
                given.append("check_hostname")
            if given:
                raise ConfigError(
                    f"kafka {', '.join(given)} need security_protocol SSL or SASL_SSL "
                    f"(it is {protocol})"
                )
        if self.key_file is not None and self.cert_file is None:
            raise ConfigError("kafka key_file needs cert_file")
        if (self.key_password or self.key_password_file) and self.cert_file is None:
            raise ConfigError("kafka key_password needs cert_file (and key_file)")

    def _check_sasl(self) -> None:
        mechanism = self.sasl_mechanism
        if mechanism is None or mechanism.upper() not in MECHANISMS:
            raise ConfigError(
                f"kafka {self.security_protocol} needs sasl_mechanism, one of "
                f"{', '.join(MECHANISMS)}; got {mechanism!r}"
            )
        object.__setattr__(self, "sasl_mechanism", mechanism.upper())
        if self.sasl_username is None:
            raise ConfigError(f"kafka {self.security_protocol} needs sasl_username")
        given = (self.sasl_password is not None) + (self.sasl_password_file is not None)
        if given != 1:
            raise ConfigError(
                f"kafka {self.security_protocol} needs one of sasl_password, sasl_password_file"
                + (" (not both)" if given else "")
            )

    def __repr__(self) -> str:
        return redacted_repr(self, hidden=_SECRETS)

    @property
    def sasl(self) -> bool:
        return self.security_protocol.startswith("SASL_")

    @property
    def tls(self) -> bool:
        return self.security_protocol in ("SSL", "SASL_SSL")


NO_KAFKA_SECURITY = KafkaSecurity()


def _ssl_context(security: KafkaSecurity) -> ssl.SSLContext:
    """A client context: the brokers verified against ``ca_file`` (else the system's CAs)."""
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    try:
        if security.ca_file is not None:
            context.load_verify_locations(cafile=security.ca_file)
        if security.cert_file is not None:
            password = security.key_password
            if security.key_password_file is not None:
                password = read_secret_file(security.key_password_file, "kafka key_password_file")
            context.load_cert_chain(security.cert_file, security.key_file, password)
    except FileNotFoundError as exc:
        files = (security.ca_file, security.cert_file, security.key_file)
        missing = next((f for f in files if f is not None and not os.path.exists(f)), None)
        raise ConfigError(f"kafka TLS: {missing or exc.filename}: no such file") from None
    except (ssl.SSLError, OSError) as exc:
        what = getattr(exc, "reason", None) or exc.strerror or type(exc).__name__
        raise ConfigError(f"kafka TLS: cannot load the CA or client certificate ({what})") from None
    context.check_hostname = security.check_hostname
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def kafka_security_kwargs(security: KafkaSecurity | None) -> dict[str, Any]:
    """The aiokafka client keyword arguments of ``security`` (None: plaintext). Reads the
    certificate and secret files; ConfigError (one line, no secret) when one is unusable."""
    security = security or NO_KAFKA_SECURITY
    kwargs: dict[str, Any] = {"security_protocol": security.security_protocol}
    if security.tls:
        kwargs["ssl_context"] = _ssl_context(security)
    if security.sasl:
        password = security.sasl_password
        if security.sasl_password_file is not None:
            password = read_secret_file(security.sasl_password_file, "kafka sasl_password_file")
        kwargs["sasl_mechanism"] = security.sasl_mechanism
        kwargs["sasl_plain_username"] = security.sasl_username
        kwargs["sasl_plain_password"] = password
    return kwargs


async def connection_failure(
    bootstrap: str, security: KafkaSecurity | None, timeout_s: float = 10.0
) -> str | None:
    """Why connecting to the first broker of ``bootstrap`` fails permanently — TLS
    verification or handshake, SASL authentication or mechanism — in one line without a
    secret; None when it connects, or fails otherwise (refused, timeout: transient). The
    clients' own error only says they could not bootstrap; the CLI asks this then."""
    security = security or NO_KAFKA_SECURITY
    if security.security_protocol == "PLAINTEXT":
        return None
    host, _, port = bootstrap.split(",", maxsplit=1)[0].strip().rpartition(":")
    try:
        kwargs = kafka_security_kwargs(security)
        async with asyncio.timeout(timeout_s):
            conn = await create_conn(
                host, int(port), request_timeout_ms=int(timeout_s * 1000), **kwargs
            )
    except ssl.SSLCertVerificationError as exc:
        return f"TLS verification failed ({exc.verify_message or exc.reason})"
    except ssl.SSLError as exc:
        return f"TLS handshake failed ({exc.reason or exc})"
    except SaslAuthenticationFailed as exc:
        return f"SASL authentication failed ({_broker_message(exc)})"
    except UnsupportedSaslMechanismError as exc:
        return f"SASL mechanism {security.sasl_mechanism} not enabled ({_broker_message(exc)})"
    except (OSError, TimeoutError, ValueError, KafkaError):
        return None
    conn.close()
    return None


def _broker_message(exc: BaseException) -> str:
    """The broker's words (aiokafka prefixes ``[Error 58] SaslAuthenticationFailed: ``)."""
    text = " ".join(str(exc).split())
    return _ERROR_PREFIX.sub("", text, count=1) or type(exc).__name__

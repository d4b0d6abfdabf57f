"""Secrets never reach logs, errors or summaries: every output of these runs is grepped."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import orjson
import pytest
import structlog

from connectors.common.logs import configure_logging, get_logger
from connectors.common.secrets import redact_text, redact_url, register_secret
from engine.app.cli import main
from tests.paths import REPO
from tests.secure_helpers import (
    USERS,
    SecureRedis,
    free_port,
    make_tls_files,
    running,
    wait_until,
)
from tests.sessions import EVENTS_BY_TYPE

URL_SECRET = "Url-Secret-8d3f"
ENV_SECRET = "Env-Secret-a17c"
FILE_SECRET = "File-Secret-c02e"


@pytest.fixture(scope="module")
def secure(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SecureRedis]:
    yield from running(SecureRedis(make_tls_files(tmp_path_factory.mktemp("tls"))))


def test_redact_url_and_text() -> None:
    assert redact_url("rediss://bot:p%40ss@h:6380/0") == "rediss://bot:***@h:6380/0"
    assert redact_url("redis://:pw@h/0 and redis://h/1") == "redis://:***@h/0 and redis://h/1"
    assert redact_url("redis://h:6379/0") == "redis://h:6379/0"  # a port is no password
    register_secret("Registered-Secret-61")
    assert redact_text("auth with Registered-Secret-61 failed") == "auth with *** failed"


def test_every_log_line_is_redacted(monkeypatch: pytest.MonkeyPatch) -> None:
    register_secret(ENV_SECRET)
    err = io.StringIO()
    monkeypatch.setattr(sys, "stderr", err)
    try:
        configure_logging()
        get_logger("t").warning(
            "connect failed",
            url=f"redis://bot:{URL_SECRET}@h:1/0",
            error=RuntimeError(f"bad password {ENV_SECRET}"),
            nested={"urls": [f"rediss://:{URL_SECRET}@h/0"]},
        )
    finally:
        structlog.reset_defaults()
    line = orjson.loads(err.getvalue())
    assert line["url"] == "redis://bot:***@h:1/0"
    assert line["error"] == "RuntimeError: bad password ***"
    assert line["nested"] == {"urls": ["rediss://:***@h/0"]}


def _run_cli(args: list[str], env: dict[str, str], stderr: Path) -> subprocess.Popen[bytes]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("REGIME_ENGINE_")}
    return subprocess.Popen(
        [sys.executable, "-m", "engine.app.cli", *args],
        stdout=subprocess.PIPE,
        stderr=stderr.open("wb"),
        env={**base, **env, "PYTHONPATH": str(REPO)},
    )


def test_no_secret_in_any_output_of_failing_and_retrying_commands(
    secure: SecureRedis, tmp_path: Path
) -> None:
    secret_file = tmp_path / "pw"
    secret_file.write_text(FILE_SECRET + "\n")
    port = secure.server.port
    outputs: list[str] = []
    runs = [
        # wrong password in the URL: one line
        (["subscribe", "--redis", f"redis://bot:{URL_SECRET}@127.0.0.1:{port}/0"], {}),
        # wrong password from the environment, over TLS
        (
            ["subscribe", "--redis", secure.tls_url(), "--redis-user", "bot",
             "--redis-ca-file", str(secure.tls.ca)],
            {"REGIME_ENGINE_REDIS_PASSWORD": ENV_SECRET},
        ),
        # wrong password from a file
        (
            ["subscribe", "--redis", f"redis://127.0.0.1:{port}/0", "--redis-user", "bot",
             "--redis-password-file", str(secret_file)],
            {},
        ),
        # a bad option next to a secret: the usage error
        (["subscribe", "--redis", f"redis://bot:{URL_SECRET}@127.0.0.1:{port}/0",
          "--count", "0"], {}),
        # an untrusted server with the password in the URL
        (
            ["subscribe", "--redis", secure.tls_url("bot", URL_SECRET)],
            {"REGIME_ENGINE_KAFKA_SASL_PASSWORD": ENV_SECRET},
        ),
    ]  # fmt: skip
    for i, (args, env) in enumerate(runs):
        err = tmp_path / f"stderr-{i}"
        proc = _run_cli(args, env, err)
        out, _ = proc.communicate(timeout=60)
        assert proc.returncode == 2, err.read_text()
        outputs += [out.decode(), err.read_text()]
        assert len(err.read_text().splitlines()) == 1, err.read_text()
    # Retrying (refused): a warning per attempt, each showing the URL.
    err = tmp_path / "stderr-retry"
    proc = _run_cli(["subscribe", "--redis", f"redis://:{URL_SECRET}@127.0.0.1:{free_port()}/0"],
                    {}, err)  # fmt: skip
    wait_until(lambda: err.read_text().count("subscriber_connection_lost") >= 2, "retries")
    proc.send_signal(signal.SIGTERM)
    out, _ = proc.communicate(timeout=30)
    outputs += [out.decode(), err.read_text()]
    assert ":***@127.0.0.1" in err.read_text()
    text = "\n".join(outputs)
    assert "Traceback" not in text
    for secret in (URL_SECRET, ENV_SECRET, FILE_SECRET):
        assert secret not in text


def test_demo_summary_and_logs_hold_no_secret(
    secure: SecureRedis,
    kafka_bootstrap: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = USERS["engine"][0]
    monkeypatch.setenv("REGIME_ENGINE_REDIS_CA_FILE", str(secure.tls.ca))
    args = ["demo", "--max-speed", "--json", "--kafka", kafka_bootstrap, "--no-idempotence"]
    assert main([*args, "--redis", secure.tls_url("engine", db=2)]) == 0
    out = capsys.readouterr()
    summary = orjson.loads(out.out)
    assert summary["redis"] == f"rediss://engine:***@localhost:{secure.tls_port}/2"
    assert summary["events_received"] == sum(EVENTS_BY_TYPE.values())  # the demo session's
    assert password not in out.out + out.err
    with pytest.raises(SystemExit):  # the flags' help shows no defaults with secrets
        main(["demo", "--help"])
    assert password not in capsys.readouterr().out

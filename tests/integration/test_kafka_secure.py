"""The pipeline through an Apache Kafka broker's SASL_SSL listener (a CA made in the test,
SCRAM and PLAIN users): every client — ingest producer, admin, engine consumer and
producers, state store — connects with the one set of security settings; a wrong password
and an untrusted CA each end the command with one line; no output holds a secret."""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from uuid import uuid4

import orjson
import pytest

from connectors.common.kafka.apache import apache_kafka_missing
from engine.app.cli import main
from tests.paths import REPO
from tests.secure_helpers import KAFKA_USERS, SecureApacheKafka, TlsFiles, make_tls_files
from tests.sessions import EVENTS_BY_TYPE


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secure_kafka(tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The SASL_SSL bootstrap (``localhost:PORT``) of a broker started for this module."""
    missing = apache_kafka_missing()
    if missing is not None:
        pytest.skip(f"apache-kafka: {missing}")
    broker = SecureApacheKafka(tls, tmp_path_factory.mktemp("broker"))
    asyncio.run(broker.start())
    try:
        yield broker.secure_bootstrap
    finally:
        asyncio.run(broker.stop())


def _env(tls: TlsFiles, mechanism: str, password_file: Path, ca: Path | None = None) -> dict:
    return {
        "REGIME_ENGINE_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
        "REGIME_ENGINE_KAFKA_SASL_MECHANISM": mechanism,
        "REGIME_ENGINE_KAFKA_SASL_USERNAME": "engine",
        "REGIME_ENGINE_KAFKA_SASL_PASSWORD_FILE": str(password_file),
        "REGIME_ENGINE_KAFKA_CA_FILE": str(ca or tls.ca),
    }


def _secret(tmp_path: Path, value: str) -> Path:
    path = tmp_path / f"secret-{uuid4().hex[:6]}"
    path.write_text(value + "\n")
    return path


def test_demo_pipeline_through_sasl_ssl_with_scram(
    secure_kafka: str,
    tls: TlsFiles,
    redis_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    password = KAFKA_USERS["engine"]
    for name, value in _env(tls, "SCRAM-SHA-512", _secret(tmp_path, password)).items():
        monkeypatch.setenv(name, value)
    assert (
        main(["demo", "--max-speed", "--json", "--kafka", secure_kafka, "--redis", redis_url]) == 0
    )
    out = capsys.readouterr()
    summary = orjson.loads(out.out)
    assert summary["kafka"] == secure_kafka
    assert summary["events_by_type"] == EVENTS_BY_TYPE
    assert summary["engine"]["checkpoints"] >= 1  # the state store wrote through it too
    assert password not in out.out + out.err


@pytest.mark.parametrize(
    ("mechanism", "cause"),
    [
        ("PLAIN", "Authentication failed: Invalid username or password"),
        (
            "SCRAM-SHA-256",
            "Authentication failed during authentication due to invalid credentials with SASL "
            "mechanism SCRAM-SHA-256",
        ),
    ],
)
def test_a_wrong_password_is_one_line(
    secure_kafka: str, tls: TlsFiles, tmp_path: Path, mechanism: str, cause: str
) -> None:
    wrong = "Kafka-Wrong-Secret-4f"
    env = _env(tls, mechanism, _secret(tmp_path, wrong))
    lines = _engine_fails(secure_kafka, env, tmp_path)
    assert (
        lines[-1]
        == f"regime-engine: error: kafka {secure_kafka}: SASL authentication failed ({cause})"
    )


def test_an_untrusted_broker_is_one_line(secure_kafka: str, tls: TlsFiles, tmp_path: Path) -> None:
    env = _env(tls, "SCRAM-SHA-512", _secret(tmp_path, KAFKA_USERS["engine"]), tls.other_ca)
    lines = _engine_fails(secure_kafka, env, tmp_path)
    assert lines[-1] == (
        f"regime-engine: error: kafka {secure_kafka}: TLS verification failed "
        "(unable to get local issuer certificate)"  # the broker sends no CA certificate
    )


def _engine_fails(bootstrap: str, env: dict, tmp_path: Path) -> list[str]:
    """Run ``engine`` against ``bootstrap``; its stderr lines (it must exit 2, no secret)."""
    base = {k: v for k, v in os.environ.items() if not k.startswith("REGIME_ENGINE_")}
    done = subprocess.run(
        [sys.executable, "-m", "engine.app.cli", "engine", "--kafka", bootstrap,
         "--redis", "redis://127.0.0.1:1/0"],
        capture_output=True, text=True, timeout=120, check=False,
        env={**base, **env, "PYTHONPATH": str(REPO)},
    )  # fmt: skip
    assert done.returncode == 2, done.stderr[-2000:]
    secrets = [Path(env["REGIME_ENGINE_KAFKA_SASL_PASSWORD_FILE"]).read_text().strip()]
    assert not any(s in done.stdout + done.stderr for s in secrets)
    assert "Traceback" not in done.stderr
    return done.stderr.splitlines()

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
from dataclasses import replace
from pathlib import Path
from uuid import uuid4

import orjson
import pytest
from aiokafka import AIOKafkaConsumer
from aiokafka.structs import TopicPartition
from redis.asyncio import Redis

from connectors.common.kafka.apache import apache_kafka_missing
from connectors.common.kafka.embedded import topic_partitions
from connectors.common.kafka.producer import DeliveryError, ProducerConfig
from connectors.common.kafka.security import KafkaSecurity, kafka_security_kwargs
from connectors.simulator.deribit_session import SessionConfig, write_session
from connectors.sources import Source
from engine.app.cli import main
from engine.app.run_ingest import run_ingest
from engine.stream.runtime import EngineConfig, EngineRuntime
from schemas.topics import Topics
from tests.conditions import eventually
from tests.paths import REPO
from tests.secure_helpers import KAFKA_USERS, Acl, SecureApacheKafka, TlsFiles, make_tls_files
from tests.sessions import EVENTS_BY_TYPE


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def secure_broker(
    tls: TlsFiles, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureApacheKafka]:
    """A broker with ACLs on, started for this module: the engines' principal (``engine``)
    may do everything; other principals only what a test grants them."""
    missing = apache_kafka_missing()
    if missing is not None:
        pytest.skip(f"apache-kafka: {missing}")
    broker = SecureApacheKafka(tls, tmp_path_factory.mktemp("broker"), acls=True)
    asyncio.run(broker.start())
    try:
        asyncio.run(
            broker.grant(
                Acl("engine", "ALL", "TOPIC", "*"),
                Acl("engine", "ALL", "GROUP", "*"),
                Acl("engine", "ALL", "CLUSTER", "kafka-cluster"),
            )
        )
        yield broker
    finally:
        asyncio.run(broker.stop())


@pytest.fixture
def secure_kafka(secure_broker: SecureApacheKafka) -> str:
    """The SASL_SSL bootstrap (``localhost:PORT``)."""
    return secure_broker.secure_bootstrap


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


def _security(tls: TlsFiles, user: str) -> KafkaSecurity:
    return KafkaSecurity(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username=user,
        sasl_password=KAFKA_USERS[user],
        ca_file=str(tls.ca),
    )


@pytest.mark.asyncio
async def test_a_principal_without_write_on_the_events_topic_publishes_and_commits_nothing(
    secure_broker: SecureApacheKafka, tls: TlsFiles, redis_url: str, tmp_path: Path
) -> None:
    bootstrap = secure_broker.secure_bootstrap
    topics = Topics(prefix=f"t{uuid4().hex[:8]}.")
    capture = tmp_path / "session.jsonl"
    write_session(SessionConfig(n_instruments=300, duration_s=120.0, seed=7), capture)
    engine_security = _security(tls, "engine")
    producer = ProducerConfig(bootstrap, security=engine_security)
    ingested = await run_ingest([Source("replay", str(capture))], producer, topics)
    # "ingest" reads market data, writes dead letters and checkpoints, sees the events
    # topic, but may not write it.
    await secure_broker.grant(
        *(Acl("ingest", op, "TOPIC", f"{topics.prefix}md.", prefixed=True)
          for op in ("READ", "WRITE", "DESCRIBE")),
        Acl("ingest", "ALL", "TOPIC", topics.state),
        Acl("ingest", "DESCRIBE", "TOPIC", topics.events),
        Acl("ingest", "ALL", "GROUP", topics.prefix, prefixed=True),
    )  # fmt: skip
    config = EngineConfig(
        bootstrap=bootstrap, redis_url=redis_url, group_id=f"{topics.prefix}engine",
        topic_prefix=topics.prefix, kafka_security=_security(tls, "ingest"),
        session_timeout_ms=2_000, heartbeat_interval_ms=500,
    )  # fmt: skip
    runtime = EngineRuntime(config)
    task = asyncio.create_task(runtime.run(asyncio.Event()))
    done, _ = await asyncio.wait({task}, timeout=120)
    assert task in done, "the engine did not report the refused write"
    with pytest.raises(DeliveryError, match="TopicAuthorizationFailed"):
        task.result()
    client = Redis.from_url(redis_url)
    try:
        assert [k async for k in client.scan_iter(match="regime:*")] == []
    finally:
        await client.aclose()
    assert await _committed(bootstrap, engine_security, config.group_id, topics) == {}
    # The engines' principal, same group: everything is there to be published.
    stop = asyncio.Event()
    allowed = EngineRuntime(replace(config, kafka_security=engine_security))
    task = asyncio.create_task(allowed.run(stop))
    await eventually(lambda: allowed.caught_up.is_set() or task.done(), 120, "no catch-up")
    stop.set()
    report = await task
    assert report.updates == ingested.counts["records"]  # every input, from the start
    assert sum(report.events.values()) > 0


async def _committed(
    bootstrap: str, security: KafkaSecurity, group: str, topics: Topics
) -> dict[TopicPartition, int]:
    """The group's committed offsets on the market-data topics."""
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap, group_id=group, **kafka_security_kwargs(security)
    )
    await consumer.start()
    try:
        found = await topic_partitions(bootstrap, topics.market_data(), security=security)
        committed = {}
        for topic, partitions in found.items():
            for p in partitions:
                offset = await consumer.committed(TopicPartition(topic, p))
                if offset is not None:
                    committed[TopicPartition(topic, p)] = offset
        return committed
    finally:
        await consumer.stop()

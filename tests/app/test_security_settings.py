"""Connection security settings: the TOML tables, the environment, flags, and redaction."""

from __future__ import annotations

from pathlib import Path

import pytest
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from connectors.common.kafka.security import KafkaSecurity
from connectors.common.redis_conn import RedisSecurity, permanent_cause
from engine.app.settings import load_settings
from schemas.config import ConfigError


def _toml(tmp_path: Path, text: str) -> str:
    path = tmp_path / "settings.toml"
    path.write_text(text)
    return str(path)


def test_redis_security_from_toml_environment_and_flags(tmp_path: Path) -> None:
    config = _toml(
        tmp_path,
        'redis = "rediss://cache:6380/0"\n'
        '[redis_security]\nusername = "toml-user"\nca_file = "/toml/ca.pem"\n'
        'cert_file = "/toml/c.pem"\n',
    )
    env = {
        "REGIME_ENGINE_REDIS_USERNAME": "env-user",
        "REGIME_ENGINE_REDIS_PASSWORD": "env-Secret-1",
        "REGIME_ENGINE_REDIS_CHECK_HOSTNAME": "false",
    }
    flags = {"redis_security": {"ca_file": "/flag/ca.pem", "username": None}}
    settings = load_settings(flags, env, config)
    assert settings.redis_security == RedisSecurity(
        username="env-user",
        password="env-Secret-1",
        ca_file="/flag/ca.pem",
        cert_file="/toml/c.pem",
        check_hostname=False,
    )
    engine = settings.engine_config("k:9092", "rediss://cache:6380/0", embedded_kafka=False)
    assert engine.redis_security == settings.redis_security
    # An embedded Redis (another URL) gets none of it.
    assert settings.engine_config("k:9092", "redis://127.0.0.1:1/0", False).redis_security == (
        RedisSecurity()
    )
    for shown in (repr(settings), repr(engine), repr(settings.redis_security)):
        assert "env-Secret-1" not in shown and "password=***" in shown


@pytest.mark.parametrize(
    ("env", "toml", "message"),
    [
        ({"REGIME_ENGINE_REDIS_CA_FILE": "/ca.pem"}, 'redis = "redis://h:1/0"\n', "rediss://"),
        ({"REGIME_ENGINE_REDIS_CHECK_HOSTNAME": "maybe"}, "", "must be true or false"),
        ({}, "[redis_security]\nsecret = 1\n", "unknown redis_security config keys: secret"),
        ({}, '[redis_security]\npassword = "a"\npassword_file = "b"\n', "not both"),
        ({}, '[redis_security]\nkey_file = "k.pem"\n', "key_file needs cert_file"),
        ({"REGIME_ENGINE_REDIS_PASSWRD": "x"}, "", "REGIME_ENGINE_REDIS_PASSWRD"),
    ],
)
def test_bad_redis_security_is_one_line(
    tmp_path: Path, env: dict[str, str], toml: str, message: str
) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        load_settings({}, env, _toml(tmp_path, toml))
    assert "\n" not in str(info.value)


def test_redis_password_file(tmp_path: Path) -> None:
    secret = tmp_path / "pw"
    secret.write_text("File-Secret-22\n")
    security = RedisSecurity(username="u", password_file=str(secret), ca_file="/ca.pem")
    assert security.client_kwargs("rediss://h:1/0") == {
        "username": "u",
        "password": "File-Secret-22",
        "ssl_cert_reqs": "required",
        "ssl_check_hostname": True,
        "ssl_ca_certs": "/ca.pem",
    }
    missing = RedisSecurity(password_file=str(tmp_path / "absent"))
    with pytest.raises(ConfigError, match=r"redis password_file .*absent: No such file"):
        missing.client_kwargs("redis://h:1/0")


def test_transient_failures_are_not_permanent() -> None:
    for exc in (
        RedisConnectionError("Error 111 connecting to h:1. Connection refused."),
        RedisConnectionError("Connection reset by peer"),
        RedisTimeoutError("Timeout reading from h:1"),
        ConnectionResetError(104, "reset"),
        TimeoutError(),
    ):
        assert permanent_cause(exc) is None


def test_kafka_security_from_toml_and_environment(tmp_path: Path) -> None:
    config = _toml(
        tmp_path,
        'kafka = "broker-1:9093"\n'
        '[kafka_security]\nsecurity_protocol = "SASL_SSL"\nsasl_mechanism = "SCRAM-SHA-512"\n'
        'ca_file = "/toml/ca.pem"\n',
    )
    env = {
        "REGIME_ENGINE_KAFKA_SASL_USERNAME": "engine",
        "REGIME_ENGINE_KAFKA_SASL_PASSWORD_FILE": "/run/secrets/kafka",
        "REGIME_ENGINE_KAFKA_CHECK_HOSTNAME": "no",
    }
    settings = load_settings({}, env, config)
    expected = KafkaSecurity(
        security_protocol="SASL_SSL",
        sasl_mechanism="SCRAM-SHA-512",
        sasl_username="engine",
        sasl_password_file="/run/secrets/kafka",
        ca_file="/toml/ca.pem",
        check_hostname=False,
    )
    assert settings.kafka_security == expected
    engine = settings.engine_config("broker-1:9093", "redis://r:1/0", embedded_kafka=False)
    assert engine.kafka_security == expected
    # An embedded broker (another bootstrap) is plaintext.
    assert settings.engine_config("127.0.0.1:1", "redis://r:1/0", True).kafka_security == (
        KafkaSecurity()
    )


def test_kafka_security_from_the_environment_alone_and_its_errors(tmp_path: Path) -> None:
    env = {
        "REGIME_ENGINE_KAFKA_SECURITY_PROTOCOL": "sasl_plaintext",
        "REGIME_ENGINE_KAFKA_SASL_MECHANISM": "plain",
        "REGIME_ENGINE_KAFKA_SASL_USERNAME": "ingest",
        "REGIME_ENGINE_KAFKA_SASL_PASSWORD": "Env-Kafka-Secret-3",
    }
    settings = load_settings({}, env)
    assert settings.kafka_security.security_protocol == "SASL_PLAINTEXT"
    assert settings.kafka_security.sasl_mechanism == "PLAIN"
    assert "Env-Kafka-Secret-3" not in repr(settings)
    with pytest.raises(ConfigError, match="SASL_PLAINTEXT needs sasl_username"):
        load_settings({}, {k: v for k, v in env.items() if "USERNAME" not in k})

"""The one builder of aiokafka security arguments: every protocol, mechanism and file
setting, and every combination it refuses (one line, never a secret)."""

from __future__ import annotations

import ssl
import subprocess
from pathlib import Path

import pytest

from connectors.common.kafka.security import (
    MECHANISMS,
    KafkaSecurity,
    kafka_security_kwargs,
)
from schemas.config import ConfigError
from tests.secure_helpers import TlsFiles, make_tls_files

SASL_PW = "Sasl-Secret-5e1a"
KEY_PW = "Key-Secret-90c3"


@pytest.fixture(scope="module")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TlsFiles:
    return make_tls_files(tmp_path_factory.mktemp("tls"))


@pytest.fixture(scope="module")
def encrypted_key(tls: TlsFiles) -> Path:
    """The client key encrypted with ``KEY_PW``."""
    out = tls.client_key.with_name("client-encrypted.key")
    subprocess.run(
        ["openssl", "pkey", "-in", str(tls.client_key), "-aes256", "-passout",
         f"pass:{KEY_PW}", "-out", str(out)],
        check=True, capture_output=True,
    )  # fmt: skip
    return out


def _subjects(context: ssl.SSLContext) -> list[str]:
    return [
        value
        for cert in context.get_ca_certs()
        for rdn in cert["subject"]
        for key, value in rdn
        if key == "commonName"
    ]


def _assert_verifying(context: ssl.SSLContext, check_hostname: bool = True) -> None:
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname is check_hostname


def test_plaintext_is_the_default() -> None:
    expected = {"security_protocol": "PLAINTEXT"}
    assert kafka_security_kwargs(None) == expected
    assert kafka_security_kwargs(KafkaSecurity()) == expected
    assert kafka_security_kwargs(KafkaSecurity(security_protocol="plaintext")) == expected


def test_ssl_with_the_system_cas() -> None:
    kwargs = kafka_security_kwargs(KafkaSecurity(security_protocol="SSL"))
    assert set(kwargs) == {"security_protocol", "ssl_context"}
    assert kwargs["security_protocol"] == "SSL"
    _assert_verifying(kwargs["ssl_context"])
    assert "regime-engine test ca" not in _subjects(kwargs["ssl_context"])


def test_ssl_with_a_ca_file_and_no_hostname_check(tls: TlsFiles) -> None:
    security = KafkaSecurity(security_protocol="SSL", ca_file=str(tls.ca), check_hostname=False)
    context = kafka_security_kwargs(security)["ssl_context"]
    _assert_verifying(context, check_hostname=False)
    assert "regime-engine test ca" in _subjects(context)
    assert "regime-engine test other-ca" not in _subjects(context)


def test_client_certificate_plain_and_encrypted_keys(
    tls: TlsFiles, encrypted_key: Path, tmp_path: Path
) -> None:
    base = {"security_protocol": "SSL", "ca_file": str(tls.ca), "cert_file": str(tls.client_cert)}
    for extra in (
        {"key_file": str(tls.client_key)},
        {"key_file": str(encrypted_key), "key_password": KEY_PW},
    ):
        context = kafka_security_kwargs(KafkaSecurity(**base, **extra))["ssl_context"]
        _assert_verifying(context)
    secret = tmp_path / "key-password"
    secret.write_text(KEY_PW + "\n")
    kafka_security_kwargs(
        KafkaSecurity(**base, key_file=str(encrypted_key), key_password_file=str(secret))
    )
    with pytest.raises(ConfigError) as info:
        kafka_security_kwargs(KafkaSecurity(**base, key_file=str(encrypted_key), key_password="x"))
    assert str(info.value).startswith("kafka TLS: cannot load the CA or client certificate")
    assert KEY_PW not in str(info.value)


def test_unreadable_files_are_one_line(tls: TlsFiles, tmp_path: Path) -> None:
    missing = str(tmp_path / "absent.pem")
    with pytest.raises(ConfigError, match=f"^kafka TLS: {missing}: no such file$"):
        kafka_security_kwargs(KafkaSecurity(security_protocol="SSL", ca_file=missing))
    not_pem = tmp_path / "not.pem"
    not_pem.write_text("hello\n")
    with pytest.raises(ConfigError, match=r"^kafka TLS: cannot load the CA or client cert"):
        kafka_security_kwargs(KafkaSecurity(security_protocol="SSL", ca_file=str(not_pem)))
    with pytest.raises(ConfigError, match=r"kafka sasl_password_file .*absent.pem: No such file"):
        kafka_security_kwargs(
            KafkaSecurity(
                security_protocol="SASL_PLAINTEXT",
                sasl_mechanism="PLAIN",
                sasl_username="u",
                sasl_password_file=missing,
            )
        )


@pytest.mark.parametrize("mechanism", [*MECHANISMS, "scram-sha-512"])
def test_sasl_plaintext_each_mechanism(mechanism: str) -> None:
    security = KafkaSecurity(
        security_protocol="SASL_PLAINTEXT",
        sasl_mechanism=mechanism,
        sasl_username="engine",
        sasl_password=SASL_PW,
    )
    assert kafka_security_kwargs(security) == {
        "security_protocol": "SASL_PLAINTEXT",
        "sasl_mechanism": mechanism.upper(),
        "sasl_plain_username": "engine",
        "sasl_plain_password": SASL_PW,
    }


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_sasl_ssl_each_mechanism_password_from_a_file(
    mechanism: str, tls: TlsFiles, tmp_path: Path
) -> None:
    secret = tmp_path / "sasl-password"
    secret.write_text(SASL_PW + "\n")
    security = KafkaSecurity(
        security_protocol="sasl_ssl",
        sasl_mechanism=mechanism,
        sasl_username="engine",
        sasl_password_file=str(secret),
        ca_file=str(tls.ca),
    )
    kwargs = kafka_security_kwargs(security)
    context = kwargs.pop("ssl_context")
    _assert_verifying(context)
    assert "regime-engine test ca" in _subjects(context)
    assert kwargs == {
        "security_protocol": "SASL_SSL",
        "sasl_mechanism": mechanism,
        "sasl_plain_username": "engine",
        "sasl_plain_password": SASL_PW,
    }


SASL = {"sasl_mechanism": "PLAIN", "sasl_username": "u", "sasl_password": SASL_PW}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"security_protocol": "TLS"}, "security_protocol must be one of PLAINTEXT, SSL, SASL_"),
        ({"security_protocol": 1}, "security_protocol must be one of"),
        (
            {"security_protocol": "SASL_SSL", **SASL, "sasl_mechanism": "GSSAPI"},
            "SASL_SSL needs sasl_mechanism, one of PLAIN, SCRAM-SHA-256, SCRAM-SHA-512; got 'GS",
        ),
        ({"security_protocol": "SASL_SSL", **SASL, "sasl_mechanism": None}, "needs sasl_mech"),
        ({"security_protocol": "SASL_PLAINTEXT", **SASL, "sasl_username": None}, "sasl_username"),
        (
            {"security_protocol": "SASL_PLAINTEXT", **SASL, "sasl_password": None},
            "needs one of sasl_password, sasl_password_file$",
        ),
        (
            {"security_protocol": "SASL_PLAINTEXT", **SASL, "sasl_password_file": "/pw"},
            "sasl_password_file \\(not both\\)",
        ),
        ({"security_protocol": "SSL", **SASL}, "kafka sasl_mechanism, sasl_username, sasl_pass"),
        ({"sasl_username": "u"}, "sasl_username need security_protocol SASL_PLAINTEXT or SASL_"),
        ({"ca_file": "/ca.pem"}, "kafka ca_file need security_protocol SSL or SASL_SSL \\(it i"),
        (
            {"security_protocol": "SASL_PLAINTEXT", **SASL, "cert_file": "/c.pem"},
            "cert_file need security_protocol SSL or SASL_SSL \\(it is SASL_PLAINTEXT\\)",
        ),
        ({"check_hostname": False}, "kafka check_hostname need security_protocol SSL"),
        ({"check_hostname": "no"}, "check_hostname must be true or false"),
        ({"security_protocol": "SSL", "key_file": "/k.pem"}, "key_file needs cert_file"),
        (
            {
                "security_protocol": "SSL",
                "cert_file": "/c",
                "key_password": "a",
                "key_password_file": "/b",
            },
            "key_password or key_password_file, not both",
        ),
        ({"security_protocol": "SSL", "key_password": "abc"}, "key_password needs cert_file"),
        ({"security_protocol": "SSL", "ca_file": ""}, "kafka ca_file must be a non-empty str"),
    ],
)
def test_refused_combinations_are_one_line(values: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message) as info:
        KafkaSecurity(**values)  # type: ignore[arg-type]
    assert "\n" not in str(info.value) and SASL_PW not in str(info.value)


def test_from_mapping_rejects_unknown_keys() -> None:
    with pytest.raises(ConfigError, match="unknown kafka_security config keys: sasl_user"):
        KafkaSecurity.from_mapping({"security_protocol": "SASL_SSL", "sasl_user": "u"})


def test_repr_hides_the_passwords() -> None:
    security = KafkaSecurity(
        security_protocol="SASL_SSL",
        **SASL,
        cert_file="/c.pem",
        key_file="/k.pem",
        key_password=KEY_PW,
    )
    shown = repr(security)
    assert SASL_PW not in shown and KEY_PW not in shown
    assert "sasl_password=***" in shown and "key_password=***" in shown
    assert "sasl_username='u'" in shown

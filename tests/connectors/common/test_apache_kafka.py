"""The embedded Apache Kafka helper: what it needs, and one version everywhere."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from connectors.common.kafka.apache import (
    KAFKA_VERSION,
    EmbeddedApacheKafka,
    apache_kafka_missing,
    default_jars_dir,
    random_cluster_id,
)
from connectors.common.kafka.embedded import EmbeddedKafkaError
from tests.paths import REPO

URL_SAFE = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


def test_pom_makefile_compose_and_helper_name_one_kafka_version() -> None:
    pom = (REPO / "deploy" / "kafka-jars" / "pom.xml").read_text()
    makefile = (REPO / "Makefile").read_text()
    compose = (REPO / "deploy" / "docker-compose.yml").read_text()
    assert re.findall(r"<kafka\.version>(.*)</kafka\.version>", pom) == [KAFKA_VERSION]
    assert re.findall(r"image: apache/kafka:(\S+)", compose) == [KAFKA_VERSION]
    assert re.findall(r"(?m)^KAFKA_VERSION := (.*)$", makefile) == [KAFKA_VERSION]
    assert default_jars_dir().name == f"kafka-{KAFKA_VERSION}"


def test_missing_java_or_jars_is_said_in_one_line(tmp_path: Path) -> None:
    assert apache_kafka_missing(tmp_path, java=tmp_path / "no-java") == (
        "Java (17+) not found: install a JDK (java on PATH)"
    )
    java = tmp_path / "java"
    java.write_text("#!/bin/sh\n")
    java.chmod(0o755)
    assert apache_kafka_missing(tmp_path, java=java) == (
        f"Apache Kafka {KAFKA_VERSION} jars not in {tmp_path}: run `make kafka-jars` (Maven)"
    )
    (tmp_path / f"kafka_2.13-{KAFKA_VERSION}.jar").write_bytes(b"")
    assert apache_kafka_missing(tmp_path, java=java) is None


@pytest.mark.asyncio
async def test_start_without_jars_fails_with_one_line_and_leaves_nothing(tmp_path: Path) -> None:
    kafka = EmbeddedApacheKafka(jars_dir=tmp_path / "none")
    with pytest.raises(EmbeddedKafkaError, match=r"^Apache Kafka cannot run: ") as info:
        await kafka.start()
    assert "\n" not in str(info.value)
    assert not kafka.running and kafka.port is None and kafka.data_dir is None


def test_a_heap_too_small_for_the_broker_is_refused() -> None:
    with pytest.raises(ValueError, match="heap_mb must be at least 128, got 64"):
        EmbeddedApacheKafka(heap_mb=64)


def test_cluster_ids_are_what_the_storage_tool_takes() -> None:
    """22 URL-safe base64 characters, never a leading ``-`` (the storage tool's parser takes
    such an id for an option: about one broker start in 64 failed)."""
    ids = [random_cluster_id() for _ in range(20_000)]
    assert all(len(i) == 22 and set(i) <= URL_SAFE for i in ids)
    assert not [i for i in ids if i.startswith("-")]
    assert len(set(ids)) == len(ids)

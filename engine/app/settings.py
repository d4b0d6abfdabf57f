"""The application's configuration: one frozen object from a TOML file, the environment, flags.

Precedence: flags > environment > TOML file > defaults. Only the CLI entry point reads the
environment; it passes it here as a mapping. The TOML file (``--config PATH`` or
``REGIME_ENGINE_CONFIG``) holds the top-level keys of :class:`Settings` and the tables
``[levels]``, ``[detector]``, ``[task]`` and the connector tables ``[cboe]``, ``[cme]``,
``[funding.binance]`` / ``[funding.bybit]`` / ``[funding.okx]``; an unknown key anywhere is
an error::

    kafka = "kafka-1:9092"
    redis = "redis://cache:6379/0"
    group_id = "regime-engine"

    [detector]
    band_bps = 12.0
    dwell_s = 5.0
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from connectors.cboe.client import CboeConfig
from connectors.cme.client import CmeConfig
from connectors.funding.client import FundingClientConfig
from connectors.funding.venues import VENUES as FUNDING_VENUES
from engine.core.config import ConfigError, LevelsConfig, resolve_config
from engine.signals.detector import DetectorConfig
from engine.stream.runtime import EngineConfig
from engine.stream.task import TaskConfig
from schemas.config import check_known_keys

ENV_PREFIX = "REGIME_ENGINE_"
ENV_KEYS = {  # environment variable → Settings field
    "REGIME_ENGINE_KAFKA": "kafka",
    "REGIME_ENGINE_REDIS": "redis",
    "REGIME_ENGINE_TOPIC_PREFIX": "topic_prefix",
    "REGIME_ENGINE_GROUP": "group_id",
    "REGIME_ENGINE_IDEMPOTENCE": "idempotence",
}
CONFIG_ENV = "REGIME_ENGINE_CONFIG"
_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


@dataclass(frozen=True, slots=True)
class Settings:
    """What `run`, `engine` and `demo` are configured with."""

    kafka: str | None = None  # bootstrap HOST:PORT; None: the demo starts an embedded broker
    redis: str | None = None  # redis://HOST:PORT/DB; None: the demo starts a local server
    topic_prefix: str = ""
    group_id: str = "regime-engine"
    idempotence: bool | None = None  # None: on for a given Kafka, off for the embedded one
    partitions: int = 3  # of topics created when missing
    stream_maxlen: int = 100_000
    max_records: int = 20_000  # records per consumer fetch batch
    session_timeout_ms: int = 10_000  # consumer group: a dead engine's partitions move after this
    heartbeat_interval_ms: int = 3_000
    checkpoint_interval_s: float = 60.0  # engine.state.v1 checkpoints; 0: none (full replay)
    levels: LevelsConfig = field(default_factory=LevelsConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    task: TaskConfig = field(default_factory=TaskConfig)
    cboe: CboeConfig | None = None  # [cboe]: polling settings of cboe:SYMBOL sources
    cme: CmeConfig | None = None  # [cme]: what cme:PRODUCT polls or watches (required)
    funding: Mapping[str, FundingClientConfig] = field(default_factory=dict)  # [funding.VENUE]

    def __post_init__(self) -> None:
        if self.kafka is not None:
            check_bootstrap(self.kafka)
        if self.redis is not None and not self.redis.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError(f"redis must be a redis:// URL, got {self.redis!r}")
        if isinstance(self.partitions, bool) or not isinstance(self.partitions, int):
            raise ConfigError(f"partitions must be an integer, got {self.partitions!r}")
        if self.partitions <= 0:
            raise ConfigError("partitions must be positive")
        interval = self.checkpoint_interval_s
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval < 0:
            raise ConfigError(f"checkpoint_interval_s must be a number >= 0, got {interval!r}")

    def engine_config(self, bootstrap: str, redis_url: str, embedded_kafka: bool) -> EngineConfig:
        """The engine's config against a resolved broker and Redis."""
        idempotence = self.idempotence if self.idempotence is not None else not embedded_kafka
        return EngineConfig(
            bootstrap=bootstrap,
            redis_url=redis_url,
            group_id=self.group_id,
            topic_prefix=self.topic_prefix,
            enable_idempotence=idempotence,
            partitions=self.partitions,
            levels=self.levels,
            detector=self.detector,
            task=self.task,
            stream_maxlen=self.stream_maxlen,
            max_records=self.max_records,
            session_timeout_ms=self.session_timeout_ms,
            heartbeat_interval_ms=self.heartbeat_interval_ms,
            checkpoint_interval_s=float(self.checkpoint_interval_s),
        )


def check_bootstrap(value: str) -> str:
    """``HOST:PORT`` (comma-separated for several brokers), else ConfigError."""
    for server in value.split(","):
        host, _, port = server.strip().rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"kafka must be HOST:PORT, got {value!r}")
    return value


def load_settings(
    flags: Mapping[str, Any],
    env: Mapping[str, str],
    config_path: str | None = None,
) -> Settings:
    """Merge the TOML file, the environment and the flags (None values are not given)."""
    data: dict[str, Any] = {}
    path = config_path or env.get(CONFIG_ENV)
    if path:
        data.update(_read_toml(Path(path)))
    for name, key in ENV_KEYS.items():
        if name in env and env[name] != "":
            data[key] = env[name]
    unknown_env = sorted(
        k for k in env if k.startswith(ENV_PREFIX) and k not in ENV_KEYS and k != CONFIG_ENV
    )
    if unknown_env:
        raise ConfigError(f"unknown environment variables: {', '.join(unknown_env)}")
    levels_flags = {k: flags.get(k) for k in ("preset", "model", "gamma_source")}
    data.update({k: v for k, v in flags.items() if v is not None and k not in levels_flags})
    try:
        check_known_keys(Settings, data, "settings")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if isinstance(data.get("idempotence"), str):
        data["idempotence"] = _boolean("idempotence", data["idempotence"])
    levels = data.pop("levels", {})
    if not isinstance(levels, Mapping):
        raise ConfigError("[levels] must be a table")
    base = resolve_config(**levels_flags)
    if levels:
        LevelsConfig.from_mapping(dict(levels))  # names unknown keys, checks the values
    levels_config = replace(base, **levels) if levels else base
    detector = data.pop("detector", {})
    task = data.pop("task", {})
    try:
        detector_config = DetectorConfig.from_mapping(_table("detector", detector))
        check_known_keys(TaskConfig, _table("task", task), "task")
        task_config = TaskConfig(**task)
    except (ValueError, TypeError) as exc:  # ConfigError too: the same one line
        raise ConfigError(str(exc)) from None
    connectors: dict[str, Any] = {}
    try:
        if "cboe" in data:
            connectors["cboe"] = CboeConfig.from_mapping(_table("cboe", data.pop("cboe")))
        if "cme" in data:
            connectors["cme"] = CmeConfig.from_mapping(_table("cme", data.pop("cme")))
        if "funding" in data:
            venues = _table("funding", data.pop("funding"))
            unknown = sorted(set(venues) - set(FUNDING_VENUES))
            if unknown:
                raise ConfigError(f"[funding]: unknown venues {', '.join(unknown)}")
            connectors["funding"] = {
                venue: FundingClientConfig.from_mapping(_table(f"funding.{venue}", table))
                for venue, table in venues.items()
            }
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None
    return Settings(
        **data, levels=levels_config, detector=detector_config, task=task_config, **connectors
    )


def _table(name: str, value: object) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise ConfigError(f"[{name}] must be a table")
    return value


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as handle:
            return tomllib.load(handle)
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path}: {exc}") from None


def _boolean(name: str, value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"{name} must be true or false, got {value!r}")

"""The application's configuration: one frozen object from a TOML file, the environment, flags.

Precedence: flags > environment > TOML file > defaults. Only the CLI entry point reads the
environment; it passes it here as a mapping. The TOML file (``--config PATH`` or
``REGIME_ENGINE_CONFIG``) holds ``kafka``, ``redis``, ``idempotence`` and the engine's own
settings (the fields of :class:`EngineConfig`: ``group_id``, ``topic_prefix``,
``max_records`` …) at the top level, the tables ``[levels]``, ``[detector]``, ``[task]``
and each venue's table of :mod:`connectors.registry` (``[cboe]``, ``[cme]``,
``[funding.okx]`` …); an unknown key anywhere is an error::

    kafka = "kafka-1:9092"
    redis = "redis://cache:6379/0"
    group_id = "regime-engine"

    [detector]
    band_bps = 12.0
    dwell_s = 5.0

The connection security tables (:data:`SECURITY`) — ``[redis_security]`` (the fields of
:class:`connectors.common.redis_conn.RedisSecurity`) and ``[kafka_security]`` (those of
:class:`connectors.common.kafka.security.KafkaSecurity`) — can also be given field by field
in the environment (``REGIME_ENGINE_REDIS_PASSWORD``, ``REGIME_ENGINE_KAFKA_SASL_MECHANISM``
…); Redis's also by flags (``--redis-ca-file`` …). They apply to the services given
(``redis``, ``kafka``), not to embedded ones. Secrets come from the environment or from
``*_file`` settings, never from flags.

``[metrics]`` (:class:`engine.app.metrics.MetricsConfig`: ``port``, ``host``, the readiness
bounds) configures ``--metrics-port``'s server; the flag sets its ``port``.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from types import MappingProxyType
from typing import Any

from connectors.common.kafka.security import NO_KAFKA_SECURITY, KafkaSecurity
from connectors.common.redis_conn import NO_SECURITY, RedisSecurity
from connectors.common.secrets import redact_text, redacted_repr
from connectors.registry import SPECS
from engine.app.metrics import MetricsConfig
from engine.core.config import LevelsConfig, resolve_config
from engine.signals.detector import DetectorConfig
from engine.stream.runtime import EngineConfig
from engine.stream.task import TaskConfig
from schemas.config import Config, ConfigError, check_known_keys

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
SERVICES = ("kafka", "redis", "idempotence")  # resolved by the command (embedded or given)
# Connection security: table name → (its config, the environment prefix of its fields).
SECURITY: dict[str, tuple[type[Config], str]] = {
    "redis_security": (RedisSecurity, "REGIME_ENGINE_REDIS_"),
    "kafka_security": (KafkaSecurity, "REGIME_ENGINE_KAFKA_"),
}
SECURITY_ENV = {  # environment variable → (table, field)
    f"{prefix}{f.name.upper()}": (table, f.name)
    for table, (cls, prefix) in SECURITY.items()
    for f in fields(cls)
}
# The engine's fields the file may set: all but what the services resolve to.
ENGINE_KEYS = tuple(
    f.name
    for f in fields(EngineConfig)
    if f.name not in ("bootstrap", "redis_url", "enable_idempotence", *SECURITY)
)
TABLES = {spec.table: spec for spec in SPECS}  # "cboe", "funding.okx" → its venue's spec
GROUPS = tuple(dict.fromkeys(t.partition(".")[0] for t in TABLES if "." in t))  # "funding"
COMPONENTS: dict[str, type] = {"detector": DetectorConfig, "task": TaskConfig}


@dataclass(frozen=True, slots=True)
class Settings:
    """What `run`, `engine`, `demo`, `ingest` and `record` are configured with: the services,
    the engine's config as given (its fields by name) and each venue's config."""

    kafka: str | None = None  # bootstrap HOST:PORT; None: the demo starts an embedded broker
    redis: str | None = None  # redis://HOST:PORT/DB; None: the demo starts a local server
    idempotence: bool | None = None  # None: on for a given Kafka, off for the embedded one
    engine: Mapping[str, Any] = field(default_factory=dict)  # EngineConfig fields given
    venues: Mapping[str, Config] = field(default_factory=dict)  # venue name → its table
    metrics: MetricsConfig = field(default_factory=MetricsConfig)  # [metrics], --metrics-port
    redis_security: RedisSecurity = NO_SECURITY  # for the given redis (not an embedded one)
    kafka_security: KafkaSecurity = NO_KAFKA_SECURITY  # for the given kafka (ditto)

    def __repr__(self) -> str:
        return redacted_repr(self)

    def __post_init__(self) -> None:
        if self.kafka is not None:
            check_bootstrap(self.kafka)
        if self.redis is not None and not self.redis.startswith(
            ("redis://", "rediss://", "unix://")
        ):
            raise ConfigError(f"redis must be a redis:// URL, got {redact_text(repr(self.redis))}")
        if self.redis is not None:
            self.redis_security.check_url(self.redis)
        check_known_keys(ENGINE_KEYS, self.engine, "settings")
        object.__setattr__(self, "engine", MappingProxyType(dict(self.engine)))
        object.__setattr__(self, "venues", MappingProxyType(dict(self.venues)))

    def engine_config(self, bootstrap: str, redis_url: str, embedded_kafka: bool) -> EngineConfig:
        """The engine's config against a resolved broker and Redis."""
        idempotence = self.idempotence if self.idempotence is not None else not embedded_kafka
        try:
            return EngineConfig(
                bootstrap=bootstrap,
                redis_url=redis_url,
                enable_idempotence=idempotence,
                **self.engine,
                # the security settings are those of the given services, not embedded ones
                redis_security=self.redis_security_for(redis_url),
                kafka_security=(
                    self.kafka_security if bootstrap == self.kafka else NO_KAFKA_SECURITY
                ),
            )
        except TypeError as exc:  # a value of the wrong type (a string for a number)
            raise ConfigError(f"settings: {exc}") from None

    def redis_security_for(self, redis_url: str) -> RedisSecurity:
        """The Redis security settings for ``redis_url``: none for an embedded Redis."""
        return self.redis_security if redis_url == self.redis else NO_SECURITY


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
    for name, (table, key) in SECURITY_ENV.items():
        if name in env and env[name] != "":
            data[table] = {**_table(table, data.get(table, {})), key: env[name]}
    unknown_env = sorted(
        k
        for k in env
        if k.startswith(ENV_PREFIX)
        and k not in ENV_KEYS
        and k not in SECURITY_ENV
        and k != CONFIG_ENV
    )
    if unknown_env:
        raise ConfigError(f"unknown environment variables: {', '.join(unknown_env)}")
    levels_flags = {k: flags.get(k) for k in ("preset", "model", "gamma_source")}
    metrics_port = flags.get("metrics_port")
    for table in SECURITY:  # flags: {"redis_security": {"ca_file": …}} (None: not given)
        given = {k: v for k, v in (flags.get(table) or {}).items() if v is not None}
        if given:
            data[table] = {**_table(table, data.get(table, {})), **given}
    skip = {*levels_flags, "metrics_port", *SECURITY}
    data.update({k: v for k, v in flags.items() if v is not None and k not in skip})
    known = (
        *SERVICES,
        *SECURITY,
        *ENGINE_KEYS,
        *(t for t in TABLES if "." not in t),
        *GROUPS,
        "metrics",
    )
    check_known_keys(known, data, "settings")
    if isinstance(data.get("idempotence"), str):
        data["idempotence"] = _boolean("idempotence", data["idempotence"])
    services = {k: data.pop(k) for k in SERVICES if k in data}
    security = {t: _security(t, SECURITY[t][0], data.pop(t)) for t in SECURITY if t in data}
    metrics = MetricsConfig.from_mapping(_table("metrics", data.pop("metrics", {})))
    if metrics_port is not None:
        metrics = replace(metrics, port=metrics_port)
    venues = _venues(data)
    engine = {"levels": _levels(data.pop("levels", {}), levels_flags), **data}
    for name, cls in COMPONENTS.items():
        if name in data:
            engine[name] = _component(name, cls, data[name])
    settings = Settings(**services, engine=engine, venues=venues, metrics=metrics, **security)
    # EngineConfig checks the values now rather than when a command starts the engine (the
    # broker and Redis it is given here are placeholders: the command resolves the real ones)
    settings.engine_config("settings:1", "redis://settings", embedded_kafka=False)
    return settings


def _levels(table: object, flags: Mapping[str, str | None]) -> LevelsConfig:
    """``[levels]`` over the preset and the model flags."""
    values = _table("levels", table)
    check_known_keys(LevelsConfig, values, "levels")
    return replace(resolve_config(**flags), **values)


def _security(name: str, cls: type[Config], table: object) -> Any:
    """A security table as its config; ``check_hostname`` from the environment is a string."""
    values = dict(_table(name, table))
    if isinstance(values.get("check_hostname"), str):
        values["check_hostname"] = _boolean(f"{name} check_hostname", values["check_hostname"])
    return cls.from_mapping(values)


def _component(name: str, cls: type, table: object) -> Any:
    """``[detector]`` / ``[task]`` as its config; ConfigError (one line) when not accepted."""
    values = _table(name, table)
    if issubclass(cls, Config):
        return cls.from_mapping(values)
    check_known_keys(cls, values, name)
    try:
        return cls(**values)
    except (ValueError, TypeError) as exc:
        raise ConfigError(str(exc)) from None


def _venues(data: dict[str, Any]) -> dict[str, Config]:
    """Pop each venue's table (``[cboe]``, ``[funding.okx]``) as its config, by venue name."""
    out: dict[str, Config] = {}
    for group in GROUPS:
        if group in data:
            members = _table(group, data.pop(group))
            unknown = sorted(
                set(members) - {t.partition(".")[2] for t in TABLES if t.startswith(f"{group}.")}
            )
            if unknown:
                raise ConfigError(f"[{group}]: unknown venues {', '.join(unknown)}")
            data.update({f"{group}.{name}": table for name, table in members.items()})
    for table, spec in TABLES.items():
        if table in data:
            out[spec.venue] = spec.config.from_mapping(_table(table, data.pop(table)))
    return out


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

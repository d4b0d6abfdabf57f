"""Settings of the batched Kafka record producer (:mod:`connectors.common.kafka.producer`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

from connectors.common.kafka.security import NO_KAFKA_SECURITY, KafkaSecurity
from connectors.common.packing import PackConfig
from schemas.config import Config, ConfigError

__all__ = ["ProducerConfig"]

_ACKS = ("all", -1, 0, 1)
_COMPRESSION = (None, "gzip", "snappy", "lz4", "zstd")


@dataclass(frozen=True, slots=True)
class ProducerConfig(Config):
    """Producer settings.

    ``enable_idempotence`` defaults to True (Apache Kafka); it must be False against the
    embedded Tansu broker, which has no InitProducerId (``start()`` then fails).
    ``max_in_flight_batches`` bounds batches sent and not yet acknowledged (backpressure).
    ``pack_max_ticks`` > 0 packs option tickers (``send_tick``) up to that many per record,
    each tick waiting at most ``pack_wait_ms``; 0 sends every ticker as its own record. Packing
    is on by default: one Kafka record and one decode per tick cost more than everything else
    the engine does with a tick (see benchmarks/README.md). ``linger_ms`` is short because
    the packs already batch the ticks.
    """

    bootstrap: str
    client_id: str = "regime-engine"
    acks: str | int = "all"
    enable_idempotence: bool = True
    linger_ms: float = 1.0
    max_batch_bytes: int = 256 * 1024
    max_in_flight_batches: int = 16
    compression: str | None = None
    request_timeout_ms: int = 30_000
    max_request_bytes: int = 1024 * 1024
    pack_max_ticks: int = 256
    pack_wait_ms: float = 1.0
    pack_keyframe_s: float = 600.0  # a packed instrument's terms are re-sent this often
    security: KafkaSecurity = NO_KAFKA_SECURITY  # TLS and SASL (connectors.common.kafka.security)

    SECTION: ClassVar[str] = "producer"

    def __post_init__(self) -> None:
        if not self.bootstrap:
            raise ConfigError("bootstrap is empty")
        if self.acks not in _ACKS:
            raise ConfigError(f"acks must be one of {_ACKS}, got {self.acks!r}")
        if self.enable_idempotence and self.acks not in ("all", -1):
            raise ConfigError("enable_idempotence requires acks='all'")
        if self.compression not in _COMPRESSION:
            raise ConfigError(
                f"compression must be one of {_COMPRESSION}, got {self.compression!r}"
            )
        if self.linger_ms < 0:
            raise ConfigError("linger_ms must be >= 0")
        for name in (
            "max_batch_bytes",
            "max_in_flight_batches",
            "request_timeout_ms",
            "max_request_bytes",
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise ConfigError(f"{name} must be a positive integer, got {value!r}")
        if not isinstance(self.pack_max_ticks, int) or self.pack_max_ticks < 0:
            raise ConfigError(
                f"pack_max_ticks must be an integer >= 0, got {self.pack_max_ticks!r}"
            )
        if self.pack_max_ticks:
            self.packing()  # checks the other pack settings

    def packing(self) -> PackConfig | None:
        """The tick packing settings, None when packing is off."""
        if not self.pack_max_ticks:
            return None
        return PackConfig(self.pack_max_ticks, self.pack_wait_ms / 1000.0, self.pack_keyframe_s)

    @classmethod
    def prepare(cls, values: dict[str, Any]) -> dict[str, Any]:
        if "bootstrap" not in values:
            raise ConfigError("producer config needs 'bootstrap'")
        return values

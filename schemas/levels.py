"""The levels object of DESIGN §2.2: what `levels --json` prints, `regime:levels:*` holds."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

UNITS = "usd_per_1pct"
BUCKETS = ("all", "0dte", "front")
# Narrowest first: an event of buckets holding the same expiries is published under the first.
NARROW_FIRST = ("0dte", "front", "all")
REGIMES = ("positive", "negative", "transition")
LEVEL_KEYS = (
    "net_gex",
    "zero_gamma",
    "zero_gamma_crossings",
    "call_wall",
    "put_wall",
    "abs_gamma_strike",
    "regime",
    "contracts_used",
    "call_wall_oi",
    "put_wall_oi",
    "zero_gamma_status",
    "zero_gamma_range",
    "net_dex",
    "net_vex",
    "net_chex",
)
# Units of the exposures (DESIGN §2.6), stamped in every levels object as "exposure_units".
EXPOSURE_UNITS = {"net_dex": "usd", "net_vex": "usd_per_vol_point", "net_chex": "usd_per_day"}
ZERO_GAMMA_STATUSES = ("ok", "none_in_range", "multiple", "empty")
WALL_RULES = ("side", "global")


@dataclass(frozen=True, slots=True)
class BucketLevels:
    """Levels of one expiry bucket. Prices in the underlying's currency, GEX in USD per 1 % move."""

    net_gex: float
    zero_gamma: float | None  # root of the gamma profile nearest spot, None if none in range
    zero_gamma_crossings: tuple[float, ...]  # every root in the profile's range, ascending
    call_wall: float | None
    put_wall: float | None
    abs_gamma_strike: float | None
    regime: str | None  # "positive" | "negative" | "transition"; None for an empty bucket
    contracts_used: int
    expiries: tuple[str, ...] = ()  # ISO settlement instants of the expiries in the bucket
    call_wall_oi: float | None = None  # strike with the largest call OI at or above spot
    put_wall_oi: float | None = None  # strike with the largest put OI at or below spot
    same_as: str | None = None  # another bucket holding exactly the same expiries, else None
    # "ok" (one root), "none_in_range", "multiple" (several roots: the rule's one chosen),
    # "empty" (no contracts); None only in levels from before the field existed
    zero_gamma_status: str | None = None
    zero_gamma_range: tuple[float, float] | None = None  # the spot range searched for roots
    net_dex: float = 0.0  # Σ dealer position × multiplier × Δ × S, USD of underlying
    net_vex: float = 0.0  # Σ ... × ∂Δ/∂σ × 0.01 × S, USD of delta per vol point
    net_chex: float = 0.0  # Σ ... × (change of Δ over one calendar day) × S, USD per day

    def to_dict(self) -> dict[str, Any]:
        return {
            "net_gex": self.net_gex,
            "zero_gamma": self.zero_gamma,
            "zero_gamma_crossings": list(self.zero_gamma_crossings),
            "call_wall": self.call_wall,
            "put_wall": self.put_wall,
            "abs_gamma_strike": self.abs_gamma_strike,
            "regime": self.regime,
            "contracts_used": self.contracts_used,
            "expiries": list(self.expiries),
            "call_wall_oi": self.call_wall_oi,
            "put_wall_oi": self.put_wall_oi,
            "same_as": self.same_as,
            "zero_gamma_status": self.zero_gamma_status,
            "zero_gamma_range": None
            if self.zero_gamma_range is None
            else list(self.zero_gamma_range),
            "net_dex": self.net_dex,
            "net_vex": self.net_vex,
            "net_chex": self.net_chex,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BucketLevels:
        return cls(
            net_gex=float(data["net_gex"]),
            zero_gamma=data["zero_gamma"],
            zero_gamma_crossings=tuple(data["zero_gamma_crossings"]),
            call_wall=data["call_wall"],
            put_wall=data["put_wall"],
            abs_gamma_strike=data["abs_gamma_strike"],
            regime=data["regime"],
            contracts_used=int(data["contracts_used"]),
            expiries=tuple(data.get("expiries", ())),
            call_wall_oi=data.get("call_wall_oi"),
            put_wall_oi=data.get("put_wall_oi"),
            same_as=data.get("same_as"),
            zero_gamma_status=data.get("zero_gamma_status"),
            zero_gamma_range=_pair(data.get("zero_gamma_range")),
            net_dex=float(data.get("net_dex", 0.0)),
            net_vex=float(data.get("net_vex", 0.0)),
            net_chex=float(data.get("net_chex", 0.0)),
        )


def _pair(value: Any) -> tuple[float, float] | None:
    return None if value is None else (float(value[0]), float(value[1]))


def same_expiries(buckets: dict[str, BucketLevels]) -> dict[str, tuple[str, ...]]:
    """Per bucket, every bucket (itself included, narrowest first) holding exactly the same
    nonempty set of expiries; a bucket without expiries stands only for itself."""
    out = {}
    for name, bucket in buckets.items():
        group = [
            other
            for other in NARROW_FIRST
            if other in buckets and bucket.expiries and buckets[other].expiries == bucket.expiries
        ]
        out[name] = tuple(group) if len(group) > 1 else (name,)
    return out


def format_asof(asof_ns: int) -> str:
    """ISO-8601 UTC with a Z suffix, to the second when whole, else to the microsecond."""
    moment = datetime.fromtimestamp(asof_ns / 1e9, tz=UTC)
    if asof_ns % 1_000_000_000 == 0:
        return moment.strftime("%Y-%m-%dT%H:%M:%SZ")
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


@dataclass(frozen=True, slots=True)
class Levels:
    """Levels of one underlying at one instant, for every bucket; top-level keys mirror `all`."""

    underlying: str
    spot: float
    asof_ns: int
    model: str
    preset: str | None
    gamma_source: str  # "iv" (re-priced from implied vol) or "venue" (published gamma)
    buckets: dict[str, BucketLevels] = field(default_factory=dict)
    wall_rule: str = "side"  # "side" (DESIGN §2.6) or "global" (the whole chain, §2.1)

    @property
    def all(self) -> BucketLevels:
        """The `all`-expiries bucket, which the top-level level keys describe."""
        return self.buckets["all"]

    net_gex = property(lambda self: self.all.net_gex)
    zero_gamma = property(lambda self: self.all.zero_gamma)
    zero_gamma_crossings = property(lambda self: self.all.zero_gamma_crossings)
    call_wall = property(lambda self: self.all.call_wall)
    put_wall = property(lambda self: self.all.put_wall)
    abs_gamma_strike = property(lambda self: self.all.abs_gamma_strike)
    regime = property(lambda self: self.all.regime)
    contracts_used = property(lambda self: self.all.contracts_used)
    call_wall_oi = property(lambda self: self.all.call_wall_oi)
    put_wall_oi = property(lambda self: self.all.put_wall_oi)
    zero_gamma_status = property(lambda self: self.all.zero_gamma_status)
    zero_gamma_range = property(lambda self: self.all.zero_gamma_range)
    net_dex = property(lambda self: self.all.net_dex)
    net_vex = property(lambda self: self.all.net_vex)
    net_chex = property(lambda self: self.all.net_chex)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "underlying": self.underlying,
            "spot": self.spot,
            "asof": format_asof(self.asof_ns),
            "asof_ns": self.asof_ns,
            "model": self.model,
            "preset": self.preset,
            "units": UNITS,
            "exposure_units": dict(EXPOSURE_UNITS),
            "gamma_source": self.gamma_source,
            "wall_rule": self.wall_rule,
        }
        top = self.buckets["all"].to_dict()
        out.update({key: top[key] for key in LEVEL_KEYS})
        out["buckets"] = {name: bucket.to_dict() for name, bucket in self.buckets.items()}
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Levels:
        return cls(
            underlying=data["underlying"],
            spot=float(data["spot"]),
            asof_ns=int(data["asof_ns"]),
            model=data["model"],
            preset=data["preset"],
            gamma_source=data["gamma_source"],
            buckets={k: BucketLevels.from_dict(v) for k, v in data["buckets"].items()},
            wall_rule=data.get("wall_rule", "global"),  # levels from before §2.6: global
        )


def encode_levels(levels: Levels) -> bytes:
    return orjson.dumps(levels.to_dict())


def decode_levels(raw: bytes | str) -> Levels:
    return Levels.from_dict(orjson.loads(raw))

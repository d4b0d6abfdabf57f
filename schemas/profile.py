"""The gamma-profile object held at ``regime:profile:{U}`` (DESIGN §2.6): what charts draw.

Per bucket: the hypothetical-spot grid, the dealer gamma profile on it (total dealer GEX at
each grid spot) and the per-strike net dealer call and put GEX at spot, for every strike with
a contribution (they sum to the bucket's net GEX). Units as the levels (GEX in USD per 1 %
move, prices in the underlying's currency); the JSON is compact (parallel arrays).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from schemas.levels import UNITS, format_asof

PROFILE_SCHEMA = "regime.profile/1"


@dataclass(frozen=True, slots=True)
class BucketProfile:
    """Profile and strike GEX of one expiry bucket (parallel arrays, ascending)."""

    spots: tuple[float, ...]  # hypothetical spot grid
    profile: tuple[float, ...]  # total dealer GEX at each grid spot
    strikes: tuple[float, ...]  # strikes with a contribution
    call_gex: tuple[float, ...]  # net dealer call GEX at spot, per strike
    put_gex: tuple[float, ...]  # net dealer put GEX at spot, per strike

    def to_dict(self) -> dict[str, Any]:
        return {
            "spots": list(self.spots),
            "profile": list(self.profile),
            "strikes": list(self.strikes),
            "call_gex": list(self.call_gex),
            "put_gex": list(self.put_gex),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> BucketProfile:
        return cls(
            spots=tuple(map(float, data["spots"])),
            profile=tuple(map(float, data["profile"])),
            strikes=tuple(map(float, data["strikes"])),
            call_gex=tuple(map(float, data["call_gex"])),
            put_gex=tuple(map(float, data["put_gex"])),
        )


@dataclass(frozen=True, slots=True)
class Profile:
    """Gamma profile of one underlying at one instant, per bucket (the levels' instant)."""

    underlying: str
    spot: float
    asof_ns: int
    model: str
    buckets: dict[str, BucketProfile] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": PROFILE_SCHEMA,
            "underlying": self.underlying,
            "spot": self.spot,
            "asof": format_asof(self.asof_ns),
            "asof_ns": self.asof_ns,
            "model": self.model,
            "units": UNITS,
            "buckets": {name: bucket.to_dict() for name, bucket in self.buckets.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        return cls(
            underlying=data["underlying"],
            spot=float(data["spot"]),
            asof_ns=int(data["asof_ns"]),
            model=data["model"],
            buckets={k: BucketProfile.from_dict(v) for k, v in data["buckets"].items()},
        )


def encode_profile(profile: Profile) -> bytes:
    return orjson.dumps(profile.to_dict())


def decode_profile(raw: bytes | str) -> Profile:
    return Profile.from_dict(orjson.loads(raw))

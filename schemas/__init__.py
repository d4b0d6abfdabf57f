"""Normalised, venue-independent record and output types (DESIGN §2, §3).

Venue wire types live in ``connectors/<venue>/``; everything here is what flows between
the connectors, Kafka, the engine and the bots.
"""

from schemas.chain import ChainSnapshot
from schemas.contracts import OptionContract, OptionRight
from schemas.levels import BUCKETS, REGIMES, UNITS, BucketLevels, Levels

__all__ = [
    "BUCKETS",
    "REGIMES",
    "UNITS",
    "BucketLevels",
    "ChainSnapshot",
    "Levels",
    "OptionContract",
    "OptionRight",
]

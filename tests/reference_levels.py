"""Levels of a Deribit book by the slow reference (tests/reference.py), from records.

Independent of the engine's book: each instrument's latest state as the records state it,
priced with DESIGN §2.1 one contract at a time.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from schemas.contracts import OptionContract
from schemas.records import UnderlyingTick
from schemas.ticks import OptionTicks
from tests import reference as ref

YEAR_NS = 365 * 86_400 * 1_000_000_000


@dataclass(frozen=True)
class Reference:
    """Levels of the "all" bucket by the slow reference."""

    spot: float
    zero_gamma: float
    walls: tuple[float | None, float | None]  # call wall, put wall (side rule)
    net_gex: float


def reference_at(
    normalised: list,
    log: list[OptionContract | OptionTicks],
    t_ns: int,
    wall_window: float = 0.15,
) -> Reference:
    """The levels as of ``t_ns`` from DESIGN §2.1, not through the engine's book: the option
    records ``log`` (contracts and packs of ticks) read in order up to the first after
    ``t_ns`` (the event-time merge holds a record until its time), each instrument's latest
    state, unexpired, T = time to expiry / 365 days, forward = spot × (underlying_price /
    index_price), dealers long calls and short puts (OI in coins, multiplier 1); spot = the
    latest index price of ``normalised``."""
    latest: dict[str, OptionContract] = {}
    for record in log:
        if record.ts_event_ns > t_ns:
            break
        if type(record) is OptionContract:
            latest[record.instrument] = record
            continue
        for i, name in enumerate(record.instrument):  # a pack: ticks in order
            iv = float(record.iv[i])
            latest[name] = replace(
                latest[name],
                iv=None if math.isnan(iv) else iv,
                open_interest=float(record.open_interest[i]),
                underlying_price=float(record.underlying_price[i]),
                index_price=float(record.index_price[i]),
            )
    spots = [r.price for r in normalised if type(r) is UnderlyingTick and r.ts_event_ns <= t_ns]
    spot = spots[-1]
    contracts = [
        ref.RefContract(
            strike=float(c.strike),
            tau=(c.expiry_ns - t_ns) / YEAR_NS,
            iv=c.iv,
            basis=c.underlying_price / c.index_price,
            position=c.open_interest if c.is_call else -c.open_interest,
            multiplier=c.multiplier,
            is_call=c.is_call,
        )
        for c in latest.values()
        if c.expiry_ns > t_ns
    ]
    # the side rule (the engine's default): call wall at or above spot, put wall at or below,
    # within ±``wall_window`` of spot
    call_wall, put_wall = ref.side_walls(
        ref.strike_gex(contracts, spot), spot, spot * (1 - wall_window), spot * (1 + wall_window)
    )
    return Reference(
        spot,
        ref.root_nearest(contracts, spot),
        (call_wall, put_wall),
        sum(ref.contract_gex(c, spot) for c in contracts),
    )

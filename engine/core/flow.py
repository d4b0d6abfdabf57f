"""The flow-classified dealer model (``--model flow``).

Taker = customer, maker = dealer (how crypto desks such as Amberdata and Glassnode read
Deribit's tape): a taker buy of an option leaves the dealer short it, a taker sell leaves
the dealer long. Positions opened before the session are not observable, so each
instrument's dealer position starts from a stated prior, ``prior_weight`` × open interest
in the ``long_calls_short_puts`` direction (dealers long calls, short puts), and every
taker trade moves it from there. It is bounded by open interest: the dealer cannot hold more
of a contract than is open.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.core.models import dealer_position

FLOW_PRIOR_MODEL = "long_calls_short_puts"


@dataclass
class FlowInventory:
    """Dealer position per instrument, in contracts (+ long)."""

    prior_weight: float = 1.0  # share of open interest seeded in the prior's direction
    positions: dict[str, float] = field(default_factory=dict)
    open_interest: dict[str, float] = field(default_factory=dict)
    trades_applied: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.prior_weight <= 1.0:
            raise ValueError("prior_weight must be in [0, 1]")

    def position(self, instrument: str, is_call: bool, open_interest: float) -> float:
        """The dealer position after an open-interest update (seeded on first sight)."""
        oi = max(open_interest, 0.0)
        self.open_interest[instrument] = oi
        if instrument not in self.positions:
            prior = dealer_position(FLOW_PRIOR_MODEL, is_call, oi) * self.prior_weight
            self.positions[instrument] = prior
        return self._clip(instrument)

    def apply_trade(self, instrument: str, direction: str, amount: float) -> float | None:
        """Move the dealer position opposite to the taker; None for an unseen instrument."""
        if instrument not in self.positions:
            return None
        self.positions[instrument] += -amount if direction == "buy" else amount
        self.trades_applied += 1
        return self._clip(instrument)

    def forget(self, instrument: str) -> None:
        self.positions.pop(instrument, None)
        self.open_interest.pop(instrument, None)

    def _clip(self, instrument: str) -> float:
        bound = self.open_interest.get(instrument, 0.0)
        value = min(max(self.positions[instrument], -bound), bound)
        self.positions[instrument] = value
        return value

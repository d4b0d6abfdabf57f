"""Dealer position models (DESIGN §2.1): the sign of the dealer's position per contract."""

from __future__ import annotations

# (dealer sign for calls, dealer sign for puts), applied to open interest.
DEALER_MODELS: dict[str, tuple[float, float]] = {
    "long_calls_short_puts": (1.0, -1.0),  # customers sell calls, buy puts (SqueezeMetrics)
    "short_all": (-1.0, -1.0),  # dealers short every contract customers hold
    "short_calls_long_puts": (-1.0, 1.0),
}


FLOW_MODEL = "flow"  # dealer inventory from signed taker flow, see engine.core.flow
MODELS = (*DEALER_MODELS, FLOW_MODEL)


def dealer_position(model: str, is_call: bool, open_interest: float) -> float:
    """Signed dealer position in contracts under a sign-convention model."""
    call_sign, put_sign = DEALER_MODELS[model]
    return (call_sign if is_call else put_sign) * open_interest

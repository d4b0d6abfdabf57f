"""Black-76 prices and implied vols for CME chains: the core library's (engine.core.pricing)."""

from engine.core.pricing import black76_price, implied_vol, warm_up

__all__ = ["black76_price", "implied_vol", "warm_up"]

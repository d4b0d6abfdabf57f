"""Binance USD-M futures: mark-price stream and premium-index / funding-info REST."""

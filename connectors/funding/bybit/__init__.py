"""Bybit v5 public linear ``tickers.{symbol}``: snapshot + delta funding and open interest."""

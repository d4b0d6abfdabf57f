"""Perpetual funding rates: Binance USD-M, Bybit v5 and OKX v5 into ``md.funding.v1``.

``normalise`` holds the one rate normalisation every venue (Deribit too) goes through,
``client`` the one WebSocket lifecycle the three venues share, and each venue folder only
its wire types, pure parsers and its ``SPEC`` (URL, subscribe and keepalive frames).
"""

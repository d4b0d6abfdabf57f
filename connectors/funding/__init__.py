"""Perpetual funding rates: Binance USD-M, Bybit v5 and OKX v5 into ``md.funding.v1``.

``connectors.common.funding`` holds the one rate normalisation every venue (Deribit too)
goes through; here ``client`` is the one WebSocket lifecycle the three venues share,
``frames`` their normaliser base and ``spec`` what makes a venue's registry spec. Each venue
folder holds only its wire types, pure parsers, its ``FEED`` (``venue.py``: URL, subscribe
and keepalive frames) and its ``SPEC`` (``spec.py``: source prefix, config table).
"""

"""Venue connectors: wire types, pure parse functions and chain-file loaders (DESIGN §3)."""

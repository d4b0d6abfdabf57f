"""The bots' subscriber client, at the import path the README gives (``engine.subscriber``).

It lives in :mod:`engine.client.subscriber`; this module re-exports it unchanged.
"""

from engine.client.subscriber import *  # noqa: F403
from engine.client.subscriber import __all__  # noqa: F401

"""Redis helpers for tests that share one server: clients they open are closed again."""

from redis.asyncio import Redis


async def flush_db(url: str) -> None:
    """FLUSHDB the database of ``url`` with a client closed afterwards (no leaked connection
    for a later test's client count)."""
    client = Redis.from_url(url)
    try:
        await client.flushdb()
    finally:
        await client.aclose()

"""A fleet's limiter as a user types it; ``mypy --strict`` and pyright strict check.

Not collected by pytest: a type-checking test.
"""

from __future__ import annotations

from rembg_async import AsyncRembg, BudgetExhaustedError, Limiter, RateLimitState
from rembg_async.redis import BudgetUnavailableError, RedisLimiter


async def worker(paths: list[str]) -> int:
    """A worker sharing its key's limits through Redis."""
    async with (
        RedisLimiter.from_url(
            "redis://cache:6379/0", max_concurrency=64, max_credits=50_000, namespace="2026-12"
        ) as limiter,
        AsyncRembg(limiter=limiter) as client,
    ):
        shared: Limiter = client.limiter
        state: RateLimitState = client.rate_limit
        connected: bool = limiter.connected
        made = 0
        async with client.remove_many(paths) as run:
            async for item in run:
                made += item.ok
        stopped = run.stopped
        if isinstance(stopped, BudgetUnavailableError):
            spent: int = stopped.max_credits
            del spent
        elif isinstance(stopped, BudgetExhaustedError):
            pass
        del shared, state, connected
        return made

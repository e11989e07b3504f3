"""Limits shared by a fleet of processes through Redis: see `rembg_async.redis`."""

from ._limiter import BudgetUnavailableError, RedisLimiter

__all__ = ["BudgetUnavailableError", "RedisLimiter"]

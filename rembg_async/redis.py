"""One rate limit, hold-off, stop and credit budget for every process that uses one API key,
shared through Redis or Valkey (``pip install 'rembg-async[redis]'``).

```python
from rembg_async import AsyncRembg
from rembg_async.redis import RedisLimiter

limiter = RedisLimiter.from_url("redis://cache:6379/0", max_concurrency=64, max_credits=50_000)
async with AsyncRembg(limiter=limiter) as client:   # in every replica and worker
    ...
```
"""

from ._extras import require_extra

require_extra("redis", "redis.asyncio", feature="rembg_async.redis")

from ._fleet import BudgetUnavailableError, RedisLimiter  # noqa: E402

__all__ = ["BudgetUnavailableError", "RedisLimiter"]

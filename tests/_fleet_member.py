"""A fleet member in its own process, for the Redis tests: ``count`` permits from a
`RedisLimiter`, each released with a 200; prints the Redis times they were given to start at.

``python tests/_fleet_member.py URL NAMESPACE COUNT [RPS]``
"""

from __future__ import annotations

import asyncio
import json
import sys

from rembg_async._limits import Answer
from rembg_async.redis import RedisLimiter


async def main(url: str, namespace: str, count: int, rate: float | None) -> None:
    """Acquire and release ``count`` times, four at once."""
    starts: list[float] = []
    async with RedisLimiter.from_url(url, namespace=namespace, requests_per_second=rate) as limiter:

        async def one() -> None:
            permit = await limiter.acquire()
            starts.append(permit.started_at)
            await limiter.release(permit, Answer(status=200))

        for first in range(0, count, 4):
            await asyncio.gather(*(one() for _ in range(min(4, count - first))))
    print(json.dumps(starts))


if __name__ == "__main__":
    rate = float(sys.argv[4]) if len(sys.argv) > 4 else None
    asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), rate))

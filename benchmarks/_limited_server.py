"""The local server with a short-term limit of R per second, counting what it answers.

Run by ``rate_limited.py`` in a child process: prints its URL, then serves until killed.
``GET /bench/stats`` gives the answers by status and the moments (seconds since the first
/rmbg request) of the admitted and the refused (429) ones; ``--double-at T`` doubles the limit
T seconds after the first request, as after a plan upgrade.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from collections import Counter

from aiohttp import web

from rembg_async.server import Account, RateLimits, ServerConfig, create_app
from rembg_async.server._state import STATE


def build(limit: int, key: str, double_at: float | None) -> web.Application:
    """The app, with a counting middleware and the stats route."""
    config = ServerConfig(
        accounts=[Account(api_key=key, credits=10_000_000)],
        rate_limits=RateLimits(short_term_requests=limit, short_term_window=1.0, daily_anonymous=0),
        engine="classic",  # the model cannot serve 100 requests/s on 2 cores: the limit must bind
    )
    app = create_app(config)
    statuses: Counter[int] = Counter()
    admitted: list[float] = []
    refused: list[float] = []
    first: list[float] = []

    @web.middleware
    async def count(request: web.Request, handler) -> web.StreamResponse:  # type: ignore[no-untyped-def]
        if request.path != "/rmbg":
            return await handler(request)
        if not first:
            first.append(time.monotonic())
            if double_at is not None:
                asyncio.get_running_loop().call_later(double_at, _double, app)
        response = await handler(request)
        statuses[response.status] += 1
        if response.status == 200:
            admitted.append(time.monotonic() - first[0])
        elif response.status == 429:
            refused.append(time.monotonic() - first[0])
        return response

    async def stats(request: web.Request) -> web.Response:
        return web.json_response(
            {"statuses": dict(statuses), "admitted": admitted, "refused": refused}
        )

    app.middlewares.insert(0, count)
    app.router.add_get("/bench/stats", stats)
    return app


def _double(app: web.Application) -> None:
    limiter = app[STATE].short_term
    limiter.limit = 2 * limiter.limit


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--limit", type=int, required=True)
    parser.add_argument("--key", required=True)
    parser.add_argument("--double-at", type=float)
    args = parser.parse_args()
    runner = web.AppRunner(build(args.limit, args.key, args.double_at), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"http://127.0.0.1:{port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main())

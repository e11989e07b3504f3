"""One worker of a fleet that shares an API key's limits through Redis.

Run as many as you like, on any machine, all with the same ``--redis``: together they keep to
the API's rate limit (learned by any of them, or ``--rps``), hold off when one is told to,
stop when the key is refused, and never spend past ``--max-credits`` between them.

    python examples/fleet_worker.py --redis redis://cache:6379/0 --max-credits 1000 photos/*.jpg

Needs ``pip install 'rembg-async[redis]'``. The key comes from ``REMBG_API_KEY`` (or
``--api-key``), the API from ``--base-url`` (default: the hosted one). At the end it prints
one JSON line: images made, failures, why it stopped, inputs not started, 429s seen.
``--crash-after N`` (for tests) kills the worker mid-request once N uploads have gone out.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from typing import Any

from rembg_async import AsyncRembg, BatchRun, ProgressEvent
from rembg_async.redis import RedisLimiter


def arguments() -> argparse.Namespace:
    """The command line."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("inputs", nargs="+", help="images to remove the background from")
    parser.add_argument("--redis", required=True, help="redis://host:port/db shared by the fleet")
    parser.add_argument("--base-url", help="the API (default: the hosted one)")
    parser.add_argument("--api-key", help="default: $REMBG_API_KEY")
    parser.add_argument("--namespace", default="", help="keeps this fleet apart from others")
    parser.add_argument("--rps", type=float, help="fixed requests/s for the fleet (default: learn)")
    parser.add_argument("--max-concurrency", type=int, help="requests in flight, fleet-wide")
    parser.add_argument("--max-credits", type=int, help="credits the fleet may spend, in all")
    parser.add_argument("--lease", type=float, default=30.0, help="seconds a dead worker holds")
    parser.add_argument("--concurrency", type=int, default=8, help="images at once, here")
    parser.add_argument("--crash-after", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def crash_after(uploads: int | None) -> Any:
    """An item-progress callback that kills this process mid-request after ``uploads``."""
    done = 0

    def watch(index: int, value: Any, event: ProgressEvent) -> None:
        nonlocal done
        if uploads is not None and event.upload and event.progress == 1.0:
            done += 1
            if done >= uploads:
                os.kill(os.getpid(), signal.SIGKILL)

    return watch


async def report(run: BatchRun, made: int, failed: list[str], client: AsyncRembg) -> None:
    """The worker's JSON line."""
    state = client.rate_limit
    line = {
        "made": made,
        "failed": failed,
        "stopped": type(run.stopped).__name__ if run.stopped is not None else None,
        "remaining": len([value async for value in run.remaining]),
        "answered": state.answered,
        "throttled": state.throttled,
        "connected": getattr(client.limiter, "connected", None),
    }
    print(json.dumps(line), flush=True)


async def main() -> None:
    """Remove the backgrounds of the inputs, within the fleet's limits."""
    args = arguments()
    async with (
        RedisLimiter.from_url(
            args.redis,
            namespace=args.namespace,
            requests_per_second=args.rps,
            max_concurrency=args.max_concurrency,
            max_credits=args.max_credits,
            lease=args.lease,
        ) as limiter,
        AsyncRembg(args.api_key, base_url=args.base_url, limiter=limiter) as client,
    ):
        made, failed = 0, []
        async with client.remove_many(
            args.inputs,
            concurrency=args.concurrency,
            on_item_progress=crash_after(args.crash_after),
        ) as run:
            async for item in run:
                if item.result is not None:
                    made += 1
                    await item.result.cleanup()
                else:
                    failed.append(f"{item.input}: {item.error}")
        await report(run, made, failed, client)


if __name__ == "__main__":
    if sys.platform != "win32":
        signal.signal(signal.SIGTERM, signal.default_int_handler)
    asyncio.run(main())

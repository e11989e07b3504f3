"""One batch through the library with default settings, in its own process.

Run by ``rate_limited.py`` with ``PYTHONPATH`` pointing at the code to measure (today's or the
branch's). Prints one JSON line: made, failed, wall seconds, and the client's own 429 count
when it keeps one.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path

from rembg_async import AsyncRembg


async def main(url: str, key: str, folder: Path, out: Path) -> None:
    paths = sorted(folder.iterdir())
    made = failed = 0
    started = time.perf_counter()
    async with (
        AsyncRembg(key, base_url=url) as client,
        client.remove_many(paths, output_dir=out) as run,
    ):
        async for item in run:
            made += item.ok
            failed += not item.ok
    wall = time.perf_counter() - started
    state = getattr(client, "rate_limit", None)
    print(json.dumps({"made": made, "failed": failed, "wall": wall, "state": repr(state)}))


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], Path(sys.argv[3]), Path(sys.argv[4])))

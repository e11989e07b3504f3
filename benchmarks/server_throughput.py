"""Requests per second of the local server's /rmbg on a 1024×768 JPEG at concurrency 8.

Run: ``python benchmarks/server_throughput.py [--requests 200] [--concurrency 8]``
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from pathlib import Path

import aiohttp
from _common import BENCH_KEY, machine, server_process
from PIL import Image

IMAGE = Path(__file__).parent.parent / "examples" / "images" / "mug.jpg"


def workload() -> bytes:
    """The example mug photo at 1024×768, as a JPEG."""
    buffer = io.BytesIO()
    Image.open(IMAGE).resize((1024, 768)).save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


async def one_request(session: aiohttp.ClientSession, url: str, image: bytes) -> float:
    """Send one image; return the seconds it took."""
    form = aiohttp.FormData()
    form.add_field("image", image, filename="mug.jpg", content_type="image/jpeg")
    started = time.perf_counter()
    async with session.post(f"{url}/rmbg", data=form, headers={"x-api-key": BENCH_KEY}) as response:
        await response.read()
        response.raise_for_status()
    return time.perf_counter() - started


async def run(url: str, image: bytes, requests: int, concurrency: int) -> tuple[float, list[float]]:
    """Send ``requests`` images, ``concurrency`` at a time; return wall seconds and latencies."""
    gate = asyncio.Semaphore(concurrency)

    async def bounded() -> float:
        async with gate:
            return await one_request(session, url, image)

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(
            *(one_request(session, url, image) for _ in range(concurrency))
        )  # warm-up
        started = time.perf_counter()
        latencies = await asyncio.gather(*(bounded() for _ in range(requests)))
        return time.perf_counter() - started, list(latencies)


def main() -> None:
    """Measure and print one Markdown table row."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=8)
    args = parser.parse_args()
    image = workload()
    with server_process() as server:
        wall, latencies = asyncio.run(run(server.url, image, args.requests, args.concurrency))
        peak = server.peak_rss_mib()
    quantiles = statistics.quantiles(latencies, n=20)
    print(f"machine: {machine()}")
    print("| requests | concurrency | req/s | p50 ms | p95 ms | server peak RSS MiB |")
    print("|---|---|---|---|---|---|")
    print(
        f"| {args.requests} | {args.concurrency} | {args.requests / wall:.1f} | "
        f"{statistics.median(latencies) * 1000:.0f} | {quantiles[18] * 1000:.0f} | {peak:.0f} |"
    )


if __name__ == "__main__":
    main()

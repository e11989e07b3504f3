"""One benchmark run of one client, in a process of its own (so its CPU and RSS are its own).

``python benchmarks/_clients.py CLIENT URL INPUT OUTDIR REQUESTS CONCURRENCY`` sends INPUT
REQUESTS times, CONCURRENCY at a time, writing each answer under OUTDIR, and prints JSON: wall
and CPU seconds, and the RSS before the run and at its peak (MiB, Linux). CLIENT is one of
:data:`CLIENTS`. Every library is imported before measuring, so only the work counts.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import aiofiles
import aiohttp
import httpx
import requests
import uvloop
from _common import BENCH_KEY

from rembg_async import AsyncRembg, ProgressEvent

CHUNK = 256 * 1024
KEY = {"x-api-key": BENCH_KEY}


def status_mib(field: str) -> float:
    """A memory figure of this process (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


async def gather_bounded(
    count: int, concurrency: int, one: Callable[[int], Awaitable[None]]
) -> None:
    """``one(0) … one(count - 1)`` by ``concurrency`` workers (no task per request up front,
    so the harness itself does not grow with the count)."""
    numbers = iter(range(count))

    async def worker() -> None:
        for number in numbers:
            await one(number)

    await asyncio.gather(*(worker() for _ in range(concurrency)))


async def rembg_async_run(
    url: str, source: Path, out: Path, count: int, concurrency: int, callbacks: bool
) -> None:
    """rembg_async, each answer to its own file, progress callbacks off or on."""
    moved = 0

    def count_bytes(event: ProgressEvent) -> None:
        nonlocal moved
        moved += event.bytes

    callback = count_bytes if callbacks else None
    async with AsyncRembg(BENCH_KEY, base_url=url) as client:

        async def one(number: int) -> None:
            await client.remove(
                source,
                output_path=out / f"{number}.webp",
                on_upload_progress=callback,
                on_download_progress=callback,
            )

        await gather_bounded(count, concurrency, one)


async def raw_aiohttp_run(url: str, source: Path, out: Path, count: int, concurrency: int) -> None:
    """aiohttp streamed by hand: the file as a multipart part, the answer in chunks to a file."""
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(number: int) -> None:
            with aiohttp.MultipartWriter("form-data") as form, source.open("rb") as file:
                part = form.append(file, {"Content-Type": "image/png"})
                part.set_content_disposition("form-data", name="image", filename="in.png")
                async with session.post(f"{url}/rmbg", data=form, headers=KEY) as response:
                    response.raise_for_status()
                    async with aiofiles.open(out / f"{number}.png", "wb") as target:
                        async for chunk in response.content.iter_chunked(CHUNK):
                            await target.write(chunk)

        await gather_bounded(count, concurrency, one)


async def httpx_run(url: str, source: Path, out: Path, count: int, concurrency: int) -> None:
    """httpx.AsyncClient, files= and .content, as its documentation shows."""
    limits = httpx.Limits(max_connections=concurrency)
    async with httpx.AsyncClient(timeout=None, limits=limits) as client:

        async def one(number: int) -> None:
            with source.open("rb") as file:
                response = await client.post(
                    f"{url}/rmbg", files={"image": ("in.png", file, "image/png")}, headers=KEY
                )
            response.raise_for_status()
            (out / f"{number}.png").write_bytes(response.content)

        await gather_bounded(count, concurrency, one)


def requests_run(url: str, source: Path, out: Path, count: int, concurrency: int) -> None:
    """requests in a thread pool, as the vendor's Python example does each call."""

    def one(number: int) -> None:
        with source.open("rb") as file:
            response = requests.post(f"{url}/rmbg", files={"image": file}, headers=KEY, timeout=600)
        response.raise_for_status()
        (out / f"{number}.png").write_bytes(response.content)

    with ThreadPoolExecutor(max_workers=concurrency) as pool:
        for _ in pool.map(one, range(count)):
            pass


Run = Callable[[str, Path, Path, int, int], "Awaitable[None] | None"]
CLIENTS: dict[str, Run] = {
    "rembg_async": lambda *a: rembg_async_run(*a, callbacks=False),
    "rembg_async + progress": lambda *a: rembg_async_run(*a, callbacks=True),
    "rembg_async on uvloop": lambda *a: rembg_async_run(*a, callbacks=False),
    "raw aiohttp": raw_aiohttp_run,
    "httpx": httpx_run,
    "requests (threads)": requests_run,
}


def main() -> None:
    """Run one client once and report."""
    name, url, source, out, count, concurrency = sys.argv[1:7]
    run = CLIENTS[name]
    Path("/proc/self/clear_refs").write_text("5")  # the peak counts from here (Linux)
    before = status_mib("VmRSS")
    started, cpu = time.perf_counter(), time.process_time()
    outcome = run(url, Path(source), Path(out), int(count), int(concurrency))
    if outcome is not None and name.endswith("on uvloop"):
        uvloop.run(outcome)  # type: ignore[arg-type]
    elif outcome is not None:
        asyncio.run(outcome)  # type: ignore[arg-type]
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    print(json.dumps({"wall": wall, "cpu": cpu, "before": before, "peak": status_mib("VmHWM")}))


if __name__ == "__main__":
    main()

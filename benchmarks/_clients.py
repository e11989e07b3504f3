"""One upload-and-download with each client, run in a process of its own for a clean RSS.

``python benchmarks/_clients.py CLIENT URL INPUT OUTPUT`` prints JSON: the seconds, the RSS
before the transfer and the peak RSS (MiB). CLIENT is one of :data:`CLIENTS`.
"""

from __future__ import annotations

import asyncio
import json
import sys
import time
from collections.abc import Callable, Coroutine
from pathlib import Path
from typing import Any

CHUNK = 256 * 1024


def status_mib(field: str) -> float:
    """A memory figure of this process (VmRSS, VmHWM) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise LookupError(field)


async def rembg_async_client(url: str, source: Path, target: Path, callbacks: bool) -> None:
    """rembg_async, progress callbacks off or on."""
    from rembg_async import AsyncRembg, ProgressEvent

    events = 0

    def count(event: ProgressEvent) -> None:
        nonlocal events
        events += 1

    callback = count if callbacks else None
    async with AsyncRembg("bench", base_url=url, progress_interval=0) as client:
        await client.remove(
            source, output_path=target, on_upload_progress=callback, on_download_progress=callback
        )


async def raw_aiohttp(url: str, source: Path, target: Path) -> None:
    """aiohttp streamed by hand: the floor."""
    import aiofiles
    import aiohttp

    async with aiohttp.ClientSession() as session:
        with aiohttp.MultipartWriter("form-data") as form, source.open("rb") as file:
            part = form.append(file, {"Content-Type": "image/png"})
            part.set_content_disposition("form-data", name="image", filename="in.png")
            async with (
                session.post(f"{url}/rmbg", data=form, headers={"x-api-key": "bench"}) as response,
                aiofiles.open(target, "wb") as out,
            ):
                async for chunk in response.content.iter_chunked(CHUNK):
                    await out.write(chunk)


async def httpx_client(url: str, source: Path, target: Path) -> None:
    """httpx.AsyncClient with files= (it reads the file into the request) and .content."""
    import httpx

    async with httpx.AsyncClient(timeout=None) as client:
        with source.open("rb") as file:
            response = await client.post(
                f"{url}/rmbg", files={"image": ("in.png", file, "image/png")}
            )
        target.write_bytes(response.content)


def requests_client(url: str, source: Path, target: Path) -> None:
    """requests, as the vendor's Python example does it."""
    import requests

    with source.open("rb") as file:
        response = requests.post(
            f"{url}/rmbg", files={"image": file}, headers={"x-api-key": "bench"}, timeout=600
        )
    target.write_bytes(response.content)


CLIENTS: dict[str, Callable[[str, Path, Path], Coroutine[Any, Any, None] | None]] = {
    "rembg_async": lambda url, s, t: rembg_async_client(url, s, t, callbacks=False),
    "rembg_async+progress": lambda url, s, t: rembg_async_client(url, s, t, callbacks=True),
    "raw aiohttp": raw_aiohttp,
    "httpx": httpx_client,
    "requests": requests_client,
}


def main() -> None:
    """Run one client once and report."""
    name, url, source, target = sys.argv[1:5]
    run = CLIENTS[name]
    for module in ("aiohttp", "aiofiles", "rembg_async", "httpx", "requests"):
        __import__(module)  # every library loaded up front: only the transfer is measured
    Path("/proc/self/clear_refs").write_text("5")  # the peak counts from here (Linux)
    before = status_mib("VmRSS")
    started, cpu = time.perf_counter(), time.process_time()
    outcome = run(url, Path(source), Path(target))
    if outcome is not None:
        asyncio.run(outcome)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    peak = status_mib("VmHWM")
    print(json.dumps({"seconds": seconds, "cpu": cpu, "before": before, "peak": peak}))


if __name__ == "__main__":
    main()

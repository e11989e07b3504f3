"""Peak memory of the local server while it receives a 50 MB upload.

Three uploads, each measured from a reset peak: 50 MB that passes the size check but is no
decodable image (the cost of receiving it), 55 MB refused as too large (counted, never kept),
and a real ~50 MB noise PNG taken through the whole pipeline.

Run: ``python benchmarks/server_upload_memory.py``
"""

from __future__ import annotations

import asyncio
import io
import time

import aiohttp
import numpy as np
from _common import BENCH_KEY, ServerProcess, machine, server_process
from PIL import Image

MIB = 1024 * 1024


def undecodable(size: int) -> bytes:
    """A PNG signature followed by zeros: passes the size check, fails to decode."""
    return b"\x89PNG\r\n\x1a\n" + bytes(size - 8)


def noise_png() -> bytes:
    """Random pixels, which PNG cannot compress: about 48 MiB at 4096×4096."""
    pixels = np.random.default_rng(0).integers(0, 256, (4096, 4096, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG", compress_level=1)
    return buffer.getvalue()


async def upload(server: ServerProcess, content: bytes) -> tuple[int, float, float]:
    """Send ``content`` as the image; return the status, seconds, and peak RSS growth."""
    server.reset_peak()
    baseline = server.rss_mib()
    form = aiohttp.FormData()
    form.add_field("image", io.BytesIO(content), filename="big.png", content_type="image/png")
    started = time.perf_counter()
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{server.url}/rmbg", data=form, headers={"x-api-key": BENCH_KEY}) as response,
    ):
        await response.read()
        status = response.status
    return status, time.perf_counter() - started, server.peak_rss_mib() - baseline


def main() -> None:
    """Measure and print a Markdown table."""
    cases = [
        ("50 MB, received then refused by the decoder", undecodable(50 * MIB)),
        ("55 MB, too large (drained, not kept)", undecodable(55 * MIB)),
        (f"{len(noise_png()) / MIB:.0f} MB noise PNG 4096×4096, full pipeline", noise_png()),
    ]
    print(f"machine: {machine()}")
    print("| upload | status | seconds | server peak RSS growth MiB |")
    print("|---|---|---|---|")
    with server_process() as server:
        for label, content in cases:
            status, seconds, growth = asyncio.run(upload(server, content))
            print(f"| {label} | {status} | {seconds:.2f} | {growth:.0f} |")


if __name__ == "__main__":
    main()

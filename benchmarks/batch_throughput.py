"""Images per second: remove_many against a hand-written asyncio.gather over raw aiohttp.

Same server, same workload: ``--images`` uploads of a small PNG at ``--concurrency``, against
``fast_server.py`` (drains, answers fixed bytes) so the client side is what is measured, and
against the full local server for an end-to-end figure. Each figure is the median of 3 runs,
taken round-robin.

Run: ``python benchmarks/batch_throughput.py``
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from _common import BENCH_KEY, machine, server_process
from PIL import Image

from rembg_async import AsyncRembg

HERE = Path(__file__).parent


def workload(count: int, folder: Path) -> list[Path]:
    """``count`` PNG files of 320×240 from the example mug."""
    buffer = io.BytesIO()
    Image.open(HERE.parent / "examples" / "images" / "mug.jpg").resize((320, 240)).save(
        buffer, "PNG"
    )
    paths = []
    for number in range(count):
        path = folder / f"in-{number:05d}.png"
        path.write_bytes(buffer.getvalue())
        paths.append(path)
    return paths


async def with_remove_many(url: str, paths: list[Path], out: Path, concurrency: int) -> None:
    """rembg_async's batch API."""
    async with (
        AsyncRembg(BENCH_KEY, base_url=url) as client,
        client.remove_many(paths, concurrency=concurrency, output_dir=out) as run,
    ):
        async for item in run:
            assert item.ok, item.error


async def with_raw_gather(url: str, paths: list[Path], out: Path, concurrency: int) -> None:
    """What one writes by hand: a semaphore, gather, aiohttp, files written as they come."""
    gate = asyncio.Semaphore(concurrency)

    async def one(session: aiohttp.ClientSession, path: Path) -> None:
        async with gate:
            with path.open("rb") as file:
                form = aiohttp.FormData()
                form.add_field("image", file, filename=path.name, content_type="image/png")
                async with session.post(
                    f"{url}/rmbg", data=form, headers={"x-api-key": BENCH_KEY}
                ) as response:
                    response.raise_for_status()
                    (out / f"{path.stem}.webp").write_bytes(await response.read())

    async with aiohttp.ClientSession() as session:
        await asyncio.gather(*(one(session, path) for path in paths))


Run = Callable[[str, list[Path], Path, int], Awaitable[None]]


def measure(
    runs: dict[str, Run], url: str, paths: list[Path], concurrency: int
) -> dict[str, float]:
    """Median images per second over 3 runs of each, each into a fresh folder; repetitions go
    round-robin, so a slow spell of the machine (a disk flushing what the last run wrote, say)
    falls on every client alike."""
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(3):
        for name, run in runs.items():
            with tempfile.TemporaryDirectory() as out:
                started = time.perf_counter()
                asyncio.run(run(url, paths, Path(out), concurrency))
                rates[name].append(len(paths) / (time.perf_counter() - started))
    return {name: statistics.median(figures) for name, figures in rates.items()}


def main() -> None:
    """Print one Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    workload_label = f"{args.images} images, concurrency {args.concurrency}"
    print(f"| server | client | images/s ({workload_label}) | ratio |")
    print("|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        paths = workload(args.images, Path(folder))
        fast = subprocess.Popen(
            [sys.executable, str(HERE / "fast_server.py")], stdout=subprocess.PIPE, text=True
        )
        try:
            assert fast.stdout is not None
            url = fast.stdout.readline().strip()
            servers = [("fast (fixed answer)", url)]
            with server_process() as local:
                servers.append(("local (full pipeline)", local.url))
                runs = {"raw aiohttp + gather": with_raw_gather, "remove_many": with_remove_many}
                for label, server_url in servers:
                    rates = measure(runs, server_url, paths, args.concurrency)
                    raw = rates["raw aiohttp + gather"]
                    for name, rate in rates.items():
                        print(f"| {label} | {name} | {rate:.0f} | {rate / raw:.2f} |")
        finally:
            fast.terminate()
            fast.wait()
            if fast.stdout is not None:
                fast.stdout.close()


if __name__ == "__main__":
    main()

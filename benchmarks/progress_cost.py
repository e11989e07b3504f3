"""The cost of progress events: time per chunk with callbacks off, throttled, and on every chunk.

Run: ``python benchmarks/progress_cost.py``
"""

from __future__ import annotations

import asyncio
import time

from _common import machine

from rembg_async import ProgressEvent
from rembg_async._progress import ProgressTracker

CHUNKS = 200_000


async def per_chunk(callback: bool, interval: float) -> tuple[float, int]:
    """Microseconds per chunk, and how many events were emitted."""
    events = 0

    def count(event: ProgressEvent) -> None:
        nonlocal events
        events += 1

    tracker = ProgressTracker(
        count if callback else None, total=None, upload=True, interval=interval
    )
    started = time.perf_counter()
    for _ in range(CHUNKS):
        await tracker.advance(262_144)
    return (time.perf_counter() - started) / CHUNKS * 1e6, events


def main() -> None:
    """Print one Markdown table."""
    print(f"machine: {machine()}")
    print("| callbacks | µs per 256 KiB chunk | events |")
    print("|---|---|---|")
    for label, callback, interval in (
        ("none", False, 0.1),
        ("throttled (every 0.1 s, the default)", True, 0.1),
        ("every chunk (interval 0)", True, 0.0),
    ):
        micros, events = asyncio.run(per_chunk(callback, interval))
        print(f"| {label} | {micros:.2f} | {events} |")


if __name__ == "__main__":
    main()

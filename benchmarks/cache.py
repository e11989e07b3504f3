"""The result cache: a hit's latency and CPU against a miss, and memory over 10,000 hits.

Run: ``python benchmarks/cache.py`` (about a minute; ``--hits N`` for the memory run's length).

A fixed-answer server (``fast_server.py``, in its own process) answers every request, so the
client is what is measured. One client, one call at a time:

- ``no cache``: ``remove()`` of distinct inputs, no cache (the reference);
- ``miss``: the same with a `FolderCache` that does not hold them (digest, lookup, request,
  then the answer stored);
- ``hit``: those inputs again (digest, lookup, the entry verified, the file written; no
  request).

Each call's wall time (median and 90th percentile) and the client process's CPU time per call
(``time.process_time``). Then ``--hits`` hits of one input, after 1,000 to warm up: the
process's peak RSS growth over them (VmHWM reset right before, Linux) and its RSS every tenth
of the way, which stays flat if nothing is kept per call; then as many again under
tracemalloc: what Python holds at the end beyond what it held after the first tenth of them
(what calls leave behind), and its peak.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import tempfile
import time
import tracemalloc
from pathlib import Path

from _common import fast_servers, machine
from PIL import Image

from rembg_async import AsyncRembg, FolderCache

#: The answer's size: a typical cut-out of a product photo.
ANSWER_BYTES = 200 * 1024
#: Distinct inputs timed per mode.
CALLS = 200


def input_image() -> bytes:
    """A 1024×768 JPEG of noise (about 400 KB: it does not compress)."""
    import os

    image = Image.frombytes("RGB", (1024, 768), os.urandom(1024 * 768 * 3))
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


def distinct(image: bytes, count: int, salt: str) -> list[bytes]:
    """``count`` inputs that differ in their bytes (a tail after the JPEG's end), so each has
    its own key."""
    return [image + f"{salt}-{number}".encode() for number in range(count)]


async def timed(client: AsyncRembg, inputs: list[bytes]) -> tuple[list[float], float, int]:
    """Each call's wall time (ms), the CPU time per call (ms), and how many were hits."""
    walls, hits = [], 0
    cpu = time.process_time()
    for data in inputs:
        started = time.perf_counter()
        result = await client.remove(data)
        walls.append((time.perf_counter() - started) * 1000)
        hits += result.cached
        await result.cleanup()
    return walls, (time.process_time() - cpu) / len(inputs) * 1000, hits


def rss_kib(field: str) -> int:
    """This process's VmRSS or VmHWM in KiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise LookupError(field)


async def hit(client: AsyncRembg, data: bytes) -> None:
    """One hit, its file removed."""
    result = await client.remove(data)
    assert result.cached
    await result.cleanup()


async def memory(client: AsyncRembg, data: bytes, hits: int) -> tuple[int, list[int]]:
    """Peak RSS growth (KiB) over ``hits`` hits of ``data``, and the RSS every tenth."""
    for _ in range(1000):  # warm up: the first allocations of every path are not growth
        await hit(client, data)
    Path("/proc/self/clear_refs").write_text("5")  # VmHWM starts again from VmRSS
    start = rss_kib("VmRSS")
    samples = []
    for number in range(hits):
        await hit(client, data)
        if (number + 1) % (hits // 10) == 0:
            samples.append(rss_kib("VmRSS") - start)
    return rss_kib("VmHWM") - start, samples


async def traced(client: AsyncRembg, data: bytes, hits: int) -> tuple[int, int]:
    """What Python holds after ``hits`` more hits beyond what it held after the first tenth
    of them (snapshots compared: what calls leave behind), and the peak (bytes)."""
    tracemalloc.start()
    for number in range(hits):
        if number == hits // 10:
            early = tracemalloc.take_snapshot()
        await hit(client, data)
    late = tracemalloc.take_snapshot()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return sum(stat.size_diff for stat in late.compare_to(early, "filename")), peak


async def run(url: str, hits: int) -> None:
    """Print the tables."""
    image = input_image()
    with tempfile.TemporaryDirectory() as folder:
        async with AsyncRembg("bench", base_url=url) as plain:
            await timed(plain, distinct(image, 20, "warm"))
            rows = {"no cache": await timed(plain, distinct(image, CALLS, "plain"))}
        async with AsyncRembg("bench", base_url=url, cache=FolderCache(folder)) as cached:
            inputs = distinct(image, CALLS, "cached")
            rows["miss"] = await timed(cached, inputs)
            rows["hit"] = await timed(cached, inputs)
            peak, samples = await memory(cached, inputs[0], hits)
            held, traced_peak = await traced(cached, inputs[0], hits)
    print(f"machine: {machine()}")
    print(f"input {len(image) // 1024} KB JPEG, answer {ANSWER_BYTES // 1024} KB; {CALLS} calls")
    print("| call | median ms | p90 ms | CPU ms per call | hits |")
    print("|---|---|---|---|---|")
    for name, (walls, cpu, hit_count) in rows.items():
        p90 = statistics.quantiles(walls, n=10)[-1]
        median = statistics.median(walls)
        print(f"| {name} | {median:.2f} | {p90:.2f} | {cpu:.2f} | {hit_count} |")
    print()
    print(f"{hits} hits of one input: peak RSS growth {peak} KiB; RSS every tenth of the way")
    print("(KiB over the start): " + ", ".join(str(kib) for kib in samples))
    print(
        f"then {hits} more under tracemalloc: held at the end minus held after the first tenth "
        f"{held / 1024:.1f} KiB, peak {traced_peak / 1024:.1f} KiB"
    )


def main() -> None:
    """Parse the arguments, start the fast server, run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--hits", type=int, default=10_000)
    hits = parser.parse_args().hits
    with fast_servers({ANSWER_BYTES}) as urls:
        asyncio.run(run(urls[ANSWER_BYTES], hits))


if __name__ == "__main__":
    main()

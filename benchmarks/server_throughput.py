"""The local server's /rmbg with each engine: images/s, latency, usage answers, peak memory.

For a 1024×768 photo (the shipped coffee photo, cropped to 4:3 and enlarged), at concurrency 1,
4 and 8, each engine (``u2netp`` and ``classic``) in its own server process: images per second
and p50/p95 latency of ``/rmbg``, and, during the concurrency-8 runs, the answer time of
``/api/membership-usage`` asked every 50 ms (goal: under 50 ms while the model is busy). Then
peak server memory with 8 concurrent 4096×3072 photos (the model sees a 320×320 copy; memory
stays bounded by the pool). Medians of ``--repeats`` runs, round-robin over the engines.

Run: ``python benchmarks/server_throughput.py [--repeats 3] [--write]`` (``--write`` puts the
tables in ``benchmarks/RESULTS.md``, between its server-throughput markers).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import statistics
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path

import aiohttp
import attrs
from _common import BENCH_KEY, ServerProcess, machine, server_process
from PIL import Image

HERE = Path(__file__).parent
PHOTO = HERE.parent / "examples" / "images" / "photos" / "coffee.jpg"
ENGINES = ("u2netp", "classic")
CONCURRENCY = (1, 4, 8)
USAGE_GOAL_MS = 50.0
BEGIN, END = "<!-- server_throughput: begin -->", "<!-- server_throughput: end -->"


def photo(size: tuple[int, int]) -> bytes:
    """The coffee photo cropped to 4:3 and resized to ``size``, as a JPEG."""
    with Image.open(PHOTO) as image:
        width, height = image.size
        side = (width - height * 4 // 3) // 2
        cropped = image.crop((side, 0, width - side, height)).resize(size, Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    cropped.save(buffer, "JPEG", quality=90)
    return buffer.getvalue()


@attrs.frozen
class Run:
    """One measured run at one concurrency."""

    rate: float
    latencies: list[float]
    usage: list[float]


async def one_request(session: aiohttp.ClientSession, url: str, image: bytes) -> float:
    """Send one image; return the seconds it took."""
    form = aiohttp.FormData()
    form.add_field("image", image, filename="photo.jpg", content_type="image/jpeg")
    started = time.perf_counter()
    async with session.post(f"{url}/rmbg", data=form, headers={"x-api-key": BENCH_KEY}) as response:
        await response.read()
        response.raise_for_status()
    return time.perf_counter() - started


async def poll_usage(session: aiohttp.ClientSession, url: str, stop: asyncio.Event) -> list[float]:
    """Ask for the usage every 50 ms until ``stop``; return each answer time."""
    times = []
    while not stop.is_set():
        started = time.perf_counter()
        async with session.get(
            f"{url}/api/membership-usage", headers={"x-api-key": BENCH_KEY}
        ) as response:
            await response.read()
            response.raise_for_status()
        times.append(time.perf_counter() - started)
        await asyncio.sleep(0.05)
    return times


async def measure(url: str, image: bytes, requests: int, concurrency: int, usage: bool) -> Run:
    """``requests`` images, ``concurrency`` at a time (after a warm-up round)."""
    gate = asyncio.Semaphore(concurrency)
    stop = asyncio.Event()

    async def bounded() -> float:
        async with gate:
            return await one_request(session, url, image)

    async with aiohttp.ClientSession() as session, aiohttp.ClientSession() as side:
        await asyncio.gather(*(one_request(session, url, image) for _ in range(concurrency)))
        poller = asyncio.ensure_future(poll_usage(side, url, stop) if usage else _nothing())
        started = time.perf_counter()
        latencies = await asyncio.gather(*(bounded() for _ in range(requests)))
        wall = time.perf_counter() - started
        stop.set()
        return Run(requests / wall, list(latencies), await poller)


async def _nothing() -> list[float]:
    return []


async def peak_memory(server: ServerProcess, image: bytes, concurrency: int) -> float:
    """Peak server RSS (MiB) over ``concurrency`` simultaneous uploads of ``image``, twice."""
    async with aiohttp.ClientSession() as session:
        await one_request(session, server.url, image)  # warm-up, then measure from a reset peak
        server.reset_peak()
        for _ in range(2):
            await asyncio.gather(
                *(one_request(session, server.url, image) for _ in range(concurrency))
            )
    return server.peak_rss_mib()


def percentile(values: list[float], share: float) -> float:
    """The ``share`` quantile of ``values`` (nearest rank)."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


@attrs.frozen
class Row:
    """The medians over the repeats for one engine at one concurrency."""

    engine: str
    concurrency: int
    rate: float
    p50: float
    p95: float
    usage_p95: float | None
    usage_max: float | None


def summarise(engine: str, concurrency: int, runs: list[Run]) -> Row:
    """Medians over the runs (usage: over every answer of every run)."""
    usage = [value for run in runs for value in run.usage]
    return Row(
        engine=engine,
        concurrency=concurrency,
        rate=statistics.median(run.rate for run in runs),
        p50=statistics.median(statistics.median(run.latencies) for run in runs),
        p95=statistics.median(percentile(run.latencies, 0.95) for run in runs),
        usage_p95=percentile(usage, 0.95) if usage else None,
        usage_max=max(usage) if usage else None,
    )


def table(rows: list[Row], memory: dict[str, float], repeats: int, requests: int) -> Iterator[str]:
    """The Markdown section for RESULTS.md."""
    ms = 1000.0
    yield "## Local server: /rmbg with each engine (`benchmarks/server_throughput.py`)"
    yield ""
    yield (
        f"Machine: {machine()}. A 1024×768 JPEG photo; {requests} requests per run after a warm-up"
        f" round; median of {repeats} runs, round-robin over the engines; each engine in its own"
        " `rembg-async serve` process with the default pool (one worker per core, one"
        " onnxruntime thread each). Usage: `GET /api/membership-usage` every 50 ms during the"
        " concurrency-8 runs (p95 and max over all of them). Whole-process figures."
    )
    yield ""
    yield "| engine | concurrency | images/s | p50 ms | p95 ms | usage p95 ms | usage max ms |"
    yield "|---|---|---|---|---|---|---|"
    for row in rows:
        usage = (
            f"{row.usage_p95 * ms:.1f} | {row.usage_max * ms:.1f}"
            if row.usage_p95 is not None and row.usage_max is not None
            else "– | –"
        )
        yield (
            f"| {row.engine} | {row.concurrency} | {row.rate:.2f} | {row.p50 * ms:.0f} | "
            f"{row.p95 * ms:.0f} | {usage} |"
        )
    yield ""
    yield "| engine | peak server RSS MiB, 8 concurrent 4096×3072 JPEG photos |"
    yield "|---|---|"
    for engine, mib in memory.items():
        yield f"| {engine} | {mib:.0f} |"
    yield ""
    busy = [row for row in rows if row.engine == "u2netp" and row.usage_max is not None]
    if busy:
        worst = max(row.usage_max or 0.0 for row in busy) * ms
        verdict = "met" if worst < USAGE_GOAL_MS else "**missed**"
        yield f"Goal: usage answered in under {USAGE_GOAL_MS:.0f} ms while the model is busy:"
        yield f"{verdict} (worst answer {worst:.1f} ms)."
        yield ""


def write_results(lines: list[str]) -> None:
    """Put ``lines`` between the markers of RESULTS.md (appended the first time)."""
    path = HERE / "RESULTS.md"
    text = path.read_text()
    section = "\n".join([BEGIN, *lines, END])
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + section + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + section + "\n"
    path.write_text(text)


def main() -> None:
    """Measure both engines round-robin; print (and with --write, save) the tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=24, help="requests per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    image, large = photo((1024, 768)), photo((4096, 3072))
    runs: dict[tuple[str, int], list[Run]] = {}
    with ExitStack() as stack:
        servers = {e: stack.enter_context(server_process("--engine", e)) for e in ENGINES}
        for _ in range(args.repeats):
            for concurrency in CONCURRENCY:
                for engine, server in servers.items():
                    run = asyncio.run(
                        measure(server.url, image, args.requests, concurrency, concurrency == 8)
                    )
                    runs.setdefault((engine, concurrency), []).append(run)
                    print(f"{engine} c={concurrency}: {run.rate:.2f} images/s", flush=True)
        memory = {e: asyncio.run(peak_memory(s, large, 8)) for e, s in servers.items()}
    rows = [summarise(e, c, runs[e, c]) for e in ENGINES for c in CONCURRENCY]
    lines = list(table(rows, memory, args.repeats, args.requests))
    print("\n".join(lines))
    if args.write:
        write_results(lines)


if __name__ == "__main__":
    main()

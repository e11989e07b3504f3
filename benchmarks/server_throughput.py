"""The local server's /rmbg with each engine: images/s, latency, usage answers, peak memory.

For a 1024×768 photo (the shipped coffee photo, cropped to 4:3 and enlarged), at concurrency 1,
4 and 8, each engine (``u2netp`` and ``classic``) in its own server process: images per second
and p50/p95 latency of ``/rmbg``, and, during the concurrency-8 runs, the answer time of
``/api/membership-usage`` asked every 50 ms (goal: under 50 ms while the model is busy). Then
peak server memory with 8 concurrent 4096×3072 photos (the model sees a 320×320 copy; memory
stays bounded by the pool). Medians of ``--repeats`` runs, round-robin over the engines.

Then the same server side by side with danielgatis's rembg (`rembg s`, installed by
`_rembg` in a virtualenv of its own, on our very ``u2netp.onnx``): one shipped photo at a time
on a quiet machine, a 2048×1536 photo four at a time (images/s and peak RSS), the size of the
coffee's PNG cut-out, and the IoU of our masks with rembg's on the three photos.

Run: ``python benchmarks/server_throughput.py [--repeats 3] [--only engines|rembg] [--write]``
(``--write`` puts the tables in ``benchmarks/RESULTS.md``, between their markers).
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
import numpy as np
from _common import BENCH_KEY, ServerProcess, machine, server_process
from _rembg import OUT, REQUIREMENT, rembg_server
from PIL import Image

HERE = Path(__file__).parent
PHOTOS = HERE.parent / "examples" / "images" / "photos"
PHOTO = PHOTOS / "coffee.jpg"
ENGINES = ("u2netp", "classic")
CONCURRENCY = (1, 4, 8)
USAGE_GOAL_MS = 50.0
MARKERS = {
    "engines": ("<!-- server_throughput: begin -->", "<!-- server_throughput: end -->"),
    "rembg": ("<!-- server_vs_rembg: begin -->", "<!-- server_vs_rembg: end -->"),
}


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
        " onnxruntime thread each; every core for a request alone in the pool). Usage:"
        " `GET /api/membership-usage` every 50 ms during the"
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


@attrs.frozen
class Contender:
    """A server to compare: how to ask it for a PNG cut-out (or its mask) of an image."""

    name: str
    server: ServerProcess
    rembg: bool  # danielgatis's `rembg s`, else ours

    async def cut_out(
        self, session: aiohttp.ClientSession, image: bytes, *, mask: bool = False
    ) -> tuple[bytes, float]:
        """The PNG answer for ``image`` and the seconds it took."""
        form = aiohttp.FormData()
        field = "file" if self.rembg else "image"
        form.add_field(field, image, filename="photo.jpg", content_type="image/jpeg")
        if self.rembg:  # its own default model is another: ask for ours, by form field
            url = f"{self.server.url}/api/remove"
            form.add_field("model", "u2netp")
            form.add_field("om", "true" if mask else "false")
        else:
            url = f"{self.server.url}/rmbg"
            form.add_field("format", "png")
            form.add_field("mask", "true" if mask else "false")
        started = time.perf_counter()
        async with session.post(url, data=form, headers={"x-api-key": BENCH_KEY}) as response:
            body = await response.read()
            response.raise_for_status()
        return body, time.perf_counter() - started


@attrs.frozen
class Versus:
    """One contender's figures in one round."""

    idle_ms: float
    rate: float
    peak_mib: float


async def one_round(contender: Contender, small: bytes, large: bytes, requests: int) -> Versus:
    """One photo at a time (median of 8), then ``requests`` large ones 4 at a time."""
    async with aiohttp.ClientSession() as session:
        await contender.cut_out(session, small)
        idle = [(await contender.cut_out(session, small))[1] for _ in range(8)]
        gate = asyncio.Semaphore(4)

        async def bounded() -> None:
            async with gate:
                await contender.cut_out(session, large)

        await asyncio.gather(*(bounded() for _ in range(4)))
        contender.server.reset_peak()
        started = time.perf_counter()
        await asyncio.gather(*(bounded() for _ in range(requests)))
        rate = requests / (time.perf_counter() - started)
    return Versus(statistics.median(idle) * 1000, rate, contender.server.peak_rss_mib())


async def masks_and_png(contender: Contender) -> tuple[dict[str, np.ndarray], int]:
    """Each shipped photo's mask (at rembg's 0.5 threshold) and the coffee's PNG size."""
    masks = {}
    async with aiohttp.ClientSession() as session:
        for path in sorted(PHOTOS.glob("*.jpg")):
            body, _ = await contender.cut_out(session, path.read_bytes(), mask=True)
            masks[path.stem] = np.asarray(Image.open(io.BytesIO(body)).convert("L")) >= 128
        png, _ = await contender.cut_out(session, PHOTO.read_bytes())
    return masks, len(png)


def against_rembg(venv: Path, repeats: int, requests: int) -> list[str]:
    """Our server and `rembg s` on the same weights, round-robin; the section's lines."""
    small, large = PHOTO.read_bytes(), photo((2048, 1536))
    rounds: dict[str, list[Versus]] = {}
    with ExitStack() as stack:
        ours = stack.enter_context(server_process("--engine", "u2netp"))
        theirs = stack.enter_context(rembg_server(venv))
        contenders = [
            Contender("rembg-async serve", ours, rembg=False),
            Contender(f"rembg s ({REQUIREMENT.split('==')[1]})", theirs, rembg=True),
        ]
        for _ in range(repeats):
            for contender in contenders:
                result = asyncio.run(one_round(contender, small, large, requests))
                rounds.setdefault(contender.name, []).append(result)
                print(contender.name, result, flush=True)
        quality = {c.name: asyncio.run(masks_and_png(c)) for c in contenders}
    reference = quality[contenders[1].name][0]
    return list(versus_table(rounds, quality, reference, repeats, requests))


def iou(ours: np.ndarray, theirs: np.ndarray) -> float:
    """Intersection over union of two boolean masks."""
    return float((ours & theirs).sum() / max(1, (ours | theirs).sum()))


def versus_table(
    rounds: dict[str, list[Versus]],
    quality: dict[str, tuple[dict[str, np.ndarray], int]],
    reference: dict[str, np.ndarray],
    repeats: int,
    requests: int,
) -> Iterator[str]:
    """The Markdown section for RESULTS.md."""
    yield "## Local server against rembg on the same weights (`server_throughput.py --only rembg`)"
    yield ""
    yield (
        f"Machine: {machine()}. `rembg s --no-ui` ({REQUIREMENT}, its own virtualenv,"
        " `U2NET_HOME` at our `u2netp.onnx`) against `rembg-async serve --engine u2netp`, PNG"
        " answers from both. Idle: the shipped 600×400 coffee photo, one request at a time"
        f" (median of 8). Load: a 2048×1536 JPEG, {requests} requests 4 at a time after a"
        " warm-up round, and the server's peak RSS during them. Medians of"
        f" {repeats} rounds, round-robin. IoU: masks at 0.5 against rembg's."
    )
    yield ""
    names = sorted(PHOTOS.glob("*.jpg"))
    yield (
        "| server | idle ms | images/s, 4 at once | peak RSS MiB | coffee PNG KB | mask IoU "
        + " / ".join(path.stem for path in names)
        + " |"
    )
    yield "|---|---|---|---|---|---|"
    for name, results in rounds.items():
        masks, png = quality[name]
        ious = " / ".join(f"{iou(masks[p.stem], reference[p.stem]):.4f}" for p in names)
        yield (
            f"| {name} | {statistics.median(r.idle_ms for r in results):.0f} | "
            f"{statistics.median(r.rate for r in results):.2f} | "
            f"{statistics.median(r.peak_mib for r in results):.0f} | {png / 1024:.0f} | {ious} |"
        )
    yield ""


def write_results(lines: list[str], section: str) -> None:
    """Put ``lines`` between the markers of ``section`` in RESULTS.md (appended the first time)."""
    begin, end = MARKERS[section]
    path = HERE / "RESULTS.md"
    text = path.read_text()
    block = "\n".join([begin, *lines, end])
    if begin in text and end in text:
        head, rest = text.split(begin, 1)
        text = head + block + rest.split(end, 1)[1]
    else:
        text = text.rstrip("\n") + "\n\n" + block + "\n"
    path.write_text(text)


def engines(repeats: int, requests: int) -> list[str]:
    """Measure both engines round-robin; the section's lines."""
    image, large = photo((1024, 768)), photo((4096, 3072))
    runs: dict[tuple[str, int], list[Run]] = {}
    with ExitStack() as stack:
        servers = {e: stack.enter_context(server_process("--engine", e)) for e in ENGINES}
        for _ in range(repeats):
            for concurrency in CONCURRENCY:
                for engine, server in servers.items():
                    run = asyncio.run(
                        measure(server.url, image, requests, concurrency, concurrency == 8)
                    )
                    runs.setdefault((engine, concurrency), []).append(run)
                    print(f"{engine} c={concurrency}: {run.rate:.2f} images/s", flush=True)
        memory = {e: asyncio.run(peak_memory(s, large, 8)) for e, s in servers.items()}
    rows = [summarise(e, c, runs[e, c]) for e in ENGINES for c in CONCURRENCY]
    return list(table(rows, memory, repeats, requests))


def main() -> None:
    """Run the chosen sections; print (and with --write, save) their tables."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=24, help="requests per run")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--only", choices=sorted(MARKERS), help="run one section")
    parser.add_argument(
        "--rembg-venv", type=Path, default=OUT / "rembg-venv", help="rembg's virtualenv"
    )
    parser.add_argument("--write", action="store_true", help="update benchmarks/RESULTS.md")
    args = parser.parse_args()
    sections = [args.only] if args.only else sorted(MARKERS)
    for section in sections:
        if section == "engines":
            lines = engines(args.repeats, args.requests)
        else:
            lines = against_rembg(args.rembg_venv, args.repeats, args.requests)
        print("\n".join(lines))
        if args.write:
            write_results(lines, section)


if __name__ == "__main__":
    main()

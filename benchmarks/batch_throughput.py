"""Images per second: remove_many against a hand-written asyncio.gather over raw aiohttp.

Same server, same workload: ``--images`` uploads of a small PNG at ``--concurrency``, against
``fast_server.py`` (drains, answers fixed bytes) so the client side is what is measured, and
against the full local server for an end-to-end figure. Each figure is the median of
``--repeats`` runs, taken round-robin, with the client's CPU time per image (all its threads).

Then whole processes on the fast server: the CLI (``rembg-async remove DIR -o OUT``, plain
output) against a script that runs ``remove_many`` alike, each on asyncio's loop and on uvloop
(``REMBG_ASYNC_LOOP``), start-up included in both.

Run: ``python benchmarks/batch_throughput.py``
"""

from __future__ import annotations

import argparse
import asyncio
import compileall
import io
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import aiohttp
from _common import BENCH_KEY, fast_servers, machine, server_process
from PIL import Image

import rembg_async
from rembg_async import AsyncRembg

HERE = Path(__file__).parent
#: The fixed answer's size.
ANSWER_BYTES = 200 * 1024


def workload(count: int, folder: Path) -> list[Path]:
    """``count`` PNG files of 320×240 from the example mug."""
    buffer = io.BytesIO()
    Image.open(HERE.parent / "examples" / "images" / "mug.jpg").resize((320, 240)).save(
        buffer, "PNG"
    )
    folder.mkdir(parents=True, exist_ok=True)
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
    runs: dict[str, Run], url: str, paths: list[Path], concurrency: int, repeats: int
) -> dict[str, tuple[float, float]]:
    """Median images per second and CPU milliseconds per image over ``repeats`` runs of each,
    each into a fresh folder; repetitions go round-robin, so a slow spell of the machine (a
    disk flushing what the last run wrote, say) falls on every client alike."""
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            with tempfile.TemporaryDirectory() as out:
                started, cpu = time.perf_counter(), time.process_time()
                asyncio.run(run(url, paths, Path(out), concurrency))
                wall, cpu = time.perf_counter() - started, time.process_time() - cpu
                figures[name].append((len(paths) / wall, 1000 * cpu / len(paths)))
    return {name: _medians(values) for name, values in figures.items()}


def _medians(values: list[tuple[float, float]]) -> tuple[float, float]:
    return statistics.median(v[0] for v in values), statistics.median(v[1] for v in values)


SCRIPT = """
import asyncio, sys
from rembg_async import AsyncRembg
from rembg_async._loops import run
async def main(url, key, folder, out, concurrency):
    from pathlib import Path
    inputs = sorted(Path(folder).glob("*.png"))
    async with AsyncRembg(key, base_url=url) as client, client.remove_many(
        inputs, concurrency=concurrency, output_dir=out, root=folder
    ) as batch:
        async for item in batch:
            assert item.ok, item.error
run(main(sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4], int(sys.argv[5])))
"""


def process_commands(url: str, folder: Path, out: Path, concurrency: int) -> dict[str, list[str]]:
    """The whole-process runs: a remove_many script and the CLI."""
    cli = Path(sys.executable).with_name("rembg-async")
    return {
        "remove_many script": [
            sys.executable, "-c", SCRIPT, url, BENCH_KEY, str(folder), str(out), str(concurrency)
        ],
        "CLI": [
            str(cli), "remove", str(folder), "-o", str(out), "--base-url", url,
            "--api-key", BENCH_KEY, "--allow-insecure-http", "--concurrency", str(concurrency),
        ],
    }  # fmt: skip


def measure_processes(
    url: str, folder: Path, count: int, concurrency: int, repeats: int
) -> dict[str, tuple[float, float]]:
    """Median images per second and CPU ms per image of whole processes, round-robin."""
    # Compiled once, as pip installs it: under PYTHONDONTWRITEBYTECODE (set in this machine's
    # sessions) every process would compile rembg_async's modules anew, and the CLI has more.
    compileall.compile_dir(Path(rembg_async.__file__).parent, quiet=1)
    figures: dict[str, list[tuple[float, float]]] = {}
    for _ in range(repeats):
        for loop in ("asyncio", "uvloop"):
            for name in ("remove_many script", "CLI"):
                with tempfile.TemporaryDirectory() as out:
                    command = process_commands(url, folder, Path(out), concurrency)[name]
                    figure = _time_process(command, loop, count)
                figures.setdefault(f"{name} ({loop})", []).append(figure)
    return {name: _medians(values) for name, values in figures.items()}


def _time_process(command: list[str], loop: str, count: int) -> tuple[float, float]:
    """Images per second and CPU ms per image of one run of ``command``."""
    before, started = os.times(), time.perf_counter()
    subprocess.run(
        command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        env={**os.environ, "REMBG_ASYNC_LOOP": loop},
    )  # fmt: skip
    wall, after = time.perf_counter() - started, os.times()
    cpu = after.children_user - before.children_user
    cpu += after.children_system - before.children_system
    return count / wall, 1000 * cpu / count


def print_rows(label: str, figures: dict[str, tuple[float, float]], base: str) -> None:
    """One Markdown row per client, with ratios to ``base``."""
    base_rate, base_cpu = figures[base]
    for name, (rate, cpu) in figures.items():
        print(
            f"| {label} | {name} | {rate:.0f} | {rate / base_rate:.2f} | {cpu:.2f} "
            f"| {cpu / base_cpu:.2f} |"
        )


def main() -> None:
    """Print one Markdown table."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=300)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--process-images", type=int, default=1000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    workload_label = f"{args.images} images, concurrency {args.concurrency}"
    print(f"| server | client | images/s ({workload_label}) | ratio | CPU ms/image | ratio |")
    print("|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as folder:
        paths = workload(args.images, Path(folder))
        with fast_servers({ANSWER_BYTES}) as urls:
            url = urls[ANSWER_BYTES]
            servers = [("fast (fixed answer)", url)]
            with server_process() as local:
                servers.append(("local (full pipeline)", local.url))
                runs = {"raw aiohttp + gather": with_raw_gather, "remove_many": with_remove_many}
                for label, server_url in servers:
                    figures = measure(runs, server_url, paths, args.concurrency, args.repeats)
                    print_rows(label, figures, "raw aiohttp + gather")
            many = workload(args.process_images, Path(folder) / "many")
            print(f"\n| server | whole process | images/s ({args.process_images} images) "
                  "| ratio | CPU ms/image | ratio |")  # fmt: skip
            print("|---|---|---|---|---|---|")
            figures = measure_processes(
                url, Path(folder) / "many", len(many), args.concurrency, args.repeats
            )
            print_rows("fast (fixed answer)", figures, "remove_many script (asyncio)")


if __name__ == "__main__":
    main()

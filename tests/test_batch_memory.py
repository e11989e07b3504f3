"""A batch's memory is flat in its length: nothing is kept per input for the whole run.

`remove_many` over a generator of 50,000 paths, into a mirrored output folder, against a server
that answers at once (a process of its own, on a loopback port, so that only the client's
memory is traced). What a batch must remember of each input lives in the output folders' index
files, or per folder while the batch is in it.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import tracemalloc
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import make_image

from rembg_async import AsyncRembg

INPUTS = 50_000
#: Traced memory is taken after this many items, then at the end.
FIRST = 10_000
#: Inputs per folder: by `FIRST`, the batch has left more folders than it keeps.
PER_FOLDER = 250
#: A fixed answer, at once: the client's work is what is measured.
SERVER = """
import asyncio
from aiohttp import web

ANSWER = b"\\x89PNG\\r\\n\\x1a\\n" + bytes(92)

async def rmbg(request):
    await request.read()
    return web.Response(body=ANSWER, content_type="image/png")

async def main():
    app = web.Application()
    app.router.add_post("/rmbg", rmbg)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    print(f"http://127.0.0.1:{runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
"""


@pytest.fixture(scope="module")
def fast_server() -> Iterator[str]:
    """The URL of a server that drains each upload and answers 100 bytes."""
    server = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None
        yield server.stdout.readline().strip()
    finally:
        server.kill()
        server.wait()
        if server.stdout is not None:
            server.stdout.close()


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`INPUTS` tiny PNG files, `PER_FOLDER` to a folder."""
    root = tmp_path_factory.mktemp("catalogue")
    image = make_image((4, 4))
    for number in range(INPUTS):
        folder = root / f"{number // PER_FOLDER:04d}"
        if number % PER_FOLDER == 0:
            folder.mkdir()
        (folder / f"{number % PER_FOLDER:04d}.png").write_bytes(image)
    return root


def paths(root: Path) -> Iterator[str]:
    """The catalogue's files, folder by folder, as a walk would give them: never a list."""
    for folder in sorted(os.listdir(root)):
        for name in sorted(os.listdir(root / folder)):
            yield os.path.join(root, folder, name)


def traced() -> tuple[int, int]:
    """Bytes and blocks allocated (and not freed) since tracing began."""
    gc.collect()
    stats = tracemalloc.take_snapshot().statistics("filename")
    return sum(stat.size for stat in stats), sum(stat.count for stat in stats)


async def test_memory_is_flat_from_ten_to_fifty_thousand_inputs(
    fast_server: str, catalogue: Path, tmp_path: Path
) -> None:
    """From the 10,000th item to the 50,000th, traced memory grows by under 8 MB and 20,000
    blocks: it grew by ~30 MB and ~100,000 blocks when claims, indexes and handles were kept
    for every input."""
    at: dict[int, tuple[int, int]] = {}
    count = 0
    tracemalloc.start()
    try:
        async with (
            AsyncRembg("key", base_url=fast_server) as client,
            client.remove_many(
                paths(catalogue), concurrency=16, output_dir=tmp_path / "out", root=catalogue
            ) as run,
        ):
            async for item in run:
                assert item.ok, item.error
                count += 1
                if count in (FIRST, INPUTS):
                    at[count] = traced()
    finally:
        tracemalloc.stop()
    assert count == INPUTS
    grown, blocks = (after - before for after, before in zip(at[INPUTS], at[FIRST], strict=True))
    # Bytes alone would not do: a table the interpreter made before tracing began (its
    # interned strings) may be made again, bigger, meanwhile, and only the new one is seen.
    assert grown < 8_000_000, f"{grown / 1e6:.1f} MB, {blocks} blocks"
    assert blocks < 20_000, f"{grown / 1e6:.1f} MB, {blocks} blocks"

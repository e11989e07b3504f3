"""A long-running asyncio worker: paths come in on a queue, one bad item never stops it.

Run: ``python examples/queue_worker.py`` (a producer feeds it the example images, one broken
file, and one missing path, then asks it to stop).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
from pathlib import Path

from rembg_async import AsyncRembg, RembgError, RemoveOptions
from rembg_async.server import Account, LocalServer, ServerConfig

HERE = Path(__file__).parent
STOP = None  # put on the queue to end the worker
log = logging.getLogger("worker")


async def worker(queue: asyncio.Queue[Path | None], client: AsyncRembg, output: Path) -> int:
    """Take paths until STOP; each becomes ``output/<name>.png`` or a logged failure."""
    done = 0
    while (path := await queue.get()) is not STOP:
        try:
            await client.remove(
                path, RemoveOptions(format="png"), output_path=output / f"{path.stem}.png"
            )
        except (RembgError, OSError) as error:  # the item failed; the worker goes on
            log.warning("%s: %s", path.name, error)
        else:
            done += 1
            log.info("%s done", path.name)
        finally:
            queue.task_done()
    return done


async def main(base_url: str) -> None:
    """Feed the worker, stop it, report."""
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(message)s")
    queue: asyncio.Queue[Path | None] = asyncio.Queue(maxsize=16)
    with tempfile.TemporaryDirectory() as scratch:
        broken = Path(scratch) / "broken.png"
        broken.write_bytes(b"not an image")
        output = HERE / "output" / "worker"
        output.mkdir(parents=True, exist_ok=True)
        async with AsyncRembg("demo", base_url=base_url) as client:
            running = asyncio.create_task(worker(queue, client, output))
            for path in [
                *sorted((HERE / "images").glob("*.jpg")),
                broken,
                Path(scratch) / "missing.png",
            ]:
                await queue.put(path)
            await queue.put(STOP)
            print(f"worker made {await running} images")


if __name__ == "__main__":
    with LocalServer(ServerConfig(accounts=[Account(api_key="demo")])) as server:
        asyncio.run(main(server.url))

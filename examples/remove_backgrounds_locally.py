"""Remove the background of every example image through the embedded local server.

No key and no network: the RemBG-compatible server runs in this process, on 127.0.0.1, and
the images go to it over a real socket. Results land in ``examples/output/``.

This is the README's main job until the client library lands; it uses aiohttp directly.
Run: ``python examples/remove_backgrounds_locally.py``
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import aiohttp
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TaskID,
    TextColumn,
    TransferSpeedColumn,
)

from rembg_async.server import Account, LocalServer, ServerConfig

HERE = Path(__file__).parent
IMAGES = sorted((HERE / "images").glob("*.jpg"))
OUTPUT = HERE / "output"
KEY = "local-demo-key"
CHUNK = 64 * 1024


async def remove_background(
    session: aiohttp.ClientSession, url: str, image: Path, progress: Progress, task: TaskID
) -> Path:
    """Upload one image and stream its cut-out to ``OUTPUT``, advancing the task's bar."""
    target = OUTPUT / f"{image.stem}.png"
    with image.open("rb") as file:
        form = aiohttp.FormData()
        form.add_field("image", file, filename=image.name, content_type="image/jpeg")
        form.add_field("format", "png")
        async with session.post(f"{url}/rmbg", data=form, headers={"x-api-key": KEY}) as response:
            response.raise_for_status()
            progress.update(task, total=response.content_length)
            with target.open("wb") as out:
                async for chunk in response.content.iter_chunked(CHUNK):
                    out.write(chunk)
                    progress.advance(task, len(chunk))
    return target


async def main() -> None:
    """Start the server, process every image with a progress bar each, print the results."""
    OUTPUT.mkdir(exist_ok=True)
    columns = (
        TextColumn("{task.description:<12}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with (
        LocalServer(ServerConfig(accounts=[Account(api_key=KEY)])) as server,
        Progress(*columns) as progress,
    ):
        async with aiohttp.ClientSession() as session:
            tasks = {image: progress.add_task(image.name, total=None) for image in IMAGES}
            results = await asyncio.gather(
                *(
                    remove_background(session, server.url, image, progress, task)
                    for image, task in tasks.items()
                )
            )
    for result in results:
        print(f"saved {result.relative_to(HERE.parent)}")


if __name__ == "__main__":
    asyncio.run(main())

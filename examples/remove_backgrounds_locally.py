"""Remove the background of every example image through the embedded local server.

No key and no network: the RemBG-compatible server runs in this process on 127.0.0.1, and
AsyncRembg talks to it over a real socket, with a progress bar for each upload and download.
Results land in ``examples/output/``.

Run: ``python examples/remove_backgrounds_locally.py``
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn

from rembg_async import AsyncRembg, ProgressEvent, RemoveOptions, rich_progress
from rembg_async.server import Account, LocalServer, ServerConfig

HERE = Path(__file__).parent
IMAGES = sorted((HERE / "images").glob("*.jpg"))
OUTPUT = HERE / "output"
KEY = "local-demo-key"


def bar(progress: Progress, label: str) -> Callable[[ProgressEvent], None]:
    """A progress callback that drives a new rich bar."""
    return rich_progress(progress, progress.add_task(label, total=None))


async def remove_all(client: AsyncRembg, progress: Progress) -> list[Path]:
    """Every example image at once; each gets an upload bar and a download bar."""

    async def one(image: Path) -> Path:
        result = await client.remove(
            image,
            RemoveOptions(format="png"),
            output_path=OUTPUT / f"{image.stem}.png",
            on_upload_progress=bar(progress, f"↑ {image.name}"),
            on_download_progress=bar(progress, f"↓ {image.stem}.png"),
        )
        return result.output_image_path

    return await asyncio.gather(*(one(image) for image in IMAGES))


async def main() -> None:
    """Start the local server, remove every background, print where the results are."""
    columns = (
        TextColumn("{task.description:<14}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
    )
    with (
        LocalServer(ServerConfig(accounts=[Account(api_key=KEY)])) as server,
        Progress(*columns) as progress,
    ):
        async with AsyncRembg(KEY, base_url=server.url) as client:
            results = await remove_all(client, progress)
    for result in results:
        print(f"saved {result.relative_to(HERE.parent)}")


if __name__ == "__main__":
    asyncio.run(main())

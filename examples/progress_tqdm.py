"""Upload and download progress bars with tqdm (``pip install tqdm``).

Run: ``python examples/progress_tqdm.py``
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from tqdm import tqdm

from rembg_async import AsyncRembg, tqdm_progress
from rembg_async.server import Account, LocalServer, ServerConfig

IMAGE = Path(__file__).parent / "images" / "bottle.jpg"


async def main(base_url: str) -> None:
    """One removal with two tqdm bars."""
    options = {"unit": "B", "unit_scale": True, "unit_divisor": 1024}
    with tqdm(desc="upload", **options) as up, tqdm(desc="download", **options) as down:  # type: ignore[call-overload]
        async with AsyncRembg("demo", base_url=base_url) as client:
            result = await client.remove(
                IMAGE,
                on_upload_progress=tqdm_progress(up),
                on_download_progress=tqdm_progress(down),
            )
    print(result.output_image_path)
    await result.cleanup()


if __name__ == "__main__":
    with LocalServer(ServerConfig(accounts=[Account(api_key="demo")])) as server:
        asyncio.run(main(server.url))

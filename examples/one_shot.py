"""rembg(): one call, like rembg.js, against a local server started for the occasion.

Against the hosted API, drop ``base_url`` and set ``REMBG_API_KEY`` (or pass ``api_key``).
Run: ``python examples/one_shot.py``
"""

from __future__ import annotations

import asyncio
from pathlib import Path

from rembg_async import ImageFile, rembg
from rembg_async.server import Account, LocalServer, ServerConfig

IMAGE = Path(__file__).parent / "images" / "orange.jpg"


async def main(base_url: str) -> None:
    """Remove one background, print each progress event as rembg.js does, then clean up."""
    result = await rembg(
        api_key="demo",
        input_image=str(IMAGE),
        options={"format": "png", "w": 400},
        on_upload_progress=lambda event: print(event.to_dict()),
        on_download_progress=lambda event: print(event.to_dict()),
        base_url=base_url,
    )
    assert isinstance(result, ImageFile)
    print("background removed and saved under path=", result.output_image_path)
    await result.cleanup()  # remove the temporary file, like rembg.js's cleanup()


if __name__ == "__main__":
    with LocalServer(ServerConfig(accounts=[Account(api_key="demo")])) as server:
        asyncio.run(main(server.url))

"""rembg(): one call, like the official rembg.js client."""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, overload

from ._cache import CacheLike
from ._client import AsyncRembg
from ._inputs import ImageInput
from ._options import Base64Options, ImageFileOptions, RemoveOptions
from ._progress import ProgressCallback
from ._results import Base64Image, ImageFile


# The result's type follows the options, as for AsyncRembg.remove: a Base64Image for a dict
# literal with "returnBase64": True, an ImageFile for other literals and RemoveOptions, and the
# union for a dict whose content is only known at run time.
@overload
async def rembg(
    *,
    api_key: str | None = None,
    input_image: ImageInput,
    options: Base64Options,
    on_upload_progress: ProgressCallback | None = None,
    on_download_progress: ProgressCallback | None = None,
    output_path: None = None,
    base_url: str | None = None,
    cache: CacheLike = None,
) -> Base64Image: ...


@overload
async def rembg(
    *,
    api_key: str | None = None,
    input_image: ImageInput,
    options: RemoveOptions | ImageFileOptions | None = None,
    on_upload_progress: ProgressCallback | None = None,
    on_download_progress: ProgressCallback | None = None,
    output_path: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    cache: CacheLike = None,
) -> ImageFile: ...


@overload
async def rembg(
    *,
    api_key: str | None = None,
    input_image: ImageInput,
    options: Mapping[str, Any],
    on_upload_progress: ProgressCallback | None = None,
    on_download_progress: ProgressCallback | None = None,
    output_path: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    cache: CacheLike = None,
) -> ImageFile | Base64Image: ...


async def rembg(
    *,
    api_key: str | None = None,
    input_image: ImageInput,
    options: RemoveOptions | Mapping[str, Any] | None = None,
    on_upload_progress: ProgressCallback | None = None,
    on_download_progress: ProgressCallback | None = None,
    output_path: str | os.PathLike[str] | None = None,
    base_url: str | None = None,
    cache: CacheLike = None,
) -> ImageFile | Base64Image:
    """Remove a background in one call, with a client made and closed for it.

    ``options`` is a `RemoveOptions` or a dict with rembg.js's names (``format``, ``w``,
    ``h``, ``exact_resize``, ``returnMask``, ``returnBase64``, ``bg_color``, ``angle``,
    ``expand``). The result is an `ImageFile` (``await result.cleanup()`` when done) or,
    with ``returnBase64``, a `Base64Image`. For many images, keep one
    `AsyncRembg` open instead. ``cache`` is as for `AsyncRembg`: a folder, an fsspec URL
    or a `ResultCache` (a hit sends nothing, and says ``cached=True``).
    """
    async with AsyncRembg(api_key, base_url=base_url, cache=cache) as client:
        return await client.remove(
            input_image,
            options,
            output_path=output_path,
            on_upload_progress=on_upload_progress,
            on_download_progress=on_download_progress,
        )

"""Stream inputs and outputs and the sync client as a user types them; ``mypy --strict`` checks.

Not collected by pytest: a type-checking test.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from rembg_async import (
    AsyncRembg,
    BatchItem,
    ImageBytes,
    ImageFile,
    MembershipUsage,
    Rembg,
    StreamedImage,
    SyncImageFile,
    rembg_sync,
)


async def body() -> AsyncIterator[bytes]:
    """An upload arriving in pieces."""
    yield b"..."


async def forward(client: AsyncRembg) -> AsyncIterator[bytes]:
    """A stream in, a stream out."""
    result: ImageFile = await client.remove(body(), size=3, extra_headers={"X-Trace": "1"})
    await result.cleanup()
    small: ImageBytes = await client.remove(b"...", {"format": "png"}, return_bytes=True)
    data: bytes = small.data
    print(len(data), small.request_id, result.request_id)
    async with client.stream(body(), {"format": "png"}) as streamed:
        typed: StreamedImage = streamed
        kind: str = typed.content_type
        size: int | None = typed.size
        request: str | None = typed.request_id
        print(kind, size, request)
        async for chunk in typed.iter_chunks(65536):
            yield chunk


def script() -> None:
    """The sync client."""
    with Rembg(base_url="http://127.0.0.1:7000") as client:
        result: SyncImageFile = client.remove("cat.jpg")
        with result:
            print(result.output_image_path)
        result.cleanup()  # no await: the sync client's files are deleted at once
        items: Iterator[BatchItem] = client.remove_many(["a.png"], concurrency=2)
        print(list(items))
        usage: MembershipUsage = client.membership_usage()
        print(usage)
    print(rembg_sync(input_image=b"...").content_type)

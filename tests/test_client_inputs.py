"""Every kind of input reaches the server named and typed after its real content."""

from __future__ import annotations

import base64
import io
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from conftest import CaptureServer, make_image

from rembg_async import AsyncRembg, InvalidInputError
from rembg_async import _contract as contract

PNG = make_image((40, 30), "PNG")
JPEG = make_image((40, 30), "JPEG")


def as_path(tmp_path: Path, name: str, data: bytes) -> Path:
    """``data`` written to ``tmp_path / name``."""
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("make_input", "filename"),
    [
        pytest.param(lambda tmp: str(as_path(tmp, "cat.png", PNG)), "cat.png", id="str-path"),
        pytest.param(lambda tmp: as_path(tmp, "cat.png", PNG), "cat.png", id="pathlike"),
        pytest.param(lambda tmp: as_path(tmp, "cat", PNG), "cat.png", id="path-without-extension"),
        pytest.param(
            lambda tmp: as_path(tmp, "cat.jpg", PNG), "cat.png", id="path-with-wrong-extension"
        ),
        pytest.param(lambda tmp: PNG, "image.png", id="bytes"),
        pytest.param(lambda tmp: bytearray(PNG), "image.png", id="bytearray"),
        pytest.param(lambda tmp: memoryview(PNG), "image.png", id="memoryview"),
        pytest.param(
            lambda tmp: {"base64": base64.b64encode(PNG).decode()}, "image.png", id="base64"
        ),
        pytest.param(
            lambda tmp: {"base64": "data:image/png;base64," + base64.b64encode(PNG).decode()},
            "image.png",
            id="base64-data-url",
        ),
        pytest.param(lambda tmp: io.BytesIO(PNG), "image.png", id="bytesio"),
        pytest.param(
            lambda tmp: as_path(tmp, "dog.png", PNG).open("rb"), "dog.png", id="open-file"
        ),
    ],
)
async def test_input_kinds(
    capture_server: CaptureServer, tmp_path: Path, make_input: Any, filename: str
) -> None:
    """Each input kind sends the image's exact bytes, named and typed by its content."""
    image = make_input(tmp_path)
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        result = await client.remove(image)
        await result.cleanup()
    if hasattr(image, "close"):
        image.close()
    [request] = capture_server.received
    assert request.parts["image"] == (filename, "image/png", PNG)


async def test_jpeg_content_is_sent_as_jpeg(capture_server: CaptureServer) -> None:
    """A JPEG is sent as image/jpeg with a .jpg name, whatever it was called."""
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        await (await client.remove(JPEG)).cleanup()
    assert capture_server.received[0].parts["image"][:2] == ("image.jpg", "image/jpeg")


async def test_file_object_is_read_from_its_position_each_time(
    capture_server: CaptureServer,
) -> None:
    """A file object positioned after a prefix sends from there, and can be sent again."""
    stream = io.BytesIO(b"prefix" + PNG)
    stream.seek(6)
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        for _ in range(2):
            await (await client.remove(stream)).cleanup()
    assert [r.parts["image"][2] for r in capture_server.received] == [PNG, PNG]


async def test_body_has_exact_length_and_only_set_fields(capture_server: CaptureServer) -> None:
    """The upload has a Content-Length (not chunked) and no field left at its default."""
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        await (await client.remove(PNG)).cleanup()
    [request] = capture_server.received
    assert "Content-Length" in request.headers
    assert "Transfer-Encoding" not in request.headers
    assert set(request.parts) == {"image"}


@pytest.mark.parametrize(
    ("image", "message"),
    [
        pytest.param(b"", contract.MSG_EMPTY_FILE, id="empty"),
        pytest.param(b"MZ not an image", contract.MSG_INVALID_SIGNATURE, id="no-image-signature"),
        pytest.param(
            make_image((12000, 1)),
            "Image width (12000px) exceeds the maximum allowed width of 10000px.",
            id="too-wide",
        ),
        pytest.param(
            make_image((1, 15000), "BMP"),
            "Image height (15000px) exceeds the maximum allowed height of 10000px.",
            id="too-tall",
        ),
        pytest.param(
            memoryview(PNG + bytes(int(55.2 * 1024 * 1024) - len(PNG))),
            "File size (55.2 MB) exceeds the maximum allowed size of 50 MB.",
            id="too-large",
        ),
        pytest.param({"base64": "%%%"}, "The 'base64' input is not valid base64.", id="bad-base64"),
    ],
)
async def test_bad_input_is_refused_before_sending(
    capture_server: CaptureServer, image: Any, message: str
) -> None:
    """The server's own message, and not a byte sent."""
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        with pytest.raises(InvalidInputError) as caught:
            await client.remove(image)
    assert str(caught.value) == message
    assert caught.value.details == (("image", message),)
    assert capture_server.received == []


@pytest.mark.parametrize("opener", [Path, lambda path: path.open("rb")], ids=["path", "file"])
async def test_content_decides_not_the_name(
    capture_server: CaptureServer, tmp_path: Path, opener: Any
) -> None:
    """A real JPEG named .gif (or .exe) is sent, named after its content, like any input."""
    for name in ("photo.gif", "setup.exe"):
        image = opener(as_path(tmp_path, name, JPEG))
        async with AsyncRembg("k", base_url=capture_server.url) as client:
            result = await client.remove(image)
        await result.cleanup()
        if not isinstance(image, Path):
            image.close()
    sent = [request.parts["image"][:2] for request in capture_server.received]
    assert sent == [("photo.jpg", "image/jpeg"), ("setup.jpg", "image/jpeg")]


async def test_missing_file_is_file_not_found(
    capture_server: CaptureServer, tmp_path: Path
) -> None:
    """A path that does not exist raises the usual FileNotFoundError."""
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        with pytest.raises(FileNotFoundError):
            await client.remove(tmp_path / "nope.png")


async def test_pipe_is_read_to_its_end(capture_server: CaptureServer, tmp_path: Path) -> None:
    """A named pipe, whose size says 0, is read to its end and sent whole."""
    pipe = tmp_path / "cat.png"
    os.mkfifo(pipe)
    # Daemon: should the client never open the pipe, the feeder must not hang the run.
    feeder = threading.Thread(target=pipe.write_bytes, args=(PNG,), daemon=True)
    feeder.start()
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        await (await client.remove(pipe)).cleanup()
    feeder.join()  # it has written everything once the client has read to the end
    [request] = capture_server.received
    assert request.parts["image"] == ("cat.png", "image/png", PNG)


async def test_endless_device_is_refused(capture_server: CaptureServer) -> None:
    """A device that never ends (/dev/zero) is read no further than the upload limit allows,
    then refused as too large; nothing is sent."""
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        with pytest.raises(InvalidInputError) as caught:
            await client.remove("/dev/zero")
    assert str(caught.value) == contract.file_too_large_message(contract.MAX_UPLOAD_BYTES + 1)
    assert capture_server.received == []


async def test_folder_is_refused_by_its_path(capture_server: CaptureServer, tmp_path: Path) -> None:
    """A folder given as the image raises IsADirectoryError naming it, and nothing is sent."""
    folder = tmp_path / "photos.png"
    folder.mkdir()
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        with pytest.raises(IsADirectoryError, match=r"photos\.png"):
            await client.remove(folder)
    assert capture_server.received == []


async def test_unsupported_input_type(capture_server: CaptureServer) -> None:
    """Something that is no image input is a TypeError naming what is accepted."""
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        with pytest.raises(TypeError, match="must be a path, bytes"):
            await client.remove(42)  # type: ignore[call-overload]


async def test_private_objects_are_refused_by_remove(
    capture_server: CaptureServer, tmp_path: Path
) -> None:
    """The batch's private objects (an opened Source, a KeptTarget) are no input or output of
    the public remove(): each is refused as any unknown type is, and nothing is sent."""
    from rembg_async._download import KeptTarget
    from rembg_async._inputs import open_input

    source = await open_input(PNG)
    kept = KeptTarget(path=tmp_path / "cut.webp", then=lambda: None)
    async with AsyncRembg("k", base_url=capture_server.url) as client:
        with pytest.raises(TypeError, match=r"must be a path, bytes.*not Source"):
            await client.remove(source)  # type: ignore[call-overload]
        with pytest.raises(TypeError, match="KeptTarget"):
            await client.remove(PNG, output_path=kept)  # type: ignore[call-overload]
    assert capture_server.received == []
    assert not kept.path.exists()


def test_nothing_is_left_open(tmp_path: Path) -> None:
    """Reading a path's header closes the file again (no descriptor leak)."""
    before = len(os.listdir("/proc/self/fd"))
    import asyncio

    from rembg_async._inputs import open_input

    for _ in range(20):
        asyncio.run(open_input(as_path(tmp_path, "a.png", PNG)))
    assert len(os.listdir("/proc/self/fd")) <= before + 2

"""Results: temporary files, the user's file, base64; no file left behind on any failure."""

from __future__ import annotations

import asyncio
import base64
import errno
import io
import os
import resource
import stat
import time
from pathlib import Path

import aiohttp
import pytest
from conftest import make_image
from PIL import Image

from rembg_async import APIConnectionError, AsyncRembg, ImageFile, RemoveOptions
from rembg_async.server import FAULT_HEADER, LocalServer


@pytest.mark.parametrize(
    ("format", "extension", "mime"),
    [
        ("webp", ".webp", "image/webp"),
        ("png", ".png", "image/png"),
        ("jpeg", ".jpg", "image/jpeg"),
        ("bmp", ".bmp", "image/bmp"),
    ],
)
async def test_temporary_file(
    api: AsyncRembg, private_tmp: Path, format: str, extension: str, mime: str
) -> None:
    """A temporary result is rembg-….ext of the real format, owner-only, gone after cleanup."""
    result = await api.remove(make_image(), RemoveOptions(format=format))
    path = result.output_image_path
    assert path.parent == private_tmp
    assert path.name.startswith("rembg-")
    assert path.suffix == extension
    assert (result.content_type, result.size, result.temporary) == (mime, path.stat().st_size, True)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    await result.cleanup()
    await result.cleanup()  # twice is fine
    assert list(private_tmp.iterdir()) == []


async def test_async_with_cleans_up(api: AsyncRembg, private_tmp: Path) -> None:
    """Leaving ``async with`` deletes the temporary file."""
    async with await api.remove(make_image()) as result:
        assert result.output_image_path.exists()
    assert list(private_tmp.iterdir()) == []


async def test_forgotten_temporary_file_warns(api: AsyncRembg, private_tmp: Path) -> None:
    """A temporary result dropped without cleanup gives a ResourceWarning."""
    result = await api.remove(make_image())
    path = result.output_image_path
    with pytest.warns(ResourceWarning, match="never cleaned up"):
        del result  # the last reference: CPython collects it here
    path.unlink()


@pytest.mark.parametrize(
    ("size", "format"), [((64, 48), "png"), ((600, 400), "bmp")], ids=["one-piece", "streamed"]
)
async def test_output_path(
    api: AsyncRembg, tmp_path: Path, size: tuple[int, int], format: str
) -> None:
    """output_path writes exactly there (creating folders) and leaves nothing else."""
    target = tmp_path / "out" / "deep" / f"cat.{format}"
    result = await api.remove(make_image(size), RemoveOptions(format=format), output_path=target)
    assert result == ImageFile(
        output_image_path=target, content_type=f"image/{format}", size=target.stat().st_size
    )
    assert list(target.parent.iterdir()) == [target]
    with Image.open(target) as image:
        assert (image.format, image.size) == (format.upper(), size)


@pytest.mark.parametrize("size", [(64, 48), (600, 400)], ids=["one-piece", "streamed"])
@pytest.mark.parametrize("umask", [0o022, 0o077], ids=["umask-022", "umask-077"])
async def test_output_path_gets_the_usual_mode(
    api: AsyncRembg, tmp_path: Path, size: tuple[int, int], umask: int
) -> None:
    """A file at output_path gets the mode open() would give it (0666 less the umask), unlike a
    temporary result, which is its owner's alone."""
    target = tmp_path / "cut.bmp"
    before = os.umask(umask)
    try:
        await api.remove(make_image(size), RemoveOptions(format="bmp"), output_path=target)
    finally:
        os.umask(before)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask


@pytest.mark.parametrize("size", [(200, 200), (600, 400)], ids=["one-piece", "streamed"])
async def test_output_path_is_replaced_whole(
    api: AsyncRembg, tmp_path: Path, size: tuple[int, int]
) -> None:
    """An older file at output_path is replaced by the whole answer, with nothing left beside
    it, whether the answer is saved in one piece (up to 256 KiB) or streamed."""
    target = tmp_path / "new" / "cut.bmp"
    target.parent.mkdir()
    target.write_bytes(b"older")
    result = await api.remove(make_image(size), RemoveOptions(format="bmp"), output_path=target)
    assert result.size == target.stat().st_size > 100_000
    assert list(target.parent.iterdir()) == [target]
    with Image.open(target) as image:
        assert image.size == size


@pytest.mark.parametrize("size", [(200, 200), (600, 400)], ids=["one-piece", "streamed"])
async def test_failed_write_keeps_the_older_file(
    api: AsyncRembg, tmp_path: Path, private_tmp: Path, size: tuple[int, int]
) -> None:
    """A write the system refuses (here the file-size limit, as a full disk would) raises
    OSError and leaves the older file as it was, with no partial file. The limit first cuts a
    write short, then fails the next: a short write taken for a whole one would pass."""
    target = tmp_path / "cut.bmp"
    target.write_bytes(b"older")
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (100_000, hard))  # Python ignores SIGXFSZ
    try:
        with pytest.raises(OSError, match="too large") as caught:
            await api.remove(make_image(size), RemoveOptions(format="bmp"), output_path=target)
        with pytest.raises(OSError, match="too large"):
            await api.remove(make_image(size), RemoveOptions(format="bmp"))
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
    assert caught.value.errno == errno.EFBIG
    assert target.read_bytes() == b"older"
    assert sorted(tmp_path.iterdir()) == sorted([target, private_tmp])
    assert list(private_tmp.iterdir()) == []


async def test_base64_data_url_has_the_real_type(api: AsyncRembg) -> None:
    """return_base64 gives a data URL whose MIME type matches the bytes (unlike rembg.js)."""
    result = await api.remove(make_image(), RemoveOptions(format="jpeg"), return_base64=True)
    prefix, _, data = result.base64_image.partition(",")
    assert prefix == "data:image/jpeg;base64"
    raw = base64.b64decode(data)
    assert len(raw) == result.size
    assert Image.open(io.BytesIO(raw)).format == "JPEG"


async def faulty_client(
    server: LocalServer, fault: str
) -> tuple[AsyncRembg, aiohttp.ClientSession]:
    """A client whose every request asks ``server`` for ``fault``."""
    session = aiohttp.ClientSession(headers={FAULT_HEADER: fault})
    client = AsyncRembg(server.api_key, base_url=server.url, session=session, max_retries=0)
    return client, session


@pytest.mark.parametrize("fault", ["truncate", "drop=download"])
async def test_failed_download_leaves_no_file(
    faulty_server: LocalServer, tmp_path: Path, private_tmp: Path, fault: str
) -> None:
    """A body cut short raises APIConnectionError and leaves no partial or final file."""
    client, session = await faulty_client(faulty_server, fault)
    async with session, client:
        with pytest.raises(APIConnectionError):
            await client.remove(make_image((300, 200)), output_path=tmp_path / "out" / "x.webp")
        with pytest.raises(APIConnectionError):
            await client.remove(make_image((300, 200)))
    out = tmp_path / "out"
    assert not out.exists() or list(out.iterdir()) == []  # not even a folder may be left
    assert list(private_tmp.iterdir()) == []


async def test_cancelled_download_leaves_no_file(
    faulty_server: LocalServer, tmp_path: Path, private_tmp: Path
) -> None:
    """Cancelling mid-download re-raises CancelledError and deletes the partial file."""
    client, session = await faulty_client(faulty_server, "trickle=0.05,chunk=20000")
    async with session, client:
        task = asyncio.create_task(
            client.remove(make_image((600, 400)), RemoveOptions(format="bmp"))  # 720 KB
        )
        for _ in range(400):  # the partial file appears once a first large piece is in
            if list(private_tmp.glob("rembg-*.part")):
                break
            await asyncio.sleep(0.01)
        assert list(private_tmp.glob("rembg-*.part"))  # the download was under way
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert list(private_tmp.iterdir()) == []


async def test_cleanup_completes_even_when_cancelled(api: AsyncRembg, private_tmp: Path) -> None:
    """A task cancelled in the middle of cleanup() still deletes the file.

    The thread pool is kept busy so that the deletion is still queued when the cancel lands:
    a plain run_in_executor would then drop it.
    """
    result = await api.remove(make_image())
    loop = asyncio.get_running_loop()
    busy = [loop.run_in_executor(None, time.sleep, 0.05) for _ in range(64)]
    task = asyncio.create_task(result.cleanup())
    await asyncio.sleep(0)  # let it start, then cancel it at its first suspension
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.gather(*busy)
    assert not result.output_image_path.exists()

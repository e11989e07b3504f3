"""Receiving an answer, rule by rule: the type from the first bytes however they are split,
files written whole or in pieces with the right names and modes, nothing left on failure."""

from __future__ import annotations

import asyncio
import base64
import os
import stat
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import make_image

from rembg_async import APIConnectionError, APIResponseError, AsyncRembg, ProgressEvent, RetryPolicy
from rembg_async import _download as download_module
from rembg_async._download import (
    CHUNK_BYTES,
    PARTIAL_SUFFIX,
    SNIFF_BYTES,
    TEMP_PREFIX,
    KeptTarget,
    _create_partial,
    _forget_partial,
    _Output,
    _TypeSniffer,
    _write_all,
    is_partial_name,
    read_whole,
    real_content_type,
    save_whole,
)

PNG = make_image((8, 8), "PNG")
WEBP = make_image((8, 8), "WEBP")


def test_the_type_waits_for_enough_bytes_however_they_come() -> None:
    """Fed a byte at a time, the type is decided at SNIFF_BYTES, from those bytes only."""
    assert SNIFF_BYTES == 32
    sniffer = _TypeSniffer("application/octet-stream")
    for index in range(SNIFF_BYTES - 1):
        sniffer.feed(WEBP[index : index + 1])
        assert sniffer.content_type is None
    sniffer.feed(WEBP[SNIFF_BYTES - 1 :])
    assert sniffer.content_type == "image/webp"
    assert sniffer.head == WEBP[:SNIFF_BYTES]
    sniffer.feed(b"more")
    assert sniffer.result() == "image/webp"


def test_a_short_body_is_typed_when_it_ends() -> None:
    """Fewer bytes than SNIFF_BYTES: the type is read from what came, at the end."""
    sniffer = _TypeSniffer("image/png")
    sniffer.feed(PNG[:24])
    assert sniffer.content_type is None
    assert sniffer.result() == "image/png"


def test_the_bytes_count_not_the_declared_type() -> None:
    """A wrong Content-Type over a real image is forgiven; no image is an error naming it."""
    assert real_content_type(PNG, "text/plain") == "image/png"
    with pytest.raises(APIResponseError, match=r"no image \(text/html\)"):
        real_content_type(b"<html>", "text/html")


def test_partial_names() -> None:
    """Our partial files are rembg-<random>.part, nothing else."""
    assert is_partial_name(f"{TEMP_PREFIX}0123.part")
    assert not is_partial_name("photo.part")
    assert not is_partial_name(f"{TEMP_PREFIX}0123.png")


def test_a_new_file_gets_a_random_name_and_its_folder(tmp_path: Path) -> None:
    """A partial file is created under a random name, its folder made if missing."""
    folder = tmp_path / "a" / "b"
    handle, path = _create_partial(folder, PARTIAL_SUFFIX, 0o600)
    os.close(handle)
    assert path.parent == folder
    assert is_partial_name(path.name)
    assert len(path.name) == len(TEMP_PREFIX) + 16 + len(PARTIAL_SUFFIX)
    other_handle, other = _create_partial(folder, PARTIAL_SUFFIX, 0o600)
    os.close(other_handle)
    assert other != path


def test_many_pieces_are_written_in_order(tmp_path: Path) -> None:
    """More pieces than one writev takes, empty ones among them: all written, in order."""
    pieces = [bytes([index % 256]) * (index % 3) for index in range(3000)]
    path = tmp_path / "out"
    handle = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        _write_all(handle, pieces)
    finally:
        os.close(handle)
    assert path.read_bytes() == b"".join(pieces)


def test_a_temporary_result_is_its_owners_alone(tmp_path: Path) -> None:
    """Written whole without a target: a new file with the extension, mode 0600."""
    called: list[int] = []
    path = save_whole(tmp_path, [PNG[:10], PNG[10:]], None, "png", lambda: called.append(1))
    assert path.suffix == ".png"
    assert path.name.startswith(TEMP_PREFIX)
    assert path.read_bytes() == PNG
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert called == [1]


def test_a_named_result_replaces_its_target_with_the_usual_mode(tmp_path: Path) -> None:
    """Written whole onto a target: the target replaced, with 0666 less the umask, no leftover."""
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    umask = os.umask(0o022)
    try:
        assert save_whole(tmp_path, [PNG], target, "png") == target
    finally:
        os.umask(umask)
    assert target.read_bytes() == PNG
    assert stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


def test_a_failed_write_leaves_nothing(tmp_path: Path) -> None:
    """A write that fails deletes the new file and keeps the old target."""
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        save_whole(tmp_path, [PNG, 42], target, "png")  # type: ignore[list-item]
    assert target.read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["out.png"]


async def test_a_large_answer_goes_through_a_partial_file(tmp_path: Path) -> None:
    """Early pieces go to a partial file, renamed onto the target (or given the extension)."""
    called: list[Path] = []
    target = tmp_path / "out.png"
    output = _Output(folder=tmp_path, target=target, then=lambda: called.append(target))
    await output.write([b"a" * 10, b"b" * 5])
    assert output.partial is not None
    assert is_partial_name(output.partial.name)
    assert stat.S_IMODE(output.partial.stat().st_mode) == 0o666 & ~current_umask()
    assert await output.finish([b"c"], "png") == target
    assert target.read_bytes() == b"a" * 10 + b"b" * 5 + b"c"
    assert called == [target]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    temporary = _Output(folder=tmp_path / "tmp", target=None)
    await temporary.write([b"x"])
    await temporary.write([b"y"])
    path = await temporary.finish([], "webp")
    assert (path.suffix, path.read_bytes()) == (".webp", b"xy")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_an_answer_in_one_piece_is_written_whole(tmp_path: Path) -> None:
    """Nothing written before the end: finish() writes the file whole, in one go."""
    output = _Output(folder=tmp_path, target=None)
    path = await output.finish([PNG], "png")
    assert output.partial is None
    assert path.read_bytes() == PNG


async def test_an_abandoned_answer_leaves_nothing(tmp_path: Path) -> None:
    """abandon() closes and deletes the partial file; the target is untouched."""
    target = tmp_path / "out.png"
    target.write_bytes(b"old")
    output = _Output(folder=tmp_path, target=target)
    await output.write([b"half"])
    output.abandon()
    output.abandon()  # twice is harmless
    assert output.handle is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.png"]
    assert target.read_bytes() == b"old"


def current_umask() -> int:
    """The process's umask (read by setting it back at once)."""
    umask = os.umask(0)
    os.umask(umask)
    return umask


def open_handles() -> int | None:
    """How many file descriptors this process has open (None where the system does not say)."""
    return len(os.listdir("/proc/self/fd")) if sys.platform == "linux" else None


async def test_every_handle_is_closed(tmp_path: Path) -> None:
    """Written whole, in pieces, or abandoned, or undone after a cancellation: no handle left."""
    before = open_handles()
    await _Output(folder=tmp_path, target=None).finish([PNG], "png")
    pieces = _Output(folder=tmp_path, target=None)
    await pieces.write([b"x"])
    await pieces.finish([b"y"], "png")
    abandoned = _Output(folder=tmp_path, target=None)
    await abandoned.write([b"x"])
    abandoned.abandon()
    created = _create_partial(tmp_path, PARTIAL_SUFFIX, 0o600)
    _forget_partial(created)  # what a cancelled creation undoes
    assert not created[1].exists()
    assert open_handles() == before


def test_a_kept_target_is_no_path() -> None:
    """A KeptTarget (the batch's) is built with keywords and is no path: nothing public takes it."""
    assert not isinstance(KeptTarget(path=Path("a/b.png"), then=lambda: None), os.PathLike)
    with pytest.raises(TypeError, match="positional"):
        KeptTarget(Path("a"), lambda: None)  # type: ignore[misc]


BIG = PNG + bytes(3 * CHUNK_BYTES + 123)  # a PNG by its signature, larger than three chunks


@pytest.fixture
async def big_server() -> AsyncIterator[str]:
    """A server that answers BIG in small pieces; an empty 200 (``X-Empty``), BIG cut short
    (``X-Cut``) or BIG of unannounced length (``X-Chunked``) when asked."""

    async def handler(request: web.Request) -> web.StreamResponse:
        await request.read()
        if "X-Empty" in request.headers:
            return web.Response(body=b"", content_type="image/png")
        response = web.StreamResponse(headers={"Content-Type": "image/png"})
        if "X-Chunked" not in request.headers:
            response.content_length = len(BIG)
        await response.prepare(request)
        for start in range(0, len(BIG), 60_000):
            if "X-Cut" in request.headers and start > 2 * CHUNK_BYTES:
                assert request.transport is not None
                request.transport.close()  # cut short, past the first writes to the file
                return response
            await response.write(BIG[start : start + 60_000])
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_post("/rmbg", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("")).rstrip("/")
    finally:
        await server.close()


async def test_a_large_answer_arrives_whole_every_way(big_server: str, tmp_path: Path) -> None:
    """An answer of several chunks, in small pieces: the same bytes in a temporary file (a .png),
    at a path, as base64 and in memory, with progress up to its size."""
    events: list[ProgressEvent] = []
    async with AsyncRembg("k", base_url=big_server) as client:
        async with await client.remove(PNG, on_download_progress=events.append) as temporary:
            assert temporary.output_image_path.suffix == ".png"
            assert temporary.output_image_path.read_bytes() == BIG
        target = tmp_path / "out.webp"  # the name the default format asks for
        await client.remove(PNG, output_path=target)
        encoded = await client.remove(PNG, return_base64=True)
        in_memory = await client.remove(PNG, return_bytes=True)
    assert temporary.size == len(BIG)
    assert target.read_bytes() == BIG
    assert base64.b64decode(encoded.base64_image.partition(",")[2]) == BIG
    assert encoded.size == len(BIG)
    assert in_memory.data == BIG
    assert sum(event.bytes for event in events) == events[-1].loaded == len(BIG)
    assert [p.name for p in tmp_path.iterdir()] == ["out.webp"]


@pytest.mark.parametrize("kind", ["return_base64", "return_bytes"])
async def test_an_empty_answer_is_an_error_in_memory_too(big_server: str, kind: str) -> None:
    """An empty 200 is an APIResponseError as base64 or bytes, as it is for a file."""
    policy = RetryPolicy(max_retries=0)
    empty = {"X-Empty": "1"}
    async with AsyncRembg("k", base_url=big_server, retry=policy, extra_headers=empty) as client:
        with pytest.raises(APIResponseError, match="empty body"):
            await client.remove(PNG, **{kind: True})  # type: ignore[call-overload]


async def test_a_large_answer_cut_short_leaves_no_file(big_server: str, tmp_path: Path) -> None:
    """A large answer cut short after some writes to the file: the error, and no file left."""
    policy = RetryPolicy(max_retries=0)
    cut = {"X-Cut": "1"}
    async with AsyncRembg("k", base_url=big_server, retry=policy, extra_headers=cut) as client:
        with pytest.raises(APIConnectionError):
            await client.remove(PNG, output_path=tmp_path / "out.webp")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("kind", ["file", "return_base64", "return_bytes"])
async def test_an_answer_of_unknown_length_ends_with_a_final_event(
    big_server: str, kind: str
) -> None:
    """No Content-Length and events far apart: the end of the body still sends its last bytes."""
    events: list[ProgressEvent] = []
    options = {} if kind == "file" else {kind: True}
    chunked = {"X-Chunked": "1"}
    async with AsyncRembg(
        "k", base_url=big_server, extra_headers=chunked, progress_interval=100
    ) as client:
        result = await client.remove(PNG, on_download_progress=events.append, **options)  # type: ignore[call-overload]
        if kind == "file":
            await result.cleanup()
    assert events[-1].total is None
    assert sum(event.bytes for event in events) == events[-1].loaded == len(BIG)


async def test_a_large_answer_is_written_as_it_arrives(big_server: str, tmp_path: Path) -> None:
    """Past two chunks in, a partial file beside the target already holds bytes (not all in RAM)."""
    seen: list[int] = []

    def look(event: ProgressEvent) -> None:
        if event.loaded >= 2 * CHUNK_BYTES and not seen:
            partial = [p for p in tmp_path.iterdir() if is_partial_name(p.name)]
            seen.append(partial[0].stat().st_size if partial else 0)

    async with AsyncRembg("k", base_url=big_server, progress_interval=0) as client:
        await client.remove(PNG, output_path=tmp_path / "out.webp", on_download_progress=look)
    assert seen
    assert seen[0] >= CHUNK_BYTES


@pytest.fixture
async def trickle_url() -> AsyncIterator[str]:
    """A server that answers 100 bytes, three at a time, a little apart."""

    async def handler(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse()
        response.content_length = 100
        await response.prepare(request)
        for start in range(0, 100, 3):
            await response.write(bytes(range(start, min(start + 3, 100))))
            await asyncio.sleep(0.005)
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield str(server.make_url("/"))
    finally:
        await server.close()


async def test_read_whole_stops_at_its_limit(trickle_url: str) -> None:
    """However the body is split, read_whole returns its first ``limit`` bytes, no more."""
    async with aiohttp.ClientSession() as session, session.get(trickle_url) as response:
        assert await read_whole(response, 10) == bytes(range(10))
    async with aiohttp.ClientSession() as session, session.get(trickle_url) as response:
        assert await read_whole(response, 1000) == bytes(range(100))


def test_a_short_write_resumes_where_it_stopped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """writev may take less than it is given (a signal, a full disk): the rest follows, in order."""
    real_writev = os.writev

    def short_writev(handle: int, views: list[memoryview]) -> int:
        return real_writev(handle, [bytes(b"".join(views))[:7]])  # at most 7 bytes a call

    monkeypatch.setattr(os, "writev", short_writev)
    pieces = [b"abc", b"", b"defghijkl", b"m", b"nopqrstuvwxyz" * 3]
    path = tmp_path / "out"
    handle = os.open(path, os.O_WRONLY | os.O_CREAT)
    try:
        _write_all(handle, pieces)
    finally:
        os.close(handle)
    assert path.read_bytes() == b"".join(pieces)


def test_a_folder_made_meanwhile_is_used(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A folder that appears between the failed open and the mkdir (another process) is fine."""
    real_open = os.open
    calls: list[str] = []

    def open_once_missing(path: str, flags: int, mode: int = 0o777) -> int:
        calls.append(str(path))
        if len(calls) == 1:
            raise FileNotFoundError(path)  # the folder was missing then, not any more
        return real_open(path, flags, mode)

    monkeypatch.setattr(os, "open", open_once_missing)
    handle, path = _create_partial(tmp_path, PARTIAL_SUFFIX, 0o600)
    os.close(handle)
    assert path.exists()
    assert len(calls) == 2


def test_a_folder_where_every_name_is_taken_fails(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If every name tried is taken (a hostile folder), creation gives up after 100 tries."""
    tries: list[int] = []

    class SameName:
        def getrandbits(self, bits: int) -> int:
            tries.append(bits)
            return 42

    monkeypatch.setattr(download_module, "_NAMES", SameName())
    (tmp_path / f"{TEMP_PREFIX}{42:016x}{PARTIAL_SUFFIX}").write_bytes(b"")
    with pytest.raises(FileExistsError, match="no free name"):
        _create_partial(tmp_path, PARTIAL_SUFFIX, 0o600)
    assert len(tries) == 100

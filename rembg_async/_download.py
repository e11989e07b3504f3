"""Receiving the image: to a file (written beside its target, renamed into place when whole),
to base64 or to bytes; its real type read from its first bytes. Each thread hop makes as few
system calls as it can: every call releases the GIL, which at 1,000 answers/s costs throughput.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import tempfile
from collections.abc import AsyncIterable, Callable, Sequence
from pathlib import Path
from typing import Final

import aiohttp
import attrs

from ._contract import OUTPUT_FORMATS
from ._exceptions import APIResponseError
from ._files import run_to_completion
from ._imageinfo import extension_for, sniff_kind
from ._progress import ProgressTracker
from ._results import Base64Image, ImageBytes, ImageFile

CHUNK_BYTES: Final = 256 * 1024
#: Enough of the body to tell every image type by its signature (a BMP needs 26 bytes).
SNIFF_BYTES: Final = 32
TEMP_PREFIX: Final = "rembg-"
PARTIAL_SUFFIX: Final = ".part"
#: A new file only (never one that exists, nor through a symbolic link), closed in children.
_CREATE_FLAGS: Final = (
    os.O_WRONLY
    | os.O_CREAT
    | os.O_EXCL
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_CLOEXEC", 0)
    | getattr(os, "O_BINARY", 0)
)
#: Random names of 64 bits do not collide; this bounds the loop should a folder be hostile.
_NAME_ATTEMPTS: Final = 100
# Names need no secrecy (O_EXCL refuses a name that exists, a planted link included), only
# to rarely collide: seeded once, they cost no system call each, unlike ``secrets``.
_NAMES: Final = random.Random(os.urandom(16))
_KINDS: Final = {mime: kind for kind, mime in OUTPUT_FORMATS.items()}
#: The pieces one ``writev`` takes at most (POSIX's IOV_MAX is at least this).
_PIECES_PER_WRITE: Final = 1024


@attrs.define
class _TypeSniffer:
    """The body's type from its first `SNIFF_BYTES`, however the network splits them."""

    declared: str
    head: bytes = b""
    content_type: str | None = None

    def feed(self, chunk: bytes) -> None:
        if self.content_type is None:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
            if len(self.head) >= SNIFF_BYTES:
                self.content_type = real_content_type(self.head, self.declared)

    def result(self) -> str:
        if self.content_type is None:
            self.content_type = real_content_type(self.head, self.declared)
        return self.content_type


def real_content_type(first_bytes: bytes, declared: str) -> str:
    """The MIME type of the body from its signature (a wrong ``Content-Type`` is forgiven);
    an answer that is no image is an error."""
    kind = sniff_kind(first_bytes)
    if kind is None:
        raise APIResponseError(
            f"the server answered 200 with something that is no image ({declared})"
        )
    return OUTPUT_FORMATS[kind]


def body_length(response: aiohttp.ClientResponse) -> int | None:
    """The number of body bytes to expect, if known: none when the body is encoded (gzip)."""
    if response.headers.get("Content-Encoding", "identity").lower() != "identity":
        return None  # Content-Length counts encoded bytes; we count decoded ones
    return response.content_length


async def read_whole(response: aiohttp.ClientResponse, limit: int) -> bytes:
    """The body, up to ``limit`` bytes, however the network split it (``read(n)`` returns the
    first piece that arrived, which can be one byte)."""
    pieces = bytearray()
    while len(pieces) < limit and (piece := await response.content.read(limit - len(pieces))):
        pieces += piece
    return bytes(pieces)


async def _ended(sniffer: _TypeSniffer, size: int, tracker: ProgressTracker) -> str:
    """The body's real type, once it has ended (not empty)."""
    if size == 0:
        raise APIResponseError("the server answered 200 with an empty body")
    content_type = sniffer.result()
    await tracker.finish()
    return content_type


@attrs.frozen(kw_only=True)
class KeptTarget:
    """An output path with a blocking ``then()`` run in the same thread hop once the file is in
    place (a batch notes it in its folder's index there)."""

    path: Path
    then: Callable[[], object]


async def receive_file(
    chunks: AsyncIterable[bytes],
    declared: str,
    tracker: ProgressTracker,
    output_path: Path | None,
    then: Callable[[], object] | None,
    request_id: str | None,
    cached: bool,
) -> ImageFile:
    """The body streamed to ``output_path`` (None: a new temporary file), then ``then()``."""
    folder = output_path.parent if output_path is not None else Path(tempfile.gettempdir())
    output = _Output(folder=folder, target=output_path, then=then)
    sniffer = _TypeSniffer(declared)
    size = 0
    pending: list[bytes] = []  # the network gives small pieces: write them several at a time
    try:
        async for chunk in chunks:
            # Written once more follows: an answer in one piece is saved whole by finish().
            if size - output.written >= CHUNK_BYTES:
                await output.write(pending)
                pending = []
            sniffer.feed(chunk)
            pending.append(chunk)
            size += len(chunk)
            await tracker.advance(len(chunk))
        content_type = await _ended(sniffer, size, tracker)
        kind = _KINDS.get(content_type)
        target = await output.finish(pending, extension_for(kind) if kind is not None else "bin")
    except BaseException:
        output.abandon()
        raise
    return ImageFile(
        output_image_path=target,
        content_type=content_type,
        size=size,
        temporary=output_path is None,
        request_id=request_id,
        cached=cached,
    )


@attrs.define
class _Output:
    """The file being received beside its target: created at the first large piece, or written
    whole in one thread hop when the answer fits in one; each hop has an ``undo`` if cancelled."""

    folder: Path
    target: Path | None
    then: Callable[[], object] | None = None
    handle: int | None = None
    partial: Path | None = None
    written: int = 0

    async def write(self, data: Sequence[bytes]) -> None:
        if self.handle is None:
            mode = _mode_for(self.target)
            created = await run_to_completion(
                _create_partial, self.folder, PARTIAL_SUFFIX, mode, undo=_forget_partial
            )
            self.handle, self.partial = created
        await run_to_completion(_write_all, self.handle, data)
        self.written += sum(len(piece) for piece in data)

    async def finish(self, last: Sequence[bytes], extension: str) -> Path:
        """Write ``last`` and put the file in place; returns where it is."""
        if self.handle is None:
            args = (self.folder, last, self.target, extension, self.then)
            return await run_to_completion(save_whole, *args, undo=_discard)
        if last:
            await self.write(last)
        os.close(self.handle)
        self.handle = None
        assert self.partial is not None
        target = self.target or self.partial.with_suffix(f".{extension}")
        await run_to_completion(
            _put_in_place, self.partial, target, self.then, undo=lambda _: _discard(target)
        )
        return target

    def abandon(self) -> None:
        """Close and delete what was written (a plain call: it must complete when cancelled)."""
        if self.handle is not None:
            os.close(self.handle)
            self.handle = None
        if self.partial is not None:
            _discard(self.partial)


def _put_in_place(partial: Path, target: Path, then: Callable[[], object] | None) -> None:
    os.replace(partial, target)
    if then is not None:
        then()


def save_whole(
    folder: Path,
    data: Sequence[bytes],
    target: Path | None,
    extension: str,
    then: Callable[[], object] | None = None,
) -> Path:
    """Write a whole answer: as a new temporary result, or beside ``target`` and renamed onto it
    (``target`` is never seen half-written, and an older file there survives a failure)."""
    suffix = PARTIAL_SUFFIX if target else f".{extension}"
    handle, written = _create_partial(folder, suffix, _mode_for(target))
    try:
        try:
            _write_all(handle, data)
        finally:
            os.close(handle)
        if target is not None:
            os.replace(written, target)
    except BaseException:
        _discard(written)
        raise
    if then is not None:
        then()
    return target or written


def _mode_for(target: Path | None) -> int:
    """A temporary result is its owner's alone; a file the user named gets ``0o666`` less the
    umask (which ``os.open`` applies), as ``open()`` would give it."""
    return 0o600 if target is None else 0o666


def _create_partial(folder: Path, suffix: str, mode: int) -> tuple[int, Path]:
    """A new file in ``folder`` (made if missing) under a random name."""
    for _ in range(_NAME_ATTEMPTS):
        path = folder / f"{TEMP_PREFIX}{_NAMES.getrandbits(64):016x}{suffix}"
        try:
            return os.open(path, _CREATE_FLAGS, mode), path
        except FileNotFoundError:
            folder.mkdir(parents=True, exist_ok=True)  # once per new folder, not once per file
        except FileExistsError:
            continue
    raise FileExistsError(f"no free name for a new file in {folder}")


def _write_all(handle: int, pieces: Sequence[bytes]) -> None:
    """Write all of ``pieces`` in order, without joining them (a copy): by ``writev`` where
    there is one, which may write less than it is given."""
    views = [memoryview(piece) for piece in pieces if piece]
    while views:
        if hasattr(os, "writev"):
            written = os.writev(handle, views[:_PIECES_PER_WRITE])
        else:  # pragma: no cover  # Windows
            written = os.write(handle, views[0])
        while views and written >= views[0].nbytes:
            written -= views.pop(0).nbytes
        if written:
            views[0] = views[0][written:]


def _forget_partial(created: tuple[int, Path]) -> None:
    handle, partial = created
    os.close(handle)
    _discard(partial)


def _discard(path: Path) -> None:
    """Delete ``path`` now: a plain call, so it completes even in a task being cancelled."""
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def receive_base64(
    chunks: AsyncIterable[bytes],
    declared: str,
    tracker: ProgressTracker,
    request_id: str | None,
    cached: bool,
) -> Base64Image:
    """The body as a ``data:`` URL, encoded as it streams in (no copy of the raw bytes kept)."""
    sniffer = _TypeSniffer(declared)
    encoded: list[bytes] = []
    pending = b""
    size = 0
    async for chunk in chunks:
        sniffer.feed(chunk)
        size += len(chunk)
        pending += chunk
        whole = len(pending) - len(pending) % 3  # base64 works on groups of three bytes
        encoded.append(base64.b64encode(pending[:whole]))
        pending = pending[whole:]
        await tracker.advance(len(chunk))
    encoded.append(base64.b64encode(pending))
    content_type = await _ended(sniffer, size, tracker)
    return Base64Image(
        base64_image=f"data:{content_type};base64," + b"".join(encoded).decode("ascii"),
        content_type=content_type,
        size=size,
        request_id=request_id,
        cached=cached,
    )


async def receive_bytes(
    chunks: AsyncIterable[bytes],
    declared: str,
    tracker: ProgressTracker,
    request_id: str | None,
    cached: bool,
) -> ImageBytes:
    """The body in memory."""
    sniffer = _TypeSniffer(declared)
    pieces = bytearray()
    async for chunk in chunks:
        sniffer.feed(chunk)
        pieces += chunk
        await tracker.advance(len(chunk))
    content_type = await _ended(sniffer, len(pieces), tracker)
    return ImageBytes(
        data=bytes(pieces),
        content_type=content_type,
        size=len(pieces),
        request_id=request_id,
        cached=cached,
    )


def is_partial_name(name: str) -> bool:
    """Whether ``name`` is one of our partial files, which a killed run may have left behind."""
    return name.startswith(TEMP_PREFIX) and name.endswith(PARTIAL_SUFFIX)

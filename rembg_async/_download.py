"""Receiving the image: chunk by chunk to a file (renamed into place when whole) or to base64.

A partial file starts beside its target and becomes the result only once the last byte is in;
any failure, truncation or cancellation deletes it. A temporary result is readable by its owner
only; a file at a path the user chose gets the usual mode. Writes go to a thread through
`run_to_completion`, which stays correct under cancellation. The real format is read from
the first bytes, so the file's extension and the data URL's type are true whatever the
``Content-Type`` says.

Each job sent to a thread makes as few system calls as it can (``os.open``/``os.write``, no
``mkstemp``, ``fdopen`` or ``mkdir`` each time): every call releases the GIL, and taking it back
can wait on the event loop, so at a thousand answers a second each call costs throughput.
"""

from __future__ import annotations

import base64
import contextlib
import os
import random
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final

import aiohttp
import attrs

from ._contract import OUTPUT_FORMATS
from ._exceptions import APIResponseError, request_id
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
    """Tells the body's type from its first `SNIFF_BYTES`, however they are split.

    The network may hand the body over a byte at a time: the type is decided once enough bytes
    are in, or when the body ends, never from the first piece alone.
    """

    declared: str
    head: bytes = b""
    content_type: str | None = None

    def feed(self, chunk: bytes) -> None:
        """Look at the next piece of the body (a no-op once the type is known)."""
        if self.content_type is None:
            self.head += chunk[: SNIFF_BYTES - len(self.head)]
            if len(self.head) >= SNIFF_BYTES:
                self.content_type = real_content_type(self.head, self.declared)

    def result(self) -> str:
        """The type, once the body has ended."""
        if self.content_type is None:
            self.content_type = real_content_type(self.head, self.declared)
        return self.content_type


def real_content_type(first_bytes: bytes, declared: str) -> str:
    """The MIME type of the body, from its signature; an answer that is no image is an error.

    A wrong ``Content-Type`` over a real image is forgiven: the bytes are what count.
    """
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
    """The body, up to ``limit`` bytes: every piece of it, however the network split it
    (``content.read(n)`` returns the first piece that arrived, which can be one byte)."""
    pieces = bytearray()
    while len(pieces) < limit and (piece := await response.content.read(limit - len(pieces))):
        pieces += piece
    return bytes(pieces)


def _check_not_empty(size: int) -> None:
    if size == 0:
        raise APIResponseError("the server answered 200 with an empty body")


@attrs.frozen(kw_only=True)
class KeptTarget:
    """An output path with a blocking ``then()`` to run once the file is in place, in the same
    thread call (a batch notes the file in its folder's index there: no second hop)."""

    path: Path
    then: Callable[[], object]


async def receive_file(
    response: aiohttp.ClientResponse,
    output_path: Path | None,
    tracker: ProgressTracker,
    then: Callable[[], object] | None = None,
) -> ImageFile:
    """Stream the body to ``output_path``, or to a new temporary file when it is None; run
    ``then()`` (blocking) once the file is there."""
    folder = output_path.parent if output_path is not None else Path(tempfile.gettempdir())
    output = _Output(folder=folder, target=output_path, then=then)
    try:
        content_type, size, last = await _receive_body(response, output, tracker)
        kind = _KINDS.get(content_type)
        target = await output.finish(last, extension_for(kind) if kind is not None else "bin")
    except BaseException:
        output.abandon()
        raise
    return ImageFile(
        output_image_path=target,
        content_type=content_type,
        size=size,
        temporary=output_path is None,
        request_id=request_id(response.headers),
    )


@attrs.define
class _Output:
    """The file being received, beside its target: created at the first large piece, or
    written whole in a single thread hop when the answer fits in one piece.

    File-system calls go to a thread (creating a file can take a millisecond, too long to hold
    the event loop), each with an ``undo`` for a caller cancelled meanwhile.
    """

    folder: Path
    target: Path | None
    then: Callable[[], object] | None = None
    handle: int | None = None
    partial: Path | None = None

    async def write(self, data: Sequence[bytes]) -> None:
        """Append the pieces of ``data``, creating the partial file first if need be."""
        if self.handle is None:
            handle, partial = await run_to_completion(
                _create_partial,
                self.folder,
                PARTIAL_SUFFIX,
                _mode_for(self.target),
                undo=_forget_partial,
            )
            self.handle, self.partial = handle, partial
        await run_to_completion(_write_all, self.handle, data)

    async def finish(self, last: Sequence[bytes], extension: str) -> Path:
        """Write ``last`` and put the file in place; returns where it is."""
        if self.handle is None:
            return await run_to_completion(
                save_whole,
                self.folder,
                last,
                self.target,
                extension,
                self.then,
                undo=_discard,
            )
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
    (so that ``target`` is never seen half-written, and an older file there survives a failure).
    """
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
    """A temporary result is its owner's alone; a file the user named gets the usual mode
    (``0o666`` less the umask, which ``os.open`` applies), as ``open()`` would give it."""
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
    """Write all of ``pieces``, in order and without joining them (a copy): in one ``writev``
    where there is one, which may write less than it is given."""
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


async def _receive_body(
    response: aiohttp.ClientResponse, output: _Output, tracker: ProgressTracker
) -> tuple[str, int, list[bytes]]:
    """Receive the body into ``output`` in large writes; returns the type, the size and the
    last pieces, not yet written."""
    sniffer = _TypeSniffer(response.content_type)
    size = 0
    pending: list[bytes] = []  # the network gives small pieces: write them several at a time
    pending_size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        sniffer.feed(chunk)
        pending.append(chunk)
        pending_size += len(chunk)
        size += len(chunk)
        if pending_size >= CHUNK_BYTES:
            full, pending, pending_size = pending, [], 0
            await output.write(full)
        await tracker.advance(len(chunk))
    _check_not_empty(size)
    content_type = sniffer.result()
    await tracker.finish()
    return content_type, size, pending


async def receive_base64(response: aiohttp.ClientResponse, tracker: ProgressTracker) -> Base64Image:
    """The body as a ``data:`` URL, encoded as it streams in (no copy of the raw bytes kept)."""
    sniffer = _TypeSniffer(response.content_type)
    encoded: list[bytes] = []
    pending = b""
    size = 0
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        sniffer.feed(chunk)
        size += len(chunk)
        pending += chunk
        whole = len(pending) - len(pending) % 3  # base64 works on groups of three bytes
        encoded.append(base64.b64encode(pending[:whole]))
        pending = pending[whole:]
        await tracker.advance(len(chunk))
    encoded.append(base64.b64encode(pending))
    _check_not_empty(size)
    content_type = sniffer.result()
    await tracker.finish()
    data_url = f"data:{content_type};base64," + b"".join(encoded).decode("ascii")
    return Base64Image(
        base64_image=data_url,
        content_type=content_type,
        size=size,
        request_id=request_id(response.headers),
    )


async def receive_bytes(response: aiohttp.ClientResponse, tracker: ProgressTracker) -> ImageBytes:
    """The body in memory."""
    sniffer = _TypeSniffer(response.content_type)
    pieces = bytearray()
    async for chunk in response.content.iter_chunked(CHUNK_BYTES):
        sniffer.feed(chunk)
        pieces += chunk
        await tracker.advance(len(chunk))
    _check_not_empty(len(pieces))
    await tracker.finish()
    return ImageBytes(
        data=bytes(pieces),
        content_type=sniffer.result(),
        size=len(pieces),
        request_id=request_id(response.headers),
    )


def is_partial_name(name: str) -> bool:
    """Whether ``name`` is one of our partial files (``rembg-<random>.part``): a run that holds
    its output folder may delete those left behind by a run that was killed."""
    return name.startswith(TEMP_PREFIX) and name.endswith(PARTIAL_SUFFIX)

"""The streaming multipart body of ``POST /rmbg``: its exact size known first (a
``Content-Length``, a progress ``total``), a stall guard aiohttp lacks, and a failed attempt's
connection aborted (a graceful close waits for ever on a server that stopped reading)."""

from __future__ import annotations

import asyncio
import contextlib
import sys
from collections.abc import Iterator, Mapping
from typing import Any, Final

import aiohttp
from aiohttp.abc import AbstractStreamWriter
from aiohttp.payload import Payload

from ._inputs import Source
from ._progress import ProgressTracker

#: Large reads keep the per-chunk overhead (a thread hop each, and the progress callbacks)
#: small; 1 MiB in flight per upload is nothing next to the 50 MB it may be.
CHUNK_BYTES: Final = 1024 * 1024

if sys.platform == "linux":
    import fcntl
    import termios

    _OUTQ: int | None = termios.TIOCOUTQ  # on a TCP socket, the same number as SIOCOUTQ
else:
    _OUTQ = None

#: Writes are gathered up to this size before they are sent (see `_GatheringWriter`).
GATHER_BYTES: Final = 64 * 1024


class _BinaryPayload(Payload):
    """A payload of the image's bytes: never decoded as text."""

    _autoclose = True  # holds nothing open between writes

    def decode(self, encoding: str = "utf-8", errors: str = "strict") -> str:
        raise TypeError("an image upload is binary")


class _SourcePayload(_BinaryPayload):
    """The image part: the source's bytes, read afresh from its start."""

    def __init__(self, source: Source, chunk_size: int) -> None:
        super().__init__(source, content_type=source.content_type, filename=source.filename)
        self._size = source.size
        self._chunk_size = chunk_size

    async def write(self, writer: AbstractStreamWriter) -> None:
        source: Source = self._value
        # aclosing: if the connection dies mid-upload, the file is closed now, not by the GC.
        async with contextlib.aclosing(source.chunks(self._chunk_size)) as chunks:
            async for chunk in chunks:
                await writer.write(chunk)


class _StallGuard:
    """Aborts an upload none of whose bytes moved for ``seconds`` (the read timeout): written,
    passed to the socket, or acknowledged by the server where the system says (Linux), since
    the kernel wakes a writer only once a third of its buffer (MBs) is free."""

    def __init__(self, writer: AbstractStreamWriter, seconds: float) -> None:
        self._writer = writer
        self._seconds = seconds
        self._position_seen: tuple[int, int, int | None] | None = None
        self._handle: asyncio.TimerHandle | None = None
        self.error: aiohttp.SocketTimeoutError | None = None

    def _position(self, transport: asyncio.WriteTransport) -> tuple[int, int, int | None]:
        return (
            self._writer.output_size,
            transport.get_write_buffer_size(),
            _unacknowledged(transport),
        )

    def watch(self) -> None:
        transport = self._writer.transport
        if transport is not None and self._handle is None:
            self._position_seen = self._position(transport)
            self._handle = asyncio.get_running_loop().call_later(self._seconds, self._check)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _check(self) -> None:
        self._handle = None
        transport = self._writer.transport
        if transport is None:
            return  # already closed: the write fails on its own
        if self._position(transport) != self._position_seen:
            self.watch()  # bytes moved: watch again from where they are
            return
        self.error = aiohttp.SocketTimeoutError(
            f"the server read none of the upload for {self._seconds:g} s (the read timeout)"
        )
        abort_request(self._writer, self.error)


def abort_request(writer: AbstractStreamWriter, error: BaseException) -> None:
    """Fail a half-sent request with ``error`` and close its connection now: it can never be
    reused, and must not wait for the response's release."""
    transport = writer.transport
    if transport is None or transport.is_closing():
        return  # already failed (the stall guard, or the server), with its own error
    protocol = transport.get_protocol()
    # First, so the socket is closed before the request's task wakes up to ``error``.
    transport.abort()
    if hasattr(protocol, "set_exception"):
        protocol.set_exception(error)  # what the response being waited for raises


def _queued(transport: asyncio.WriteTransport) -> int:
    """Bytes of ours not yet taken by the server, as far as this system can tell."""
    return transport.get_write_buffer_size() + (_unacknowledged(transport) or 0)


def _unacknowledged(transport: asyncio.WriteTransport) -> int | None:
    """The socket's bytes not yet acknowledged by the peer (``TIOCOUTQ``: Linux); else None."""
    sock = transport.get_extra_info("socket")
    if _OUTQ is None or sock is None:
        return None
    try:
        answer = fcntl.ioctl(sock.fileno(), _OUTQ, b"\0\0\0\0")
    except (OSError, ValueError):
        return None
    return int.from_bytes(answer, sys.byteorder, signed=True)


class _GatheringWriter:
    """aiohttp's writer, gathering the form's small pieces (boundaries, headers) so a small
    upload leaves in one ``send()``; counts what is sent for progress."""

    def __init__(
        self, inner: AbstractStreamWriter, tracker: ProgressTracker, stall_timeout: float | None
    ) -> None:
        self._inner = inner
        self._tracker = tracker
        self._guard = _StallGuard(inner, stall_timeout) if stall_timeout else None
        self._gathered: list[bytes | bytearray | memoryview] = []
        self._gathered_size = 0

    async def write(self, chunk: bytes | bytearray | memoryview) -> None:
        if self._gathered_size + len(chunk) > GATHER_BYTES:
            await self.flush()
            if len(chunk) > GATHER_BYTES:  # a large chunk goes as it is, without a copy
                await self._send(chunk)
                return
        self._gathered.append(chunk)
        self._gathered_size += len(chunk)

    async def flush(self) -> None:
        if self._gathered:
            gathered = b"".join(self._gathered)
            self._gathered.clear()
            self._gathered_size = 0
            await self._send(gathered)

    async def settle(self) -> None:
        """Wait, watched, until the server has taken nearly all of the body: aiohttp's
        ``sock_read`` starts once it is queued, and megabytes may still be on their way."""
        if self._guard is None or (transport := self._inner.transport) is None:
            return
        if self._inner.output_size <= GATHER_BYTES:
            return  # less than is ever held back: nothing to wait for, no system call
        pause = 0.001  # a fast link empties its queue within a few of these
        self._guard.watch()
        try:
            while not transport.is_closing() and _queued(transport) > GATHER_BYTES:
                await asyncio.sleep(pause)
                pause = min(pause * 2, 0.05)
        finally:
            self._guard.stop()
        if self._guard.error is not None:
            raise self._guard.error

    async def _send(self, chunk: bytes | bytearray | memoryview) -> None:
        # aiohttp's write() waits for the server only past 64 KiB unflushed (its ``LIMIT``,
        # our GATHER_BYTES): a small upload's single write needs no watching, and pays nothing.
        if self._guard is None or self._inner.buffer_size + len(chunk) <= GATHER_BYTES:
            await self._inner.write(chunk)
        else:
            self._guard.watch()
            try:
                await self._inner.write(chunk)
            except Exception as error:
                if self._guard.error is not None:  # the abort is why the write failed
                    raise self._guard.error from error
                raise
            finally:
                self._guard.stop()
        await self._tracker.advance(len(chunk))

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)


def build_form(
    source: Source, fields: Mapping[str, str], chunk_size: int
) -> aiohttp.MultipartWriter:
    """The multipart form: the image first, then the option fields."""
    form = aiohttp.MultipartWriter("form-data")
    image = form.append_payload(_SourcePayload(source, chunk_size))
    image.set_content_disposition("form-data", name="image", filename=source.filename)
    for name, value in fields.items():
        form.append(value).set_content_disposition("form-data", name=name)
    return form


class UploadBody(_BinaryPayload):
    """The whole form as one payload, with progress; the server may read none of it for
    ``stall_timeout`` seconds (None: for ever) before the request fails as a read timeout."""

    def __init__(
        self,
        form: aiohttp.MultipartWriter,
        tracker: ProgressTracker,
        stall_timeout: float | None = None,
    ) -> None:
        super().__init__(form, content_type=form.content_type)
        self._size = form.size
        self._tracker = tracker
        self._stall_timeout = stall_timeout
        # Kept: aiohttp's writer forgets its transport once it closes the connection.
        self._transport: asyncio.WriteTransport | None = None

    async def write(self, writer: AbstractStreamWriter) -> None:
        form: aiohttp.MultipartWriter = self._value
        self._transport = writer.transport
        gathering = _GatheringWriter(writer, self._tracker, self._stall_timeout)
        try:
            await form.write(gathering)  # type: ignore[arg-type]
            await gathering.flush()
            await gathering.settle()
        except Exception as error:  # the input failed, or the connection did
            failure = aiohttp.ClientConnectionError(f"the request body could not be sent: {error}")
            failure.__cause__ = error  # the one place that maps errors looks at the cause
            abort_request(writer, failure)
            raise
        except BaseException:  # cancelled (a deadline, the caller): the request is half-sent
            self._abort()
            raise
        await self._tracker.finish()

    @contextlib.contextmanager
    def aborted_on_failure(self) -> Iterator[None]:
        """Abort a failed request's connection where aiohttp closes it gracefully (a pooled one
        is not closing, and is left alone)."""
        try:
            yield
        except BaseException:
            if self._transport is not None and self._transport.is_closing():
                self._abort()
            raise

    def _abort(self) -> None:
        if self._transport is not None:
            self._transport.abort()  # also on a closing transport: its queued bytes are dropped

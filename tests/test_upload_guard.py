"""The upload's stall guard and gathering writer on their own, over a stand-in for aiohttp's
stream writer and asyncio's transport (the interfaces they are written against): a stall is
cut after its timeout, any movement re-arms it, a body is settled before the read timer."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import aiohttp
import pytest
from conftest import make_image

from rembg_async._inputs import open_input
from rembg_async._progress import ProgressTracker
from rembg_async._upload import (
    CHUNK_BYTES,
    GATHER_BYTES,
    UploadBody,
    _GatheringWriter,
    _queued,
    _StallGuard,
    _unacknowledged,
    abort_request,
    build_form,
)

STALL = 0.05  # seconds: the guard's timeout in these tests
PNG_BYTES = make_image((8, 8), "PNG")


class Protocol:
    """What aiohttp's protocol offers the guard: the exception the response will raise."""

    def __init__(self) -> None:
        self.error: BaseException | None = None

    def set_exception(self, error: BaseException) -> None:
        self.error = error


class Transport:
    """A transport whose queue the test empties by hand; ``aborted`` is set on abort()."""

    def __init__(self, protocol: object | None = None) -> None:
        self.buffered = 0
        self.closing = False
        self.protocol = protocol if protocol is not None else Protocol()
        self.aborted = asyncio.Event()

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def get_extra_info(self, name: str) -> Any:
        return None  # no socket: the system's queue is not asked

    def is_closing(self) -> bool:
        return self.closing

    def get_protocol(self) -> object:
        return self.protocol

    def abort(self) -> None:
        self.closing = True
        self.aborted.set()


class Writer:
    """aiohttp's stream writer as the upload sees it; ``block`` makes write() wait."""

    def __init__(self, transport: Transport | None) -> None:
        self.transport = transport
        self.output_size = 0
        self.buffer_size = 0
        self.writes: list[bytes] = []
        self.block: asyncio.Event | None = None

    async def write(self, chunk: bytes) -> None:
        if self.block is not None:
            await self.block.wait()
        if self.transport is not None and self.transport.closing:
            raise ConnectionResetError("aborted")
        self.writes.append(bytes(chunk))
        self.output_size += len(chunk)


async def test_a_stall_is_cut_after_its_timeout() -> None:
    """Nothing moves for the timeout: the connection is aborted with a read timeout error."""
    transport = Transport()
    guard = _StallGuard(Writer(transport), STALL)  # type: ignore[arg-type]
    guard.watch()
    await asyncio.wait_for(transport.aborted.wait(), 5)
    assert isinstance(guard.error, aiohttp.SocketTimeoutError)
    assert str(guard.error) == "the server read none of the upload for 0.05 s (the read timeout)"
    assert transport.protocol.error is guard.error  # type: ignore[union-attr]


async def test_movement_rearms_the_guard_and_stop_ends_it() -> None:
    """Bytes that keep leaving the queue keep the guard quiet; stopped, it never fires."""
    transport = Transport()
    writer = Writer(transport)
    guard = _StallGuard(writer, STALL)  # type: ignore[arg-type]
    guard.watch()
    guard.watch()  # a second watch while watching changes nothing
    for _ in range(10):  # twice the timeout, a byte out every fifth of it
        writer.output_size += 1
        await asyncio.sleep(STALL / 5)
    assert not transport.aborted.is_set()
    guard.stop()
    guard.stop()
    await asyncio.sleep(STALL * 2)
    assert not transport.aborted.is_set()
    assert guard.error is None


async def test_a_closed_transport_is_left_alone() -> None:
    """No transport (closed under the guard): the guard ends without aborting anything."""
    writer = Writer(Transport())
    guard = _StallGuard(writer, STALL)  # type: ignore[arg-type]
    guard.watch()
    writer.transport = None
    await asyncio.sleep(STALL * 2)
    assert guard.error is None
    Writer(None).transport = None
    idle = _StallGuard(Writer(None), STALL)  # type: ignore[arg-type]
    idle.watch()  # nothing to watch
    await asyncio.sleep(STALL * 2)
    assert idle.error is None


def test_abort_request_fails_the_response_once() -> None:
    """abort_request aborts and sets the error; a closing or missing transport is left alone."""
    transport = Transport()
    error = ConnectionResetError("x")
    abort_request(Writer(transport), error)  # type: ignore[arg-type]
    assert transport.aborted.is_set()
    assert transport.protocol.error is error  # type: ignore[union-attr]
    again = ConnectionResetError("y")
    abort_request(Writer(transport), again)  # type: ignore[arg-type]
    assert transport.protocol.error is error  # type: ignore[union-attr]
    abort_request(Writer(None), error)  # type: ignore[arg-type]
    bare = Transport(protocol=object())  # a protocol with no set_exception
    abort_request(Writer(bare), error)  # type: ignore[arg-type]
    assert bare.aborted.is_set()


async def test_the_systems_queue_is_read_where_it_can_be() -> None:
    """On a real connected socket the unacknowledged bytes are a number (Linux), else None."""
    left, right = socket.socketpair()
    try:
        loop = asyncio.get_running_loop()
        transport, _ = await loop.create_connection(asyncio.Protocol, sock=left)
        try:
            unacknowledged = _unacknowledged(transport)  # type: ignore[arg-type]
            assert unacknowledged is None or unacknowledged >= 0
            assert _queued(transport) == (unacknowledged or 0)  # type: ignore[arg-type]
        finally:
            transport.close()
    finally:
        right.close()
    stand_in = Transport()
    stand_in.buffered = 7
    assert _unacknowledged(stand_in) is None  # type: ignore[arg-type]
    assert _queued(stand_in) == 7  # type: ignore[arg-type]


def gathering(writer: Writer, stall: float | None = STALL) -> tuple[_GatheringWriter, list[int]]:
    """A gathering writer over ``writer``, and the sizes it reported as progress."""
    sizes: list[int] = []
    tracker = ProgressTracker(lambda event: sizes.append(event.bytes), total=None, upload=True)
    tracker_writer = _GatheringWriter(writer, tracker, stall)  # type: ignore[arg-type]
    return tracker_writer, sizes


async def test_small_writes_are_gathered_large_ones_pass() -> None:
    """Writes are joined up to GATHER_BYTES; a larger chunk goes on its own."""
    assert (GATHER_BYTES, CHUNK_BYTES) == (64 * 1024, 1024 * 1024)
    writer = Writer(Transport())
    gather, _ = gathering(writer, stall=None)
    await gather.write(b"a" * 10)
    await gather.write(b"b" * (GATHER_BYTES - 10))  # exactly full: still gathered
    assert writer.writes == []
    await gather.write(b"c")
    assert [len(w) for w in writer.writes] == [GATHER_BYTES]
    await gather.write(b"d" * (GATHER_BYTES + 1))
    await gather.flush()
    await gather.flush()  # nothing left: no empty write
    assert [len(w) for w in writer.writes] == [GATHER_BYTES, 1, GATHER_BYTES + 1]
    assert gather.output_size == 2 * GATHER_BYTES + 2  # the rest is the inner writer's
    await gather.write(b"e" * (GATHER_BYTES - 1))
    await gather.write(b"f")  # after a flush the count starts again: exactly full, kept
    assert len(writer.writes) == 3


async def test_a_write_that_stalls_fails_with_the_read_timeout() -> None:
    """A large write not taken fails with the guard's read timeout; a small one is not watched."""
    transport = Transport()
    writer = Writer(transport)
    writer.block = asyncio.Event()
    gather, _ = gathering(writer)
    sending = asyncio.ensure_future(gather.write(b"x" * (GATHER_BYTES + 1)))
    await asyncio.wait_for(transport.aborted.wait(), 5)
    writer.block.set()
    with pytest.raises(aiohttp.SocketTimeoutError):
        await sending
    done = Transport()
    large, _ = gathering(Writer(done))
    await large.write(b"z" * (GATHER_BYTES + 1))  # watched, and taken at once
    await asyncio.sleep(STALL * 2)
    assert not done.aborted.is_set()  # the guard stopped with the write
    quiet = Writer(Transport())
    quiet.block = asyncio.Event()
    small, _ = gathering(quiet)
    await small.write(b"y" * 100)
    pending = asyncio.ensure_future(small.flush())
    await asyncio.sleep(STALL * 2)
    assert not quiet.transport.aborted.is_set()  # type: ignore[union-attr]
    quiet.block.set()
    await pending


async def test_a_failed_write_without_a_stall_raises_its_own_error() -> None:
    """A watched write that fails for another reason raises that reason."""
    transport = Transport()
    transport.closing = True
    gather, _ = gathering(Writer(transport))
    with pytest.raises(ConnectionResetError):
        await gather.write(b"x" * (GATHER_BYTES + 1))


async def test_settle_waits_for_the_queue_to_drain() -> None:
    """settle() waits for the queue to drain or times out; a small body or no guard never waits."""
    transport = Transport()
    writer = Writer(transport)
    gather, _ = gathering(writer)
    writer.output_size = GATHER_BYTES + 1
    transport.buffered = 3 * GATHER_BYTES
    settling = asyncio.ensure_future(gather.settle())
    for left in (2 * GATHER_BYTES, GATHER_BYTES + 1):
        await asyncio.sleep(STALL / 5)
        assert not settling.done()
        transport.buffered = left
    await asyncio.sleep(STALL / 5)
    transport.buffered = GATHER_BYTES
    await asyncio.wait_for(settling, 5)
    await asyncio.sleep(STALL * 2)
    assert not transport.aborted.is_set()  # the guard stopped once settled
    stuck = Transport()
    stuck_writer = Writer(stuck)
    stuck_writer.output_size = GATHER_BYTES + 1
    stuck.buffered = 2 * GATHER_BYTES
    stuck_gather, _ = gathering(stuck_writer)
    with pytest.raises(aiohttp.SocketTimeoutError):
        await asyncio.wait_for(stuck_gather.settle(), 5)
    small = Transport()
    small.buffered = 10 * GATHER_BYTES
    small_writer = Writer(small)
    small_writer.output_size = GATHER_BYTES  # all of it fits what is ever held back
    await asyncio.wait_for(gathering(small_writer)[0].settle(), 1)
    unguarded_writer = Writer(stuck)
    unguarded_writer.output_size = GATHER_BYTES + 1
    await asyncio.wait_for(gathering(unguarded_writer, stall=None)[0].settle(), 1)


async def test_settle_polls_ever_less_often(monkeypatch: pytest.MonkeyPatch) -> None:
    """While the queue drains, settle() looks again after 1 ms, doubling up to 50 ms."""
    transport = Transport()
    writer = Writer(transport)
    writer.output_size = GATHER_BYTES + 1
    transport.buffered = 2 * GATHER_BYTES
    pauses: list[float] = []
    real_sleep = asyncio.sleep

    async def record(seconds: float) -> None:
        pauses.append(seconds)
        if len(pauses) == 8:
            transport.buffered = 0
        await real_sleep(0)

    gather, _ = gathering(writer, stall=10.0)
    monkeypatch.setattr(asyncio, "sleep", record)
    await gather.settle()
    assert pauses == pytest.approx([0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.05, 0.05])


async def test_the_form_names_its_parts() -> None:
    """The image part is named "image" with its file name; each option its own name."""
    source = await open_input(PNG_BYTES)
    form = build_form(source, {"format": "png", "bg_color": "fff"}, CHUNK_BYTES)
    writer = Writer(None)
    tracker = ProgressTracker(None, total=form.size, upload=True)
    await UploadBody(form, tracker).write(writer)  # type: ignore[arg-type]
    body = b"".join(writer.writes)
    assert b'name="image"; filename="' in body
    assert b'name="format"\r\n' in body
    assert b'name="bg_color"\r\n' in body
    assert tracker.loaded == form.size == len(body)

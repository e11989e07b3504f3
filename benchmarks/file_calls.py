"""A batch's file calls apart from HTTP: on the event loop, in the file threads, or io_uring.

Per image, what ``remove_many`` does with an output folder: ask whether the output is there
(``lstat``), read a 50 KB input (open, ``fstat``, read, close), write a 200 KB answer beside
its target and rename it onto it (open, ``writev``, close, rename), and append a line to the
folder's index. Sixteen images at a time on one event loop, three ways:

- ``loop``: every call made on the event loop, as a hand-written gather does (it stalls every
  other task while the disk is slow);
- ``threads``: through rembg_async's file threads, in two thread calls per image (reading,
  saving), as ``remove_many`` hands them over;
- ``io_uring``: the same system calls submitted to the kernel from the loop in six rounds
  per image (Linux, where io_uring is allowed), through a minimal ring over ctypes and mmap:
  what could make file calls without blocking the loop and without a thread hop.

Each way runs in a fresh process, round-robin; the figures are medians of CPU per image for the
process, its event loop's thread and its other threads (the file threads; io_uring's kernel
workers, ``iou-wrk``), and wall time per image. No HTTP runs meanwhile, so the file threads
meet no contention for the GIL here, unlike in a batch (``batch_threads.py``).

Run: ``python benchmarks/file_calls.py [--images 3000] [--rounds 6]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import json
import mmap
import os
import random
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _common import machine

from rembg_async._threads import run_to_completion

INPUT = os.urandom(50_000)
ANSWER = [os.urandom(100_000), os.urandom(100_000)]  # as received: in pieces
CONCURRENCY = 16
READ_FLAGS = os.O_RDONLY | os.O_CLOEXEC
CREATE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
APPEND_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC


def inspect(target: str, source: str) -> bytes:
    """Whether the output is there, and the input's bytes (one thread call in a batch)."""
    os.path.lexists(target)
    handle = os.open(source, READ_FLAGS)
    try:
        return os.read(handle, os.fstat(handle).st_size + 1)
    finally:
        os.close(handle)


def save(folder: str, target: str, index: int, line: bytes) -> None:
    """The answer written beside ``target``, renamed onto it, and noted in the index."""
    partial = os.path.join(folder, f".partial-{random.getrandbits(64):016x}")
    handle = os.open(partial, CREATE_FLAGS, 0o666)
    try:
        os.writev(handle, ANSWER)
    finally:
        os.close(handle)
    os.replace(partial, target)
    os.write(index, line)


# io_uring: the ABI of <linux/io_uring.h>, only what the calls above need.
_SETUP, _ENTER, _REGISTER = 425, 426, 427  # system call numbers, the same on x86-64 and arm64
_REGISTER_EVENTFD = 4  # the eventfd is signalled for every completion
_SQE = struct.Struct("<BBHiQQIIQHHIQQ")  # opcode, flags, ioprio, fd, off, addr, len, op flags,
# user data, buf index, personality, file index, addr3, padding: 64 bytes
_CQE = struct.Struct("<QiI")  # user data, result, flags
_WRITEV, _OPENAT, _CLOSE, _STATX, _READ, _WRITE, _RENAMEAT = 2, 18, 19, 21, 22, 23, 35
_LINK, _HARDLINK = 4, 8  # the next call runs after this one: if it succeeded; in any case
_AT_FDCWD, _AT_EMPTY_PATH, _AT_SYMLINK_NOFOLLOW = -100, 0x1000, 0x100
_STATX_BASIC, _STATX_SIZE_OFFSET = 0x7FF, 40
_CURRENT_POSITION = (1 << 64) - 1  # off = -1: at the file's position (O_APPEND: its end)


class _Params(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_uint32)
        for name in (
            "sq_entries", "cq_entries", "flags", "sq_thread_cpu", "sq_thread_idle", "features",
            "wq_fd", "resv0", "resv1", "resv2",
            "sq_head", "sq_tail", "sq_ring_mask", "sq_ring_entries", "sq_flags", "sq_dropped",
            "sq_array", "sq_resv1", "sq_user_lo", "sq_user_hi",
            "cq_head", "cq_tail", "cq_ring_mask", "cq_ring_entries", "cq_overflow", "cqes",
            "cq_flags", "cq_resv1", "cq_user_lo", "cq_user_hi",
        )
    ]  # fmt: skip


class Ring:
    """An io_uring instance driven from one event loop: calls queued in a loop turn are
    submitted together at its end; completions come back through an eventfd reader."""

    def __init__(self, loop: asyncio.AbstractEventLoop, entries: int = 256) -> None:
        self._libc = ctypes.CDLL(None, use_errno=True)
        self._libc.syscall.restype = ctypes.c_long
        params = _Params()
        self._fd = self._syscall(_SETUP, entries, ctypes.byref(params))
        self._sq = mmap.mmap(self._fd, params.sq_array + params.sq_entries * 4, offset=0)
        self._cq = mmap.mmap(self._fd, params.cqes + params.cq_entries * 16, offset=0x8000000)
        self._sqes = mmap.mmap(self._fd, params.sq_entries * 64, offset=0x10000000)
        self._sq_tail = ctypes.c_uint32.from_buffer(self._sq, params.sq_tail)
        self._sq_mask = params.sq_entries - 1
        array = (ctypes.c_uint32 * params.sq_entries).from_buffer(self._sq, params.sq_array)
        array[:] = list(range(params.sq_entries))  # slot i of the ring is entry i, for good
        self._cq_head = ctypes.c_uint32.from_buffer(self._cq, params.cq_head)
        self._cq_tail = ctypes.c_uint32.from_buffer(self._cq, params.cq_tail)
        self._cq_mask = params.cq_entries - 1
        self._cqes = params.cqes
        self._eventfd = os.eventfd(0, os.EFD_NONBLOCK | os.EFD_CLOEXEC)
        eventfd = ctypes.c_int(self._eventfd)
        self._syscall(_REGISTER, self._fd, _REGISTER_EVENTFD, ctypes.byref(eventfd), 1)
        self._loop = loop
        self._queued = 0
        self._waiting: dict[int, tuple[asyncio.Future[int], object]] = {}
        self._next = 0
        loop.add_reader(self._eventfd, self._on_completions)

    def _syscall(self, *args: object) -> int:
        result = int(self._libc.syscall(*args))
        if result < 0:
            error = ctypes.get_errno()
            raise OSError(error, os.strerror(error))
        return result

    def call(
        self, opcode: int, fd: int, addr: int = 0, length: int = 0, off: int = 0,
        op_flags: int = 0, flags: int = 0, keep: object = None,
    ) -> asyncio.Future[int]:  # fmt: skip
        """Queue one call; its future is resolved with the call's result (``-errno`` on
        failure). ``keep`` is what the kernel reads or writes through: kept until then."""
        if self._queued == self._sq_mask + 1:
            self._submit()
        if self._queued == 0:
            self._loop.call_soon(self._submit)
        self._next += 1
        slot = (self._sq_tail.value + self._queued) & self._sq_mask
        _SQE.pack_into(
            self._sqes, slot * 64, opcode, flags, 0, fd, off, addr, length, op_flags,
            self._next, 0, 0, 0, 0, 0,
        )  # fmt: skip
        self._queued += 1
        future = self._loop.create_future()
        self._waiting[self._next] = (future, keep)
        return future

    def _submit(self) -> None:
        if not self._queued:
            return
        count, self._queued = self._queued, 0
        self._sq_tail.value += count
        self._syscall(_ENTER, self._fd, count, 0, 0, None, 0)
        self._reap()  # those done inline: no need to wait for the eventfd's turn

    def _on_completions(self) -> None:
        with contextlib.suppress(BlockingIOError):  # a reap at submission took them all
            os.eventfd_read(self._eventfd)
        self._reap()

    def _reap(self) -> None:
        head, tail = self._cq_head.value, self._cq_tail.value
        while head != tail:
            user_data, result, _ = _CQE.unpack_from(
                self._cq, self._cqes + (head & self._cq_mask) * 16
            )
            head += 1
            future, _ = self._waiting.pop(user_data)
            if not future.cancelled():
                future.set_result(result)
        self._cq_head.value = head

    def close(self) -> None:
        """Stop reading completions and let the kernel go (nothing may be in flight)."""
        self._loop.remove_reader(self._eventfd)
        os.close(self._eventfd)
        os.close(self._fd)


def _address(data: bytes) -> int:
    """Where a bytes object's contents are (kept alive by the caller)."""
    return ctypes.cast(ctypes.c_char_p(data), ctypes.c_void_p).value or 0


def _checked(result: int, what: str) -> int:
    if result < 0:
        raise OSError(-result, f"{what}: {os.strerror(-result)}")
    return result


class _IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("length", ctypes.c_size_t)]


async def inspect_uring(ring: Ring, target: str, source: str) -> bytes:
    """`inspect` through io_uring, the same system calls in three rounds."""
    target_path, source_path, empty = target.encode(), source.encode(), b""
    target_stat, fd_stat = ctypes.create_string_buffer(256), ctypes.create_string_buffer(256)
    there = ring.call(
        _STATX, _AT_FDCWD, _address(target_path), _STATX_BASIC, ctypes.addressof(target_stat),
        op_flags=_AT_SYMLINK_NOFOLLOW, keep=(target_path, target_stat),
    )  # fmt: skip
    opened = ring.call(
        _OPENAT, _AT_FDCWD, _address(source_path), op_flags=READ_FLAGS, keep=source_path
    )
    await there
    fd = _checked(await opened, "open")
    stamped = ring.call(
        _STATX, fd, _address(empty), _STATX_BASIC, ctypes.addressof(fd_stat),
        op_flags=_AT_EMPTY_PATH, keep=(empty, fd_stat),
    )  # fmt: skip
    if (error := await stamped) < 0:
        await ring.call(_CLOSE, fd)
        _checked(error, "fstat")
    size = int.from_bytes(fd_stat.raw[_STATX_SIZE_OFFSET : _STATX_SIZE_OFFSET + 8], "little")
    buffer = bytearray(size + 1)
    view = (ctypes.c_char * len(buffer)).from_buffer(buffer)
    # Chained: the read, then the close whatever the read came to.
    read = ring.call(_READ, fd, ctypes.addressof(view), len(buffer), 0, flags=_HARDLINK, keep=view)
    closed = ring.call(_CLOSE, fd)
    length = _checked(await read, "read")
    _checked(await closed, "close")
    del view  # lets the buffer be shrunk
    del buffer[length:]
    return bytes(buffer)


async def save_uring(ring: Ring, folder: str, target: str, index: int, line: bytes) -> None:
    """`save` through io_uring, the same system calls in three rounds."""
    partial = os.path.join(folder, f".partial-{random.getrandbits(64):016x}").encode()
    fd = _checked(
        await ring.call(
            _OPENAT, _AT_FDCWD, _address(partial), 0o666, op_flags=CREATE_FLAGS, keep=partial
        ),
        "open",
    )
    pieces = (_IoVec * len(ANSWER))(*((_address(piece), len(piece)) for piece in ANSWER))
    written = ring.call(
        _WRITEV, fd, ctypes.addressof(pieces), len(ANSWER), 0, flags=_HARDLINK, keep=pieces
    )
    closed = ring.call(_CLOSE, fd)
    if _checked(await written, "writev") != sum(map(len, ANSWER)):
        raise OSError("a short write")
    _checked(await closed, "close")
    target_path = target.encode()
    renamed = ring.call(
        _RENAMEAT, _AT_FDCWD, _address(partial), _AT_FDCWD & 0xFFFFFFFF, _address(target_path),
        flags=_LINK, keep=(partial, target_path),
    )  # fmt: skip
    noted = ring.call(_WRITE, index, _address(line), len(line), _CURRENT_POSITION, keep=line)
    _checked(await renamed, "rename")
    _checked(await noted, "write")


async def one_image(
    way: str, ring: Ring | None, out: str, index: int, number: int, source: str
) -> None:
    """The file calls of one image, made ``way``."""
    target, line = os.path.join(out, f"out-{number:05d}.webp"), f"out-{number:05d}.webp\n".encode()
    if way == "loop":
        read = inspect(target, source)
        await asyncio.sleep(0)  # where the upload and the answer would be
        save(out, target, index, line)
    elif way == "threads":
        read = await run_to_completion(inspect, target, source)
        await asyncio.sleep(0)
        await run_to_completion(save, out, target, index, line)
    else:
        assert ring is not None
        read = await inspect_uring(ring, target, source)
        await asyncio.sleep(0)
        await save_uring(ring, out, target, index, line)
    assert len(read) == len(INPUT)


async def run_batch(way: str, inputs: list[str], out: str) -> None:
    """Every image's file calls, ``CONCURRENCY`` at a time."""
    gate = asyncio.Semaphore(CONCURRENCY)
    ring = Ring(asyncio.get_running_loop()) if way == "io_uring" else None
    index = os.open(os.path.join(out, "index"), APPEND_FLAGS, 0o666)

    async def limited(number: int, source: str) -> None:
        async with gate:
            await one_image(way, ring, out, index, number, source)

    try:
        await asyncio.gather(*(limited(number, source) for number, source in enumerate(inputs)))
    finally:
        os.close(index)
        if ring is not None:
            ring.close()
    assert len(os.listdir(out)) == len(inputs) + 1


def measure_one(way: str, images: int) -> dict[str, float]:
    """In this process: one batch made ``way``, its CPU and wall time per image (µs)."""
    with tempfile.TemporaryDirectory() as folder:
        inputs = [os.path.join(folder, f"in-{number:05d}.png") for number in range(images)]
        for source in inputs:
            Path(source).write_bytes(INPUT)
        out = os.path.join(folder, "out")
        os.mkdir(out)
        started, cpu, loop_cpu = time.perf_counter(), time.process_time(), time.thread_time()
        asyncio.run(run_batch(way, inputs, out))
        wall = time.perf_counter() - started
        cpu, loop_cpu = time.process_time() - cpu, time.thread_time() - loop_cpu
    per_image = 1e6 / images
    return {
        "wall": wall * per_image,
        "cpu": cpu * per_image,
        "loop": loop_cpu * per_image,
        "others": (cpu - loop_cpu) * per_image,
    }


WAYS = ("loop", "threads", "io_uring")


def main() -> None:
    """Round-robin over fresh processes; print one Markdown table of medians."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--images", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=6)
    parser.add_argument("--one", choices=WAYS, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(args.one, args.images)))
        return
    figures: dict[str, list[dict[str, float]]] = {way: [] for way in WAYS}
    for _ in range(args.rounds):
        for way in WAYS:
            command = [sys.executable, __file__, "--one", way, "--images", str(args.images)]
            done = subprocess.run(command, check=True, capture_output=True, text=True)
            figures[way].append(json.loads(done.stdout))
    print(f"machine: {machine()}")
    print("| file calls | CPU µs/image | ratio | loop's thread | other threads | wall µs/image |")
    print("|---|---|---|---|---|---|")
    base = statistics.median(run["cpu"] for run in figures["loop"])
    for way, runs in figures.items():
        medians = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
        print(
            f"| {way} | {medians['cpu']:.0f} | {medians['cpu'] / base:.2f} | "
            f"{medians['loop']:.0f} | {medians['others']:.0f} | {medians['wall']:.0f} |"
        )


if __name__ == "__main__":
    main()

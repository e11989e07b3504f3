"""No file-system call that can block runs on the event loop's thread during a batch.

A slow disk (a network file system, a busy one) would otherwise stall every other task of the
loop: the other transfers, the progress bars, the server of a service. Every file-system
function the standard library offers is watched while a batch runs, and each call made on the
loop's own thread is recorded; the batch's other threads may make them.
"""

from __future__ import annotations

import builtins
import functools
import io
import os
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_image

from rembg_async import AsyncRembg
from rembg_async.server import LocalServer
from tests._moto import Moto, start_moto

#: The os functions that touch a file system (each can wait for a disk or a network).
FILE_CALLS = (
    "access",
    "listdir",
    "lstat",
    "makedirs",
    "mkdir",
    "open",
    "read",
    "remove",
    "rename",
    "replace",
    "scandir",
    "stat",
    "unlink",
    "write",
)


@pytest.fixture
def loop_file_calls(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """The file-system calls made on this thread (the test's event loop) from now on."""
    calls: list[str] = []
    loop_thread = threading.get_ident()

    def watched(name: str, function: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(function)
        def call(*args: Any, **kwargs: Any) -> Any:
            if threading.get_ident() == loop_thread:
                calls.append(f"{name}({args[0] if args else ''!r}) at {_caller()}")
            return function(*args, **kwargs)

        return call

    for name in FILE_CALLS:
        monkeypatch.setattr(os, name, watched(f"os.{name}", getattr(os, name)))
    monkeypatch.setattr(builtins, "open", watched("open", builtins.open))
    monkeypatch.setattr(io, "open", watched("io.open", io.open))
    return calls


def write_inputs(folder: Path) -> list[Path]:
    """Small images in two subfolders, and one large enough to be sent in chunks."""
    paths = []
    for number in range(12):
        path = folder / f"part-{number % 2}" / f"image-{number}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(make_image((24 + number, 18)))
        paths.append(path)
    large = folder / "large.bmp"
    large.write_bytes(make_image((400, 300), "BMP"))
    assert large.stat().st_size > 256 * 1024  # sent from the file, not from memory
    return [*paths, large]


async def test_a_batch_into_a_folder_makes_no_file_call_on_the_loop(
    rembg_server: LocalServer, tmp_path: Path, loop_file_calls: list[str]
) -> None:
    """Reading inputs, checking and writing outputs, the index and the manifest: all off the
    loop, in a first run and in a resumed one that skips what is done."""
    inputs = write_inputs(tmp_path / "in")
    loop_file_calls.clear()
    async with AsyncRembg(rembg_server.api_key, base_url=rembg_server.url) as client:
        for _ in range(2):
            run = client.remove_many(
                inputs,
                concurrency=4,
                output_dir=tmp_path / "out",
                root=tmp_path / "in",
                manifest=tmp_path / "manifest.jsonl",
                skip_existing=True,
            )
            async with run:
                items = [item async for item in run]
            assert all(item.ok for item in items)
    assert loop_file_calls == []
    made = sorted(path.stem for path in (tmp_path / "out" / "part-1").glob("image-*"))
    assert made == sorted(f"image-{number}" for number in (1, 3, 5, 7, 9, 11))


async def test_a_batch_of_temporary_results_makes_no_file_call_on_the_loop(
    rembg_server: LocalServer, tmp_path: Path, loop_file_calls: list[str]
) -> None:
    """Without an output folder: inputs read, temporary results written and cleaned up, off
    the loop."""
    inputs = write_inputs(tmp_path / "in")
    loop_file_calls.clear()
    async with (
        AsyncRembg(rembg_server.api_key, base_url=rembg_server.url) as client,
        client.remove_many(inputs, concurrency=4) as run,
    ):
        async for item in run:
            assert item.result is not None
            await item.result.cleanup()
    assert loop_file_calls == []


def _caller() -> str:
    """The nearest rembg_async frame (else the nearest) of a watched call: frames only, no
    source lines (reading them would be a file call itself)."""
    frame = sys._getframe(2)
    nearest = f"{frame.f_code.co_filename}:{frame.f_lineno}"
    while frame is not None:
        if "rembg_async" in frame.f_code.co_filename:
            return f"{Path(frame.f_code.co_filename).name}:{frame.f_lineno}"
        frame = frame.f_back  # type: ignore[assignment]
    return nearest


@pytest.fixture(scope="module")
def moto() -> Iterator[Moto]:
    """A real S3 (moto) on a loopback port."""
    server = start_moto()
    yield server
    server.close()


async def test_a_batch_from_s3_to_s3_makes_no_file_call_on_the_loop(
    rembg_server: LocalServer, moto: Moto, loop_file_calls: list[str]
) -> None:
    """Remote inputs streamed, results received locally and put whole, index segments and
    a remote manifest: no file call on the loop once the store's session is up (s3fs reads
    its configuration when it starts one)."""
    pytest.importorskip("s3fs")
    bucket = moto.new_bucket()
    names = [f"part-{number % 2}/image-{number}.png" for number in range(8)]
    for number, name in enumerate(names):
        image = make_image((24 + number, 18)) + (b"\0" * 300_000 if number == 0 else b"")
        moto.client().put_object(Bucket=bucket, Key=f"in/{name}", Body=image)
    inputs = [f"s3://{bucket}/in/{name}" for name in names]
    async with AsyncRembg(
        rembg_server.api_key, base_url=rembg_server.url, storage_options=moto.storage_options
    ) as client:
        await client.remove(inputs[1], return_bytes=True)  # the session is up
        loop_file_calls.clear()
        for _ in range(2):
            run = client.remove_many(
                inputs,
                concurrency=4,
                output_dir=f"s3://{bucket}/out",
                root=f"s3://{bucket}/in",
                manifest=f"s3://{bucket}/manifest.jsonl",
                skip_existing=True,
            )
            async with run:
                items = [item async for item in run]
            assert all(item.ok for item in items)
        assert [item.status for item in items] == ["skipped"] * 8
    assert loop_file_calls == []

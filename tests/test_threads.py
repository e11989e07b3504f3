"""run_to_completion: thread calls that stay correct when their caller is cancelled."""

from __future__ import annotations

import asyncio
import threading

import pytest

from rembg_async._threads import run_to_completion


async def test_cancelled_caller_waits_and_undoes() -> None:
    """Cancelled mid-call: the call still finishes, its result is undone, CancelledError follows."""
    release = threading.Event()
    undone: list[str] = []

    def slow() -> str:
        release.wait(5)
        return "made"

    task = asyncio.create_task(run_to_completion(slow, undo=undone.append))
    await asyncio.sleep(0.01)
    task.cancel()
    await asyncio.sleep(0.01)
    assert not task.done()  # still waiting for the thread call to finish
    release.set()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert undone == ["made"]


async def test_result_and_errors_pass_through() -> None:
    """Uncancelled, it returns the result or raises the call's error; undo is not called."""
    undone: list[object] = []
    assert await run_to_completion(lambda: 42, undo=undone.append) == 42
    with pytest.raises(ZeroDivisionError):
        await run_to_completion(lambda: 1 / 0, undo=undone.append)
    assert undone == []

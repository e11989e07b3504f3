"""Blocking file calls in a thread, safe to cancel.

``asyncio.to_thread`` (and aiofiles, built the same way) returns at once when the awaiting task
is cancelled, while the call goes on in its thread: a file opened there is lost (a descriptor
leak), and a read still running races the ``close()`` that cancellation triggers. Here a
cancelled caller first waits for the call to finish, so the file it uses can then be closed.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


async def run_to_completion(
    function: Callable[..., T], *args: object, undo: Callable[[T], object] | None = None
) -> T:
    """``function(*args)`` in a thread; on cancellation, wait for it to finish, then re-raise.

    ``undo`` is given the result of a call that completed for a caller who was cancelled
    meanwhile, and will never see it: to close or delete what the call made.
    """
    # run_in_executor rather than to_thread: no Task and no context copy per call, which
    # matters at one call per chunk.
    future = asyncio.get_running_loop().run_in_executor(None, function, *args)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        if undo is not None and not future.cancelled() and future.exception() is None:
            undo(future.result())
        raise

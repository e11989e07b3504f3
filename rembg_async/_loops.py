"""The CLI's event loop: uvloop (less CPU per request, docs/performance.md) when the ``speed``
extra installed it and ``REMBG_ASYNC_LOOP=asyncio`` does not turn it off; asyncio's otherwise;
and its Ctrl-C and SIGTERM handling."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import os
import signal
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar

T = TypeVar("T")

#: The environment variable that chooses the loop: ``uvloop`` (the default) or ``asyncio``.
LOOP_VARIABLE = "REMBG_ASYNC_LOOP"


def loop_name() -> str:
    """``"uvloop"`` when the CLI's loop will be uvloop, else ``"asyncio"``."""
    if os.environ.get(LOOP_VARIABLE, "uvloop").strip().lower() == "asyncio":
        return "asyncio"
    try:
        importlib.import_module("uvloop")
    except ImportError:
        return "asyncio"
    return "uvloop"


def run(main: Coroutine[Any, Any, T]) -> T:
    """``asyncio.run(main)``, on uvloop when it is installed and not turned off."""
    if loop_name() == "uvloop":
        uvloop = importlib.import_module("uvloop")
        result: T = uvloop.run(main)
        return result
    return asyncio.run(main)


@contextlib.contextmanager
def signals_handled(handler: Callable[[int], None]) -> Iterator[None]:
    """SIGINT and SIGTERM call ``handler(number)`` on the running loop while inside."""
    loop = asyncio.get_running_loop()
    installed = []
    for number in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):  # no signal handlers on Windows loops
            loop.add_signal_handler(number, handler, int(number))
            installed.append(number)
    try:
        yield
    finally:
        for number in installed:
            loop.remove_signal_handler(number)

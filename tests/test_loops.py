"""The CLI's event loop: uvloop when the speed extra installed it, unless turned off."""

from __future__ import annotations

import asyncio
import importlib.util

import pytest

from rembg_async._loops import LOOP_VARIABLE, loop_name, run

HAS_UVLOOP = importlib.util.find_spec("uvloop") is not None


async def loop_module() -> str:
    """The module of the loop this runs on."""
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.skipif(not HAS_UVLOOP, reason="the speed extra (uvloop) is not installed here")
def test_the_cli_runs_on_uvloop_when_it_is_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    """With uvloop installed and no choice made, the CLI's coroutines run on uvloop."""
    monkeypatch.delenv(LOOP_VARIABLE, raising=False)
    assert loop_name() == "uvloop"
    assert run(loop_module()).startswith("uvloop")


@pytest.mark.parametrize("value", ["asyncio", " AsyncIO "], ids=["plain", "spaced-and-cased"])
def test_rembg_async_loop_asyncio_turns_uvloop_off(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    """``REMBG_ASYNC_LOOP=asyncio`` runs on asyncio's own loop, uvloop installed or not."""
    monkeypatch.setenv(LOOP_VARIABLE, value)
    assert loop_name() == "asyncio"
    assert run(loop_module()).startswith("asyncio")

"""``async with`` for every object of ours that has something to close."""

from __future__ import annotations

from typing import TypeVar

T = TypeVar("T", bound="AsyncClosing")


class AsyncClosing:
    """Adds ``async with``: entering gives the object, leaving calls ``_close_on_exit()``."""

    __slots__ = ()  # so attrs' slotted classes can use it

    async def _close_on_exit(self) -> None:
        raise NotImplementedError

    async def __aenter__(self: T) -> T:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._close_on_exit()

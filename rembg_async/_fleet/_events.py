"""A member's background work: the fleet's news heard through pub/sub (a hint: a start slept on
is confirmed with Redis anyway), and the leases of its requests renewed every third of a lease."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from typing import TYPE_CHECKING, Final

from ._script import MICROS, REDIS_FAILURES, FleetScript

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("rembg_async")

#: The longest a waiter for a slot or credit waits before asking again (a lost message).
MAX_POLL: Final = 1.0
#: After a failure, the listener tries to subscribe again after this long.
RESUBSCRIBE: Final = 1.0


class Events:
    """Sleepers woken by the fleet's news, waiters for a free slot, held leases."""

    def __init__(self, redis: Redis, script: FleetScript, lease: float) -> None:
        self._redis = redis
        self._script = script
        self._lease = lease
        #: Tokens of this member's requests whose leases Redis holds.
        self.held: set[str] = set()
        #: Each request asleep until its start: its waker, and its start (monotonic).
        self._sleepers: dict[asyncio.Future[None], float] = {}
        self._free = asyncio.Event()
        self._free_queue = asyncio.Lock()
        self._held_until = -math.inf  # local monotonic time: the last hold-off heard of (none)
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False

    def held_for(self) -> float:
        """Seconds left of the last hold-off or stop heard of."""
        return max(0.0, self._held_until - time.monotonic())

    def start(self) -> None:
        """Start listening and renewing, on the running loop (once)."""
        if not self._tasks:
            self._tasks = [asyncio.ensure_future(work) for work in (self._listen(), self._renew())]

    async def sleep(self, seconds: float) -> bool:
        """Sleep ``seconds``; False if a cut, or a hold-off or stop that ends after the
        start, was heard of meanwhile."""
        if seconds <= 0:
            return True
        waker = asyncio.get_running_loop().create_future()
        self._sleepers[waker] = time.monotonic() + seconds
        try:
            await asyncio.wait([waker], timeout=seconds)
        finally:
            del self._sleepers[waker]
        return not waker.done()

    async def wait_for_free(self, hint: float) -> None:
        """Wait for a slot or credit to be freed somewhere (or a lease to run out); one
        waiter per member at a time, so a freed slot wakes one caller here, not all."""
        async with self._free_queue:
            self._free.clear()
            with contextlib.suppress(TimeoutError, asyncio.TimeoutError):
                await asyncio.wait_for(self._free.wait(), min(MAX_POLL, hint + 0.001))

    async def aclose(self) -> None:
        """Stop listening and renewing."""
        self._closing = True  # redis-py may turn a cancellation into its own TimeoutError
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        self._wake(math.inf)

    def _heard(self, message: bytes) -> None:
        """News: a hold-off or a stop (the sleepers whose starts fall inside it reserve afresh),
        a cut (all reserve afresh, at the new rate), or a freed slot or credit."""
        kind, _, value = message.decode().partition(" ")
        if kind == "free":
            self._free.set()
            return
        if kind == "cut":
            self._wake(math.inf)
        elif kind in ("hold", "stop"):
            ends = time.monotonic() + int(value) / MICROS
            self._held_until = max(self._held_until, ends)
            # Only a sleeper whose start falls inside it must reserve afresh: a hold already
            # known (or shorter) wakes nobody, however many 429s announce it.
            self._wake(ends)

    def _wake(self, before: float) -> None:
        """Wake the sleepers whose starts come ``before`` (monotonic)."""
        for waker, start in self._sleepers.items():
            if start < before and not waker.done():
                waker.set_result(None)

    async def _listen(self) -> None:
        while not self._closing:
            try:
                # The subscription's confirmations are skipped with any other type of message.
                async with self._redis.pubsub() as pubsub:
                    await pubsub.subscribe(self._script.channel)
                    while not self._closing:
                        message = await pubsub.get_message(timeout=MAX_POLL)
                        if message is not None and message["type"] == "message":
                            self._heard(message["data"])
            except REDIS_FAILURES as error:
                if self._closing:
                    return
                logger.debug("fleet news: %s; subscribing again in %.0f s", error, RESUBSCRIBE)
                await asyncio.sleep(RESUBSCRIBE)

    async def _renew(self) -> None:
        while not self._closing:
            await asyncio.sleep(self._lease / 3)
            if not self.held:
                continue
            try:
                await self._script.renew(sorted(self.held))
            except REDIS_FAILURES as error:
                logger.debug("could not renew %d lease(s): %s", len(self.held), error)

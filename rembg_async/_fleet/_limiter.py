"""RedisLimiter: one rate, hold-off, stop and credit budget for every process that uses one API
key, kept in Redis (how, and how late a member learns of a hold: docs/guides/many-processes.md)."""

from __future__ import annotations

import contextlib
import logging
import math
import time
import uuid
from typing import TYPE_CHECKING, Any, Final

import attrs

from .._budget import BudgetExhaustedError
from .._closing import AsyncClosing
from .._exceptions import error_from_message, retry_after_seconds
from .._limits import AdaptiveLimiter, Answer, Permit, RateLimitState, refused
from .._limits._protocol import check_limits
from ._events import Events
from ._script import REDIS_FAILURES, FleetScript, Full, Go, Settings, Spent, Stopped, key_tag

if TYPE_CHECKING:
    from redis.asyncio import Redis

logger = logging.getLogger("rembg_async")

#: Permits from the local fallback carry this token.
LOCAL: Final = "local"


class BudgetUnavailableError(BudgetExhaustedError):
    """The shared credit budget cannot be checked (Redis does not answer): nothing is spent
    that cannot be accounted for, so no image starts."""

    def __init__(self, max_credits: int, cause: str) -> None:
        super().__init__(0, max_credits)
        self.args = (
            f"the shared credit budget of {max_credits} cannot be checked ({cause}): "
            "no image starts until Redis answers",
        )


class RedisLimiter(AsyncClosing):
    """A `Limiter` shared by every process (on any machine) that uses one API key.

    Pass it as ``AsyncRembg(limiter=...)`` in every replica and worker: the client calls
    ``for_api_key`` with its key, so state is kept per key (under a hash of it, never the key).
    ``requests_per_second`` fixes the fleet's rate (else it is learned from 429s, as by
    `AdaptiveLimiter`, by any member for all); ``max_concurrency`` caps requests in flight
    fleet-wide and ``max_credits`` the credits spent, both with leases of ``lease`` seconds
    that a dead member's requests let expire (an expired credit counts as spent).
    ``refusal_hold`` is how long a refused key (401, 402, 403, or a daily or monthly limit
    without ``Retry-After``) stops the fleet; ``fallback_rate`` the requests per second of each
    member while Redis is unreachable. ``namespace`` separates fleets that share a Redis.

    Every short-term 429's ``Retry-After`` holds every member: from the moment the member that
    met it has written the hold to Redis (one Redis call after the answer), no permit is
    granted inside it, and a start slept on is confirmed with Redis first. Only a request whose
    permit was granted before that moment can still start inside the hold.
    """

    def __init__(
        self,
        redis: Redis,
        *,
        api_key: str | None = None,
        namespace: str = "",
        requests_per_second: float | None = None,
        adaptive: bool = True,
        max_concurrency: int | None = None,
        max_credits: int | None = None,
        max_hold: float = 60.0,
        lease: float = 30.0,
        refusal_hold: float = 300.0,
        fallback_rate: float = 1.0,
        reconnect_after: float = 1.0,
        close_redis: bool = False,
    ) -> None:
        check_limits(requests_per_second, max_concurrency)
        if max_credits is not None and max_credits < 0:
            raise ValueError("max_credits cannot be negative")
        if not lease > 0 or not fallback_rate > 0:
            raise ValueError("lease and fallback_rate must be positive")
        self._redis = redis
        self._namespace = namespace
        self._settings = Settings(
            requests_per_second=requests_per_second,
            adaptive=adaptive,
            max_concurrency=max_concurrency,
            max_credits=max_credits,
            max_hold=max_hold,
            lease=lease,
        )
        self._refusal_hold = refusal_hold
        self._fallback_rate = fallback_rate
        self._reconnect_after = reconnect_after
        self._close_redis = close_redis
        self._script = FleetScript(redis, key_tag(api_key, namespace), self._settings)
        self._events = Events(redis, self._script, lease)
        self._fallback: AdaptiveLimiter | None = None
        self._retry_at = 0.0  # while Redis is down: when to try it again
        self._probing = False
        self._rate: float | None = None
        self._ceiling: float | None = None
        self._answered = self._throttled = 0
        self._closed = False
        #: Whether Redis answered the last call (False: pacing locally, budget refused).
        self.connected = True

    @classmethod
    def from_url(cls, url: str, *, socket_timeout: float = 1.0, **kwargs: Any) -> RedisLimiter:
        """A limiter on its own connection pool to ``url`` (``redis://``, ``rediss://``,
        ``unix://``), closed with the limiter. ``socket_timeout`` bounds every Redis call and
        connection attempt: a frozen Redis never hangs a request."""
        from redis.asyncio import Redis

        redis = Redis.from_url(
            url,
            socket_timeout=socket_timeout,
            socket_connect_timeout=socket_timeout,
            health_check_interval=30,
        )
        return cls(redis, close_redis=True, **kwargs)

    def for_api_key(self, api_key: str | None) -> RedisLimiter:
        """A member for ``api_key``'s state, on this limiter's connection and settings (the
        client calls it; closing the member leaves the connection to this limiter)."""
        return RedisLimiter(
            self._redis,
            api_key=api_key,
            namespace=self._namespace,
            refusal_hold=self._refusal_hold,
            fallback_rate=self._fallback_rate,
            reconnect_after=self._reconnect_after,
            **attrs.asdict(self._settings),
        )

    async def _close_on_exit(self) -> None:
        await self.aclose()

    def __repr__(self) -> str:
        rate = "unpaced" if self._rate is None else f"{self._rate:.3g}/s"
        link = "connected" if self.connected else "Redis unreachable, local fallback"
        return f"<RedisLimiter {self._script.tag} {rate} {link}>"

    @property
    def state(self) -> RateLimitState:
        """What this member last heard of the fleet: the rate in force, its own answers."""
        settings = self._settings
        fixed = settings.requests_per_second if self.connected else self._fallback_rate
        return RateLimitState(
            rate=self._rate if fixed is None else fixed,
            source="fixed" if fixed is not None else "learned" if self._ceiling else "none",
            ceiling=self._ceiling,
            adaptive=settings.requests_per_second is None and settings.adaptive,
            answered=self._answered,
            throttled=self._throttled,
            in_flight=len(self._events.held),
            held_for=self._events.held_for(),
        )

    async def acquire(self) -> Permit:
        """Reserve this request's start fleet-wide and sleep until it."""
        while True:
            if self._closed:  # also for a caller asleep when it closed (aclose wakes it)
                raise RuntimeError("this limiter is closed")
            if not self._redis_usable():
                return await self._acquire_locally()
            token = uuid.uuid4().hex
            try:
                reply = await self._reserve(token)
            except REDIS_FAILURES as error:
                self._lost(error)
                continue
            except BaseException:
                self._probing = False  # cancelled while trying Redis: another caller may try
                raise
            if isinstance(reply, Go):
                slept = await self._sleep_until_start(token, reply)
                if slept and await self._confirm(token, reply):
                    return Permit(started_at=reply.start, epoch=reply.epoch, token=token)
            elif isinstance(reply, Full):
                await self._events.wait_for_free(reply.hint)
            else:
                raise refused(refusal(reply))

    async def _reserve(self, token: str) -> Go | Stopped | Full | Spent:
        self._events.start()
        self._events.held.add(token)
        try:
            reply = await self._script.reserve(token)
        except BaseException:
            self._events.held.discard(token)
            raise
        self._heard()
        if not isinstance(reply, Go):
            self._events.held.discard(token)
            return reply
        self._rate = reply.rate or None
        self._ceiling = reply.ceiling or None
        return reply

    async def _sleep_until_start(self, token: str, reply: Go) -> bool:
        """Sleep until the reserved start; False (the reservation given back) if a hold, a
        stop or a cut came meanwhile, so the caller reserves afresh."""
        slept = False
        try:
            slept = await self._events.sleep(reply.wait)
        finally:
            if not slept:  # woken, or cancelled: its slot and credit go back now
                await self._abandon(token, reply)
        return slept

    async def _confirm(self, token: str, reply: Go) -> bool:
        """Whether a reservation slept on still stands at its start, asked of Redis (pub/sub news
        of a hold-off may come late, or be lost); one granted at once was checked already."""
        if reply.wait <= 0:
            return True
        try:
            verdict = await self._script.confirm(token, reply.epoch)
        except REDIS_FAILURES as error:
            self._events.held.discard(token)  # its lease runs out by itself
            self._lost(error)
            return False
        except BaseException:
            await self._abandon(token, reply)
            raise
        if verdict is True:
            return True
        self._events.held.discard(token)  # the script gave the reservation back
        if isinstance(verdict, Stopped):
            raise refused(refusal(verdict))
        return False

    async def _abandon(self, token: str, reply: Go) -> None:
        """Give back a reservation whose request was never sent (nothing to charge)."""
        self._events.held.discard(token)
        permit = Permit(started_at=reply.start, epoch=reply.epoch, token=token)
        with contextlib.suppress(*REDIS_FAILURES):
            await self._script.settle(permit, None, 0.0, sent=False)

    async def release(self, permit: Permit, answer: Answer | None) -> None:
        """Free the request's slot and credit and tell the fleet what the server said."""
        if permit.token == LOCAL:
            assert self._fallback is not None
            await self._fallback.release(permit, answer)
            return
        self._events.held.discard(permit.token)
        if answer is not None:
            self._answered += 1
            self._throttled += answer.throttled
        stop_for = self._stop_for(answer) if answer is not None else 0.0
        try:
            await self._script.settle(permit, answer, stop_for)
        except REDIS_FAILURES as error:
            self._lost(error)  # the leases run out by themselves (a credit then counts spent)

    async def hold_off(self, seconds: float) -> None:
        """Start no request for ``seconds``, fleet-wide."""
        try:
            await self._script.hold(seconds)
        except REDIS_FAILURES as error:
            self._lost(error)
            if self._fallback is not None:
                await self._fallback.hold_off(seconds)

    async def aclose(self) -> None:
        """Stop the member's background work; close the Redis connection if made by
        `from_url`. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        await self._events.aclose()
        if self._fallback is not None:
            await self._fallback.aclose()
        if self._close_redis:
            await self._redis.aclose()

    def _stop_for(self, answer: Answer) -> float:
        """How long ``answer`` stops the fleet: 0 unless it refuses the key."""
        if not answer.refuses_the_key:
            return 0.0
        wait = retry_after_seconds(answer.headers) if answer.status == 429 else None
        return wait if wait is not None and wait > 0 else self._refusal_hold

    # Redis trouble: a local limit, a budget that refuses, a new try now and then.
    def _redis_usable(self) -> bool:
        if self.connected or (time.monotonic() >= self._retry_at and not self._probing):
            self._probing = not self.connected
            return True
        return False

    def _heard(self) -> None:
        if not self.connected:
            logger.warning("Redis answers again: the fleet's shared limits are back")
        self.connected = True
        self._probing = False

    def _lost(self, error: BaseException) -> None:
        if self.connected:
            logger.warning(
                "Redis cannot be reached (%s): pacing at %.3g requests/s here%s until it answers",
                error or type(error).__name__,
                self._fallback_rate,
                ", refusing to spend credits" if self._settings.max_credits is not None else "",
            )
        self.connected = False
        self._probing = False
        self._retry_at = time.monotonic() + self._reconnect_after

    async def _acquire_locally(self) -> Permit:
        max_credits = self._settings.max_credits
        if max_credits is not None:
            raise refused(BudgetUnavailableError(max_credits, "Redis does not answer"))
        if self._fallback is None:
            self._fallback = AdaptiveLimiter(
                requests_per_second=self._fallback_rate,
                max_concurrency=self._settings.max_concurrency,
            )
        permit = await self._fallback.acquire()
        return Permit(started_at=permit.started_at, epoch=permit.epoch, token=LOCAL)


def refusal(reply: Stopped | Spent) -> Exception:
    """A spent budget's error, or the one the server gave the member that found the key refused
    (as if it were ours)."""
    if isinstance(reply, Spent):
        return BudgetExhaustedError(reply.spent, reply.max_credits)
    headers = {"Retry-After": str(math.ceil(reply.left))}
    return error_from_message(reply.status, reply.message, headers)

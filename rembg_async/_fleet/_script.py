"""The fleet's state in Redis: its keys, under a hash tag of the API key (never the key itself,
and all in one Cluster slot), and the Lua script (``fleet.lua``) that reads and changes them."""

from __future__ import annotations

import hashlib
import json
from importlib import resources
from typing import TYPE_CHECKING, Any, Final

import attrs
from redis.exceptions import RedisError

from .._exceptions import retry_after_seconds
from .._limits import Answer, Permit, _adaptive, _control, read_hint

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.commands.core import AsyncScript

#: What a Redis call may fail with: redis-py's errors, and the socket's own.
REDIS_FAILURES: Final[tuple[type[BaseException], ...]] = (RedisError, OSError, TimeoutError)
SOURCE: Final = resources.files(__package__).joinpath("fleet.lua").read_text(encoding="utf-8")
MICROS: Final = 1_000_000
#: "None" for a number the script acts on only when positive (a budget: not negative).
NONE: Final = -1
#: Every constant of the rate controller, for the script's copy of its curve (in lowercase).
CURVE: Final = {name.lower(): value for name, value in vars(_control).items() if name.isupper()}


def key_tag(api_key: str | None, namespace: str) -> str:
    """``rembg:[namespace:]{hash}``: where one API key's state lives (anonymous: its own)."""
    digest = hashlib.sha256(f"rembg-async:{api_key or ''}".encode()).hexdigest()[:20]
    return f"rembg:{namespace + ':' if namespace else ''}{{{digest}}}"


@attrs.frozen
class Settings:
    """A member's settings, sent with every call (members of one key should agree on them)."""

    requests_per_second: float | None
    adaptive: bool
    max_concurrency: int | None
    max_credits: int | None
    max_hold: float
    lease: float

    def as_json(self, channel: str) -> str:
        """The script's ``cfg``, with the rate controller's constants."""
        return json.dumps(
            {
                "fixed": self.requests_per_second or 0,
                "adaptive": self.adaptive,
                "max_slots": self.max_concurrency or 0,
                "max_credits": NONE if self.max_credits is None else self.max_credits,
                "max_hold": self.max_hold * MICROS,
                "lease": self.lease * MICROS,
                "window_growth": _adaptive.WINDOW_GROWTH,
                "channel": channel,
                **CURVE,
            }
        )


@attrs.frozen
class Go:
    """Start in ``wait`` seconds; ``start`` is Redis' time then, ``rate`` the rate in force
    (0: not paced), ``ceiling`` the learned one (0: none yet)."""

    wait: float
    epoch: int
    start: float
    rate: float
    ceiling: float


@attrs.frozen
class Stopped:
    """The key is refused fleet-wide for ``left`` seconds more, with the server's words."""

    left: float
    status: int
    message: str


@attrs.frozen
class Full:
    """No slot or credit is free now; one may be in ``hint`` seconds (a lease's end)."""

    hint: float


@attrs.frozen
class Spent:
    """The credit budget is spent, nothing in flight: ``spent`` of ``max_credits``."""

    spent: int
    max_credits: int


class FleetScript:
    """The script bound to one key's state and one member's settings."""

    def __init__(self, redis: Redis, tag: str, settings: Settings) -> None:
        self.tag = tag
        self.channel = f"{tag}:events"
        self._keys = [f"{tag}:{name}" for name in ("state", "slots", "credits", "admitted")]
        self._settings = settings.as_json(self.channel)
        self._script: AsyncScript = redis.register_script(SOURCE)

    async def _call(self, command: str, *args: Any) -> Any:
        return await self._script(keys=self._keys, args=[command, self._settings, *args])

    async def reserve(self, token: str) -> Go | Stopped | Full | Spent:
        """Reserve the next start fleet-wide for ``token``'s request."""
        reply = await self._call("reserve", token)
        code = int(reply[0])
        if code == 0:
            _, wait, epoch, start, rate, ceiling = reply
            return Go(
                int(wait) / MICROS, int(epoch), int(start) / MICROS, float(rate), float(ceiling)
            )
        if code == 1:
            return _stopped(reply)
        if code in (2, 3):
            return Full(max(0.0, int(reply[1]) / MICROS))
        return Spent(int(reply[1]), int(reply[2]))

    async def confirm(self, token: str, epoch: int) -> Stopped | bool:
        """At its reserved start: True if ``token``'s request may start; False if a hold-off or
        a cut voided the reservation (given back: reserve afresh); `Stopped` if a stop did."""
        reply = await self._call("confirm", token, epoch)
        code = int(reply[0])
        return _stopped(reply) if code == 1 else code == 0

    async def settle(
        self, permit: Permit, answer: Answer | None, stop_for: float, *, sent: bool = True
    ) -> None:
        """The request is over: free its lease, count its credit, learn from its answer. One
        sent with no answer may have been charged (its credit is spent), one never sent not."""
        hint = read_hint(answer.headers if answer is not None else {})
        # Only a short-term 429's wait matters to the fleet (a stop's is in ``stop_for``).
        wait = retry_after_seconds(answer.headers) if answer and answer.throttled else None
        await self._call(
            "settle",
            permit.token,
            _outcome(answer),
            int(sent and (answer is None or answer.status == 200)),
            permit.epoch,
            _micros(permit.started_at),
            NONE if wait is None else _micros(wait),
            hint.rate or 0,
            _micros(hint.exhausted_for) if hint.exhausted_for else NONE,
            _micros(stop_for) if stop_for > 0 else NONE,
            answer.status if answer is not None else 0,
            answer.message if answer is not None else "",
        )

    async def renew(self, tokens: list[str]) -> None:
        """Extend the leases of requests still under way."""
        await self._call("renew", *tokens)

    async def hold(self, seconds: float) -> None:
        """Start nothing fleet-wide for ``seconds``."""
        await self._call("hold", _micros(seconds))


def _outcome(answer: Answer | None) -> str:
    if answer is None:
        return "none"
    if answer.throttled:
        return "throttled"
    return "ok" if 200 <= answer.status < 300 else "other"


def _micros(seconds: float) -> int:
    return round(seconds * MICROS)


def _stopped(reply: list[Any]) -> Stopped:
    """``{1, left, status, message}``: the message is bytes unless the client decodes."""
    left, status, message = reply[1:4]
    if isinstance(message, bytes):
        message = message.decode("utf-8", errors="replace")
    return Stopped(int(left) / MICROS, int(status), message)

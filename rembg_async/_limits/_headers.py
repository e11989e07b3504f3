"""What a server's rate-limit headers say: its short-term rate, and whether its quota is spent.

Read: the IETF fields in their current form (``RateLimit-Policy: "burst";q=100;w=1`` and
``RateLimit: "burst";r=0;t=1``), in draft-07's (``RateLimit: limit=100, remaining=0, reset=1``
with ``RateLimit-Policy: 100;w=1``), the older ``RateLimit-Limit/-Remaining/-Reset`` trio and
the common ``X-RateLimit-*`` one (whose reset may be a Unix time). A ``Limit`` without a
window says nothing about a rate, so only a policy with ``w`` sets one.
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import attrs

#: A reset above this is a Unix time, not a number of seconds (a year of seconds is 3e7).
UNIX_TIME_FLOOR = 1e9


@attrs.frozen(kw_only=True)
class ServerHint:
    """``rate``: the shortest policy's quota per second; ``exhausted_for``: seconds until a
    spent quota comes back (None: not spent, or not said)."""

    rate: float | None = None
    exhausted_for: float | None = None

    @property
    def empty(self) -> bool:
        """Whether the headers said nothing we use."""
        return self.rate is None and self.exhausted_for is None


def read_hint(headers: Mapping[str, str], *, now: float | None = None) -> ServerHint:
    """The rate-limit headers among ``headers``, read tolerantly (bad values are ignored)."""
    fields = {name.lower(): value for name, value in headers.items()}
    if not any("ratelimit" in name for name in fields):
        return ServerHint()  # the common case, kept cheap
    rate = _policy_rate(fields.get("ratelimit-policy") or fields.get("x-ratelimit-policy"))
    return ServerHint(rate=rate, exhausted_for=_exhausted_for(fields, now))


def _items(value: str) -> list[tuple[str, dict[str, str]]]:
    """``a;k=v;k2=v2, b;k=v`` as ``[(a, {k: v, k2: v2}), (b, {k: v})]``, quotes stripped."""
    items = []
    for item in value.split(","):
        head, *params = (part.strip() for part in item.split(";"))
        pairs = dict(param.partition("=")[::2] for param in params if "=" in param)
        if "=" in head:  # draft-07's "limit=100": a parameter, not a name
            key, _, val = head.partition("=")
            pairs[key.strip()] = val
            head = ""
        items.append((head.strip('"'), {k.strip(): v.strip().strip('"') for k, v in pairs.items()}))
    return items


def _number(value: str | None) -> float | None:
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and number >= 0 and number == number else None


def _policy_rate(value: str | None) -> float | None:
    """Quota per second of the policy with the shortest window (the short-term one)."""
    if not value:
        return None
    best: tuple[float, float] | None = None
    for head, params in _items(value):
        quota = _number(params.get("q", head))
        window = _number(params.get("w"))
        if quota is not None and window and (best is None or window < best[1]):
            best = (quota, window)
    return best[0] / best[1] if best else None


def _exhausted_for(fields: Mapping[str, str], now: float | None) -> float | None:
    """Seconds until a spent quota resets, from whichever form of the fields was sent."""
    items = _items(fields.get("ratelimit", ""))
    if not any(head for head, _ in items):  # draft-07: one item's parameters, comma-separated
        items = [("", {key: value for _, params in items for key, value in params.items()})]
    waits = []
    for _, params in items:
        remaining = _number(params.get("r", params.get("remaining")))
        waits.append((remaining, _number(params.get("t", params.get("reset")))))
    for prefix in ("ratelimit-", "x-ratelimit-"):
        remaining = _number(fields.get(prefix + "remaining"))
        waits.append((remaining, _reset_seconds(fields.get(prefix + "reset"), now)))
    spent = [reset for remaining, reset in waits if remaining == 0 and reset is not None]
    return max(spent) if spent else None


def _reset_seconds(value: str | None, now: float | None) -> float | None:
    reset = _number(value)
    if reset is not None and reset > UNIX_TIME_FLOOR:
        reset = max(0.0, reset - (time.time() if now is None else now))
    return reset

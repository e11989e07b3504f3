"""What a server's rate-limit headers say (its short-term rate, a spent quota), read tolerantly:
the IETF fields (current and draft-07), ``RateLimit-*`` and ``X-RateLimit-*`` (whose reset may
be a Unix time). Only a policy with a window (``w``) sets a rate."""

from __future__ import annotations

import time
from collections.abc import Mapping

import attrs

from .._exceptions import finite_number

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
    rate = _policy_rate(fields.get("ratelimit-policy") or fields.get("x-ratelimit-policy") or "")
    return ServerHint(rate=rate, exhausted_for=_exhausted_for(fields, now))


def _items(value: str) -> list[tuple[str, dict[str, str]]]:
    """``a;k=v, b;k=v`` as ``[(a, {k: v}), (b, {k: v})]``, quotes stripped; draft-07's
    ``limit=100`` is a parameter of an item with no name."""
    items = []
    for item in value.split(","):
        head, *params = (part.strip() for part in item.split(";"))
        split = [param.partition("=") for param in params if "=" in param]
        pairs = {key: val for key, _, val in split}
        if "=" in head:  # draft-07's "limit=100": a parameter, not a name
            key, _, val = head.partition("=")
            pairs[key.strip()] = val
            head = ""
        items.append((head.strip('"'), {k.strip(): v.strip().strip('"') for k, v in pairs.items()}))
    return items


def _policy_rate(value: str) -> float | None:
    """Quota per second of the policy with the shortest window (the short-term one)."""
    best: tuple[float, float] | None = None
    for head, params in _items(value):
        quota = finite_number(params.get("q", head), minimum=0)
        window = finite_number(params.get("w"), minimum=0)
        if quota is not None and window and (best is None or window < best[1]):
            best = (quota, window)
    return best[0] / best[1] if best else None


def _exhausted_for(fields: Mapping[str, str], now: float | None) -> float | None:
    """Seconds until a spent quota resets, from whichever form of the fields was sent."""
    items = _items(fields.get("ratelimit", ""))
    if not any(head for head, _ in items):  # draft-07: one item's parameters, comma-separated
        items = [("", {key: value for _, params in items for key, value in params.items()})]
    spent = []
    for _, params in items:
        if finite_number(params.get("r", params.get("remaining"))) == 0:
            spent.append(finite_number(params.get("t", params.get("reset")), minimum=0))
    for prefix in ("ratelimit-", "x-ratelimit-"):
        if finite_number(fields.get(prefix + "remaining")) == 0:
            spent.append(_reset_seconds(fields.get(prefix + "reset"), now))
    return max((reset for reset in spent if reset is not None), default=None)


def _reset_seconds(value: str | None, now: float | None) -> float | None:
    reset = finite_number(value, minimum=0)
    if reset is not None and reset > UNIX_TIME_FLOOR:
        reset = max(0.0, reset - (time.time() if now is None else now))
    return reset

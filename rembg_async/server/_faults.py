"""Fault injection: the failures a client must survive, on demand (see `FaultInjector`)."""

from __future__ import annotations

import random
import threading
from collections import deque
from typing import Final, Literal

import attrs

FAULT_HEADER: Final = "x-rembg-fault"


class FaultSyntaxError(ValueError):
    """The text of a fault could not be parsed."""


@attrs.frozen(kw_only=True)
class Fault:
    """One injected failure; several may combine (``latency`` with ``chunked``, say).

    - ``latency``: seconds to wait before anything else.
    - ``status``: answer with this status after draining the upload (no work, no credit);
      JSON like the API's own errors, or an HTML page when ``html`` is set (502 always is).
      ``retry_after`` sets the ``Retry-After`` header; ``scope`` (``short_term``, ``daily``,
      ``monthly``) picks a 429's message.
    - ``drop``: abort the connection during the ``upload`` (after reading part of it) or the
      ``download`` (after sending part of the body).
    - ``truncate``: send a body shorter than its ``Content-Length``, then close.
    - ``trickle``: send the body in ``chunk``-byte pieces, this many seconds apart.
    - ``chunked``: chunked transfer encoding, no ``Content-Length``.
    - ``gzip``: a gzip-encoded body (``Content-Encoding: gzip``).
    - ``garbage``: replace a successful body with bytes that are no image.
    - ``content_type``: replace a successful response's ``Content-Type``.
    """

    latency: float = 0.0
    status: int | None = None
    html: bool = False
    retry_after: str | None = None
    scope: Literal["short_term", "daily", "monthly"] = "short_term"
    drop: Literal["upload", "download"] | None = None
    truncate: bool = False
    trickle: float | None = None
    chunk: int = 16_384
    chunked: bool = False
    gzip: bool = False
    garbage: bool = False
    content_type: str | None = None

    @property
    def shapes_response(self) -> bool:
        """Whether this fault changes how a successful response is delivered."""
        return bool(
            self.drop == "download"
            or self.truncate
            or self.trickle is not None
            or self.chunked
            or self.gzip
            or self.garbage
            or self.content_type
        )


_FLAGS: Final = frozenset({"html", "truncate", "chunked", "gzip", "garbage"})
_NUMBERS: Final[dict[str, type[int] | type[float]]] = {
    "latency": float,
    "trickle": float,
    "status": int,
    "chunk": int,
    "times": int,
}
_CHOICES: Final = {
    "drop": frozenset({"upload", "download"}),
    "scope": frozenset({"short_term", "daily", "monthly"}),
}
_STRINGS: Final = frozenset({"retry_after", "content_type"})


def parse_fault(text: str) -> tuple[Fault, int | None]:
    """A fault and its ``times`` (None: every request) from the header's text."""
    values: dict[str, object] = {}
    times: int | None = None
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, _, value = (piece.strip() for piece in item.partition("="))
        if key == "times":
            times = int(_number(key, value))
        elif key != "id":  # id only makes a test's header text unique
            values[key] = _parse_item(key, value)
    try:
        return Fault(**values), times  # type: ignore[arg-type]
    except (TypeError, ValueError) as error:
        raise FaultSyntaxError(str(error)) from None


def _parse_item(key: str, value: str) -> object:
    if key in _FLAGS:
        return value.lower() not in ("0", "false", "no")
    if key in _NUMBERS:
        return _number(key, value)
    if key in _CHOICES and value not in _CHOICES[key]:
        raise FaultSyntaxError(f"{key} must be one of {sorted(_CHOICES[key])}, got {value!r}")
    if key in _CHOICES or key in _STRINGS:
        return value
    raise FaultSyntaxError(f"unknown fault {key!r}")


def _number(key: str, value: str) -> int | float:
    kind = _NUMBERS[key]
    try:
        return kind(value)
    except ValueError:
        raise FaultSyntaxError(f"{key} needs a {kind.__name__}, got {value!r}") from None


#: The faults drawn at random when the server fails a share of requests (``fault_rate``).
RANDOM_FAULTS: Final = (
    Fault(status=500),
    Fault(status=502),
    Fault(status=503, retry_after="0"),
    Fault(status=429, retry_after="0"),
    Fault(drop="upload"),
    Fault(drop="download"),
    Fault(truncate=True),
    Fault(chunked=True),
    Fault(latency=0.01),
)


class FaultInjector:
    """Chooses the fault, if any, for each request. Safe to drive from another thread.

    Faults are honoured only when the server was started with faults enabled. A fault is chosen
    for a request, in this order, from: the ``x-rembg-fault`` request header, the queue filled
    with `push`, or at random (``fault_rate``). The header's text is a comma-separated list of
    ``key[=value]`` items, for example ``status=503``, ``status=429,retry_after=2``,
    ``drop=download``, ``truncate``, ``latency=0.2,chunked``. ``times=N`` applies the header's
    fault to the first N requests that carry the same text and lets the later ones through, so
    a retrying client can be shown to recover.
    """

    def __init__(self, *, enabled: bool, rate: float = 0.0, seed: int | None = None) -> None:
        self.enabled = enabled
        self._rate = rate
        self._random = random.Random(seed)
        self._queue: deque[Fault] = deque()
        self._seen: dict[str, int] = {}
        self._lock = threading.Lock()

    def push(self, fault: Fault, *, times: int = 1) -> None:
        """Apply ``fault`` to each of the next ``times`` requests."""
        with self._lock:
            self._queue.extend([fault] * times)

    def choose(self, header: str | None) -> Fault | None:
        """The fault for a request carrying ``header`` (the ``x-rembg-fault`` value, if any)."""
        if not self.enabled:
            return None
        with self._lock:
            if header:
                fault, times = parse_fault(header)
                self._seen[header] = self._seen.get(header, 0) + 1
                return fault if times is None or self._seen[header] <= times else None
            if self._queue:
                return self._queue.popleft()
            if self._rate and self._random.random() < self._rate:
                return self._random.choice(RANDOM_FAULTS)
        return None

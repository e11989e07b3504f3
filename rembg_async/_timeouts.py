"""Timeout: how long to wait to connect, for silence while reading, and for a whole attempt."""

from __future__ import annotations

import aiohttp
import attrs


@attrs.frozen(kw_only=True)
class Timeout:
    """Limits for one attempt, in seconds (None: no limit); overridable per call.

    ``connect``: to open the connection. ``read``: the longest silence while waiting for the
    answer or its next bytes. ``attempt``: a deadline for a whole attempt, upload and download
    included; off by default, since a 50 MB upload on a slow link may rightly take long.
    """

    connect: float | None = 30.0
    read: float | None = 120.0
    attempt: float | None = None

    def to_aiohttp(self) -> aiohttp.ClientTimeout:
        """The matching `aiohttp.ClientTimeout` (no 300 s total of aiohttp's default)."""
        return aiohttp.ClientTimeout(
            total=self.attempt, sock_connect=self.connect, sock_read=self.read
        )


#: What ``timeout=`` takes: a `Timeout`, or a number of seconds for ``read``.
TimeoutLike = Timeout | float | int


def as_timeout(value: TimeoutLike | None) -> Timeout | None:
    """``value`` as a `Timeout`: a number is ``Timeout(read=value)``, the longest silence (as
    in httpx), not a deadline: a large upload may take longer, as long as bytes keep moving."""
    if value is None or isinstance(value, Timeout):
        return value
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"timeout must be a Timeout or a number of seconds, not {value!r}")
    if not value > 0:  # also refuses nan
        raise ValueError(f"timeout must be a positive number of seconds, not {value!r}")
    return Timeout(read=float(value))

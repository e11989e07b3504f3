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
        """The matching :class:`aiohttp.ClientTimeout` (no 300 s total of aiohttp's default)."""
        return aiohttp.ClientTimeout(
            total=self.attempt, sock_connect=self.connect, sock_read=self.read
        )

"""What a result cache is (`ResultCache`), and the types of ``cache=`` and ``max_age=``."""

from __future__ import annotations

import datetime
import os
from typing import Protocol, runtime_checkable


@runtime_checkable
class ResultCache(Protocol):
    """Where results are kept between calls, runs and machines: bytes by key.

    The library frames and verifies every entry itself (a header with the key, type, length,
    sha256 and time stored, then the image), so a backend only stores bytes: a dict, Redis,
    a database. ``get`` returns None for a key it does not hold; ``put`` replaces any entry
    under the key, ideally atomically (a reader then sees the old entry or the new one; a
    damaged one is a miss all the same). Keys are 64 hexadecimal digits.
    """

    async def get(self, key: str) -> bytes | None:
        """The bytes stored under ``key``, or None."""
        ...

    async def put(self, key: str, value: bytes) -> None:
        """Store ``value`` under ``key``."""
        ...


#: What ``cache=`` takes: a folder, an fsspec URL, a `ResultCache`, or None (no cache).
CacheLike = str | os.PathLike[str] | ResultCache | None
#: How old an entry may be: seconds, or a `datetime.timedelta`.
MaxAge = float | datetime.timedelta | None


def max_age_seconds(max_age: MaxAge) -> float | None:
    """``max_age`` in seconds (None: no limit); refused when negative."""
    if max_age is None:
        return None
    seconds = max_age.total_seconds() if isinstance(max_age, datetime.timedelta) else max_age
    if seconds < 0:
        raise ValueError(f"max_age cannot be negative, not {max_age!r}")
    return float(seconds)

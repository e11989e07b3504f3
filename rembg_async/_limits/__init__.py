"""Rate limiters: one small interface (`Limiter`), and the in-process adaptive one."""

from ._adaptive import AdaptiveLimiter
from ._control import RateController
from ._headers import read_hint
from ._protocol import (
    Answer,
    Limiter,
    Outcome,
    Permit,
    RateLimitState,
    limited,
    refused,
    was_refused,
)

__all__ = [
    "AdaptiveLimiter",
    "Answer",
    "Limiter",
    "Outcome",
    "Permit",
    "RateController",
    "RateLimitState",
    "limited",
    "read_hint",
    "refused",
    "was_refused",
]

"""Rate limiters: one small interface (`Limiter`), and the in-process adaptive one."""

from ._adaptive import AdaptiveLimiter
from ._control import RateController
from ._headers import ServerHint, read_hint
from ._protocol import (
    Answer,
    Limiter,
    Outcome,
    Permit,
    RateLimitState,
    RateSource,
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
    "RateSource",
    "ServerHint",
    "limited",
    "read_hint",
    "refused",
    "was_refused",
]

"""rembg-async: an async-first client for the RemBG background-removal API."""

from ._adapters import rich_progress, tqdm_progress
from ._api import rembg
from ._batch import BatchItem, BatchProgress, BatchRun, SyncBatchItem, failed_inputs
from ._budget import BudgetExhaustedError, CreditBudget, LocalCreditBudget
from ._cache import FolderCache, FsspecCache, ResultCache
from ._client import AsyncRembg
from ._exceptions import (
    APIConnectionError,
    APIResponseError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    InvalidInputError,
    PaymentRequiredError,
    PermissionDeniedError,
    RateLimitError,
    RembgError,
    ServerError,
)
from ._limits import AdaptiveLimiter, Limiter, RateLimitState
from ._options import RemoveOptions
from ._progress import ProgressEvent
from ._results import Base64Image, ImageBytes, ImageFile, SyncImageFile
from ._retry import RetryPolicy
from ._stream_output import StreamedImage
from ._sync import Rembg, rembg_sync
from ._timeouts import Timeout
from ._usage import BillingCycle, BillingCycleSummary, MembershipUsage
from ._version import __version__

__all__ = [
    "APIConnectionError",
    "APIResponseError",
    "APIStatusError",
    "APITimeoutError",
    "AdaptiveLimiter",
    "AsyncRembg",
    "AuthenticationError",
    "BadRequestError",
    "Base64Image",
    "BatchItem",
    "BatchProgress",
    "BatchRun",
    "BillingCycle",
    "BillingCycleSummary",
    "BudgetExhaustedError",
    "CreditBudget",
    "FolderCache",
    "FsspecCache",
    "ImageBytes",
    "ImageFile",
    "InvalidInputError",
    "Limiter",
    "LocalCreditBudget",
    "MembershipUsage",
    "PaymentRequiredError",
    "PermissionDeniedError",
    "ProgressEvent",
    "RateLimitError",
    "RateLimitState",
    "Rembg",
    "RembgError",
    "RemoveOptions",
    "ResultCache",
    "RetryPolicy",
    "ServerError",
    "StreamedImage",
    "SyncBatchItem",
    "SyncImageFile",
    "Timeout",
    "__version__",
    "failed_inputs",
    "rembg",
    "rembg_sync",
    "rich_progress",
    "tqdm_progress",
]

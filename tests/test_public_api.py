"""The public surface: exactly the documented names, each documented."""

from __future__ import annotations

import importlib
import inspect

import pytest

import rembg_async

DOCUMENTED = {
    "APIConnectionError", "APIResponseError", "APIStatusError", "APITimeoutError",
    "AsyncRembg", "AuthenticationError", "BadRequestError", "Base64Image", "BatchItem",
    "BatchProgress", "BatchRun", "BillingCycle",
    "BillingCycleSummary", "ImageFile", "InvalidInputError", "MembershipUsage",
    "PaymentRequiredError", "PermissionDeniedError", "ProgressEvent", "RateLimitError",
    "RembgError", "RemoveOptions", "RetryPolicy", "ServerError", "Timeout", "__version__",
    "failed_inputs", "rembg", "rich_progress", "tqdm_progress",
    "BudgetExhaustedError", "CreditBudget", "LocalCreditBudget",
    "AdaptiveLimiter", "Limiter", "RateLimitState",
    "StreamedImage", "Rembg", "rembg_sync", "ImageBytes", "SyncBatchItem", "SyncImageFile",
    "FolderCache", "FsspecCache", "ResultCache",
}  # fmt: skip


def test_all_is_sorted_and_documented() -> None:
    """__all__ is sorted and names exactly the documented public API."""
    assert rembg_async.__all__ == sorted(rembg_async.__all__)
    assert set(rembg_async.__all__) == DOCUMENTED


def test_no_other_public_names() -> None:
    """Everything public in the package is in __all__ (private modules start with _)."""
    # pytest's assertion rewriting adds "@py_…" names to the plugin's package: not identifiers.
    public = {name for name in dir(rembg_async) if name.isidentifier() and not name.startswith("_")}
    assert public - set(rembg_async.__all__) <= OPTIONAL_MODULES


#: Public modules for the optional parts, imported only when asked for.
OPTIONAL_MODULES = {"dask", "pytest_plugin", "redis", "server"}


@pytest.mark.parametrize("module", ["rembg_async.dask", "rembg_async.redis"])
def test_optional_modules_are_documented_and_sorted(module: str) -> None:
    """Each optional module: a sorted ``__all__``, a docstring on each name and method."""
    optional = importlib.import_module(module)
    assert optional.__all__ == sorted(optional.__all__)
    for name in optional.__all__:
        value = getattr(optional, name)
        assert inspect.getdoc(value), name
        for member_name, member in inspect.getmembers(value):
            if not member_name.startswith("_") and inspect.isfunction(member):
                assert inspect.getdoc(member), f"{name}.{member_name}"


def test_every_public_name_has_a_docstring() -> None:
    """Each class and function, and each of their public methods, says what it is."""
    for name in rembg_async.__all__:
        value = getattr(rembg_async, name)
        if name == "__version__":
            continue
        assert inspect.getdoc(value), name
        for member_name, member in inspect.getmembers(value):
            if not member_name.startswith("_") and (
                inspect.isfunction(member) or isinstance(member, property)
            ):
                assert inspect.getdoc(member), f"{name}.{member_name}"


def test_exceptions_inherit_the_builtins() -> None:
    """Generic handlers still catch ours."""
    assert issubclass(rembg_async.InvalidInputError, ValueError)
    assert issubclass(rembg_async.APITimeoutError, TimeoutError)
    assert issubclass(rembg_async.APITimeoutError, rembg_async.APIConnectionError)
    for name in ("BadRequestError", "AuthenticationError", "PaymentRequiredError",
                 "PermissionDeniedError", "RateLimitError", "ServerError"):  # fmt: skip
        assert issubclass(getattr(rembg_async, name), rembg_async.APIStatusError)

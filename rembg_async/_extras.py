"""Optional parts (server, redis, dask, fsspec): a missing dependency names the extra that
installs it, the same way for every one."""

from __future__ import annotations

import importlib
from types import ModuleType


def import_optional(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module``, or raise ModuleNotFoundError saying ``pip install 'rembg-async[extra]'``
    for ``feature``; the error keeps the missing module's ``name`` and chains the original."""
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = error.name or module
        message = (
            f"{feature} needs {missing!r}, which the {extra!r} extra installs: "
            f"pip install 'rembg-async[{extra}]'"
        )
        raise ModuleNotFoundError(message, name=missing) from error


def require_extra(extra: str, *modules: str, feature: str) -> None:
    """Check that every one of ``modules`` imports, as ``import_optional`` does."""
    for module in modules:
        import_optional(module, extra=extra, feature=feature)

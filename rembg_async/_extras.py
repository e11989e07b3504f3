"""Optional parts: a missing dependency names the extra that installs it.

``rembg_async.server`` needs the ``server`` extra; later optional modules (``redis``, ``dask``,
``fsspec``) call the same helper first thing, so every one fails the same helpful way.
"""

from __future__ import annotations

import importlib
from types import ModuleType

#: The distribution's name, as ``pip install`` wants it.
DISTRIBUTION = "rembg-async"


def import_optional(module: str, *, extra: str, feature: str) -> ModuleType:
    """Import ``module``, or raise ModuleNotFoundError saying ``pip install 'rembg-async[extra]'``.

    ``feature`` is what needs it (``"rembg_async.server"``), for the message. The error keeps
    the missing module's ``name`` and chains the original, so ``except ImportError`` still works.
    """
    try:
        return importlib.import_module(module)
    except ModuleNotFoundError as error:
        missing = error.name or module
        message = (
            f"{feature} needs {missing!r}, which the {extra!r} extra installs: "
            f"pip install '{DISTRIBUTION}[{extra}]'"
        )
        raise ModuleNotFoundError(message, name=missing) from error


def require_extra(extra: str, *modules: str, feature: str) -> None:
    """Check that every one of ``modules`` imports, as ``import_optional`` does."""
    for module in modules:
        import_optional(module, extra=extra, feature=feature)

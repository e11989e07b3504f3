"""A local RemBG-compatible server: the API's contract, real image work, state and faults.

It needs the ``server`` extra (Pillow and NumPy): ``pip install 'rembg-async[server]'``.
"""

from .._extras import require_extra

require_extra("server", "numpy", "PIL", feature="rembg_async.server")

from ._accounts import Account
from ._faults import FAULT_HEADER, Fault, FaultInjector
from ._matting import ModelError
from ._openapi import openapi_document
from ._ratelimit import RateLimits
from ._runner import LocalServer, create_app, serve
from ._state import ServerConfig, ServerState

__all__ = [
    "FAULT_HEADER",
    "Account",
    "Fault",
    "FaultInjector",
    "LocalServer",
    "ModelError",
    "RateLimits",
    "ServerConfig",
    "ServerState",
    "create_app",
    "openapi_document",
    "serve",
]

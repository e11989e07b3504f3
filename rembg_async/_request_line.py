"""The DEBUG line each request logs however it ends: never a header's value, so never the key."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import aiohttp
from yarl import URL

logger = logging.getLogger("rembg_async")


class RequestLine(contextlib.AbstractContextManager["RequestLine"]):
    """The DEBUG line of one request, timed from the ``with``: ``POST https://api.rembg.com/rmbg
    200 in 0.412 s (attempt 1, a body of 51234 bytes, request id abc)``, or ``failed (…)`` or
    ``cancelled`` (retries log the error at INFO); the URL without user or query. ``body``: the
    bytes of the request's body (None: a length unknown), False for none."""

    def __init__(
        self, method: str, url: URL, attempt: int, body: int | bool | None = False
    ) -> None:
        self._what = f"{method} {url.origin()}{url.path}"
        self._attempt = attempt
        self._body = body
        self._started = time.monotonic()
        self._said = False

    def __exit__(
        self, kind: type[BaseException] | None, error: BaseException | None, _: Any
    ) -> None:
        if kind is not None and not self._said:
            self._say(f"failed ({kind.__name__})" if isinstance(error, Exception) else "cancelled")

    def answered(self, response: aiohttp.ClientResponse) -> None:
        """Log the status and the time to the answer's head."""
        request_id = response.headers.get("x-request-id", "none")
        self._say(f"{response.status}", f"request id {request_id}")

    def _say(self, outcome: str, more: str = "") -> None:
        self._said = True
        if not logger.isEnabledFor(logging.DEBUG):
            return
        details = [f"attempt {self._attempt}"]
        if self._body is None:
            details.append("a body of unknown length")
        elif self._body is not False:
            details.append(f"a body of {self._body} bytes")
        if more:
            details.append(more)
        seconds = time.monotonic() - self._started
        logger.debug("%s %s in %.3f s (%s)", self._what, outcome, seconds, ", ".join(details))

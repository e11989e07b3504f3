"""One DEBUG line per HTTP request of the client, however it ends; never a header's value.

``POST https://api.rembg.com/rmbg 200 in 0.412 s (attempt 1, a body of 51234 bytes, request
id abc)``: method, host (with the port when one is given) and path, then the status and the
seconds from the request's start to its answer's head, or how it failed (``failed
(APITimeoutError)``, ``cancelled``: the error itself is raised, and retries log it at INFO).
The URL is the client's own, without user information or query; headers (the key among them)
are never read.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Iterator

import aiohttp
from yarl import URL

logger = logging.getLogger("rembg_async")


class RequestLine:
    """The line of one request: `answered` says it once the answer's head is in."""

    def __init__(self, method: str, url: URL, attempt: int, body: int | bool | None) -> None:
        self._what = f"{method} {url.origin()}{url.path}"
        self._attempt = attempt
        self._body = body
        self._started = time.monotonic()
        self.said = False

    def answered(self, response: aiohttp.ClientResponse) -> None:
        """Log the status and the time to the answer's head."""
        request_id = response.headers.get("x-request-id", "none")
        self._say(f"{response.status}", f"request id {request_id}")

    def failed(self, error: BaseException) -> None:
        """Log how a request that got no answer ended."""
        if isinstance(error, Exception):
            self._say(f"failed ({type(error).__name__})", "")
        else:  # CancelledError, KeyboardInterrupt
            self._say("cancelled", "")

    def _say(self, outcome: str, more: str) -> None:
        self.said = True
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


@contextlib.contextmanager
def logged_request(
    method: str, url: URL, attempt: int, *, body: int | bool | None = False
) -> Iterator[RequestLine]:
    """Time one request from here; a failure before its answer's head is logged as such.

    ``body``: the bytes of the request's body (None: a length unknown), False for none.
    """
    line = RequestLine(method, url, attempt, body)
    try:
        yield line
    except BaseException as error:
        if not line.said:
            line.failed(error)
        raise

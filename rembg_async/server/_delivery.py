"""Injected faults: failures before the work is done, and broken deliveries of its result."""

from __future__ import annotations

import asyncio
import gzip
import os
from collections.abc import Awaitable, Callable
from http import HTTPStatus
from typing import Final

from aiohttp import web

from .._contract import (
    MSG_RATE_DAILY,
    MSG_RATE_MONTHLY,
    MSG_RATE_SHORT_TERM,
    error_body,
)
from ._faults import FAULT_HEADER, Fault, FaultSyntaxError
from ._state import STATE, json_response

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

_RATE_MESSAGES: Final = {
    "short_term": MSG_RATE_SHORT_TERM,
    "daily": MSG_RATE_DAILY,
    "monthly": MSG_RATE_MONTHLY,
}
_HTML_PAGE: Final = (
    "<html><head><title>{status} {reason}</title></head>"
    "<body><center><h1>{status} {reason}</h1></center><hr><center>nginx</center></body></html>"
)
_DRAIN_CHUNK: Final = 256 * 1024


@web.middleware
async def fault_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Apply the fault chosen for this request, if any; see `Fault`."""
    try:
        fault = request.app[STATE].faults.choose(request.headers.get(FAULT_HEADER))
    except FaultSyntaxError as error:
        return json_response(error_body(400, f"Bad {FAULT_HEADER} header: {error}"), status=400)
    if fault is None:
        return await handler(request)
    if fault.latency:
        await asyncio.sleep(fault.latency)
    if fault.drop == "upload":
        return await _drop_during_upload(request)
    if fault.status is not None:
        await _drain(request)
        return status_response(fault)
    response = await handler(request)
    if fault.shapes_response and isinstance(response, web.Response) and response.status == 200:
        return await _deliver(request, response, fault)
    return response


async def _drain(request: web.Request) -> None:
    while await request.content.read(_DRAIN_CHUNK):
        pass


async def _drop_during_upload(request: web.Request) -> web.StreamResponse:
    """Read part of the upload, then cut the connection."""
    await request.content.read(max(1, (request.content_length or 2) // 2))
    return _abort(request)


def _abort(request: web.Request) -> web.StreamResponse:
    if request.transport is not None:
        request.transport.abort()
    # Nothing more can reach the client: aiohttp quietly drops what is returned on a dead link.
    response = web.Response(status=499)
    response.force_close()
    return response


def status_response(fault: Fault) -> web.Response:
    """The answer for a ``status`` fault: the API's JSON error, or a proxy's HTML page."""
    assert fault.status is not None
    status = fault.status
    headers = {"Retry-After": fault.retry_after} if fault.retry_after is not None else {}
    reason = _reason(status)
    if fault.html or status == 502:
        page = _HTML_PAGE.format(status=status, reason=reason)
        return web.Response(status=status, text=page, content_type="text/html", headers=headers)
    message = _RATE_MESSAGES[fault.scope] if status == 429 else f"{reason} (injected fault)"
    return json_response(error_body(status, message), status=status, headers=headers)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


async def _deliver(request: web.Request, result: web.Response, fault: Fault) -> web.StreamResponse:
    """Send a successful result the broken way ``fault`` asks for."""
    body = result.body
    assert isinstance(body, bytes)
    body = os.urandom(len(body)) if fault.garbage else body
    response = web.StreamResponse(status=200)
    response.content_type = fault.content_type or result.content_type
    if fault.gzip:
        body = gzip.compress(body, compresslevel=1)
        response.headers["Content-Encoding"] = "gzip"
    if fault.chunked:
        response.enable_chunked_encoding()
    else:
        response.content_length = len(body)
    await response.prepare(request)
    cut = len(body) // 2 if fault.truncate or fault.drop == "download" else len(body)
    await _write(response, body[:cut], fault)
    if cut == len(body):
        await response.write_eof()
    elif fault.drop == "download":
        _abort(request)
    elif request.transport is not None:
        request.transport.close()  # a clean close, short of the promised length
    return response


async def _write(response: web.StreamResponse, body: bytes, fault: Fault) -> None:
    step = fault.chunk if fault.trickle is not None or fault.chunked else len(body) or 1
    for offset in range(0, len(body), step):
        await response.write(body[offset : offset + step])
        if fault.trickle:
            await asyncio.sleep(fault.trickle)

"""``POST /rmbg``: validation in the API's order, limits, credits, then the image work."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from aiohttp import web

from .._contract import (
    MAX_UPLOAD_BYTES,
    MSG_EMPTY_FILE,
    MSG_INVALID_SIGNATURE,
    MSG_NO_FILE_SELECTED,
    MSG_NO_IMAGE,
    MSG_RATE_DAILY,
    MSG_RATE_MONTHLY,
    MSG_RATE_SHORT_TERM,
    dimension_messages,
    extension_problem,
    file_too_large_message,
)
from .._imageinfo import read_image_info
from ._accounts import AccountState
from ._form import ReceivedFile, ReceivedForm, parse_options, receive_form
from ._imaging import RenderOptions, render
from ._ratelimit import retry_after_header
from ._state import STATE, APIError, ServerState, authenticate

Refund = Callable[[], None]


async def handle_rmbg(request: web.Request) -> web.StreamResponse:
    """Remove the background of the uploaded image."""
    state = request.app[STATE]
    account = authenticate(request, state, required=False)
    # **[decision]** a body declared larger than the drain limit is refused unread; the size
    # printed is the body's, the file's plus a few hundred bytes of multipart framing.
    declared = request.content_length
    if declared is not None and declared > state.config.drain_limit:
        raise APIError(400, file_too_large_message(declared), close=True)
    form = await receive_form(request, drain_limit=state.config.drain_limit)
    try:
        image = check_file(form)
        options = parse_options(form.fields)
        refund = admit(request, state, account)
        return await _render(state, image, options, refund)
    finally:
        form.close()


def check_file(form: ReceivedForm) -> ReceivedFile:
    """The uploaded file, or the API's error for the first problem with it, in the API's order."""
    if form.image_filename is None:
        raise APIError(400, MSG_NO_IMAGE)
    if not form.image_filename:
        raise APIError(400, MSG_NO_FILE_SELECTED)
    problem = extension_problem(form.image_filename)
    if problem is not None or form.image is None:
        raise APIError(400, problem or MSG_NO_IMAGE)
    image = form.image
    if image.size == 0:
        raise APIError(400, MSG_EMPTY_FILE)
    if image.size > MAX_UPLOAD_BYTES:
        raise APIError(400, file_too_large_message(image.size), close=not image.complete)
    info = read_image_info(image.content)
    image.content.seek(0)
    if info is None:
        raise APIError(400, MSG_INVALID_SIGNATURE)
    if info.width is not None and info.height is not None:
        messages = dimension_messages(info.width, info.height)
        if messages:
            raise APIError(400, messages[0])
    return image


def admit(request: web.Request, state: ServerState, account: AccountState | None) -> Refund:
    """Apply the rate limits and take one credit; the returned callable gives it back."""
    address = request.remote or "unknown"
    identity = f"key:{account.account.api_key}" if account else f"ip:{address}"
    wait = state.short_term.admit(identity, time.monotonic())
    if wait is not None:
        raise _too_many(MSG_RATE_SHORT_TERM, wait)
    now = state.now()
    if account is None:
        wait = state.daily.admit(address, now)
        if wait is not None:
            raise _too_many(MSG_RATE_DAILY, wait)
        return lambda: None
    if not account.can_spend(now):
        raise _too_many(MSG_RATE_MONTHLY, account.window_at(now).end + 1 - now)
    from_prepaid = account.spend(now)
    return lambda: account.refund(now, from_prepaid=from_prepaid)


def _too_many(message: str, wait: float) -> APIError:
    return APIError(429, message, headers={"Retry-After": retry_after_header(wait)})


async def _render(
    state: ServerState, image: ReceivedFile, options: RenderOptions, refund: Refund
) -> web.Response:
    loop = asyncio.get_running_loop()
    matting = state.matting_for_next()
    state.rendering += 1
    try:
        rendered = await loop.run_in_executor(
            state.executor, render, image.content, options, matting
        )
    except BaseException:  # the image was refused or the work failed: the credit comes back
        refund()
        raise
    finally:
        state.rendering -= 1
    return web.Response(body=rendered.body, content_type=rendered.content_type)

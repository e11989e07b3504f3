"""``POST /rmbg`` in the API's order: the multipart form, read as it streams in (the image
spooled, past the size limit only counted, so "too large" prints the real size), validation,
limits, credits, then the image work."""

from __future__ import annotations

import asyncio
import functools
import tempfile
import time
from collections.abc import Callable, Mapping
from typing import IO, Final

import attrs
from aiohttp import BodyPartReader, MultipartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from .._contract import (
    MAX_UPLOAD_BYTES,
    MSG_MASK_WITH_BG_COLOR,
    MSG_NO_FILE_SELECTED,
    MSG_NO_IMAGE,
    MSG_RATE_DAILY,
    MSG_RATE_MONTHLY,
    MSG_RATE_SHORT_TERM,
    FieldProblem,
    extension_problem,
    file_too_large_message,
    parse_angle,
    parse_boolean,
    parse_color,
    parse_dimension,
    parse_format,
)
from .._imageinfo import file_problem, read_image_info
from ._accounts import AccountState
from ._imaging import RenderOptions, render
from ._ratelimit import retry_after_header
from ._state import STATE, APIError, ServerState, authenticate

CHUNK_BYTES: Final = 256 * 1024
#: Uploads smaller than this stay in memory; larger ones spill to a temporary file.
SPOOL_IN_MEMORY_BYTES: Final = 2 * 1024 * 1024
#: The longest value kept for a text field; the API's fields are all short.
MAX_FIELD_BYTES: Final = 4096
#: The text fields the API reads, with their parsers; the API ignores every other field.
_PARSERS: Final[dict[str, Callable[[str], object]]] = {
    "format": parse_format,
    "w": functools.partial(parse_dimension, "w"),
    "h": functools.partial(parse_dimension, "h"),
    "exact_resize": functools.partial(parse_boolean, "exact_resize"),
    "mask": functools.partial(parse_boolean, "mask"),
    "bg_color": parse_color,
    "angle": parse_angle,
    "expand": functools.partial(parse_boolean, "expand"),
}
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


def check_file(form: ReceivedForm) -> IO[bytes]:
    """The uploaded file, or the API's error for the first problem with it, in the API's order."""
    if form.image_filename is None:
        raise APIError(400, MSG_NO_IMAGE)
    if not form.image_filename:
        raise APIError(400, MSG_NO_FILE_SELECTED)
    problem = extension_problem(form.image_filename)
    if problem is not None or form.image is None:
        raise APIError(400, problem or MSG_NO_IMAGE)
    info = read_image_info(form.image)
    form.image.seek(0)
    problem = file_problem(form.image_size, info)
    if problem is not None:  # an incomplete form is one too large to read: close, not drain
        raise APIError(400, problem, close=not form.complete)
    return form.image


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
    state: ServerState, image: IO[bytes], options: RenderOptions, refund: Refund
) -> web.Response:
    loop = asyncio.get_running_loop()
    matting = state.matting_for_next()
    state.rendering += 1
    try:
        rendered = await loop.run_in_executor(state.executor, render, image, options, matting)
    except BaseException:  # the image was refused or the work failed: the credit comes back
        refund()
        raise
    finally:
        state.rendering -= 1
    return web.Response(body=rendered.body, content_type=rendered.content_type)


@attrs.define
class ReceivedForm:
    """The fields of the form (first value of each) and its image part, if there was one.

    ``image_filename`` is the name of the first ``image`` file part as sent (possibly empty, and
    None when there was no such part); ``image`` holds its bytes up to the size limit, unless its
    name alone refused it; ``image_size`` is its full size, and ``complete`` False when the
    client sent more than the drain limit.
    """

    fields: dict[str, str] = attrs.field(factory=dict)
    image_filename: str | None = None
    image: IO[bytes] | None = None
    image_size: int = 0
    complete: bool = False

    def close(self) -> None:
        """Release the image's bytes, if any."""
        if self.image is not None:
            self.image.close()


async def receive_form(request: web.Request, *, drain_limit: int) -> ReceivedForm:
    """Read the request's multipart form; a body that is no readable form gives an empty one."""
    form = ReceivedForm()
    if not request.content_type.startswith("multipart/"):
        return form
    try:
        await _read_parts(await request.multipart(), form, drain_limit)
    except (ValueError, LookupError, AssertionError, HttpProcessingError):
        # A malformed body is answered like a form with no image in it.
        form.close()
        return ReceivedForm()
    except BaseException:
        form.close()
        raise
    return form


async def _read_parts(reader: MultipartReader, form: ReceivedForm, drain_limit: int) -> None:
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader):
            await part.release()  # a nested multipart: not something the API reads
            continue
        if part.name == "image" and part.filename is not None and form.image_filename is None:
            form.image_filename = part.filename
            if not part.filename or extension_problem(part.filename):
                await part.release()  # refused by its name alone: no need to keep the bytes
                continue
            if not await _receive_file(part, form, drain_limit):
                return  # the client is still sending: answer now, read no further
        elif part.name in _PARSERS and part.name not in form.fields:
            form.fields[part.name] = await _read_text(part)
        else:
            await part.release()


async def _receive_file(part: BodyPartReader, form: ReceivedForm, drain_limit: int) -> bool:
    """Spool the image part into ``form``; whether it was read whole (within ``drain_limit``)."""
    image: IO[bytes] = tempfile.SpooledTemporaryFile(max_size=SPOOL_IN_MEMORY_BYTES)  # noqa: SIM115
    form.image = image  # closed by `ReceivedForm.close`, not a `with`: it outlives this function
    while chunk := await part.read_chunk(CHUNK_BYTES):
        form.image_size += len(chunk)
        if form.image_size <= MAX_UPLOAD_BYTES:
            image.write(chunk)  # a page-cache write costs microseconds: no thread hop
        elif form.image_size > drain_limit:
            return False
    image.seek(0)
    form.complete = True
    return True


async def _read_text(part: BodyPartReader) -> str:
    data = bytearray()
    while chunk := await part.read_chunk(MAX_FIELD_BYTES):
        if len(data) < MAX_FIELD_BYTES:
            data += chunk[: MAX_FIELD_BYTES - len(data)]
    try:
        return data.decode(part.get_charset(default="utf-8"), errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def parse_options(fields: Mapping[str, str]) -> RenderOptions:
    """The options the form asks for (an absent or empty field keeps its default), or the
    API's 400 listing every refused field.

    **[decision]** an empty value means "unset", like ``w=0``: clients build forms from
    optional values and send empty strings for the ones they lack.
    """
    values: dict[str, object] = {}
    problems: list[FieldProblem] = []
    for name, parse in _PARSERS.items():
        raw = fields.get(name)
        if not raw or not raw.strip():
            continue
        try:
            values[name] = parse(raw)
        except FieldProblem as problem:
            problems.append(problem)
    if values.get("mask") is True and values.get("bg_color") is not None:
        problems.append(FieldProblem("bg_color", MSG_MASK_WITH_BG_COLOR))
    if problems:
        raise APIError(400, problems[0].message, problems=problems)
    return RenderOptions(**values)  # type: ignore[arg-type]

"""Every row of the API's error table, byte for byte, and the order the checks run in."""

from __future__ import annotations

import struct
import zlib

import aiohttp
import pytest
from conftest import Client, make_image

from rembg_async import _contract as contract
from rembg_async.server import Account, RateLimits, ServerConfig


def png_header(width: int, height: int) -> bytes:
    """A PNG signature and header chunk declaring ``width`` × ``height`` (no pixel data)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    chunk = b"IHDR" + ihdr
    return (
        b"\x89PNG\r\n\x1a\n" + struct.pack(">I", 13) + chunk + struct.pack(">I", zlib.crc32(chunk))
    )


async def test_no_image_field(client: Client) -> None:
    """A form with no image part at all is refused as 'no image provided'."""
    form = aiohttp.FormData()
    form.add_field("format", "png")
    answer = await client.rmbg(data=form)
    assert answer.status == 400
    assert answer.json() == {"error": contract.MSG_NO_IMAGE, "status": 400}


async def test_image_sent_as_text_is_no_image(client: Client) -> None:
    """An 'image' field that is plain text, not a file, is no image either."""
    form = aiohttp.FormData()
    form.add_field("image", "not a file")
    answer = await client.rmbg(data=form)
    assert (answer.status, answer.error) == (400, contract.MSG_NO_IMAGE)


async def test_body_that_is_not_multipart_is_no_image(client: Client) -> None:
    """A JSON body is answered like a form without an image, never a 500."""
    answer = await client.rmbg(data=b'{"image": "x"}', headers={"Content-Type": "application/json"})
    assert (answer.status, answer.error) == (400, contract.MSG_NO_IMAGE)


async def test_empty_filename_is_no_file_selected(client: Client) -> None:
    """A file part with an empty name is 'no file selected'."""
    answer = await client.rmbg(make_image(), filename="")
    assert (answer.status, answer.error) == (400, contract.MSG_NO_FILE_SELECTED)


@pytest.mark.parametrize(
    ("filename", "extension"),
    [
        pytest.param("setup.exe", ".exe", id="exe"),
        pytest.param("anim.GIF", ".gif", id="upper-case-gif"),
        pytest.param("dir.png/archive.tar.gz", ".gz", id="last-extension-counts"),
    ],
)
async def test_unsupported_file_type(client: Client, filename: str, extension: str) -> None:
    """The file name's extension decides the type, with the API's message."""
    answer = await client.rmbg(make_image(), filename=filename)
    assert answer.status == 400
    assert answer.error == (
        f"File type '{extension}' is not supported. Allowed formats: webp, bmp, png, jpg, jpeg"
    )


@pytest.mark.parametrize("filename", ["photo", "PHOTO.JPEG", "p.jpg", "p.webp", "p.bmp", ".png"])
async def test_accepted_names(client: Client, filename: str) -> None:
    """Every allowed extension, any case, and no extension at all (judged by content) pass."""
    answer = await client.rmbg(make_image(format="PNG"), filename=filename)
    assert answer.status == 200


async def test_empty_file(client: Client) -> None:
    """A zero-byte file is 'empty'."""
    answer = await client.rmbg(b"", filename="a.png")
    assert (answer.status, answer.error) == (400, contract.MSG_EMPTY_FILE)


@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"MZ\x90\x00 an executable", id="exe-bytes"),
        pytest.param(b"GIF89a" + b"\x00" * 40, id="gif"),
        pytest.param(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, id="png-signature-then-junk"),
        pytest.param(b"\xff\xd8\xff\xe0" + b"\x00" * 10, id="truncated-jpeg"),
    ],
)
async def test_corrupt_image(client: Client, content: bytes) -> None:
    """Bytes that are no image, or that break after the signature, are 'invalid signature'."""
    answer = await client.rmbg(content, filename="a.png")
    assert (answer.status, answer.error) == (400, contract.MSG_INVALID_SIGNATURE)


async def test_file_too_large_reports_its_real_size(client: Client) -> None:
    """55.2 MB is refused with its size to one decimal, as the API words it."""
    content = make_image() + b"\x00" * (int(55.2 * 1024 * 1024) - len(make_image()))
    answer = await client.rmbg(content, filename="big.png")
    assert answer.status == 400
    assert answer.error == "File size (55.2 MB) exceeds the maximum allowed size of 50 MB."


async def test_exactly_fifty_megabytes_is_not_too_large(client: Client) -> None:
    """The limit itself is allowed: 50 MiB passes the size check (and fails later, on content)."""
    content = png_header(10, 10) + b"\x00" * (contract.MAX_UPLOAD_BYTES - len(png_header(10, 10)))
    answer = await client.rmbg(content, filename="edge.png")
    assert (answer.status, answer.error) == (400, contract.MSG_INVALID_SIGNATURE)


WIDE = "Image width (12000px) exceeds the maximum allowed width of 10000px."
TALL = "Image height (15000px) exceeds the maximum allowed height of 10000px."


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param(make_image((12000, 1)), WIDE, id="real-png-wide"),
        pytest.param(make_image((1, 15000), "BMP"), TALL, id="real-bmp-tall"),
        pytest.param(png_header(12000, 1), WIDE, id="header-wide"),
        pytest.param(png_header(1, 15000), TALL, id="header-tall"),
        pytest.param(png_header(12000, 15000), WIDE, id="header-both-width-first"),
    ],
)
async def test_image_too_large(client: Client, content: bytes, message: str) -> None:
    """Oversized images are refused from their header, before any decoding."""
    answer = await client.rmbg(content, filename="a.png")
    assert (answer.status, answer.error) == (400, message)


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"w": "abc"}, "'w' must be an integer, got: 'abc'"),
        ({"h": "1.5"}, "'h' must be an integer, got: '1.5'"),
        ({"w": "-5"}, "'w' must be at least 1, got: -5"),
        ({"h": "15000"}, "'h' must be at most 10000, got: 15000"),
        ({"angle": "ninety"}, "'angle' must be a number, got: 'ninety'"),
        ({"angle": "500"}, "'angle' must be between -360 and 360 degrees, got: 500.0"),
        ({"angle": "-360.5"}, "'angle' must be between -360 and 360 degrees, got: -360.5"),
        ({"format": "gif"}, "Invalid format 'gif'. Allowed formats: PNG, JPEG, WEBP, BMP"),
        (
            {"bg_color": "#12345"},
            "Invalid color format '#12345'. Use hex format: #RGB, #RGBA, #RRGGBB, or #RRGGBBAA",
        ),
        (
            {"bg_color": "notacolour"},
            "Invalid color format 'notacolour'. Use hex format: #RGB, #RGBA, #RRGGBB, or #RRGGBBAA",
        ),
        ({"mask": "maybe"}, "'mask' must be a boolean (true or false), got: 'maybe'"),
        ({"expand": "yes"}, "'expand' must be a boolean (true or false), got: 'yes'"),
        ({"mask": "true", "bg_color": "#fff"}, contract.MSG_MASK_WITH_BG_COLOR),
    ],
    ids=lambda value: value if isinstance(value, str) and len(value) < 30 else None,
)
async def test_single_field_error(client: Client, fields: dict[str, str], message: str) -> None:
    """One bad field gives one plain error, with no details."""
    answer = await client.rmbg(fields=fields)
    assert answer.status == 400
    assert answer.json() == {"error": message, "status": 400}


async def test_multiple_errors_have_details_in_field_order(client: Client) -> None:
    """Several bad fields give the multiple-errors shape, every problem listed."""
    answer = await client.rmbg(fields={"angle": "500", "w": "abc", "format": "gif"})
    assert answer.status == 400
    assert answer.json() == {
        "error": "Multiple validation errors",
        "details": [
            {
                "field": "format",
                "message": "Invalid format 'gif'. Allowed formats: PNG, JPEG, WEBP, BMP",
            },
            {"field": "w", "message": "'w' must be an integer, got: 'abc'"},
            {
                "field": "angle",
                "message": "'angle' must be between -360 and 360 degrees, got: 500.0",
            },
        ],
        "status": 400,
    }


async def test_invalid_api_key(client: Client) -> None:
    """An unknown key is 401 'invalid api key'."""
    answer = await client.rmbg(api_key="wrong")
    assert answer.json() == {"error": "invalid api key", "status": 401}


async def test_unverified_email(rembg_server_factory, session: aiohttp.ClientSession) -> None:
    """A key whose account has an unverified e-mail is 403, with the en dash."""
    server = rembg_server_factory(
        ServerConfig(accounts=[Account(api_key="u", email_verified=False)])
    )
    answer = await Client(server, session).rmbg(api_key="u")
    assert answer.status == 403
    assert answer.error == "Email address not verified \u2013 please check your inbox"


async def test_key_and_user_token_together(client: Client) -> None:
    """Sending an API key and a bearer token is the API's 400 'mistake'."""
    answer = await client.rmbg(headers={"Authorization": "Bearer abc"})
    assert answer.json() == {
        "error": "This is a mistake: Cannot use both API key and user token",
        "status": 400,
    }


async def test_anonymous_call_is_allowed(client: Client) -> None:
    """No key at all is an anonymous call, which works within its daily limit."""
    assert (await client.rmbg(api_key=None)).status == 200


async def test_authentication_is_checked_before_the_file(client: Client) -> None:
    """A wrong key wins over a missing image: authentication comes first."""
    answer = await client.rmbg(data=aiohttp.FormData({"w": "abc"}), api_key="wrong")
    assert answer.status == 401


async def test_file_problems_win_over_field_problems(client: Client) -> None:
    """The first file problem is reported alone, before any field is looked at."""
    answer = await client.rmbg(b"", fields={"w": "abc", "angle": "500"})
    assert answer.json() == {"error": contract.MSG_EMPTY_FILE, "status": 400}


async def test_field_problems_win_over_rate_limits(
    rembg_server_factory, session: aiohttp.ClientSession
) -> None:
    """A refused field is reported even when the caller is out of requests."""
    server = rembg_server_factory(
        ServerConfig(rate_limits=RateLimits(short_term_requests=1, short_term_window=3600))
    )
    client = Client(server, session)
    assert (await client.rmbg()).status == 200
    assert (await client.rmbg(fields={"w": "abc"})).status == 400
    assert (await client.rmbg()).status == 429


@pytest.mark.parametrize("path", ["/nothing", "/rmbg/extra"])
async def test_unknown_paths_answer_in_the_error_shape(client: Client, path: str) -> None:
    """Even aiohttp's own 404 comes in the API's JSON error shape."""
    async with client.session.get(f"{client.server.url}{path}") as response:
        assert response.status == 404
        assert await response.json() == {"error": "Not Found", "status": 404}


async def test_wrong_method_answers_in_the_error_shape(client: Client) -> None:
    """GET /rmbg is a 405 in the API's shape, with its Allow header."""
    async with client.session.get(f"{client.server.url}/rmbg") as response:
        assert response.status == 405
        assert response.headers["Allow"] == "POST"
        assert await response.json() == {"error": "Method Not Allowed", "status": 405}

"""Where the key may go, TLS verification, and output names that cannot escape their folder."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest
import trustme
from aiohttp import web
from aiohttp.test_utils import TestServer
from conftest import make_image
from hypothesis import given
from hypothesis import strategies as st

from rembg_async import APIConnectionError, AsyncRembg
from rembg_async._paths import safe_leaf


@pytest.fixture
async def tls_server() -> AsyncIterator[tuple[str, trustme.CA]]:
    """An https server on 127.0.0.1 whose certificate comes from a CA nobody trusts by default."""
    ca = trustme.CA()
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    answer = make_image((10, 10), "WEBP")

    async def handler(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=answer, content_type="image/webp")

    app = web.Application()
    app.router.add_post("/rmbg", handler)
    server = TestServer(app, host="127.0.0.1", scheme="https")
    await server.start_server(ssl=context)
    yield str(server.make_url("")).rstrip("/"), ca
    await server.close()


async def test_tls_is_verified_by_default(tls_server: tuple[str, trustme.CA]) -> None:
    """An untrusted certificate fails the call: the key is not sent to an impostor."""
    url, _ = tls_server
    async with AsyncRembg("k", base_url=url, max_retries=0) as client:
        with pytest.raises(APIConnectionError, match="certificate"):
            await client.remove(make_image())


async def test_tls_works_with_a_trusted_ca(tls_server: tuple[str, trustme.CA]) -> None:
    """With the CA trusted (through the user's own session), the same call succeeds."""
    url, ca = tls_server
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with (
        aiohttp.ClientSession(connector=aiohttp.TCPConnector(ssl=context)) as session,
        AsyncRembg("k", base_url=url, session=session) as client,
    ):
        await (await client.remove(make_image())).cleanup()


@given(name=st.text(min_size=0, max_size=60), extension=st.sampled_from(["png", "webp", ".jpg"]))
def test_output_names_stay_in_their_folder(name: str, extension: str) -> None:
    """Whatever the input's name, the output is a plain file directly inside the folder."""
    folder = Path("/out/dir")
    path = folder / safe_leaf(name, extension)
    assert path.parent == folder
    assert path.name not in ("", ".", "..")
    assert not path.name.startswith(".")
    assert "/" not in path.name
    assert "\\" not in path.name
    assert path.suffix == "." + extension.lstrip(".")


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("../../etc/passwd", "passwd.png"),
        ("C:\\Windows\\system32\\evil.exe", "evil.png"),
        ("..", "image.png"),
        (".bashrc", "bashrc.png"),
        ("photo.final.jpg", "photo.final.png"),
        ("día de campo.jpeg", "día de campo.png"),
        ("a\x00b\nc.jpg", "a_b_c.png"),
    ],
)
def test_output_name_examples(name: str, expected: str) -> None:
    """Traversal, Windows paths, hidden names and control characters are neutralised."""
    assert safe_leaf(name, "png") == expected

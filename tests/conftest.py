"""Helpers shared by the tests: images made on the fly and calls to a real local server."""

from __future__ import annotations

import asyncio
import io
import json
import os
import select
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import aiohttp
import attrs
import pytest
from PIL import Image, ImageDraw

from rembg_async.pytest_plugin import TEST_API_KEY
from rembg_async.server import LocalServer
from tests._valkey import Valkey, start_valkey

pytest_plugins = ["pytester"]

# The suite runs on the fast classic engine; test_server_model*.py run the U²-Net model.
os.environ.setdefault("REMBG_ASYNC_ENGINE", "classic")


def make_image(
    size: tuple[int, int] = (64, 48),
    format: str = "PNG",
    *,
    background: tuple[int, int, int] = (250, 250, 250),
    subject: tuple[int, int, int] = (200, 20, 20),
) -> bytes:
    """A plain background with a filled ellipse in the middle, encoded in ``format``."""
    image = Image.new("RGB", size, background)
    width, height = size
    ImageDraw.Draw(image).ellipse(
        (width // 4, height // 4, 3 * width // 4, 3 * height // 4), fill=subject
    )
    buffer = io.BytesIO()
    image.save(buffer, format)
    return buffer.getvalue()


@attrs.frozen
class Answer:
    """What the server answered."""

    status: int
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        """The body as JSON."""
        return json.loads(self.body)

    def image(self) -> Image.Image:
        """The body as an image."""
        return Image.open(io.BytesIO(self.body))

    @property
    def error(self) -> str:
        """The ``error`` field of a JSON error body."""
        return str(self.json()["error"])


_DEFAULT = object()


def rmbg_form(
    image: bytes | None = None,
    *,
    filename: str = "photo.png",
    fields: Mapping[str, str] | None = None,
) -> aiohttp.FormData:
    """A ``/rmbg`` form: the image part first (if any), then the text fields."""
    form = aiohttp.FormData()
    if image is not None:
        # A BytesIO, not bytes: aiohttp warns about large raw bytes bodies.
        form.add_field(
            "image", io.BytesIO(image), filename=filename, content_type="application/octet-stream"
        )
    for name, value in (fields or {}).items():
        form.add_field(name, value)
    return form


class Client:
    """Calls to one local server over a real aiohttp session."""

    def __init__(self, server: LocalServer, session: aiohttp.ClientSession) -> None:
        self.server = server
        self.session = session

    def _headers(self, api_key: object, headers: Mapping[str, str] | None) -> dict[str, str]:
        result = dict(headers or {})
        key = TEST_API_KEY if api_key is _DEFAULT else api_key
        if key is not None:
            result["x-api-key"] = str(key)
        return result

    async def rmbg(
        self,
        image: bytes | None = None,
        *,
        filename: str = "photo.png",
        fields: Mapping[str, str] | None = None,
        api_key: object = _DEFAULT,
        headers: Mapping[str, str] | None = None,
        data: Any = None,
    ) -> Answer:
        """POST /rmbg with ``image`` (made if not given) and ``fields``."""
        body = (
            data
            if data is not None
            else rmbg_form(
                make_image() if image is None else image, filename=filename, fields=fields
            )
        )
        async with self.session.post(
            f"{self.server.url}/rmbg", data=body, headers=self._headers(api_key, headers)
        ) as response:
            return Answer(response.status, response.headers, await response.read())

    async def usage(
        self, api_key: object = _DEFAULT, headers: Mapping[str, str] | None = None, **params: str
    ) -> Answer:
        """GET /api/membership-usage with ``params``."""
        async with self.session.get(
            f"{self.server.url}/api/membership-usage",
            params=params,
            headers=self._headers(api_key, headers),
        ) as response:
            return Answer(response.status, response.headers, await response.read())


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    """An aiohttp client session, closed after the test."""
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def client(rembg_server: LocalServer, session: aiohttp.ClientSession) -> Client:
    """A client of the default test server."""
    return Client(rembg_server, session)


@attrs.frozen
class Received:
    """One request as a capturing server saw it on the wire."""

    headers: Mapping[str, str]
    parts: Mapping[str, tuple[str | None, str | None, bytes]]  # name: (filename, type, bytes)


@attrs.define
class CaptureServer:
    """A stand-in for the API that records each request and answers a fixed image."""

    url: str
    received: list[Received]


@pytest.fixture
async def capture_server() -> AsyncIterator[CaptureServer]:
    """A real HTTP server on 127.0.0.1 that records what clients send it."""
    from aiohttp import web
    from aiohttp.test_utils import TestServer

    received: list[Received] = []
    answer = make_image((20, 10), "WEBP")

    async def handler(request: web.Request) -> web.Response:
        parts = {}
        reader = await request.multipart()
        while (part := await reader.next()) is not None:
            assert isinstance(part, aiohttp.BodyPartReader)
            parts[part.name or ""] = (
                part.filename,
                part.headers.get("Content-Type"),
                bytes(await part.read()),
            )
        received.append(Received(headers=dict(request.headers), parts=parts))
        return web.Response(body=answer, content_type="image/webp")

    app = web.Application()
    app.router.add_post("/rmbg", handler)
    server = TestServer(app, host="127.0.0.1")
    await server.start_server()
    try:
        yield CaptureServer(url=str(server.make_url("")).rstrip("/"), received=received)
    finally:
        await server.close()


@pytest.fixture(scope="module")
def unlimited_server() -> Iterator[LocalServer]:
    """One server for a whole module of generated examples: no rate limits, endless credits."""
    from rembg_async.server import Account, RateLimits, ServerConfig

    limits = RateLimits(short_term_requests=0, daily_anonymous=0)
    config = ServerConfig(
        accounts=[Account(api_key=TEST_API_KEY, credits=10**9)], rate_limits=limits
    )
    with LocalServer(config) as server:
        yield server


@pytest.fixture
async def api(rembg_server: LocalServer) -> AsyncIterator[Any]:
    """An AsyncRembg client of the default test server."""
    from rembg_async import AsyncRembg

    async with AsyncRembg(rembg_server.api_key, base_url=rembg_server.url) as client:
        yield client


@pytest.fixture
def faulty_server(rembg_server_factory: Any) -> LocalServer:
    """A server with fault injection enabled."""
    from rembg_async.server import ServerConfig

    server: LocalServer = rembg_server_factory(ServerConfig(faults=True))
    return server


@pytest.fixture
def flaky_server(rembg_server_factory: Any) -> LocalServer:
    """No limits, endless credits, and a fifth of requests failed at random (seeded)."""
    from rembg_async.server import Account, RateLimits, ServerConfig

    config = ServerConfig(
        accounts=[Account(api_key=TEST_API_KEY, credits=10**6)],
        rate_limits=RateLimits(short_term_requests=0, daily_anonymous=0),
        faults=True,
        fault_rate=0.2,
        fault_seed=5,
    )
    server: LocalServer = rembg_server_factory(config)
    return server


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The client's temporary folder, for this test alone (to see what is left in it)."""
    import tempfile

    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


def open_connections(server: LocalServer) -> int:
    """How many TCP connections this process has established to ``server``."""
    import psutil

    port = int(server.url.rsplit(":", 1)[1])
    return sum(
        1
        for connection in psutil.Process().net_connections("tcp")
        if connection.raddr
        and connection.raddr.port == port
        and connection.status == psutil.CONN_ESTABLISHED
    )


RawHandler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@attrs.define
class RawServer:
    """A server of raw asyncio sockets on 127.0.0.1: it can misbehave as aiohttp.web cannot."""

    url: str
    port: int
    connections: int = 0


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str]]:
    """An HTTP request's head: its first line and its headers (lower-case names)."""
    head = await reader.readuntil(b"\r\n\r\n")
    first, *lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in lines:
        if ":" in line:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
    return first.encode("latin-1"), headers


async def read_whole_request(reader: asyncio.StreamReader) -> tuple[bytes, dict[str, str], bytes]:
    """An HTTP request with a ``Content-Length`` body: first line, headers, body."""
    first, headers = await read_request(reader)
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return first, headers, body


@pytest.fixture
async def raw_server() -> AsyncIterator[Callable[..., Awaitable[RawServer]]]:
    """Starts raw servers running a handler per connection; all closed after the test.

    ``receive_buffer`` sets the kernel's receive buffer of its sockets: a small one makes
    the server's own reading, not its kernel's, what the client sees.
    """
    servers: list[asyncio.Server] = []
    writers: list[asyncio.StreamWriter] = []
    tasks: set[asyncio.Task[None]] = set()

    async def start(handler: RawHandler, *, receive_buffer: int | None = None) -> RawServer:
        async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw.connections += 1
            writers.append(writer)
            tasks.add(task := asyncio.current_task())  # type: ignore[arg-type]
            try:
                await handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass  # the client went away: that is what many of these tests do
            except asyncio.CancelledError:
                pass  # the test is over (asyncio would log a handler ending cancelled)
            finally:
                tasks.discard(task)  # type: ignore[arg-type]
                writer.close()

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if receive_buffer is not None:  # set before listen(): accepted sockets inherit it
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
        listener.bind(("127.0.0.1", 0))
        server = await asyncio.start_server(serve, sock=listener)
        servers.append(server)
        port = server.sockets[0].getsockname()[1]
        raw = RawServer(url=f"http://127.0.0.1:{port}", port=port)
        return raw

    yield start
    pending = list(tasks)
    for task in pending:
        task.cancel()
    await asyncio.gather(*pending, return_exceptions=True)
    for writer in writers:
        writer.transport.abort()
    for server in servers:
        server.close()
        await server.wait_closed()


def connections_to(port: int) -> int:
    """How many TCP connections this process has established to ``port`` on loopback."""
    import psutil

    return sum(
        1
        for connection in psutil.Process().net_connections("tcp")
        if connection.raddr
        and connection.raddr.port == port
        and connection.status == psutil.CONN_ESTABLISHED
    )


def read_terminal(leader: int, process: Any, timeout: float = 60) -> tuple[int, str]:
    """Everything a process writes to the pseudo-terminal ``leader`` until it closes, then
    the process's exit code and that screen (the follower side already closed here)."""
    screen = b""
    while select.select([leader], [], [], timeout)[0]:
        try:
            chunk = os.read(leader, 65536)
        except OSError:  # the terminal closed with the process
            break
        if not chunk:
            break
        screen += chunk
    os.close(leader)
    return process.wait(timeout=60), screen.decode(errors="replace")


@pytest.fixture(scope="module")
def valkey() -> Iterator[Valkey]:
    """One Valkey server for a test module; every test keeps to a namespace of its own."""
    server = start_valkey()
    yield server
    server.close()


@pytest.fixture
def own_valkey() -> Iterator[Valkey]:
    """A Valkey server this test may stop, kill or freeze."""
    server = start_valkey()
    yield server
    server.close()


@pytest.fixture
def namespace() -> str:
    """A Redis key namespace no other test uses."""
    return uuid.uuid4().hex[:12]

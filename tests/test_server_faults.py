"""Each injected fault, as a client sees it; faults only when enabled."""

from __future__ import annotations

import gzip
import time

import aiohttp
import pytest
from conftest import Client, make_image, rmbg_form

from rembg_async.server import FAULT_HEADER, Fault, LocalServer, ServerConfig


@pytest.fixture
def faulty(rembg_server_factory, session: aiohttp.ClientSession) -> Client:
    """A client of a server with fault injection enabled."""
    return Client(rembg_server_factory(ServerConfig(faults=True)), session)


def fault(text: str) -> dict[str, str]:
    """The request header that asks for a fault."""
    return {FAULT_HEADER: text}


async def test_faults_are_ignored_unless_enabled(client: Client) -> None:
    """A server started without faults does not honour the header."""
    assert (await client.rmbg(headers=fault("status=500"))).status == 200


@pytest.mark.parametrize("status", [500, 503, 504])
async def test_status_fault_is_a_json_error(faulty: Client, status: int) -> None:
    """A status fault answers in the API's error shape."""
    answer = await faulty.rmbg(headers=fault(f"status={status}"))
    assert answer.status == status
    assert answer.json()["status"] == status


async def test_bad_gateway_is_an_html_page(faulty: Client) -> None:
    """A 502 comes as a proxy's HTML page, not JSON."""
    answer = await faulty.rmbg(headers=fault("status=502"))
    assert answer.status == 502
    assert answer.headers["Content-Type"].startswith("text/html")
    assert answer.body.startswith(b"<html>")


@pytest.mark.parametrize(
    ("scope", "message"),
    [
        ("short_term", "You're making requests too quickly, Please Upgrade or slow down."),
        ("daily", "You've reached your daily limit. Please sign up for more access."),
        ("monthly", "You've reached your monthly limit. Consider purchasing more credits."),
    ],
)
async def test_rate_limit_fault(faulty: Client, scope: str, message: str) -> None:
    """A 429 fault carries the scope's message and the asked Retry-After."""
    answer = await faulty.rmbg(headers=fault(f"status=429,retry_after=7,scope={scope}"))
    assert (answer.status, answer.error, answer.headers["Retry-After"]) == (429, message, "7")


async def test_status_fault_costs_no_credit(faulty: Client) -> None:
    """A request failed by a fault does no work and takes no credit."""
    await faulty.rmbg(headers=fault("status=503"))
    assert (await faulty.usage()).json()["api_usage"] == 0


async def test_latency(faulty: Client) -> None:
    """Latency delays the answer by at least the asked time, then it succeeds."""
    started = time.monotonic()
    answer = await faulty.rmbg(headers=fault("latency=0.2"))
    assert answer.status == 200
    assert time.monotonic() - started >= 0.2


async def test_drop_during_upload(faulty: Client) -> None:
    """The connection is cut while the upload is under way."""
    with pytest.raises(aiohttp.ClientConnectionError):
        await faulty.rmbg(make_image((400, 300)), headers=fault("drop=upload"))


async def test_drop_during_download(faulty: Client) -> None:
    """Headers arrive, then the link dies part-way through the body."""
    with pytest.raises(aiohttp.ClientPayloadError):
        await faulty.rmbg(headers=fault("drop=download"))


async def test_truncated_body(faulty: Client) -> None:
    """The body stops short of its Content-Length and the connection closes."""
    with pytest.raises(aiohttp.ClientPayloadError):
        await faulty.rmbg(headers=fault("truncate"))


async def test_trickled_body_arrives_whole(faulty: Client, session: aiohttp.ClientSession) -> None:
    """A trickled body comes in many small pieces and is complete in the end."""
    clean = await faulty.rmbg(fields={"format": "png"})
    pieces = []
    async with session.post(
        f"{faulty.server.url}/rmbg",
        data=_form({"format": "png"}),
        headers={"x-api-key": faulty.server.api_key or "", **fault("trickle=0.001,chunk=1000")},
    ) as response:
        async for piece in response.content.iter_any():
            pieces.append(piece)
    assert b"".join(pieces) == clean.body
    assert len(pieces) > 1


def _form(fields: dict[str, str]) -> aiohttp.FormData:
    return rmbg_form(make_image(), fields=fields)


async def test_chunked_body_has_no_length(faulty: Client) -> None:
    """A chunked answer has no Content-Length and still decodes."""
    answer = await faulty.rmbg(headers=fault("chunked"), fields={"format": "png"})
    assert answer.status == 200
    assert "Content-Length" not in answer.headers
    assert answer.headers["Transfer-Encoding"] == "chunked"
    assert answer.image().format == "PNG"


async def test_gzip_body(faulty: Client, session: aiohttp.ClientSession) -> None:
    """A gzip-encoded answer says so, and inflates to the image."""
    headers = {"x-api-key": faulty.server.api_key or "", **fault("gzip")}
    async with session.post(
        f"{faulty.server.url}/rmbg", data=_form({}), headers=headers, auto_decompress=False
    ) as response:
        assert response.headers["Content-Encoding"] == "gzip"
        assert gzip.decompress(await response.read()).startswith(b"RIFF")


async def test_garbage_and_wrong_content_type(faulty: Client) -> None:
    """A 200 can carry bytes that are no image, under a type that is not an image's."""
    answer = await faulty.rmbg(headers=fault("garbage,content_type=text/plain"))
    assert answer.status == 200
    assert answer.headers["Content-Type"].startswith("text/plain")
    assert not answer.body.startswith(b"RIFF")


async def test_times_lets_later_requests_through(faulty: Client) -> None:
    """times=N fails the first N requests with the same header text, then recovers."""
    header = fault("status=503,times=2,id=recovery")
    statuses = [(await faulty.rmbg(headers=header)).status for _ in range(3)]
    assert statuses == [503, 503, 200]


async def test_pushed_faults_apply_to_the_next_requests(
    rembg_server_factory, session: aiohttp.ClientSession
) -> None:
    """Faults queued from the test's side hit the next requests, whatever they carry."""
    server: LocalServer = rembg_server_factory(ServerConfig(faults=True))
    server.faults.push(Fault(status=500), times=2)
    client = Client(server, session)
    assert [(await client.rmbg()).status for _ in range(3)] == [500, 500, 200]


async def test_random_faults_fail_a_share(
    rembg_server_factory, session: aiohttp.ClientSession
) -> None:
    """fault_rate fails about that share of requests, each in one of the known ways."""
    server = rembg_server_factory(ServerConfig(fault_rate=0.5, fault_seed=3, faults=True))
    client = Client(server, session)
    outcomes = []
    for _ in range(40):
        try:
            outcomes.append((await client.rmbg()).status)
        except aiohttp.ClientError:
            outcomes.append(-1)
    failures = sum(status != 200 for status in outcomes)
    assert 8 <= failures <= 32
    assert set(outcomes) <= {200, 429, 500, 502, 503, -1}


@pytest.mark.parametrize("text", ["status=abc", "nonsense", "drop=sideways"])
async def test_malformed_fault_header(faulty: Client, text: str) -> None:
    """A fault the server cannot parse is a 400 that says why."""
    answer = await faulty.rmbg(headers=fault(text))
    assert answer.status == 400
    assert "x-rembg-fault" in answer.error


async def test_faults_apply_to_the_usage_endpoint_too(faulty: Client) -> None:
    """The usage endpoint can be failed the same way."""
    assert (await faulty.usage(headers=fault("status=503"))).status == 503

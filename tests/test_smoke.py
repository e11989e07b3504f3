"""A first request through the fixture, to prove the test harness itself."""

from conftest import Client


async def test_default_server_removes_a_background(client: Client) -> None:
    """The default fixture server answers a plain upload with a WEBP image."""
    answer = await client.rmbg()
    assert answer.status == 200
    assert answer.headers["Content-Type"] == "image/webp"
